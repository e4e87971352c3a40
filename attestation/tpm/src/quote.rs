//! Quote verification: signature, qualifying data and PCR digest, in that order, the checks
//! `tpm2_checkquote` makes.

use openssl::pkey::{PKey, Public};

use crate::attest::Attest;
use crate::pcr::{PcrError, PcrValues};
use crate::signature::Signature;
use crate::wire::WireError;

/// Why a quote was rejected.
#[derive(Debug, thiserror::Error)]
pub enum QuoteError {
    /// The signature bytes do not parse.
    #[error("malformed signature: {0}")]
    MalformedSignature(WireError),
    /// The attestation bytes do not parse.
    #[error("malformed quote: {0}")]
    MalformedQuote(WireError),
    /// The signature does not verify with the attestation key.
    #[error("the quote's signature does not verify with the attestation key")]
    BadSignature,
    /// The qualifying data is not the expected nonce.
    #[error("the quote's qualifying data is not the expected nonce (replayed or foreign quote)")]
    WrongNonce,
    /// The PCR values are incomplete for the quoted selection.
    #[error("PCR values do not cover the quote: {0}")]
    PcrValues(PcrError),
    /// The PCR values do not hash to the quoted digest.
    #[error("the PCR values do not match the quoted PCR digest")]
    PcrDigestMismatch,
    /// openssl failed.
    #[error("crypto error: {0}")]
    Crypto(#[from] openssl::error::ErrorStack),
}

/// A quote whose signature, nonce and PCR digest checked out.
#[derive(Debug, Clone)]
pub struct VerifiedQuote {
    /// The parsed attestation.
    pub attest: Attest,
    /// The signature's scheme and digest.
    pub signature: Signature,
}

/// Verifies a quote made by `ak`. `expected_nonce` (when given) must equal the qualifying data;
/// `pcrs` (when given) must hash to the quoted digest with the signature's hash algorithm.
pub fn verify_quote(
    ak: &PKey<Public>,
    attest: &[u8],
    signature: &[u8],
    expected_nonce: Option<&[u8]>,
    pcrs: Option<&PcrValues>,
) -> Result<VerifiedQuote, QuoteError> {
    let signature = Signature::parse(signature).map_err(QuoteError::MalformedSignature)?;
    if !signature.verify(ak, attest)? {
        return Err(QuoteError::BadSignature);
    }
    let parsed = Attest::parse(attest).map_err(QuoteError::MalformedQuote)?;
    if let Some(nonce) = expected_nonce
        && (nonce.len() != parsed.extra_data.len()
            || !openssl::memcmp::eq(nonce, &parsed.extra_data))
    {
        return Err(QuoteError::WrongNonce);
    }
    if let Some(pcrs) = pcrs {
        let digest = pcrs
            .digest(&parsed.pcr_selection, signature.hash())
            .map_err(QuoteError::PcrValues)?;
        if digest != parsed.pcr_digest {
            return Err(QuoteError::PcrDigestMismatch);
        }
    }
    Ok(VerifiedQuote {
        attest: parsed,
        signature,
    })
}
