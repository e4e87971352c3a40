//! Why an update or a download was refused.

/// What went wrong. Every refusal names the role and the check.
#[derive(Debug, thiserror::Error)]
pub enum TufError {
    /// Malformed metadata.
    #[error("malformed metadata: {0}")]
    Format(String),
    /// Fewer valid signatures than the threshold.
    #[error("{role}: {valid} valid signature(s) from distinct keys, threshold {threshold}")]
    Threshold {
        /// The role.
        role: String,
        /// Valid signatures counted.
        valid: usize,
        /// Needed.
        threshold: u64,
    },
    /// A version went backwards, or is not the one expected.
    #[error("{role}: {detail}")]
    Version {
        /// The role.
        role: String,
        /// What was expected and found.
        detail: String,
    },
    /// Metadata past its expiry at the update's start time.
    #[error("{role} expired at {expires} (update started at {now})")]
    Expired {
        /// The role.
        role: String,
        /// Its expiry.
        expires: String,
        /// The fixed update start time (unix seconds).
        now: u64,
    },
    /// A file's length or hash differs from what trusted metadata says.
    #[error("{what}: {detail}")]
    Mismatch {
        /// The file.
        what: String,
        /// Which check.
        detail: String,
    },
    /// More data than allowed.
    #[error("{what}: more than {limit} bytes")]
    TooLong {
        /// The file.
        what: String,
        /// The cap.
        limit: u64,
    },
    /// The target is not in any trusted targets metadata.
    #[error("target {0:?} not found in trusted metadata")]
    UnknownTarget(String),
    /// Fetching failed.
    #[error("fetching {url}: {detail}")]
    Fetch {
        /// The URL.
        url: String,
        /// Why.
        detail: String,
    },
    /// The metadata directory.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A crypto library failure.
    #[error("crypto: {0}")]
    Crypto(#[from] openssl::error::ErrorStack),
}
