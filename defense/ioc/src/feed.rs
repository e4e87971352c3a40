//! The signed IOC feed the backend or Command ships to devices.
//!
//! A feed is a JSON document `{"enigm_ioc_feed": 1, "sequence": N, "bundles": [bundle, ...]}`
//! with a detached Ed25519 signature (64 raw bytes, conventionally in `<feed>.sig`) over its
//! exact bytes. [`verify_feed`] checks the signature before anything parses the feed, so a
//! tampered or unsigned feed is never read; `sequence` lets a device refuse an older feed
//! than the one it has ([`Feed::sequence`], compared by the caller).

use openssl::pkey::{Id, PKey, PKeyRef, Private, Public};
use openssl::sign::{Signer, Verifier};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::stix::{ParsedBundle, StixError, parse_bundle_value};

/// The feed format version this code reads and writes.
pub const FEED_FORMAT: u32 = 1;

/// Length of an Ed25519 signature.
const SIGNATURE_LEN: usize = 64;

/// Why a feed cannot be used.
#[derive(Debug, Error)]
pub enum FeedError {
    /// The key is not an Ed25519 key.
    #[error("the feed key is not an Ed25519 key")]
    NotEd25519,
    /// The signature file is not one Ed25519 signature.
    #[error("the feed signature is {0} bytes, not {SIGNATURE_LEN}")]
    SignatureLength(usize),
    /// The signature does not verify: the feed is not used.
    #[error("the feed signature does not verify")]
    BadSignature,
    /// Signed, but not a feed document.
    #[error("signed feed is not a feed document: {0}")]
    Document(#[source] serde_json::Error),
    /// A format version this code does not read.
    #[error("feed format {0} is not supported (expected {FEED_FORMAT})")]
    Format(u32),
    /// One of its bundles is malformed.
    #[error(transparent)]
    Bundle(#[from] StixError),
    /// The crypto library failed.
    #[error("crypto: {0}")]
    Crypto(#[from] openssl::error::ErrorStack),
    /// A bundle given to [`build_feed`] is not JSON.
    #[error("bundle {index} is not JSON: {error}")]
    BundleJson {
        /// Position of the bundle.
        index: usize,
        /// The parser's message.
        #[source]
        error: serde_json::Error,
    },
}

#[derive(Serialize, Deserialize)]
struct Document {
    enigm_ioc_feed: u32,
    sequence: u64,
    bundles: Vec<serde_json::Value>,
}

/// A verified, parsed feed.
#[derive(Debug)]
pub struct Feed {
    /// The publisher's sequence number (higher is newer).
    pub sequence: u64,
    /// Its bundles, named `feed#<sequence>/<index>`.
    pub bundles: Vec<(String, ParsedBundle)>,
}

/// Reads a PEM public key and checks it is Ed25519.
pub fn public_key_from_pem(pem: &[u8]) -> Result<PKey<Public>, FeedError> {
    let key = PKey::public_key_from_pem(pem)?;
    if key.id() != Id::ED25519 {
        return Err(FeedError::NotEd25519);
    }
    Ok(key)
}

/// Reads a PEM private key and checks it is Ed25519.
pub fn private_key_from_pem(pem: &[u8]) -> Result<PKey<Private>, FeedError> {
    let key = PKey::private_key_from_pem(pem)?;
    if key.id() != Id::ED25519 {
        return Err(FeedError::NotEd25519);
    }
    Ok(key)
}

/// Builds a feed document from bundle files' bytes.
pub fn build_feed(sequence: u64, bundles: &[&[u8]]) -> Result<Vec<u8>, FeedError> {
    let mut values = Vec::with_capacity(bundles.len());
    for (index, bytes) in bundles.iter().enumerate() {
        values.push(
            serde_json::from_slice(bytes)
                .map_err(|error| FeedError::BundleJson { index, error })?,
        );
    }
    let document = Document {
        enigm_ioc_feed: FEED_FORMAT,
        sequence,
        bundles: values,
    };
    serde_json::to_vec(&document).map_err(FeedError::Document)
}

/// Signs a feed's exact bytes; returns the detached signature.
pub fn sign_feed(feed: &[u8], key: &PKeyRef<Private>) -> Result<Vec<u8>, FeedError> {
    if key.id() != Id::ED25519 {
        return Err(FeedError::NotEd25519);
    }
    let mut signer = Signer::new_without_digest(key)?;
    Ok(signer.sign_oneshot_to_vec(feed)?)
}

/// Checks the signature over the exact bytes, then parses the feed and its bundles.
pub fn verify_feed(
    feed: &[u8],
    signature: &[u8],
    key: &PKeyRef<Public>,
) -> Result<Feed, FeedError> {
    if key.id() != Id::ED25519 {
        return Err(FeedError::NotEd25519);
    }
    if signature.len() != SIGNATURE_LEN {
        return Err(FeedError::SignatureLength(signature.len()));
    }
    let mut verifier = Verifier::new_without_digest(key)?;
    // A verification failure may leave errors on openssl's queue; either way it is a refusal.
    if !verifier.verify_oneshot(signature, feed).unwrap_or(false) {
        return Err(FeedError::BadSignature);
    }
    let document: Document = serde_json::from_slice(feed).map_err(FeedError::Document)?;
    if document.enigm_ioc_feed != FEED_FORMAT {
        return Err(FeedError::Format(document.enigm_ioc_feed));
    }
    let mut bundles = Vec::with_capacity(document.bundles.len());
    for (index, value) in document.bundles.into_iter().enumerate() {
        let name = format!("feed#{}/{index}", document.sequence);
        let parsed = parse_bundle_value(&name, value)?;
        bundles.push((name, parsed));
    }
    Ok(Feed {
        sequence: document.sequence,
        bundles,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUNDLE: &[u8] = br#"{"type":"bundle","objects":[
        {"type":"malware","id":"malware--1","name":"Evil"},
        {"type":"indicator","id":"indicator--1","pattern":"[domain-name:value='a.com']"},
        {"type":"relationship","id":"relationship--1","source_ref":"indicator--1","target_ref":"malware--1"}]}"#;

    fn keys() -> (PKey<Private>, PKey<Public>) {
        let private = PKey::generate_ed25519().unwrap();
        let public =
            PKey::public_key_from_raw_bytes(&private.raw_public_key().unwrap(), Id::ED25519)
                .unwrap();
        (private, public)
    }

    #[test]
    fn a_signed_feed_verifies_and_parses() {
        let (private, public) = keys();
        let feed = build_feed(7, &[BUNDLE, BUNDLE]).unwrap();
        let signature = sign_feed(&feed, &private).unwrap();
        let parsed = verify_feed(&feed, &signature, &public).unwrap();
        assert_eq!(parsed.sequence, 7);
        assert_eq!(parsed.bundles.len(), 2);
        assert_eq!(parsed.bundles[1].0, "feed#7/1");
        assert_eq!(parsed.bundles[0].1.indicators.len(), 1);
    }

    #[test]
    fn tampering_wrong_keys_and_bad_signatures_are_refused_before_parsing() {
        let (private, public) = keys();
        let (_, other_public) = keys();
        let feed = build_feed(1, &[BUNDLE]).unwrap();
        let signature = sign_feed(&feed, &private).unwrap();

        let mut tampered = feed.clone();
        let at = tampered.len() / 2;
        tampered[at] ^= 1;
        assert!(matches!(
            verify_feed(&tampered, &signature, &public),
            Err(FeedError::BadSignature)
        ));
        assert!(matches!(
            verify_feed(&feed, &signature, &other_public),
            Err(FeedError::BadSignature)
        ));
        assert!(matches!(
            verify_feed(&feed, &signature[..63], &public),
            Err(FeedError::SignatureLength(63))
        ));
        // Garbage that is signed is refused only after the signature check, as a document error.
        let garbage = b"not json".to_vec();
        let signature = sign_feed(&garbage, &private).unwrap();
        assert!(matches!(
            verify_feed(&garbage, &signature, &public),
            Err(FeedError::Document(_))
        ));
        // An unsigned-garbage feed with a random signature never reaches the parser.
        assert!(matches!(
            verify_feed(&garbage, &[0u8; 64], &public),
            Err(FeedError::BadSignature)
        ));
    }

    #[test]
    fn non_ed25519_keys_are_refused() {
        let rsa = openssl::rsa::Rsa::generate(2048).unwrap();
        let key = PKey::from_rsa(rsa).unwrap();
        assert!(matches!(sign_feed(b"x", &key), Err(FeedError::NotEd25519)));
        let pem = key.public_key_to_pem().unwrap();
        assert!(matches!(
            public_key_from_pem(&pem),
            Err(FeedError::NotEd25519)
        ));
    }
}
