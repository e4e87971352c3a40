//! Lookup fields: keyed hashes (HMAC-SHA256 with the server's lookup secret).
//!
//! The store looks rows up by these hashes and never by the values they are derived from:
//! devices by [`DeviceHandle`] (a hash of the attestation public key), accounts by a hash of
//! the lower-cased username, challenges by a hash of the nonce. Each use has its own domain
//! label, so a value hashed for one purpose never matches another.

use std::fmt;

use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::sign::Signer;

/// Shortest lookup secret accepted, in bytes.
pub const MIN_SECRET_LEN: usize = 32;

const HANDLE_LABEL: &[u8] = b"enigm-device-handle-v1\0";
const USERNAME_LABEL: &[u8] = b"enigm-username-v1\0";
const NONCE_LABEL: &[u8] = b"enigm-challenge-nonce-v1\0";

/// Errors of the lookup helpers.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// The secret is shorter than [`MIN_SECRET_LEN`].
    #[error("lookup secret is {len} bytes; at least {MIN_SECRET_LEN} are required")]
    ShortSecret {
        /// The length given.
        len: usize,
    },
    /// OpenSSL's HMAC failed.
    #[error("HMAC-SHA256 failed: {0}")]
    Hmac(#[source] openssl::error::ErrorStack),
    /// Text that should be a device handle is not 64 lower-case hex digits.
    #[error("not a device handle (64 lower-case hex digits): {0:?}")]
    BadHandle(String),
}

/// The server's lookup secret (HMAC key). Never rotates: handles derived from it are ids.
#[derive(Clone)]
pub struct ServerSecret(PKey<Private>);

impl fmt::Debug for ServerSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ServerSecret(<redacted>)")
    }
}

impl ServerSecret {
    /// A secret of at least [`MIN_SECRET_LEN`] bytes.
    pub fn new(bytes: Vec<u8>) -> Result<Self, LookupError> {
        if bytes.len() < MIN_SECRET_LEN {
            return Err(LookupError::ShortSecret { len: bytes.len() });
        }
        // Made into an HMAC key once: creating it costs more than the HMAC itself.
        let key = PKey::hmac(&bytes).map_err(LookupError::Hmac)?;
        Ok(ServerSecret(key))
    }

    fn hmac_hex(&self, label: &[u8], data: &[u8]) -> Result<String, LookupError> {
        let mut signer =
            Signer::new(MessageDigest::sha256(), &self.0).map_err(LookupError::Hmac)?;
        signer.update(label).map_err(LookupError::Hmac)?;
        signer.update(data).map_err(LookupError::Hmac)?;
        Ok(hex::encode(
            signer.sign_to_vec().map_err(LookupError::Hmac)?,
        ))
    }
}

/// A device's privacy-preserving identifier: hex HMAC-SHA256 of its attestation public key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceHandle(String);

impl DeviceHandle {
    /// Parse a handle from its text (64 lower-case hex digits).
    pub fn parse(text: &str) -> Result<Self, LookupError> {
        if text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            Ok(DeviceHandle(text.to_owned()))
        } else {
            Err(LookupError::BadHandle(text.to_owned()))
        }
    }

    /// The handle's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DeviceHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The handle of the device whose attestation public key (its encoded bytes) is given.
pub fn handle(
    secret: &ServerSecret,
    attestation_public_key: &[u8],
) -> Result<DeviceHandle, LookupError> {
    secret
        .hmac_hex(HANDLE_LABEL, attestation_public_key)
        .map(DeviceHandle)
}

/// The lookup hash of a username: HMAC of its lower-cased form.
pub fn username_hash(secret: &ServerSecret, username: &str) -> Result<String, LookupError> {
    secret.hmac_hex(USERNAME_LABEL, username.to_lowercase().as_bytes())
}

/// The lookup hash of a challenge nonce.
pub fn nonce_hash(secret: &ServerSecret, nonce: &[u8]) -> Result<String, LookupError> {
    secret.hmac_hex(NONCE_LABEL, nonce)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_are_keyed_and_domain_separated() {
        let a = ServerSecret::new(vec![1; 32]).unwrap();
        let b = ServerSecret::new(vec![2; 32]).unwrap();
        let h = handle(&a, b"key").unwrap();
        assert_eq!(h, handle(&a, b"key").unwrap());
        assert_ne!(h, handle(&b, b"key").unwrap());
        assert_ne!(h, handle(&a, b"key2").unwrap());
        assert_eq!(DeviceHandle::parse(h.as_str()).unwrap(), h);
        assert_ne!(h.as_str(), nonce_hash(&a, b"key").unwrap());
        assert_eq!(
            username_hash(&a, "Alice").unwrap(),
            username_hash(&a, "aLICE").unwrap()
        );
        assert!(DeviceHandle::parse("ABC").is_err());
        assert!(ServerSecret::new(vec![0; 31]).is_err());
    }
}
