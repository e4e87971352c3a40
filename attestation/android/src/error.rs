//! The error type of the crate's public API ([`crate::verify_chain`], [`crate::parse_pem_chain`],
//! roots and revocation loading).

use crate::chain::Provisioning;
use crate::key_description::KeyDescriptionError;
use crate::x509::ExtensionError;

/// Why an attestation chain (or an input to its verification) was rejected. Certificate indexes
/// count from the leaf (0) to the root.
#[derive(Debug, thiserror::Error)]
pub enum AndroidError {
    /// The PEM text is malformed.
    #[error("PEM: {0}")]
    Pem(String),
    /// A certificate is not valid DER X.509.
    #[error("certificate {index}: not a valid X.509 certificate: {source}")]
    Certificate {
        /// Index in the chain.
        index: usize,
        /// OpenSSL's error.
        #[source]
        source: openssl::error::ErrorStack,
    },
    /// A certificate's public key is malformed or of an algorithm this OpenSSL cannot use (e.g.
    /// ML-DSA before OpenSSL 3.5).
    #[error("certificate {index}: unsupported or malformed public key: {source}")]
    UnsupportedPublicKey {
        /// Index in the chain.
        index: usize,
        /// OpenSSL's error.
        #[source]
        source: openssl::error::ErrorStack,
    },
    /// A certificate's extensions could not be read.
    #[error("certificate {index}: {source}")]
    Extension {
        /// Index in the chain.
        index: usize,
        /// What was wrong.
        #[source]
        source: ExtensionError,
    },
    /// The leaf's KeyDescription is malformed.
    #[error("key description: {0}")]
    KeyDescription(#[from] KeyDescriptionError),
    /// Fewer than 3 certificates.
    #[error(
        "chain has {0} certificates; an attestation chain has at least 3 (key, attestation key, root)"
    )]
    ChainTooShort(usize),
    /// Extra or missing certificates for the chain's kind.
    #[error(
        "chain has {found} certificates, expected {expected}{}",
        provisioning.map(|p| format!(" for a {p} chain")).unwrap_or_default()
    )]
    ChainLength {
        /// Certificates given.
        found: usize,
        /// Certificates expected.
        expected: usize,
        /// The chain's kind, when known.
        provisioning: Option<Provisioning>,
    },
    /// The leaf has no key attestation extension.
    #[error("the leaf certificate has no key attestation extension")]
    MissingExtension,
    /// A certificate other than the leaf has the extension (chain extension attack).
    #[error("certificate {index} has a key attestation extension; only the leaf may")]
    ExtensionOutsideLeaf {
        /// Index in the chain.
        index: usize,
    },
    /// The root's public key is not a pinned root.
    #[error("chain root's public key is not a pinned Google root")]
    UntrustedRoot,
    /// The chain ends at Google's software attestation root.
    #[error(
        "not rooted in a Google hardware root: the chain ends at Google's software attestation root"
    )]
    SoftwareRoot,
    /// Issuer/subject name chaining failed.
    #[error("certificate {index}: issuer does not match the subject of certificate {}", index + 1)]
    NameChaining {
        /// Index in the chain.
        index: usize,
    },
    /// A signature does not verify.
    #[error("certificate {index}: signature does not verify with the key of certificate {}", index + 1)]
    Signature {
        /// Index in the chain.
        index: usize,
    },
    /// An intermediate is not yet valid at the verification time.
    #[error("certificate {index}: not yet valid at unix time {at} (notBefore {not_before})")]
    NotYetValid {
        /// Index in the chain.
        index: usize,
        /// The certificate's notBefore.
        not_before: String,
        /// Verification time, seconds since the epoch.
        at: i64,
    },
    /// An intermediate has expired at the verification time.
    #[error("certificate {index}: expired at unix time {at} (notAfter {not_after})")]
    Expired {
        /// Index in the chain.
        index: usize,
        /// The certificate's notAfter.
        not_after: String,
        /// Verification time, seconds since the epoch.
        at: i64,
    },
    /// An issuing certificate is not a CA.
    #[error("certificate {index}: issues a certificate but is not a CA (basicConstraints)")]
    NotCa {
        /// Index in the chain.
        index: usize,
    },
    /// A certificate is on the revocation status list.
    #[error(
        "certificate {index} (serial {serial}) is revoked: status {status}{}",
        reason.as_deref().map(|r| format!(", reason {r}")).unwrap_or_default()
    )]
    Revoked {
        /// Index in the chain.
        index: usize,
        /// Serial, lower-case hex.
        serial: String,
        /// `REVOKED`, `SUSPENDED`, …
        status: String,
        /// The list's reason, if any.
        reason: Option<String>,
    },
    /// The roots could not be loaded.
    #[error("roots: {0}")]
    Roots(String),
    /// The revocation list could not be loaded.
    #[error("revocation status list: {0}")]
    Revocations(String),
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// OpenSSL failed on a certificate that had parsed.
    #[error("OpenSSL: {0}")]
    OpenSsl(#[from] openssl::error::ErrorStack),
}
