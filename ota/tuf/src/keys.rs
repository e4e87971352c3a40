//! TUF public keys and signature checks: `ed25519` (hex public key), `ecdsa` /
//! `ecdsa-sha2-nistp256` (PEM, DER signatures) and `rsa` / `rsassa-pss-sha256` (PEM).

use openssl::hash::MessageDigest;
use openssl::pkey::{Id, PKey, Public};
use openssl::rsa::Padding;
use openssl::sign::{RsaPssSaltlen, Verifier};
use serde_json::Value;

use crate::error::TufError;

/// A public key from metadata.
#[derive(Debug, Clone)]
pub struct Key {
    scheme: Scheme,
    key: PKey<Public>,
    /// The key material's identity (scheme and public bytes), so one key listed under two
    /// key IDs still counts once towards a threshold.
    pub fingerprint: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Ed25519,
    EcdsaP256,
    RsaPssSha256,
}

fn field<'a>(value: &'a Value, name: &str) -> Result<&'a str, TufError> {
    value
        .get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| TufError::Format(format!("key: {name} missing or not a string")))
}

impl Key {
    /// Parses a key object (`keytype`, `scheme`, `keyval.public`). Unknown types and schemes
    /// are errors the caller may skip (a role's other keys can still meet its threshold).
    pub fn parse(value: &Value) -> Result<Self, TufError> {
        let keytype = field(value, "keytype")?;
        let scheme = field(value, "scheme")?;
        let public = value
            .get("keyval")
            .map(|kv| field(kv, "public"))
            .transpose()?
            .ok_or_else(|| TufError::Format("key: keyval missing".into()))?;
        let (scheme, key) = match (keytype, scheme) {
            ("ed25519", "ed25519") => {
                let raw = hex::decode(public)
                    .map_err(|_| TufError::Format("ed25519 key: not hex".into()))?;
                (
                    Scheme::Ed25519,
                    PKey::public_key_from_raw_bytes(&raw, Id::ED25519)?,
                )
            }
            ("ecdsa" | "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp256") => {
                let key = PKey::public_key_from_pem(public.as_bytes())?;
                let is_p256 = key.ec_key().ok().and_then(|k| k.group().curve_name())
                    == Some(openssl::nid::Nid::X9_62_PRIME256V1);
                if !is_p256 {
                    return Err(TufError::Format(
                        "ecdsa-sha2-nistp256 key is not P-256".into(),
                    ));
                }
                (Scheme::EcdsaP256, key)
            }
            ("rsa", "rsassa-pss-sha256") => {
                let key = PKey::public_key_from_pem(public.as_bytes())?;
                if key.id() != Id::RSA {
                    return Err(TufError::Format("rsa key is not RSA".into()));
                }
                (Scheme::RsaPssSha256, key)
            }
            (t, s) => {
                return Err(TufError::Format(format!(
                    "unsupported key type {t:?} with scheme {s:?}"
                )));
            }
        };
        let mut fingerprint = format!("{scheme:?}:").into_bytes();
        fingerprint.extend(key.public_key_to_der()?);
        Ok(Self {
            scheme,
            key,
            fingerprint,
        })
    }

    /// Whether `signature` (hex) is this key's signature over `message`.
    pub fn verifies(&self, message: &[u8], signature_hex: &str) -> bool {
        let Ok(signature) = hex::decode(signature_hex) else {
            return false;
        };
        self.check(message, &signature).unwrap_or(false)
    }

    fn check(&self, message: &[u8], signature: &[u8]) -> Result<bool, openssl::error::ErrorStack> {
        match self.scheme {
            Scheme::Ed25519 => {
                let mut v = Verifier::new_without_digest(&self.key)?;
                v.verify_oneshot(signature, message)
            }
            Scheme::EcdsaP256 => {
                let mut v = Verifier::new(MessageDigest::sha256(), &self.key)?;
                v.update(message)?;
                v.verify(signature)
            }
            Scheme::RsaPssSha256 => {
                let mut v = Verifier::new(MessageDigest::sha256(), &self.key)?;
                v.set_rsa_padding(Padding::PKCS1_PSS)?;
                v.set_rsa_mgf1_md(MessageDigest::sha256())?;
                // Any salt length (what securesystemslib accepts when verifying).
                v.set_rsa_pss_saltlen(RsaPssSaltlen::custom(-2))?;
                v.update(message)?;
                v.verify(signature)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::ec::{EcGroup, EcKey};
    use openssl::nid::Nid;
    use openssl::sign::Signer;
    use serde_json::json;

    #[test]
    fn ed25519_and_ecdsa_verify_and_refuse() {
        let ed = PKey::generate_ed25519().unwrap();
        let key = Key::parse(&json!({
            "keytype": "ed25519", "scheme": "ed25519",
            "keyval": {"public": hex::encode(ed.raw_public_key().unwrap())}
        }))
        .unwrap();
        let sig = Signer::new_without_digest(&ed)
            .unwrap()
            .sign_oneshot_to_vec(b"msg")
            .unwrap();
        assert!(key.verifies(b"msg", &hex::encode(&sig)));
        assert!(!key.verifies(b"msG", &hex::encode(&sig)));
        assert!(!key.verifies(b"msg", "zz"));

        let ec = PKey::from_ec_key(
            EcKey::generate(&EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap()).unwrap(),
        )
        .unwrap();
        let pem = String::from_utf8(ec.public_key_to_pem().unwrap()).unwrap();
        let key = Key::parse(&json!({
            "keytype": "ecdsa", "scheme": "ecdsa-sha2-nistp256", "keyval": {"public": pem}
        }))
        .unwrap();
        let mut signer = Signer::new(MessageDigest::sha256(), &ec).unwrap();
        signer.update(b"msg").unwrap();
        let sig = signer.sign_to_vec().unwrap();
        assert!(key.verifies(b"msg", &hex::encode(&sig)));
        assert!(!key.verifies(b"other", &hex::encode(&sig)));

        assert!(
            Key::parse(&json!({"keytype": "dsa", "scheme": "dsa", "keyval": {"public": ""}}))
                .is_err()
        );
        assert!(Key::parse(&json!({"keytype": "ed25519", "scheme": "ed25519"})).is_err());
    }
}
