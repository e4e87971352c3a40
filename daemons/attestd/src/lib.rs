//! `enigm-attestd`: the device's TPM 2.0 attester (the RATS "attester" role).
//!
//! It keeps an attestation key (AK) under the TPM's endorsement key (EK), hands out evidence —
//! a quote over the configured PCRs whose qualifying data binds a verifier's nonce and the
//! device's posture digest ([`binding`]), with the PCR values, the event log and the EK
//! certificate or public key ([`attester`]) — and answers the verifier's credential challenge
//! that proves the AK and the EK share a TPM. The TPM sits behind the [`tpm::Tpm`] trait
//! ([`tss`] is the real one); one worker thread owns it ([`worker`]); D-Bus is a thin layer
//! that authorizes callers ([`service`]).

pub mod akstore;
pub mod attester;
pub mod binding;
pub mod config;
pub mod eventlog;
pub mod pcrs;
pub mod service;
pub mod status;
pub mod tpm;
pub mod tss;
pub mod wire;
pub mod worker;

/// The client side of the D-Bus interfaces, for `enigmctl` and tests.
pub mod client {
    use crate::status::Status;

    /// Proxy for `org.enigm.Attestation1`.
    #[zbus::proxy(
        interface = "org.enigm.Attestation1",
        default_service = "org.enigm.Attestation1",
        default_path = "/org/enigm/Attestation1"
    )]
    pub trait Attestation {
        /// Evidence protobuf for a nonce and a posture digest.
        fn get_evidence(&self, nonce: &[u8], posture_digest: &[u8]) -> zbus::Result<Vec<u8>>;
        /// The secret of a credential challenge.
        fn activate_credential(
            &self,
            credential_blob: &[u8],
            encrypted_secret: &[u8],
        ) -> zbus::Result<Vec<u8>>;
        /// The TPM status.
        fn get_status(&self) -> zbus::Result<Status>;
    }

    /// Proxy for the daemon's `org.enigm.PostureSignal1`.
    #[zbus::proxy(
        interface = "org.enigm.PostureSignal1",
        default_service = "org.enigm.Attestation1",
        default_path = "/org/enigm/Attestation1"
    )]
    pub trait PostureSignal {
        /// `(result, observed)`.
        fn get_signal(&self) -> zbus::Result<(String, String)>;
    }
}
