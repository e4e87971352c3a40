//! The attestation evidence wire format (`proto/evidence.proto`, prost), shared by the device
//! and the backend, and the binding of a verifier nonce and a posture digest into a TPM
//! quote's qualifying data.

#![allow(missing_docs)] // generated code

/// Generated protobuf types, package `enigm.attestation.v1`.
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/enigm.attestation.v1.rs"));
}

/// Domain separation prefix of the qualifying data.
pub const QUALIFYING_DATA_DOMAIN: &[u8] = b"enigm-attest-v1";
