//! The relay client's errors. Their messages name the call and the backend's status, never a
//! key, a capability or message content.

use crate::bundle::{BindError, BundleError};
use crate::keyfile::KeyFileError;
use crate::seenlog::SeenLogError;

/// Why a relay operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The backend refused a call or could not be reached.
    #[error("{call} failed ({code:?}): {message}", code = status.code(), message = status.message())]
    Backend {
        /// The RPC.
        call: &'static str,
        /// Its status.
        status: tonic::Status,
    },
    /// The attester could not bind the key bundle.
    #[error("the key binding could not be made: {0}")]
    Bind(BindError),
    /// An envelope could not be sealed, or keys not used.
    #[error(transparent)]
    Envelope(#[from] enigm_envelope::EnvelopeError),
    /// A directory entry is malformed or for another account.
    #[error(transparent)]
    Bundle(#[from] BundleError),
    /// The key file cannot be read or written.
    #[error(transparent)]
    KeyFile(#[from] KeyFileError),
    /// The duplicate log cannot be read or written.
    #[error(transparent)]
    SeenLog(#[from] SeenLogError),
    /// Sending or receiving needs the keys and mailbox of a setup.
    #[error("no message keys: set up the device first")]
    NotSetUp,
    /// The key file belongs to another device or account.
    #[error("the key file is for device {file_device} of account {file_account}, not this one")]
    OtherDevice {
        /// The file's device.
        file_device: String,
        /// The file's account.
        file_account: String,
    },
    /// The recipient account lists no device with published keys.
    #[error("account {0} has no trusted device with published message keys")]
    NoDevices(String),
}

impl RelayError {
    /// The backend's status code, when the backend answered.
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            Self::Backend { status, .. } => Some(status.code()),
            _ => None,
        }
    }

    /// Whether the backend refused the caller's token (expired, or the device's state changed):
    /// a fresh attestation may help.
    pub fn token_refused(&self) -> bool {
        self.code() == Some(tonic::Code::Unauthenticated)
    }

    pub(crate) fn backend(call: &'static str) -> impl FnOnce(tonic::Status) -> Self {
        move |status| Self::Backend { call, status }
    }
}
