//! Signing and verification keys, and the key ring that holds them.
//!
//! Keys are parsed once, when loaded or generated; verification reuses the parsed OpenSSL
//! objects, so nothing is parsed per token. A key's id (`kid`) is by default derived from its
//! public key (the first 12 bytes of SHA-256 over the DER SubjectPublicKeyInfo, base64url: 16
//! characters), so the same key has the same id everywhere; a configured id may replace it.
//!
//! Rotation: the ring holds one signing key and any number of verification keys by `kid`.
//! Install a new signing key with [`KeyRing::set_signing_key`]; the old public key stays in the
//! ring for verification until every result it signed has expired (minutes), then
//! [`KeyRing::remove`] drops it. Relying parties hold a ring without a signing key
//! ([`KeyRing::verification_only`]).

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey};
use openssl::ecdsa::EcdsaSig;
use openssl::nid::Nid;
use openssl::pkey::{Id, PKey, Private, Public};
use openssl::sign::{Signer, Verifier};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Length of an Ed25519 signature and of an ES256 `r || s` signature.
pub const SIGNATURE_LEN: usize = 64;
/// Longest accepted key id.
pub const MAX_KID_LEN: usize = 64;
const P256_SCALAR_LEN: i32 = 32;

/// Why a key operation failed.
#[derive(Debug, Error)]
pub enum KeyError {
    /// OpenSSL refused an operation.
    #[error("openssl: {context}: {source}")]
    OpenSsl {
        /// What was being done.
        context: &'static str,
        /// OpenSSL's error queue.
        source: openssl::error::ErrorStack,
    },
    /// A key file could not be read.
    #[error("reading key file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// The key is neither Ed25519 nor EC P-256.
    #[error("unsupported key type (need Ed25519 or EC P-256)")]
    UnsupportedKeyType,
    /// A key id that is empty, too long or has characters outside `[A-Za-z0-9._-]`.
    #[error("invalid key id")]
    InvalidKid,
    /// Another key with this id is already in the ring.
    #[error("a different key with id {0:?} is already in the ring")]
    DuplicateKid(String),
}

fn ossl(context: &'static str) -> impl FnOnce(openssl::error::ErrorStack) -> KeyError {
    move |source| KeyError::OpenSsl { context, source }
}

/// A signature algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Alg {
    /// Ed25519 (RFC 8037 "EdDSA").
    #[serde(rename = "EdDSA")]
    EdDsa,
    /// ECDSA P-256 with SHA-256, signature as raw `r || s`.
    #[serde(rename = "ES256")]
    Es256,
}

impl Alg {
    /// The header name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Alg::EdDsa => "EdDSA",
            Alg::Es256 => "ES256",
        }
    }

    /// Parses a header name; exact match only.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "EdDSA" => Some(Alg::EdDsa),
            "ES256" => Some(Alg::Es256),
            _ => None,
        }
    }
}

impl fmt::Display for Alg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn check_kid(kid: &str) -> Result<(), KeyError> {
    let ok = !kid.is_empty()
        && kid.len() <= MAX_KID_LEN
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(KeyError::InvalidKid)
    }
}

fn derived_kid<T: openssl::pkey::HasPublic>(key: &PKey<T>) -> Result<String, KeyError> {
    let der = key
        .public_key_to_der()
        .map_err(ossl("encoding public key"))?;
    let digest = openssl::sha::sha256(&der);
    Ok(URL_SAFE_NO_PAD.encode(&digest[..12]))
}

fn alg_of<T: openssl::pkey::HasParams>(key: &PKey<T>) -> Result<Alg, KeyError> {
    match key.id() {
        Id::ED25519 => Ok(Alg::EdDsa),
        Id::EC => {
            let ec = key.ec_key().map_err(ossl("reading EC key"))?;
            if ec.group().curve_name() == Some(Nid::X9_62_PRIME256V1) {
                Ok(Alg::Es256)
            } else {
                Err(KeyError::UnsupportedKeyType)
            }
        }
        _ => Err(KeyError::UnsupportedKeyType),
    }
}

fn read(path: &Path) -> Result<Vec<u8>, KeyError> {
    std::fs::read(path).map_err(|source| KeyError::Io {
        path: path.display().to_string(),
        source,
    })
}

/// The private key results are signed with.
pub struct SigningKey {
    kid: String,
    alg: Alg,
    key: PKey<Private>,
    ec: Option<EcKey<Private>>,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Generates a new key for `alg`.
    pub fn generate(alg: Alg) -> Result<Self, KeyError> {
        let key = match alg {
            Alg::EdDsa => PKey::generate_ed25519().map_err(ossl("generating Ed25519 key"))?,
            Alg::Es256 => {
                let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)
                    .map_err(ossl("loading P-256"))?;
                let ec = EcKey::generate(&group).map_err(ossl("generating P-256 key"))?;
                PKey::from_ec_key(ec).map_err(ossl("wrapping P-256 key"))?
            }
        };
        Self::from_pkey(key)
    }

    /// Loads a private key from PEM (PKCS#8 or traditional); the algorithm follows the key type.
    pub fn from_pem(pem: &[u8]) -> Result<Self, KeyError> {
        let key = PKey::private_key_from_pem(pem).map_err(ossl("parsing private key PEM"))?;
        Self::from_pkey(key)
    }

    /// Loads a private key from a PEM file.
    pub fn from_pem_file(path: impl AsRef<Path>) -> Result<Self, KeyError> {
        Self::from_pem(&read(path.as_ref())?)
    }

    fn from_pkey(key: PKey<Private>) -> Result<Self, KeyError> {
        let alg = alg_of(&key)?;
        let ec = match alg {
            Alg::Es256 => Some(key.ec_key().map_err(ossl("reading EC key"))?),
            Alg::EdDsa => None,
        };
        Ok(Self {
            kid: derived_kid(&key)?,
            alg,
            key,
            ec,
        })
    }

    /// Replaces the derived key id with a configured one.
    pub fn with_kid(mut self, kid: impl Into<String>) -> Result<Self, KeyError> {
        let kid = kid.into();
        check_kid(&kid)?;
        self.kid = kid;
        Ok(self)
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The algorithm.
    pub fn alg(&self) -> Alg {
        self.alg
    }

    /// The private key as PKCS#8 PEM, for saving a generated key (mode 0600 is the caller's job).
    pub fn private_key_pem(&self) -> Result<Vec<u8>, KeyError> {
        self.key
            .private_key_to_pem_pkcs8()
            .map_err(ossl("encoding private key"))
    }

    /// The public key as SubjectPublicKeyInfo PEM, for relying parties.
    pub fn public_key_pem(&self) -> Result<Vec<u8>, KeyError> {
        self.key
            .public_key_to_pem()
            .map_err(ossl("encoding public key"))
    }

    /// The matching verification key, with the same id.
    pub fn verification_key(&self) -> Result<VerificationKey, KeyError> {
        VerificationKey::from_pem(&self.public_key_pem()?)?.with_kid(self.kid.clone())
    }

    /// Signs `message`: 64 bytes for both algorithms.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        match (&self.ec, self.alg) {
            (Some(ec), Alg::Es256) => {
                let digest = openssl::sha::sha256(message);
                let sig = EcdsaSig::sign(&digest, ec).map_err(ossl("ECDSA signing"))?;
                let mut raw = sig
                    .r()
                    .to_vec_padded(P256_SCALAR_LEN)
                    .map_err(ossl("encoding r"))?;
                raw.extend(
                    sig.s()
                        .to_vec_padded(P256_SCALAR_LEN)
                        .map_err(ossl("encoding s"))?,
                );
                Ok(raw)
            }
            _ => {
                let mut signer =
                    Signer::new_without_digest(&self.key).map_err(ossl("Ed25519 signer"))?;
                signer
                    .sign_oneshot_to_vec(message)
                    .map_err(ossl("Ed25519 signing"))
            }
        }
    }
}

enum Inner {
    Ed25519(PKey<Public>),
    Es256(EcKey<Public>),
}

/// A public key that verifies results, parsed once.
pub struct VerificationKey {
    kid: String,
    alg: Alg,
    inner: Inner,
}

impl fmt::Debug for VerificationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerificationKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl VerificationKey {
    /// Loads a public key from SubjectPublicKeyInfo PEM; the algorithm follows the key type.
    pub fn from_pem(pem: &[u8]) -> Result<Self, KeyError> {
        let key = PKey::public_key_from_pem(pem).map_err(ossl("parsing public key PEM"))?;
        let alg = alg_of(&key)?;
        let kid = derived_kid(&key)?;
        let inner = match alg {
            Alg::EdDsa => Inner::Ed25519(key),
            Alg::Es256 => Inner::Es256(key.ec_key().map_err(ossl("reading EC key"))?),
        };
        Ok(Self { kid, alg, inner })
    }

    /// Loads a public key from a PEM file.
    pub fn from_pem_file(path: impl AsRef<Path>) -> Result<Self, KeyError> {
        Self::from_pem(&read(path.as_ref())?)
    }

    /// Replaces the derived key id with a configured one.
    pub fn with_kid(mut self, kid: impl Into<String>) -> Result<Self, KeyError> {
        let kid = kid.into();
        check_kid(&kid)?;
        self.kid = kid;
        Ok(self)
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The algorithm this key verifies.
    pub fn alg(&self) -> Alg {
        self.alg
    }

    /// The public key as DER SubjectPublicKeyInfo (to compare keys).
    pub fn public_key_der(&self) -> Result<Vec<u8>, KeyError> {
        match &self.inner {
            Inner::Ed25519(key) => key.public_key_to_der(),
            Inner::Es256(ec) => ec.public_key_to_der(),
        }
        .map_err(ossl("encoding public key"))
    }

    /// Whether `signature` is this key's signature over `message`. Any malformed signature is
    /// simply `false`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        if signature.len() != SIGNATURE_LEN {
            return false;
        }
        match &self.inner {
            Inner::Ed25519(key) => Verifier::new_without_digest(key)
                .and_then(|mut v| v.verify_oneshot(signature, message))
                .unwrap_or(false),
            Inner::Es256(ec) => {
                let (r, s) = signature.split_at(SIGNATURE_LEN / 2);
                let digest = openssl::sha::sha256(message);
                BigNum::from_slice(r)
                    .and_then(|r| Ok((r, BigNum::from_slice(s)?)))
                    .and_then(|(r, s)| EcdsaSig::from_private_components(r, s))
                    .and_then(|sig| sig.verify(&digest, ec))
                    .unwrap_or(false)
            }
        }
    }
}

/// Verification keys by id, and at most one signing key.
#[derive(Debug, Default)]
pub struct KeyRing {
    signing: Option<SigningKey>,
    keys: HashMap<String, VerificationKey>,
}

impl KeyRing {
    /// An empty ring.
    pub fn new() -> Self {
        Self::default()
    }

    /// A ring that signs with `key` (and verifies its results).
    pub fn with_signing_key(key: SigningKey) -> Result<Self, KeyError> {
        let mut ring = Self::new();
        ring.set_signing_key(key)?;
        Ok(ring)
    }

    /// Installs the signing key, adding its public key for verification. A previous signing
    /// key stays as a verification key (rotation).
    pub fn set_signing_key(&mut self, key: SigningKey) -> Result<(), KeyError> {
        self.add_verification_key(key.verification_key()?)?;
        self.signing = Some(key);
        Ok(())
    }

    /// Adds a verification key. Adding the same key again is a no-op; a different key under an
    /// id already present is refused.
    pub fn add_verification_key(&mut self, key: VerificationKey) -> Result<(), KeyError> {
        if let Some(existing) = self.keys.get(key.kid()) {
            if existing.alg == key.alg && existing.public_key_der()? == key.public_key_der()? {
                return Ok(());
            }
            return Err(KeyError::DuplicateKid(key.kid().to_owned()));
        }
        self.keys.insert(key.kid().to_owned(), key);
        Ok(())
    }

    /// Removes a verification key (after rotation, once its results have expired). The
    /// current signing key cannot be removed this way.
    pub fn remove(&mut self, kid: &str) -> Option<VerificationKey> {
        if self.signing.as_ref().is_some_and(|s| s.kid() == kid) {
            return None;
        }
        self.keys.remove(kid)
    }

    /// The verification key with this id.
    pub fn get(&self, kid: &str) -> Option<&VerificationKey> {
        self.keys.get(kid)
    }

    /// The ids of every verification key, sorted.
    pub fn kids(&self) -> Vec<&str> {
        let mut kids: Vec<&str> = self.keys.keys().map(String::as_str).collect();
        kids.sort_unstable();
        kids
    }

    /// The signing key, if this ring signs.
    pub fn signing_key(&self) -> Option<&SigningKey> {
        self.signing.as_ref()
    }

    /// A copy without the signing key, for a relying party.
    pub fn verification_only(&self) -> Result<KeyRing, KeyError> {
        let mut ring = KeyRing::new();
        for key in self.keys.values() {
            let pem = match &key.inner {
                Inner::Ed25519(k) => k.public_key_to_pem(),
                Inner::Es256(ec) => ec.public_key_to_pem(),
            }
            .map_err(ossl("encoding public key"))?;
            ring.add_verification_key(VerificationKey::from_pem(&pem)?.with_kid(key.kid())?)?;
        }
        Ok(ring)
    }
}
