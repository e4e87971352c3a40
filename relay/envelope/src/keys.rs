//! A device's message keys: an X25519 key pair that envelopes are sealed to (HPKE) and an
//! Ed25519 key pair its messages are signed with. [`PublicDeviceKeys`] is what the key
//! directory publishes under the device's handle.

use openssl::pkey::{Id, PKey, Private};
use openssl::sign::{Signer, Verifier};
use serde::{Deserialize, Serialize};

use crate::EnvelopeError;

/// Who a device is, in the directory: the account handle and the device's id in it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DeviceId {
    /// The account's privacy-preserving handle.
    pub account: String,
    /// The device's id within the account.
    pub device: String,
}

/// A device's public message keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicDeviceKeys {
    /// The device.
    pub id: DeviceId,
    /// X25519 public key (hex) envelopes are sealed to.
    pub hpke: String,
    /// Ed25519 public key (hex) its messages are signed with.
    pub signing: String,
}

/// A device's private message keys.
pub struct DeviceKeys {
    /// The device.
    pub id: DeviceId,
    hpke_secret: [u8; 32],
    hpke_public: [u8; 32],
    signing: PKey<Private>,
}

impl std::fmt::Debug for DeviceKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceKeys")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl DeviceKeys {
    /// Fresh keys for `id`.
    pub fn generate(id: DeviceId) -> Result<Self, EnvelopeError> {
        let (hpke_secret, hpke_public) = crate::hpke::generate_keypair();
        Ok(Self {
            id,
            hpke_secret,
            hpke_public,
            signing: PKey::generate_ed25519()?,
        })
    }

    /// The public half, for the directory.
    pub fn public(&self) -> Result<PublicDeviceKeys, EnvelopeError> {
        Ok(PublicDeviceKeys {
            id: self.id.clone(),
            hpke: hex::encode(self.hpke_public),
            signing: hex::encode(self.signing.raw_public_key()?),
        })
    }

    /// The X25519 secret envelopes to this device are opened with.
    pub(crate) fn hpke_secret(&self) -> &[u8; 32] {
        &self.hpke_secret
    }

    /// An Ed25519 signature over `message`.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, EnvelopeError> {
        Ok(Signer::new_without_digest(&self.signing)?.sign_oneshot_to_vec(message)?)
    }
}

impl PublicDeviceKeys {
    /// The X25519 key to seal to.
    pub fn hpke_key(&self) -> Result<[u8; 32], EnvelopeError> {
        hex::decode(&self.hpke)
            .ok()
            .and_then(|k| k.try_into().ok())
            .ok_or_else(|| EnvelopeError::Format("HPKE key is not 32 bytes of hex".into()))
    }

    /// Whether `signature` over `message` verifies with the device's signing key.
    pub fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        let Ok(raw) = hex::decode(&self.signing) else {
            return false;
        };
        let Ok(key) = PKey::public_key_from_raw_bytes(&raw, Id::ED25519) else {
            return false;
        };
        Verifier::new_without_digest(&key)
            .and_then(|mut v| v.verify_oneshot(signature, message))
            .unwrap_or(false)
    }
}
