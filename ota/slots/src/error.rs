//! Errors of slot control.

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum SlotError {
    /// Reading or writing the disk.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The disk.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Neither GPT copy is valid.
    #[error("no valid GPT on {path}: primary: {primary}; backup: {backup}")]
    NoValidGpt {
        /// The disk.
        path: String,
        /// Why the primary copy was refused.
        primary: String,
        /// Why the backup copy was refused.
        backup: String,
    },
    /// A partition the A/B layout needs is missing.
    #[error("partition {name:?} not found on {path}")]
    MissingPartition {
        /// Its name.
        name: String,
        /// The disk.
        path: String,
    },
    /// Creating the disk image failed.
    #[error("creating the GPT: {0}")]
    Create(String),
    /// A value out of range (priority or tries above 15).
    #[error("{0}")]
    Invalid(String),
    /// No slot can boot.
    #[error("no bootable slot: {0}")]
    NoBootableSlot(String),
}
