//! The real [`Tpm`]: ESAPI through tss-esapi, over the configured TCTI.
//!
//! Every operation creates the EK from the TCG default template (the TPM derives the same key
//! from its endorsement seed each time), loads the AK under it, does its work and flushes both,
//! so no transient object or session outlives a request. Commands the TPM answers with
//! `TPM_RC_RETRY`, `TPM_RC_YIELDED` or `TPM_RC_TESTING` are retried a bounded number of times.
//! When the TCTI fails (device gone, socket closed) the context is dropped and the next
//! request reconnects.

use std::collections::BTreeSet;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use tss_esapi::Context;
use tss_esapi::abstraction::{AsymmetricAlgorithmSelection, DefaultKey, ak, ek, nv};
use tss_esapi::attributes::SessionAttributesBuilder;
use tss_esapi::constants::response_code::Tss2ResponseCode;
use tss_esapi::constants::tss::{
    TPM2_LOADED_SESSION_FIRST, TPM2_PT_MANUFACTURER, TPM2_TRANSIENT_FIRST,
};
use tss_esapi::constants::{CapabilityType, SessionType};
use tss_esapi::handles::{
    AuthHandle, KeyHandle, NvIndexHandle, NvIndexTpmHandle, ObjectHandle, SessionHandle, TpmHandle,
};
use tss_esapi::interface_types::algorithm::{HashingAlgorithm, SignatureSchemeAlgorithm};
use tss_esapi::interface_types::ecc::EccCurve;
use tss_esapi::interface_types::key_bits::RsaKeyBits;
use tss_esapi::interface_types::resource_handles::NvAuth;
use tss_esapi::interface_types::session_handles::{AuthSession, PolicySession};
use tss_esapi::structures::{
    CapabilityData, Data, EncryptedSecret, IdObject, PcrSelectionList, Private, Public,
    PublicBuffer, SignatureScheme, SymmetricDefinition,
};
use tss_esapi::tcti_ldr::TctiNameConf;
use tss_esapi::traits::{Marshall, UnMarshall};
use tss_esapi::tss2_esys::{TPML_PCR_SELECTION, TPMS_PCR_SELECTION};

use crate::akstore::{AkStore, StoredAk};
use crate::config::EkAlgorithm;
use crate::pcrs::{PcrAlgorithm, PcrSpec};
use crate::tpm::{BankValues, Endorsement, Identity, RawQuote, Tpm, TpmError};
use crate::wire;

/// How often a command the TPM asked to retry is sent again.
const MAX_ATTEMPTS: u32 = 6;
/// The first pause before a retry; doubled each time.
const FIRST_BACKOFF: Duration = Duration::from_millis(20);

/// The TSS layers of a response code (bits 16–23).
const LAYER_TPM: u32 = 0;
const LAYER_TCTI: u32 = 10;

/// `TPM_RC_RETRY`, `TPM_RC_YIELDED`, `TPM_RC_TESTING` (format-zero warnings).
const RC_RETRY: u32 = 0x922;
const RC_YIELDED: u32 = 0x908;
const RC_TESTING: u32 = 0x90a;

/// A TPM reached through tss-esapi.
pub struct TssTpm {
    tcti: String,
    ek_algorithm: EkAlgorithm,
    store: AkStore,
    context: Option<Context>,
    identity: Option<Identity>,
    ak: Option<StoredAk>,
}

impl std::fmt::Debug for TssTpm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TssTpm")
            .field("tcti", &self.tcti)
            .field("ek_algorithm", &self.ek_algorithm)
            .field("connected", &self.context.is_some())
            .finish_non_exhaustive()
    }
}

impl TssTpm {
    /// A TPM at `tcti` with an EK of `ek_algorithm`, keeping its AK under `state_dir`. Nothing
    /// is opened yet.
    pub fn new(tcti: &str, ek_algorithm: EkAlgorithm, state_dir: &Path) -> Self {
        Self {
            tcti: tcti.to_owned(),
            ek_algorithm,
            store: AkStore::new(state_dir, ek_algorithm),
            context: None,
            identity: None,
            ak: None,
        }
    }

    /// Opens the TCTI now (the daemon does this before it drops privileges, so a device node
    /// only root or the `tss` group may open still works).
    pub fn connect(&mut self) -> Result<(), TpmError> {
        self.context().map(|_| ())
    }

    fn context(&mut self) -> Result<&mut Context, TpmError> {
        if self.context.is_none() {
            let name = TctiNameConf::from_str(&self.tcti)
                .map_err(|_| TpmError::Unreachable(format!("invalid TCTI {:?}", self.tcti)))?;
            let mut context = Context::new(name).map_err(|err| {
                TpmError::Unreachable(format!(
                    "cannot open TCTI {:?}: {}",
                    self.tcti,
                    describe(&err)
                ))
            })?;
            if !self.tcti.starts_with("device") && !self.tcti.starts_with("tabrmd") {
                // A simulator has no resource manager: objects and sessions of a client that
                // died mid-request stay loaded and fill the TPM's few slots.
                flush_leftovers(&mut context);
            }
            tracing::info!(tcti = %self.tcti, "connected to the TPM");
            self.context = Some(context);
        }
        self.context
            .as_mut()
            .ok_or_else(|| TpmError::Unreachable("no TPM context".into()))
    }

    /// Forgets the context after a transport failure, so the next call reconnects.
    fn after<T>(&mut self, result: Result<T, TpmError>) -> Result<T, TpmError> {
        if let Err(err) = &result
            && err.is_unreachable()
        {
            tracing::warn!(error = %err, "lost the TPM; will reconnect");
            self.context = None;
            self.identity = None;
        }
        result
    }

    fn ek_selection(&self) -> AsymmetricAlgorithmSelection {
        match self.ek_algorithm {
            EkAlgorithm::Ecc => AsymmetricAlgorithmSelection::Ecc(EccCurve::NistP256),
            EkAlgorithm::Rsa => AsymmetricAlgorithmSelection::Rsa(RsaKeyBits::Rsa2048),
        }
    }

    fn ak_scheme(&self) -> SignatureSchemeAlgorithm {
        match self.ek_algorithm {
            EkAlgorithm::Ecc => SignatureSchemeAlgorithm::EcDsa,
            EkAlgorithm::Rsa => SignatureSchemeAlgorithm::RsaSsa,
        }
    }

    /// Connects, creates the EK, reads its certificate, and makes sure an AK is stored and
    /// loads; computes the identity once per connection.
    fn setup(&mut self) -> Result<Identity, TpmError> {
        let result = self.setup_once();
        self.after(result)
    }

    fn setup_once(&mut self) -> Result<Identity, TpmError> {
        if let Some(identity) = &self.identity {
            return Ok(identity.clone());
        }
        let selection = self.ek_selection();
        let ek_algorithm = self.ek_algorithm;
        let scheme = self.ak_scheme();
        let stored = match self.ak.clone() {
            Some(key) => Some(key),
            None => self
                .store
                .load()
                .map_err(|err| TpmError::Storage(err.to_string()))?,
        };
        let store = self.store.clone();
        let context = self.context()?;
        let ek = create_ek(context, selection)?;
        let result = (|| {
            let endorsement = endorsement(context, ek, ek_algorithm)?;
            let (key, ak_name, ak_public) = match stored {
                Some(key) => match load_and_name(context, ek, &key) {
                    Ok((name, public)) => (key, name, public),
                    Err(err @ TpmError::Storage(_)) => {
                        // Typically the TPM was cleared: the blob was wrapped under another
                        // endorsement seed. Keep it for inspection and make a new AK. (Any
                        // other failure, a full TPM say, is not a reason to change identity.)
                        tracing::warn!(error = %err, "the stored attestation key does not load; creating a new one");
                        store
                            .set_aside()
                            .map_err(|err| TpmError::Storage(err.to_string()))?;
                        create_and_store(context, ek, scheme, &store)?
                    }
                    Err(err) => return Err(err),
                },
                None => create_and_store(context, ek, scheme, &store)?,
            };
            Ok((
                key,
                Identity {
                    ek_algorithm,
                    endorsement,
                    ak_public,
                    ak_name,
                },
            ))
        })();
        flush(context, ek.into());
        let (key, identity) = result?;
        self.ak = Some(key);
        self.identity = Some(identity.clone());
        Ok(identity)
    }

    /// Runs `operation` with the EK and the AK loaded, flushing both afterwards.
    fn with_keys<T>(
        &mut self,
        operation: impl FnOnce(&mut Context, KeyHandle, KeyHandle) -> Result<T, TpmError>,
    ) -> Result<T, TpmError> {
        self.setup()?;
        let key = self
            .ak
            .clone()
            .ok_or_else(|| TpmError::Storage("no attestation key".into()))?;
        let selection = self.ek_selection();
        let result = (|| {
            let context = self.context()?;
            let ek = create_ek(context, selection)?;
            let result = load_ak(context, ek, &key).and_then(|ak| {
                let result = operation(context, ek, ak);
                flush(context, ak.into());
                result
            });
            flush(context, ek.into());
            result
        })();
        self.after(result)
    }
}

impl Tpm for TssTpm {
    fn identity(&mut self) -> Result<Identity, TpmError> {
        if self.identity.is_some() {
            // Known already: check the TPM still answers (one cheap command).
            let alive = self.context().and_then(|context| {
                retry(context, "GetCapability", |ctx| {
                    ctx.execute_without_session(|ctx| {
                        ctx.get_capability(CapabilityType::TpmProperties, TPM2_PT_MANUFACTURER, 1)
                    })
                })
            });
            if let Err(err) = self.after(alive) {
                if err.is_unreachable() {
                    // Try once to reconnect (the TPM may have come back).
                    tracing::info!("reconnecting to the TPM");
                } else {
                    return Err(err);
                }
            }
        }
        let result = self.setup();
        self.after(result)
    }

    fn quote(&mut self, qualifying_data: &[u8], selection: &PcrSpec) -> Result<RawQuote, TpmError> {
        let data = Data::try_from(qualifying_data.to_vec())
            .map_err(|err| TpmError::Malformed(format!("qualifying data: {err}")))?;
        let list = selection_list(selection.banks().iter().map(|b| (b.algorithm, &b.indices)))?;
        self.with_keys(|context, _ek, ak| {
            let (attest, signature) = retry(context, "Quote", |ctx| {
                ctx.execute_with_nullauth_session(|ctx| {
                    ctx.quote(ak, data.clone(), SignatureScheme::Null, list.clone())
                })
            })?;
            let attest = attest
                .marshall()
                .map_err(|err| command("marshalling TPMS_ATTEST", &err))?;
            let signature = signature
                .marshall()
                .map_err(|err| command("marshalling TPMT_SIGNATURE", &err))?;
            let pcrs = read_pcrs(context, selection)?;
            Ok(RawQuote {
                attest,
                signature,
                pcrs,
            })
        })
    }

    fn activate_credential(
        &mut self,
        credential_blob: &[u8],
        encrypted_secret: &[u8],
    ) -> Result<Vec<u8>, TpmError> {
        let blob = wire::tpm2b_contents(credential_blob, "TPM2B_ID_OBJECT")
            .map_err(|err| TpmError::Malformed(err.to_string()))
            .and_then(|bytes| {
                IdObject::try_from(bytes)
                    .map_err(|err| TpmError::Malformed(format!("TPM2B_ID_OBJECT: {err}")))
            })?;
        let secret = wire::tpm2b_contents(encrypted_secret, "TPM2B_ENCRYPTED_SECRET")
            .map_err(|err| TpmError::Malformed(err.to_string()))
            .and_then(|bytes| {
                EncryptedSecret::try_from(bytes)
                    .map_err(|err| TpmError::Malformed(format!("TPM2B_ENCRYPTED_SECRET: {err}")))
            })?;
        self.with_keys(|context, ek, ak| {
            // The EK's policy (TCG policy A): PolicySecret(TPM_RH_ENDORSEMENT).
            let policy = start_session(context, SessionType::Policy)?;
            let result = (|| {
                let policy_session = PolicySession::try_from(policy)
                    .map_err(|err| command("policy session", &err))?;
                retry(context, "PolicySecret", |ctx| {
                    ctx.execute_with_nullauth_session(|ctx| {
                        ctx.policy_secret(
                            policy_session,
                            AuthHandle::Endorsement,
                            Default::default(),
                            Default::default(),
                            Default::default(),
                            None,
                        )
                    })
                })?;
                // The AK (empty auth) through an HMAC session that encrypts the recovered
                // secret on its way back.
                let hmac = start_session(context, SessionType::Hmac)?;
                let activated =
                    context.execute_with_sessions((Some(hmac), Some(policy), None), |ctx| {
                        with_retries(ctx, |ctx| {
                            ctx.activate_credential(ak, ek, blob.clone(), secret.clone())
                        })
                    });
                flush(context, SessionHandle::from(hmac).into());
                activated.map_err(|err| match classify(&err) {
                    Class::Unreachable => TpmError::Unreachable(describe(&err)),
                    _ => TpmError::CredentialRejected(describe(&err)),
                })
            })();
            flush(context, SessionHandle::from(policy).into());
            result.map(|digest| digest.value().to_vec())
        })
    }
}

/// How an error is to be handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// The TPM asked to be asked again.
    Retry,
    /// The transport failed.
    Unreachable,
    /// Any other failure.
    Failed,
}

/// The raw `TSS2_RC` of an error. tss-esapi keeps it private and only shows it in the
/// `Display` of the format-zero and format-one codes ("Response code value: 0x…"); its own
/// `kind()` decodes every layer as if it were a TPM code.
fn raw_code(err: &tss_esapi::Error) -> Option<u32> {
    let text = match err {
        tss_esapi::Error::Tss2Error(Tss2ResponseCode::FormatZero(rc)) => rc.to_string(),
        tss_esapi::Error::Tss2Error(Tss2ResponseCode::FormatOne(rc)) => rc.to_string(),
        _ => return None,
    };
    let hex = text.rsplit("0x").next()?;
    u32::from_str_radix(hex.trim(), 16).ok()
}

fn classify(err: &tss_esapi::Error) -> Class {
    let Some(code) = raw_code(err) else {
        return Class::Failed;
    };
    match (code >> 16) & 0xff {
        LAYER_TPM if matches!(code, RC_RETRY | RC_YIELDED | RC_TESTING) => Class::Retry,
        LAYER_TCTI => Class::Unreachable,
        _ => Class::Failed,
    }
}

/// A human explanation that keeps the raw code (tss-esapi's own text says "response code not
/// recognized" for everything outside the TPM layer).
fn describe(err: &tss_esapi::Error) -> String {
    match raw_code(err) {
        Some(code) if (code >> 16) & 0xff == LAYER_TPM => format!("{err} (TPM_RC {code:#x})"),
        Some(code) => {
            let layer = match (code >> 16) & 0xff {
                7 => "ESAPI",
                8 => "SAPI",
                9 => "marshalling",
                LAYER_TCTI => "TCTI",
                11 | 12 => "resource manager",
                _ => "TSS",
            };
            let what = match code & 0xffff {
                1 => "general failure",
                5 => "bad reference",
                8 => "no connection",
                9 => "try again",
                10 => "I/O error",
                11 => "bad value",
                12 => "not permitted",
                17 => "malformed response",
                _ => "error",
            };
            format!("{layer} {what} (rc {code:#x})")
        }
        None => err.to_string(),
    }
}

fn command(what: &'static str, err: &tss_esapi::Error) -> TpmError {
    match classify(err) {
        Class::Unreachable => TpmError::Unreachable(format!("{what}: {}", describe(err))),
        _ => TpmError::Command {
            command: what,
            message: describe(err),
        },
    }
}

/// Runs `f`, again after a growing pause while the TPM answers RETRY/YIELDED/TESTING.
fn with_retries<C, T>(
    context: &mut C,
    mut f: impl FnMut(&mut C) -> tss_esapi::Result<T>,
) -> tss_esapi::Result<T> {
    let mut pause = FIRST_BACKOFF;
    let mut attempt = 1;
    loop {
        match f(context) {
            Err(err) if classify(&err) == Class::Retry && attempt < MAX_ATTEMPTS => {
                tracing::debug!(attempt, error = %describe(&err), "TPM asked to retry");
                std::thread::sleep(pause);
                pause = pause.saturating_mul(2);
                attempt += 1;
            }
            other => return other,
        }
    }
}

fn retry<T>(
    context: &mut Context,
    what: &'static str,
    f: impl FnMut(&mut Context) -> tss_esapi::Result<T>,
) -> Result<T, TpmError> {
    with_retries(context, f).map_err(|err| command(what, &err))
}

fn flush(context: &mut Context, handle: ObjectHandle) {
    if let Err(err) = context.flush_context(handle) {
        tracing::warn!(error = %describe(&err), "could not flush a TPM handle");
    }
}

/// Flushes every transient object and loaded session on a TPM without a resource manager.
fn flush_leftovers(context: &mut Context) {
    for first in [TPM2_TRANSIENT_FIRST, TPM2_LOADED_SESSION_FIRST] {
        let handles = match context
            .execute_without_session(|ctx| ctx.get_capability(CapabilityType::Handles, first, 64))
        {
            Ok((CapabilityData::Handles(list), _)) => list.into_inner(),
            Ok(_) => Vec::new(),
            Err(err) => {
                tracing::warn!(error = %describe(&err), "cannot list leftover TPM handles");
                Vec::new()
            }
        };
        for handle in handles {
            let raw = u32::from(handle);
            if raw >> 24 != first >> 24 {
                continue;
            }
            match context.execute_without_session(|ctx| ctx.tr_from_tpm_public(handle)) {
                Ok(object) => {
                    tracing::info!(
                        handle = format!("{raw:#x}"),
                        "flushing a leftover TPM handle"
                    );
                    flush(context, object);
                }
                Err(err) => {
                    tracing::warn!(handle = format!("{raw:#x}"), error = %describe(&err), "cannot flush a leftover TPM handle");
                }
            }
        }
    }
}

fn start_session(context: &mut Context, kind: SessionType) -> Result<AuthSession, TpmError> {
    let session = retry(context, "StartAuthSession", |ctx| {
        ctx.start_auth_session(
            None,
            None,
            None,
            kind,
            SymmetricDefinition::AES_128_CFB,
            HashingAlgorithm::Sha256,
        )
    })?
    .ok_or_else(|| TpmError::Command {
        command: "StartAuthSession",
        message: "no session returned".into(),
    })?;
    if kind == SessionType::Hmac {
        let (attributes, mask) = SessionAttributesBuilder::new()
            .with_decrypt(true)
            .with_encrypt(true)
            .build();
        if let Err(err) = context.tr_sess_set_attributes(session, attributes, mask) {
            flush(context, SessionHandle::from(session).into());
            return Err(command("TR_SetAttributes", &err));
        }
    }
    Ok(session)
}

fn create_ek(
    context: &mut Context,
    selection: AsymmetricAlgorithmSelection,
) -> Result<KeyHandle, TpmError> {
    retry(context, "CreatePrimary (EK)", |ctx| {
        ek::create_ek_object_2(ctx, selection, DefaultKey)
    })
}

/// The EK certificate from its TCG NV index, or else the EK public area.
fn endorsement(
    context: &mut Context,
    ek: KeyHandle,
    algorithm: EkAlgorithm,
) -> Result<Endorsement, TpmError> {
    let certificate = match read_certificate(context, algorithm.certificate_nv_index()) {
        Ok(Some(der)) => Some(der),
        Ok(None) => {
            tracing::info!(
                index = format!("{:#x}", algorithm.certificate_nv_index()),
                "no EK certificate; the evidence carries only the EK public area"
            );
            None
        }
        Err(err) if err.is_unreachable() => return Err(err),
        Err(err) => {
            tracing::warn!(error = %err, "cannot read the EK certificate; the evidence carries only the EK public area");
            None
        }
    };
    let (public, _, _) = retry(context, "ReadPublic (EK)", |ctx| ctx.read_public(ek))?;
    Ok(Endorsement {
        public: public_bytes(public)?,
        certificate,
    })
}

fn read_certificate(context: &mut Context, index: u32) -> Result<Option<Vec<u8>>, TpmError> {
    let listed = retry(context, "GetCapability (NV)", |ctx| {
        ctx.execute_without_session(|ctx| ctx.get_capability(CapabilityType::Handles, index, 1))
    })?;
    let present = match listed {
        (CapabilityData::Handles(list), _) => list.iter().any(|h| u32::from(*h) == index),
        _ => false,
    };
    if !present {
        return Ok(None);
    }
    let nv_index = NvIndexTpmHandle::new(index).map_err(|err| command("NV index handle", &err))?;
    let mut object = retry(context, "TR_FromTPMPublic (NV)", |ctx| {
        ctx.execute_without_session(|ctx| ctx.tr_from_tpm_public(TpmHandle::NvIndex(nv_index)))
    })?;
    let auth = NvAuth::NvIndex(NvIndexHandle::from(object));
    let read = retry(context, "NV_Read (EK certificate)", |ctx| {
        ctx.execute_with_nullauth_session(|ctx| nv::read_full(ctx, auth, nv_index))
    });
    // tss-esapi's own ek::retrieve_ek_pubcert never closes this ESYS_TR.
    if let Err(err) = context.tr_close(&mut object) {
        tracing::debug!(error = %describe(&err), "closing the NV handle");
    }
    read.map(Some)
}

fn public_bytes(public: Public) -> Result<Vec<u8>, TpmError> {
    PublicBuffer::try_from(public)
        .and_then(|buffer| buffer.marshall())
        .map_err(|err| command("marshalling TPM2B_PUBLIC", &err))
}

fn load_ak(context: &mut Context, ek: KeyHandle, key: &StoredAk) -> Result<KeyHandle, TpmError> {
    let public = PublicBuffer::unmarshall(&key.public)
        .and_then(Public::try_from)
        .map_err(|err| TpmError::Storage(format!("stored AK public area: {}", describe(&err))))?;
    let private = wire::tpm2b_contents(&key.private, "TPM2B_PRIVATE")
        .map_err(|err| TpmError::Storage(format!("stored AK private blob: {err}")))
        .and_then(|bytes| {
            Private::try_from(bytes)
                .map_err(|err| TpmError::Storage(format!("stored AK private blob: {err}")))
        })?;
    with_retries(context, |ctx| {
        ak::load_ak(ctx, ek, None, private.clone(), public.clone())
    })
    .map_err(|err| {
        if is_foreign_blob(&err) {
            TpmError::Storage(format!(
                "the stored AK does not load under this TPM's EK: {}",
                describe(&err)
            ))
        } else {
            command("Load (AK)", &err)
        }
    })
}

/// Whether the TPM refused a key blob as not its own (wrapped under another seed, or altered).
fn is_foreign_blob(err: &tss_esapi::Error) -> bool {
    use tss_esapi::constants::response_code::Tss2ResponseCodeKind as Kind;
    let tss_esapi::Error::Tss2Error(rc) = err else {
        return false;
    };
    let tpm_layer = raw_code(err).is_some_and(|code| (code >> 16) & 0xff == LAYER_TPM);
    tpm_layer
        && matches!(
            rc.kind(),
            Some(
                Kind::Integrity
                    | Kind::Binding
                    | Kind::Key
                    | Kind::KeySize
                    | Kind::Size
                    | Kind::Value
                    | Kind::Type
                    | Kind::Attributes
                    | Kind::Scheme
                    | Kind::Hash
                    | Kind::Symmetric
                    | Kind::Asymmetric
                    | Kind::Curve
                    | Kind::EccPoint
                    | Kind::Insufficient
            )
        )
}

/// Loads the stored AK and returns its name and public area; flushes it again.
fn load_and_name(
    context: &mut Context,
    ek: KeyHandle,
    key: &StoredAk,
) -> Result<(Vec<u8>, Vec<u8>), TpmError> {
    let ak = load_ak(context, ek, key)?;
    let result = (|| {
        let name = retry(context, "TR_GetName (AK)", |ctx| ctx.tr_get_name(ak.into()))?;
        let (public, _, _) = retry(context, "ReadPublic (AK)", |ctx| ctx.read_public(ak))?;
        Ok((name.value().to_vec(), public_bytes(public)?))
    })();
    flush(context, ak.into());
    result
}

fn create_and_store(
    context: &mut Context,
    ek: KeyHandle,
    scheme: SignatureSchemeAlgorithm,
    store: &AkStore,
) -> Result<(StoredAk, Vec<u8>, Vec<u8>), TpmError> {
    let created = retry(context, "Create (AK)", |ctx| {
        ak::create_ak(ctx, ek, HashingAlgorithm::Sha256, scheme, None, DefaultKey)
    })?;
    let key = StoredAk {
        public: public_bytes(created.out_public)?,
        private: wire::tpm2b(created.out_private.value())
            .map_err(|err| TpmError::Storage(err.to_string()))?,
    };
    store
        .save(&key)
        .map_err(|err| TpmError::Storage(err.to_string()))?;
    let (name, public) = load_and_name(context, ek, &key)?;
    tracing::info!(
        ak_name = hex::encode(&name),
        "created and stored a new attestation key"
    );
    Ok((key, name, public))
}

fn pcr_algorithm(algorithm: HashingAlgorithm) -> Option<PcrAlgorithm> {
    match algorithm {
        HashingAlgorithm::Sha1 => Some(PcrAlgorithm::Sha1),
        HashingAlgorithm::Sha256 => Some(PcrAlgorithm::Sha256),
        HashingAlgorithm::Sha384 => Some(PcrAlgorithm::Sha384),
        HashingAlgorithm::Sha512 => Some(PcrAlgorithm::Sha512),
        _ => None,
    }
}

/// A `TPML_PCR_SELECTION` with the banks in the given order. (tss-esapi's builder keeps its
/// banks in a `HashMap`, so their order — which decides the quote's `pcrDigest` — would vary.)
fn selection_list<'a>(
    banks: impl Iterator<Item = (PcrAlgorithm, &'a BTreeSet<u8>)>,
) -> Result<PcrSelectionList, TpmError> {
    let mut raw = TPML_PCR_SELECTION::default();
    for (slot, (algorithm, indices)) in raw.pcrSelections.iter_mut().zip(banks) {
        let [a, b, c] = PcrSpec::bitmap(indices);
        *slot = TPMS_PCR_SELECTION {
            hash: algorithm.tpm_alg_id(),
            sizeofSelect: 3,
            pcrSelect: [a, b, c, 0],
        };
        raw.count += 1;
    }
    PcrSelectionList::try_from(raw).map_err(|err| command("PCR selection", &err))
}

/// `TPM2_PCR_Read` until every selected register is read (a TPM returns at most 8 digests per
/// call). tss-esapi's `pcr::read_all` loops forever when a bank is not allocated; this stops.
fn read_pcrs(context: &mut Context, spec: &PcrSpec) -> Result<Vec<BankValues>, TpmError> {
    let mut remaining: Vec<(PcrAlgorithm, BTreeSet<u8>)> = spec
        .banks()
        .iter()
        .map(|bank| (bank.algorithm, bank.indices.clone()))
        .collect();
    let mut banks: Vec<BankValues> = spec
        .banks()
        .iter()
        .map(|bank| BankValues {
            algorithm: bank.algorithm,
            values: Vec::new(),
        })
        .collect();
    while remaining.iter().any(|(_, indices)| !indices.is_empty()) {
        let list = selection_list(
            remaining
                .iter()
                .filter(|(_, indices)| !indices.is_empty())
                .map(|(algorithm, indices)| (*algorithm, indices)),
        )?;
        let (_, read, digests) = retry(context, "PCR_Read", |ctx| {
            ctx.execute_without_session(|ctx| ctx.pcr_read(list.clone()))
        })?;
        let mut digests = digests.value().iter();
        let mut progress = false;
        for selection in read.get_selections() {
            let algorithm =
                pcr_algorithm(selection.hashing_algorithm()).ok_or_else(|| TpmError::Command {
                    command: "PCR_Read",
                    message: "the TPM answered for a bank that was not asked for".into(),
                })?;
            let mut indices: Vec<u8> = selection
                .selected()
                .into_iter()
                .filter_map(|slot| u8::try_from(u32::from(slot).trailing_zeros()).ok())
                .collect();
            indices.sort_unstable();
            for index in indices {
                let digest = digests.next().ok_or_else(|| TpmError::Command {
                    command: "PCR_Read",
                    message: "fewer digests than selected registers".into(),
                })?;
                let (Some(bank), Some((_, wanted))) = (
                    banks.iter_mut().find(|b| b.algorithm == algorithm),
                    remaining.iter_mut().find(|(alg, _)| *alg == algorithm),
                ) else {
                    continue;
                };
                if wanted.remove(&index) {
                    bank.values.push((index, digest.value().to_vec()));
                    progress = true;
                }
            }
        }
        if !progress {
            let missing: Vec<String> = remaining
                .iter()
                .filter(|(_, indices)| !indices.is_empty())
                .map(|(algorithm, _)| algorithm.name().to_owned())
                .collect();
            return Err(TpmError::Command {
                command: "PCR_Read",
                message: format!(
                    "the TPM returned no values for bank(s) {} (not allocated?)",
                    missing.join(", ")
                ),
            });
        }
    }
    for bank in &mut banks {
        bank.values.sort_by_key(|(index, _)| *index);
    }
    Ok(banks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_codes_are_classified_by_layer() {
        let err = |code: u32| tss_esapi::Error::Tss2Error(Tss2ResponseCode::from(code));
        assert_eq!(raw_code(&err(0x922)), Some(0x922));
        assert_eq!(classify(&err(0x922)), Class::Retry);
        assert_eq!(classify(&err(0x908)), Class::Retry);
        assert_eq!(classify(&err(0x90a)), Class::Retry);
        assert_eq!(classify(&err(0xa000a)), Class::Unreachable);
        assert_eq!(classify(&err(0x1df)), Class::Failed); // TPM_RC_INTEGRITY, parameter 1
        assert_eq!(classify(&err(0x7000a)), Class::Failed);
        assert!(describe(&err(0xa000a)).contains("TCTI I/O error"));
        assert!(is_foreign_blob(&err(0x1df)));
        assert!(!is_foreign_blob(&err(0x902))); // TPM_RC_OBJECT_MEMORY: full, not foreign
        assert!(!is_foreign_blob(&err(0xa000a)));
        assert!(describe(&err(0x922)).contains("0x922"));
    }

    #[test]
    fn retries_are_bounded_and_only_for_retry_codes() {
        let err = |code: u32| tss_esapi::Error::Tss2Error(Tss2ResponseCode::from(code));
        // TPM_RC_TESTING twice, then success.
        let mut calls = 0u32;
        let result = with_retries(&mut calls, |calls| {
            *calls += 1;
            if *calls < 3 { Err(err(0x90a)) } else { Ok(7) }
        });
        assert_eq!((result.ok(), calls), (Some(7), 3));
        // TPM_RC_RETRY forever: gives up after MAX_ATTEMPTS.
        let mut calls = 0u32;
        let result: tss_esapi::Result<()> = with_retries(&mut calls, |calls| {
            *calls += 1;
            Err(err(0x922))
        });
        assert!(result.is_err());
        assert_eq!(calls, MAX_ATTEMPTS);
        // Any other error: no retry.
        let mut calls = 0u32;
        let result: tss_esapi::Result<()> = with_retries(&mut calls, |calls| {
            *calls += 1;
            Err(err(0x1df))
        });
        assert!(result.is_err());
        assert_eq!(calls, 1);
    }

    #[test]
    fn selection_lists_keep_bank_order() {
        let spec: PcrSpec = "sha384:1+sha1:0,2".parse().unwrap();
        let list = selection_list(spec.banks().iter().map(|b| (b.algorithm, &b.indices))).unwrap();
        let banks: Vec<_> = list
            .get_selections()
            .iter()
            .map(|s| (s.hashing_algorithm(), s.selected().len()))
            .collect();
        assert_eq!(
            banks,
            [(HashingAlgorithm::Sha384, 1), (HashingAlgorithm::Sha1, 2)]
        );
    }

    #[test]
    fn nothing_is_opened_until_asked() {
        let dir = tempfile::tempdir().unwrap();
        let mut tpm = TssTpm::new("swtpm:host=127.0.0.1,port=1", EkAlgorithm::Ecc, dir.path());
        assert!(tpm.context.is_none());
        let err = tpm.identity().unwrap_err();
        assert!(err.is_unreachable(), "{err}");
    }
}
