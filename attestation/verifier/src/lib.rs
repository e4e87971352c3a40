//! Appraisal of attestation evidence — the library the backend's attestation service calls.
//!
//! - [`policy`]: the appraisal policy file (TOML): golden PCR values with alternatives,
//!   event-log replay, Android requirements;
//! - [`nonce`]: single-use verifier nonces with a time to live;
//! - [`history`]: per-device monotonic checks on the TPM clock, reset and restart counters;
//! - [`credential`]: MakeCredential, so a device proves its AK lives in the same TPM as its EK;
//! - [`appraisal`]: per-claim results in the spirit of IETF AR4SI (affirming / warning /
//!   contraindicated) with reasons a human can read;
//! - [`tpm`]: appraisal of a TPM quote, binding the verifier nonce and the posture digest.

pub mod android;
pub mod appraisal;
pub mod credential;
pub mod history;
pub mod nonce;
pub mod policy;
pub mod soft_ek;
pub mod tpm;

/// SHA-256(domain || nonce || posture_digest): the qualifying data a device puts in its quote.
pub fn qualifying_data(
    nonce: &[u8],
    posture_digest: &[u8],
) -> Result<Vec<u8>, openssl::error::ErrorStack> {
    let digest = openssl::hash::hash(
        openssl::hash::MessageDigest::sha256(),
        &[
            enigm_evidence::QUALIFYING_DATA_DOMAIN,
            nonce,
            posture_digest,
        ]
        .concat(),
    )?;
    Ok(digest.to_vec())
}
