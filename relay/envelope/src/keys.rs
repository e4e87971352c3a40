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

/// A device's private message keys in a serializable form (hex), to keep them in a file only
/// the device's owner can read. Its `Debug` output shows the device id only.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretDeviceKeys {
    /// The device.
    pub id: DeviceId,
    /// The X25519 secret (32 bytes, hex).
    pub hpke_secret: String,
    /// The Ed25519 secret seed (32 bytes, hex).
    pub signing_secret: String,
}

impl std::fmt::Debug for SecretDeviceKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretDeviceKeys")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

fn secret_bytes(what: &str, text: &str) -> Result<[u8; 32], EnvelopeError> {
    hex::decode(text)
        .ok()
        .and_then(|k| <[u8; 32]>::try_from(k).ok())
        .ok_or_else(|| EnvelopeError::Format(format!("{what} is not 32 bytes of hex")))
}

impl DeviceKeys {
    /// The keys of a secret form: refused when a key is malformed.
    pub fn from_secret(secret: &SecretDeviceKeys) -> Result<Self, EnvelopeError> {
        let hpke_secret = secret_bytes("the HPKE secret", &secret.hpke_secret)?;
        let signing_seed = secret_bytes("the signing secret", &secret.signing_secret)?;
        let hpke_public = crate::hpke::public_of(&hpke_secret)?;
        let signing = PKey::private_key_from_raw_bytes(&signing_seed, Id::ED25519)?;
        Ok(Self {
            id: secret.id.clone(),
            hpke_secret,
            hpke_public,
            signing,
        })
    }

    /// The secret form of these keys, to be kept private.
    pub fn to_secret(&self) -> Result<SecretDeviceKeys, EnvelopeError> {
        Ok(SecretDeviceKeys {
            id: self.id.clone(),
            hpke_secret: hex::encode(self.hpke_secret),
            signing_secret: hex::encode(self.signing.raw_private_key()?),
        })
    }

    /// The raw public keys: (X25519, Ed25519), 32 bytes each.
    pub fn public_raw(&self) -> Result<([u8; 32], [u8; 32]), EnvelopeError> {
        let signing = <[u8; 32]>::try_from(self.signing.raw_public_key()?)
            .map_err(|_| EnvelopeError::Format("the Ed25519 key is not 32 bytes".into()))?;
        Ok((self.hpke_public, signing))
    }

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
    /// Public keys of `id` from their raw bytes (as the key directory lists them): refused
    /// unless the X25519 key is 32 bytes and the Ed25519 key is a valid 32-byte public key.
    pub fn from_raw(id: DeviceId, hpke: &[u8], signing: &[u8]) -> Result<Self, EnvelopeError> {
        if hpke.len() != 32 {
            return Err(EnvelopeError::Format(format!(
                "HPKE key of {} bytes, not 32",
                hpke.len()
            )));
        }
        if signing.len() != 32 || PKey::public_key_from_raw_bytes(signing, Id::ED25519).is_err() {
            return Err(EnvelopeError::Format(
                "the signing key is not an Ed25519 public key".into(),
            ));
        }
        Ok(Self {
            id,
            hpke: hex::encode(hpke),
            signing: hex::encode(signing),
        })
    }

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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn id() -> DeviceId {
        DeviceId {
            account: "acct".into(),
            device: "h1".into(),
        }
    }

    #[test]
    fn secret_form_round_trips_and_keeps_signing() {
        let keys = DeviceKeys::generate(id()).unwrap();
        let secret = keys.to_secret().unwrap();
        let json = serde_json::to_string(&secret).unwrap();
        let back = DeviceKeys::from_secret(&serde_json::from_str(&json).unwrap()).unwrap();
        assert_eq!(back.public().unwrap(), keys.public().unwrap());
        assert_eq!(back.hpke_secret(), keys.hpke_secret());
        let signature = back.sign(b"m").unwrap();
        assert!(keys.public().unwrap().verifies(b"m", &signature));
        assert!(!format!("{secret:?}").contains(&secret.hpke_secret));
        let (hpke, signing) = keys.public_raw().unwrap();
        assert_eq!(
            PublicDeviceKeys::from_raw(id(), &hpke, &signing).unwrap(),
            keys.public().unwrap()
        );
    }

    #[test]
    fn malformed_secrets_and_public_keys_are_refused() {
        let good = DeviceKeys::generate(id()).unwrap().to_secret().unwrap();
        for bad in [
            SecretDeviceKeys {
                hpke_secret: "zz".into(),
                ..good.clone()
            },
            SecretDeviceKeys {
                hpke_secret: "00".repeat(31),
                ..good.clone()
            },
            SecretDeviceKeys {
                signing_secret: "11".repeat(33),
                ..good.clone()
            },
        ] {
            assert!(DeviceKeys::from_secret(&bad).is_err());
        }
        let (hpke, signing) = DeviceKeys::generate(id()).unwrap().public_raw().unwrap();
        for (h, s) in [
            (&hpke[..31], &signing[..]),
            (&hpke[..], &signing[..31]),
            (&hpke[..], &[0u8; 33][..]),
        ] {
            assert!(PublicDeviceKeys::from_raw(id(), h, s).is_err());
        }
    }
}
