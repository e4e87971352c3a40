//! The D-Bus interfaces: `org.enigm.Attestation1` (thin: authorize the caller by its
//! bus-verified uid, then ask the TPM worker) and `org.enigm.PostureSignal1` (what
//! `enigm-tscd` reads for its attestation check).
//!
//! Errors are `org.enigm.Attestation1.Error.*` (`InvalidArgs`, `TpmUnavailable`,
//! `CredentialRejected`, `Failed`); a refused caller gets
//! `org.freedesktop.DBus.Error.AccessDenied`.

use std::time::Duration;

use enigm_runtime::authz::{CallerPolicy, MethodClass};
use zbus::message::Header;
use zbus::names::ErrorName;
use zbus::{Connection, fdo, interface};

use crate::attester::AttestError;
use crate::status::Status;
use crate::worker::WorkerHandle;

/// Well-known bus name.
pub const BUS_NAME: &str = "org.enigm.Attestation1";
/// Object path.
pub const OBJECT_PATH: &str = "/org/enigm/Attestation1";
/// Interface name.
pub const INTERFACE: &str = "org.enigm.Attestation1";

/// How long `GetStatus` waits for the TPM before answering with the last known status.
pub const STATUS_WAIT: Duration = Duration::from_secs(3);
/// How long `GetSignal` waits (enigm-tscd gives a source one second).
pub const SIGNAL_WAIT: Duration = Duration::from_millis(500);

/// The errors of `org.enigm.Attestation1`: standard bus errors (`AccessDenied` for a refused
/// caller) keep their standard names; the daemon's own are `org.enigm.Attestation1.Error.*`.
#[derive(Debug)]
pub enum AttestationError {
    /// A bus error, or a standard one (`AccessDenied`).
    ZBus(zbus::Error),
    /// The arguments are not acceptable (nonce or digest length, malformed TPM structures).
    InvalidArgs(String),
    /// The TPM cannot be reached.
    TpmUnavailable(String),
    /// The credential was not made for this TPM's EK and AK.
    CredentialRejected(String),
    /// The TPM failed.
    Failed(String),
}

impl AttestationError {
    const INVALID_ARGS: ErrorName<'static> =
        ErrorName::from_static_str_unchecked("org.enigm.Attestation1.Error.InvalidArgs");
    const TPM_UNAVAILABLE: ErrorName<'static> =
        ErrorName::from_static_str_unchecked("org.enigm.Attestation1.Error.TpmUnavailable");
    const CREDENTIAL_REJECTED: ErrorName<'static> =
        ErrorName::from_static_str_unchecked("org.enigm.Attestation1.Error.CredentialRejected");
    const FAILED: ErrorName<'static> =
        ErrorName::from_static_str_unchecked("org.enigm.Attestation1.Error.Failed");
    const ZBUS: ErrorName<'static> =
        ErrorName::from_static_str_unchecked("org.freedesktop.zbus.Error");
}

impl zbus::DBusError for AttestationError {
    fn create_reply(&self, call: &zbus::message::Header<'_>) -> zbus::Result<zbus::Message> {
        if let AttestationError::ZBus(zbus::Error::FDO(standard)) = self {
            return standard.create_reply(call);
        }
        zbus::Message::error(call, self.name()).build(&(self.description().unwrap_or_default(),))
    }

    fn name(&self) -> ErrorName<'_> {
        match self {
            AttestationError::ZBus(zbus::Error::FDO(standard)) => standard.name(),
            AttestationError::ZBus(zbus::Error::MethodError(name, _, _)) => name.as_ref(),
            AttestationError::ZBus(_) => Self::ZBUS,
            AttestationError::InvalidArgs(_) => Self::INVALID_ARGS,
            AttestationError::TpmUnavailable(_) => Self::TPM_UNAVAILABLE,
            AttestationError::CredentialRejected(_) => Self::CREDENTIAL_REJECTED,
            AttestationError::Failed(_) => Self::FAILED,
        }
    }

    fn description(&self) -> Option<&str> {
        match self {
            AttestationError::ZBus(zbus::Error::FDO(standard)) => standard.description(),
            AttestationError::ZBus(zbus::Error::MethodError(_, description, _)) => {
                description.as_deref()
            }
            AttestationError::ZBus(_) => None,
            AttestationError::InvalidArgs(m)
            | AttestationError::TpmUnavailable(m)
            | AttestationError::CredentialRejected(m)
            | AttestationError::Failed(m) => Some(m),
        }
    }
}

impl std::fmt::Display for AttestationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AttestationError::ZBus(err) => write!(f, "{err}"),
            other => write!(
                f,
                "{}: {}",
                zbus::DBusError::name(other),
                zbus::DBusError::description(other).unwrap_or_default()
            ),
        }
    }
}

impl std::error::Error for AttestationError {}

impl From<zbus::Error> for AttestationError {
    fn from(err: zbus::Error) -> Self {
        AttestationError::ZBus(err)
    }
}

impl From<fdo::Error> for AttestationError {
    fn from(err: fdo::Error) -> Self {
        AttestationError::ZBus(zbus::Error::FDO(Box::new(err)))
    }
}

impl From<AttestError> for AttestationError {
    fn from(err: AttestError) -> Self {
        match err {
            AttestError::InvalidInput(m) => AttestationError::InvalidArgs(m),
            AttestError::Unavailable(m) => AttestationError::TpmUnavailable(m),
            AttestError::CredentialRejected(m) => AttestationError::CredentialRejected(m),
            AttestError::Failed(m) => AttestationError::Failed(m),
        }
    }
}

/// The served `org.enigm.Attestation1` object.
#[derive(Debug)]
pub struct Attestation {
    worker: WorkerHandle,
    policy: CallerPolicy,
}

impl Attestation {
    /// Serves `worker` under `policy`.
    pub fn new(worker: WorkerHandle, policy: CallerPolicy) -> Self {
        Self { worker, policy }
    }
}

#[interface(name = "org.enigm.Attestation1")]
impl Attestation {
    /// Evidence (`enigm.attestation.v1.Evidence` protobuf) whose quote's qualifying data is
    /// `SHA-256("enigm-attest-v1" || nonce || posture_digest)` (change class: the uids allowed
    /// to attest).
    async fn get_evidence(
        &self,
        nonce: Vec<u8>,
        posture_digest: Vec<u8>,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
    ) -> Result<Vec<u8>, AttestationError> {
        let uid = self
            .policy
            .authorize(connection, &header, MethodClass::Change, "GetEvidence")
            .await?;
        tracing::info!(uid, "evidence requested");
        Ok(self.worker.evidence(nonce, posture_digest).await?)
    }

    /// Recovers the secret of a `TPM2_MakeCredential` challenge (`TPM2B_ID_OBJECT`,
    /// `TPM2B_ENCRYPTED_SECRET`) made for this TPM's EK and AK (change class).
    async fn activate_credential(
        &self,
        credential_blob: Vec<u8>,
        encrypted_secret: Vec<u8>,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
    ) -> Result<Vec<u8>, AttestationError> {
        let uid = self
            .policy
            .authorize(
                connection,
                &header,
                MethodClass::Change,
                "ActivateCredential",
            )
            .await?;
        tracing::info!(uid, "credential activation requested");
        Ok(self
            .worker
            .activate_credential(credential_blob, encrypted_secret)
            .await?)
    }

    /// `TpmReachable` (b), `AkLoaded` (b), `EkAlgorithm` (s), `AkName` (s, hex),
    /// `LastQuoteTime` (t, Unix seconds, 0 = never), `LastError` (s) (read class).
    async fn get_status(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
    ) -> Result<Status, AttestationError> {
        self.policy
            .authorize(connection, &header, MethodClass::Read, "GetStatus")
            .await?;
        Ok(
            match tokio::time::timeout(STATUS_WAIT, self.worker.refresh()).await {
                Ok(Ok(status)) => status,
                _ => self.worker.status(),
            },
        )
    }
}

/// The served `org.enigm.PostureSignal1` object (open to every caller: it tells only whether
/// the TPM and the AK work).
#[derive(Debug)]
pub struct PostureSignal {
    worker: WorkerHandle,
}

impl PostureSignal {
    /// Reports on `worker`.
    pub fn new(worker: WorkerHandle) -> Self {
        Self { worker }
    }
}

#[interface(name = "org.enigm.PostureSignal1")]
impl PostureSignal {
    /// `("pass", "TPM reachable, AK loaded")`, or `("unavailable", reason)`.
    async fn get_signal(&self) -> (String, String) {
        match tokio::time::timeout(SIGNAL_WAIT, self.worker.refresh()).await {
            Ok(Ok(status)) => status.signal(),
            _ => self.worker.status().signal(),
        }
    }
}
