//! Appraisal of TPM evidence, and the in-memory [`TpmVerifier`] that ties enrollment
//! (MakeCredential / ActivateCredential), nonces, and per-device history together. The
//! backend keeps the same state in its database.

use std::collections::HashMap;

use enigm_evidence::v1::{Evidence, TpmEvidence, evidence::Kind};
use enigm_tpm_evidence::QuoteError;
use enigm_tpm_evidence::attest::ClockInfo;
use enigm_tpm_evidence::eventlog::EventLog;
use enigm_tpm_evidence::hash::HashAlg;
use enigm_tpm_evidence::pcr::PcrValues;
use enigm_tpm_evidence::public::PublicArea;
use enigm_tpm_evidence::verify_quote;

use crate::appraisal::{Appraisal, Tier};
use crate::credential::{Credential, CredentialError, make_credential};
use crate::history::{ClockVerdict, check_clock};
use crate::nonce::NonceStore;
use crate::policy::Policy;
use crate::qualifying_data;

/// What the verifier knows about an enrolled device.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceRecord {
    /// The AK's TPM Name.
    pub ak_name: Vec<u8>,
    /// The secret the device must recover with ActivateCredential.
    pub pending_secret: Option<Vec<u8>>,
    /// Whether it did: the AK is bound to the EK.
    pub ak_activated: bool,
    /// The clock of the last affirmed quote.
    pub last_clock: Option<ClockInfo>,
}

/// Converts the wire PCR banks into values.
pub fn pcr_values(evidence: &TpmEvidence) -> PcrValues {
    let mut values = PcrValues::default();
    for bank in &evidence.pcrs {
        let alg = match bank.algorithm() {
            enigm_evidence::v1::HashAlgorithm::Sha1 => HashAlg::Sha1,
            enigm_evidence::v1::HashAlgorithm::Sha256 => HashAlg::Sha256,
            enigm_evidence::v1::HashAlgorithm::Sha384 => HashAlg::Sha384,
            enigm_evidence::v1::HashAlgorithm::Sha512 => HashAlg::Sha512,
            enigm_evidence::v1::HashAlgorithm::Unspecified => continue,
        };
        for value in &bank.values {
            values.insert(alg, value.index, value.digest.clone());
        }
    }
    values
}

/// Appraises one quote of an enrolled device. Returns the appraisal and, when affirming or
/// warning, the clock to remember.
pub fn appraise_tpm(
    evidence: &TpmEvidence,
    posture_digest: &[u8],
    nonce: &[u8],
    device: &DeviceRecord,
    policy: &Policy,
) -> (Appraisal, Option<ClockInfo>) {
    let mut appraisal = Appraisal::default();
    let ak = match PublicArea::parse_tpm2b(&evidence.ak_public) {
        Ok(ak) => ak,
        Err(err) => {
            appraisal.refute("ak", format!("attestation key does not parse: {err}"));
            return (appraisal, None);
        }
    };
    if ak.is_attestation_key() {
        appraisal.affirm(
            "ak",
            "restricted signing key generated in and fixed to the TPM",
        );
    } else {
        appraisal.refute("ak", "not a restricted, TPM-fixed signing key");
    }
    match ak.name() {
        Ok(name) if device.ak_activated && openssl_eq(&name, &device.ak_name) => {
            appraisal.affirm("ak-binding", "AK activated against this device's EK")
        }
        Ok(name) if openssl_eq(&name, &device.ak_name) => appraisal.refute(
            "ak-binding",
            "AK not activated: credential activation never completed",
        ),
        Ok(_) => appraisal.refute(
            "ak-binding",
            "AK is not the one enrolled for this device (another TPM's key?)",
        ),
        Err(err) => appraisal.refute("ak-binding", format!("cannot compute AK name: {err}")),
    }
    let expected = match qualifying_data(nonce, posture_digest) {
        Ok(expected) => expected,
        Err(err) => {
            appraisal.refute("nonce", format!("crypto error: {err}"));
            return (appraisal, None);
        }
    };
    let values = pcr_values(evidence);
    let quote = match verify_quote(
        &ak.key,
        &evidence.attest,
        &evidence.signature,
        Some(&expected),
        Some(&values),
    ) {
        Ok(quote) => {
            appraisal.affirm("signature", "quote signed by the AK");
            appraisal.affirm(
                "nonce",
                "qualifying data binds this challenge and posture digest",
            );
            appraisal.affirm("pcr-digest", "PCR values match the quoted digest");
            quote
        }
        Err(err) => {
            let claim = match err {
                QuoteError::BadSignature
                | QuoteError::MalformedSignature(_)
                | QuoteError::MalformedQuote(_)
                | QuoteError::Crypto(_) => "signature",
                QuoteError::WrongNonce => "nonce",
                QuoteError::PcrValues(_) | QuoteError::PcrDigestMismatch => "pcr-digest",
            };
            appraisal.refute(claim, err.to_string());
            return (appraisal, None);
        }
    };
    for check in policy.check_pcrs(&values) {
        appraisal.push(
            "pcrs",
            if check.ok {
                Tier::Affirming
            } else {
                Tier::Contraindicated
            },
            check.reason,
        );
    }
    appraise_event_log(
        &mut appraisal,
        evidence,
        &values,
        &quote.attest.pcr_selection,
        policy,
    );
    let clock = quote.attest.clock_info;
    match check_clock(device.last_clock.as_ref(), &clock) {
        ClockVerdict::Refuted(reason) => appraisal.refute("clock", reason),
        verdict if !clock.safe => appraisal.push(
            "clock",
            Tier::Warning,
            format!("{verdict:?}; TPM reports its clock may have gone backwards"),
        ),
        ClockVerdict::First => appraisal.affirm("clock", "first quote of this enrollment"),
        ClockVerdict::Monotonic => {
            appraisal.affirm("clock", "clock, reset and restart counters monotonic")
        }
    }
    let keep = (appraisal.tier() != Tier::Contraindicated).then_some(clock);
    (appraisal, keep)
}

fn appraise_event_log(
    appraisal: &mut Appraisal,
    evidence: &TpmEvidence,
    values: &PcrValues,
    selection: &enigm_tpm_evidence::pcr::PcrSelection,
    policy: &Policy,
) {
    if evidence.event_log.is_empty() {
        if policy.tpm.require_event_log {
            appraisal.refute("event-log", "no event log, but the policy requires one");
        } else {
            appraisal.push("event-log", Tier::Warning, "no event log to replay");
        }
        return;
    }
    let log = match EventLog::parse(&evidence.event_log) {
        Ok(log) => log,
        Err(err) => {
            return appraisal.refute("event-log", format!("event log does not parse: {err}"));
        }
    };
    let Ok(bank) = policy.bank() else {
        return appraisal.refute("event-log", "policy bank unknown");
    };
    let replayed = log.replay(bank);
    let zero = vec![0u8; bank.size()];
    for (alg, index) in selection.slots().filter(|(alg, _)| *alg == bank) {
        let expected = replayed.get(alg, index).unwrap_or(&zero);
        if values.get(alg, index) != Some(expected) {
            return appraisal.refute(
                "event-log",
                format!("event log does not replay to the quoted PCR {index}"),
            );
        }
    }
    appraisal.affirm(
        "event-log",
        format!("{} events replay to the quoted PCRs", log.events.len()),
    );
}

fn openssl_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && openssl::memcmp::eq(a, b)
}

/// Why enrollment or appraisal could not proceed.
#[derive(Debug, thiserror::Error)]
pub enum VerifierError {
    /// No such device.
    #[error("unknown device")]
    UnknownDevice,
    /// A key did not parse.
    #[error("malformed {what}: {detail}")]
    Malformed {
        /// Which key.
        what: &'static str,
        /// Why.
        detail: String,
    },
    /// The credential secret was wrong.
    #[error("credential activation failed: wrong secret")]
    WrongSecret,
    /// MakeCredential failed.
    #[error(transparent)]
    Credential(#[from] CredentialError),
    /// openssl failed.
    #[error("crypto error: {0}")]
    Crypto(#[from] openssl::error::ErrorStack),
}

/// An in-memory verifier: enrollment, challenges and appraisal with per-device history.
#[derive(Debug, Default)]
pub struct TpmVerifier {
    /// The policy applied.
    pub policy: Policy,
    /// Nonce time to live.
    pub nonce_ttl_secs: u64,
    nonces: NonceStore,
    devices: HashMap<String, DeviceRecord>,
}

impl TpmVerifier {
    /// A verifier applying `policy`, with nonces valid for `nonce_ttl_secs`.
    pub fn new(policy: Policy, nonce_ttl_secs: u64) -> Self {
        Self {
            policy,
            nonce_ttl_secs,
            ..Self::default()
        }
    }

    /// Starts (or restarts) enrollment: returns the credential the device must activate.
    pub fn enroll(
        &mut self,
        device: &str,
        ek_public: &[u8],
        ak_public: &[u8],
    ) -> Result<Credential, VerifierError> {
        let ek = PublicArea::parse_tpm2b(ek_public).map_err(|err| VerifierError::Malformed {
            what: "EK",
            detail: err.to_string(),
        })?;
        let ak = PublicArea::parse_tpm2b(ak_public).map_err(|err| VerifierError::Malformed {
            what: "AK",
            detail: err.to_string(),
        })?;
        let ak_name = ak.name()?;
        let mut secret = vec![0u8; 32];
        openssl::rand::rand_bytes(&mut secret)?;
        let credential = make_credential(&ek, &ak_name, &secret)?;
        self.devices.insert(
            device.to_owned(),
            DeviceRecord {
                ak_name,
                pending_secret: Some(secret),
                ak_activated: false,
                last_clock: None,
            },
        );
        Ok(credential)
    }

    /// Completes enrollment with the secret the device's TPM recovered.
    pub fn activate(&mut self, device: &str, secret: &[u8]) -> Result<(), VerifierError> {
        let record = self
            .devices
            .get_mut(device)
            .ok_or(VerifierError::UnknownDevice)?;
        match &record.pending_secret {
            Some(expected) if openssl_eq(expected, secret) => {
                record.ak_activated = true;
                record.pending_secret = None;
                Ok(())
            }
            _ => Err(VerifierError::WrongSecret),
        }
    }

    /// Loads a device record kept elsewhere (the backend's database after a restart).
    pub fn restore_device(&mut self, device: &str, record: DeviceRecord) {
        self.devices.insert(device.to_owned(), record);
    }

    /// The record of a device.
    pub fn device(&self, device: &str) -> Option<&DeviceRecord> {
        self.devices.get(device)
    }

    /// A fresh single-use nonce (expired ones are forgotten here, so the store stays bounded
    /// by the issue rate times the time to live).
    pub fn challenge(&mut self, now: u64) -> Result<Vec<u8>, VerifierError> {
        self.nonces.purge(now);
        Ok(self.nonces.issue(now, self.nonce_ttl_secs)?)
    }

    /// Appraises evidence answering `nonce` for `device`; the nonce is used up.
    pub fn appraise(
        &mut self,
        device: &str,
        nonce: &[u8],
        evidence: &Evidence,
        now: u64,
    ) -> Appraisal {
        let mut refused = Appraisal::default();
        if let Err(err) = self.nonces.consume(nonce, now) {
            refused.refute("nonce", err.to_string());
            return refused;
        }
        let Some(record) = self.devices.get(device) else {
            refused.refute("ak-binding", "device not enrolled");
            return refused;
        };
        let Some(Kind::Tpm(tpm)) = &evidence.kind else {
            refused.refute("evidence", "not TPM evidence");
            return refused;
        };
        let (appraisal, clock) =
            appraise_tpm(tpm, &evidence.posture_digest, nonce, record, &self.policy);
        if let (Some(clock), Some(record)) = (clock, self.devices.get_mut(device)) {
            record.last_clock = Some(clock);
        }
        appraisal
    }
}
