//! The `Tpm` side-effect boundary: the few TPM operations the attester needs, as a trait with
//! the real implementation in [`crate::tss`] (tss-esapi) and fakes in tests.
//!
//! All byte strings cross the boundary in TPM wire format, exactly as the evidence carries them,
//! so the logic above never touches tss-esapi types.

use crate::config::EkAlgorithm;
use crate::pcrs::{PcrAlgorithm, PcrSpec};

/// Who the TPM is: its endorsement and the attestation key the daemon keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The endorsement key's algorithm.
    pub ek_algorithm: EkAlgorithm,
    /// The EK certificate (DER) when the TPM has one, else the EK public area.
    pub endorsement: Endorsement,
    /// The AK's public area, `TPM2B_PUBLIC`.
    pub ak_public: Vec<u8>,
    /// The AK's TPM name (`nameAlg || H(TPMT_PUBLIC)`).
    pub ak_name: Vec<u8>,
}

/// The endorsement part of the evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endorsement {
    /// The EK public area, `TPM2B_PUBLIC`.
    pub public: Vec<u8>,
    /// The EK certificate, DER, from its TCG NV index, when one is provisioned.
    pub certificate: Option<Vec<u8>>,
}

/// The registers of one bank, read with `TPM2_PCR_Read`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BankValues {
    /// The bank.
    pub algorithm: PcrAlgorithm,
    /// `(index, digest)`, ascending by index.
    pub values: Vec<(u8, Vec<u8>)>,
}

/// A signed quote and the PCR values read next to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawQuote {
    /// `TPMS_ATTEST` bytes (the signed message).
    pub attest: Vec<u8>,
    /// `TPMT_SIGNATURE` bytes.
    pub signature: Vec<u8>,
    /// The PCR values of the selection, in selection order.
    pub pcrs: Vec<BankValues>,
}

/// What can go wrong talking to the TPM.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TpmError {
    /// The TPM cannot be reached (TCTI cannot be loaded, device or socket not there, the
    /// connection broke).
    #[error("TPM unreachable: {0}")]
    Unreachable(String),
    /// The TPM refused a command (a TPM response code).
    #[error("TPM {command} failed: {message}")]
    Command {
        /// The operation.
        command: &'static str,
        /// The TPM's or the TSS's explanation.
        message: String,
    },
    /// A credential was not made for this TPM's EK and AK.
    #[error("credential activation refused by the TPM: {0}")]
    CredentialRejected(String),
    /// The caller's bytes are not the TPM structure they should be.
    #[error("malformed {0}")]
    Malformed(String),
    /// The attestation key could not be kept in the state directory.
    #[error("attestation key storage: {0}")]
    Storage(String),
}

impl TpmError {
    /// Whether this error means the TPM could not be reached at all.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, TpmError::Unreachable(_))
    }
}

/// The TPM operations of the attester.
pub trait Tpm {
    /// Connects if needed, makes sure the AK exists (creating and storing it the first time)
    /// and returns the identity.
    fn identity(&mut self) -> Result<Identity, TpmError>;

    /// Quotes `selection` with the AK over `qualifying_data`, and reads the same PCRs.
    fn quote(&mut self, qualifying_data: &[u8], selection: &PcrSpec) -> Result<RawQuote, TpmError>;

    /// `TPM2_ActivateCredential` with the AK and the EK: returns the secret inside
    /// `credential_blob` (`TPM2B_ID_OBJECT`) and `encrypted_secret`
    /// (`TPM2B_ENCRYPTED_SECRET`).
    fn activate_credential(
        &mut self,
        credential_blob: &[u8],
        encrypted_secret: &[u8],
    ) -> Result<Vec<u8>, TpmError>;
}
