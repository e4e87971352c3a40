//! Sealing of metadata at rest: AES-256-GCM under keys from the server's key file.
//!
//! A sealed blob is `len(key_id) (1 byte) || key_id || nonce (12 bytes) || ciphertext || tag
//! (16 bytes)`. The nonce is random per seal. The additional authenticated data binds the
//! blob to where it is stored (table, column and row key, see [`Aad`]), so a blob copied to
//! another row or column does not open.
//!
//! Rotation: the key file lists every key that may still be in use, one of them marked
//! `current`. New blobs are sealed under the current key; [`Sealer::open`] accepts any listed
//! key, so old rows stay readable until `Store::reseal` has re-encrypted them, after which the
//! old key can be removed from the file.
//!
//! The key file (TOML, or JSON when the file name ends in `.json`) also holds the lookup
//! secret used for keyed hashes (device handles, username hashes); that one never rotates,
//! because handles derived from it are identifiers.
//!
//! ```toml
//! lookup_secret = "base64 of at least 32 random bytes"
//!
//! [[keys]]
//! id = "2025-01"
//! key = "base64 of 32 random bytes"
//!
//! [[keys]]
//! id = "2025-06"
//! key = "base64 of 32 random bytes"
//! current = true
//! ```

use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use openssl::symm::{Cipher, decrypt_aead, encrypt_aead};
use serde::{Deserialize, Serialize};

use crate::lookup::ServerSecret;

/// Length of an AES-256 key in bytes.
pub const KEY_LEN: usize = 32;
/// Length of the GCM nonce in bytes.
pub const NONCE_LEN: usize = 12;
/// Length of the GCM tag in bytes.
pub const TAG_LEN: usize = 16;
/// Longest key id accepted.
pub const MAX_KEY_ID_LEN: usize = 64;

/// Errors while sealing or opening a blob.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The blob does not have the sealed layout.
    #[error("malformed sealed blob for {aad}: {reason}")]
    Malformed {
        /// Where the blob was stored.
        aad: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The blob names a key that the key file does not list.
    #[error("sealed blob for {aad} uses key id {key_id:?}, which is not in the key file")]
    UnknownKeyId {
        /// Where the blob was stored.
        aad: String,
        /// The key id named in the blob.
        key_id: String,
    },
    /// Authentication failed: wrong key material, tampered blob, or a blob moved from
    /// another row or column.
    #[error("sealed blob for {aad} failed authentication under key {key_id:?}")]
    Authentication {
        /// Where the blob was stored.
        aad: String,
        /// The key id named in the blob.
        key_id: String,
    },
    /// OpenSSL failed (random numbers or the cipher itself).
    #[error("openssl failed while sealing {aad}: {source}")]
    Crypto {
        /// Where the blob was (to be) stored.
        aad: String,
        /// The OpenSSL error stack.
        #[source]
        source: openssl::error::ErrorStack,
    },
}

/// Errors while loading or validating the key file.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// The file could not be read.
    #[error("cannot read key file {path}: {source}")]
    Read {
        /// The key file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML/JSON of the expected shape.
    #[error("cannot parse key file {path}: {detail}")]
    Parse {
        /// The key file.
        path: PathBuf,
        /// The parser's message.
        detail: String,
    },
    /// No key, or not exactly one key, is marked current.
    #[error("key file must mark exactly one key as current (found {found})")]
    Current {
        /// How many keys were marked current.
        found: usize,
    },
    /// Two keys share an id.
    #[error("key id {id:?} appears more than once in the key file")]
    DuplicateId {
        /// The repeated id.
        id: String,
    },
    /// A key id is empty, too long, or has characters other than `[A-Za-z0-9._-]`.
    #[error("key id {id:?} is invalid: 1..={MAX_KEY_ID_LEN} characters of [A-Za-z0-9._-]")]
    BadKeyId {
        /// The offending id.
        id: String,
    },
    /// A key is not base64 of exactly 32 bytes.
    #[error("key {id:?} is not base64 of exactly {KEY_LEN} bytes")]
    BadKey {
        /// The key's id.
        id: String,
    },
    /// The lookup secret is not base64 of at least 32 bytes.
    #[error("lookup_secret is not base64 of at least 32 bytes")]
    BadLookupSecret,
    /// Random key generation failed.
    #[error("cannot generate key material: {0}")]
    Random(#[source] openssl::error::ErrorStack),
    /// Serializing a key file failed.
    #[error("cannot serialize key file: {0}")]
    Serialize(String),
}

/// Where a sealed value lives: the additional authenticated data of its seal.
#[derive(Debug, Clone, Copy)]
pub struct Aad<'a> {
    /// Table name.
    pub table: &'a str,
    /// Column name.
    pub column: &'a str,
    /// The row's key (primary key rendered as text).
    pub row: &'a str,
}

impl<'a> Aad<'a> {
    /// The AAD for `table.column` in the row keyed `row`.
    pub fn new(table: &'a str, column: &'a str, row: &'a str) -> Self {
        Aad { table, column, row }
    }

    fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.table.len() + self.column.len() + self.row.len() + 2);
        out.extend_from_slice(self.table.as_bytes());
        out.push(0);
        out.extend_from_slice(self.column.as_bytes());
        out.push(0);
        out.extend_from_slice(self.row.as_bytes());
        out
    }
}

impl fmt::Display for Aad<'_> {
    // The row key is a handle or a random id, never a raw identifier, so it may be shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}[{}]", self.table, self.column, self.row)
    }
}

/// One AES-256-GCM key with its id.
#[derive(Clone)]
pub struct SealingKey {
    id: String,
    key: [u8; KEY_LEN],
}

impl fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealingKey")
            .field("id", &self.id)
            .field("key", &"<redacted>")
            .finish()
    }
}

fn valid_key_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_KEY_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl SealingKey {
    /// A key from its id and raw bytes.
    pub fn new(id: &str, key: [u8; KEY_LEN]) -> Result<Self, KeyFileError> {
        if !valid_key_id(id) {
            return Err(KeyFileError::BadKeyId { id: id.to_owned() });
        }
        Ok(SealingKey {
            id: id.to_owned(),
            key,
        })
    }

    /// A fresh random key.
    pub fn generate(id: &str) -> Result<Self, KeyFileError> {
        let mut key = [0u8; KEY_LEN];
        openssl::rand::rand_bytes(&mut key).map_err(KeyFileError::Random)?;
        Self::new(id, key)
    }

    /// The key's id.
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// Seals and opens metadata with the keys of the key file.
#[derive(Clone)]
pub struct Sealer {
    keys: Vec<SealingKey>,
    current: usize,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealer")
            .field(
                "key_ids",
                &self.keys.iter().map(|k| k.id.as_str()).collect::<Vec<_>>(),
            )
            .field("current", &self.current_key_id())
            .finish()
    }
}

impl Sealer {
    /// A sealer over `keys`, sealing under the key whose id is `current`.
    pub fn new(keys: Vec<SealingKey>, current: &str) -> Result<Self, KeyFileError> {
        for (i, k) in keys.iter().enumerate() {
            if keys[..i].iter().any(|o| o.id == k.id) {
                return Err(KeyFileError::DuplicateId { id: k.id.clone() });
            }
        }
        let found = keys.iter().filter(|k| k.id == current).count();
        let current = keys
            .iter()
            .position(|k| k.id == current)
            .ok_or(KeyFileError::Current { found })?;
        Ok(Sealer { keys, current })
    }

    /// The id of the key new blobs are sealed under.
    pub fn current_key_id(&self) -> &str {
        self.keys
            .get(self.current)
            .map(|k| k.id.as_str())
            .unwrap_or_default()
    }

    /// Seal `plaintext` for the place `aad` names.
    pub fn seal(&self, aad: Aad<'_>, plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        let crypto = |source| SealError::Crypto {
            aad: aad.to_string(),
            source,
        };
        let key = self.keys.get(self.current).ok_or(SealError::Malformed {
            aad: aad.to_string(),
            reason: "sealer has no current key",
        })?;
        let mut nonce = [0u8; NONCE_LEN];
        openssl::rand::rand_bytes(&mut nonce).map_err(crypto)?;
        let mut tag = [0u8; TAG_LEN];
        let ciphertext = encrypt_aead(
            Cipher::aes_256_gcm(),
            &key.key,
            Some(&nonce),
            &aad.bytes(),
            plaintext,
            &mut tag,
        )
        .map_err(crypto)?;
        let id = key.id.as_bytes();
        let mut out = Vec::with_capacity(1 + id.len() + NONCE_LEN + ciphertext.len() + TAG_LEN);
        // valid_key_id bounds the id to MAX_KEY_ID_LEN (< 256) bytes.
        out.push(u8::try_from(id.len()).unwrap_or(u8::MAX));
        out.extend_from_slice(id);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        out.extend_from_slice(&tag);
        Ok(out)
    }

    /// The key id a sealed blob names, without opening it.
    pub fn key_id_of<'b>(aad: Aad<'_>, blob: &'b [u8]) -> Result<&'b str, SealError> {
        Ok(split(aad, blob)?.0)
    }

    /// Open a blob sealed for `aad` with whichever listed key it names.
    pub fn open(&self, aad: Aad<'_>, blob: &[u8]) -> Result<Vec<u8>, SealError> {
        let (key_id, nonce, ciphertext, tag) = split(aad, blob)?;
        let key =
            self.keys
                .iter()
                .find(|k| k.id == key_id)
                .ok_or_else(|| SealError::UnknownKeyId {
                    aad: aad.to_string(),
                    key_id: key_id.to_owned(),
                })?;
        decrypt_aead(
            Cipher::aes_256_gcm(),
            &key.key,
            Some(nonce),
            &aad.bytes(),
            ciphertext,
            tag,
        )
        .map_err(|_| SealError::Authentication {
            aad: aad.to_string(),
            key_id: key_id.to_owned(),
        })
    }

    /// Whether `blob` is sealed under the current key (so `reseal` can skip it).
    pub fn is_current(&self, aad: Aad<'_>, blob: &[u8]) -> Result<bool, SealError> {
        Ok(Self::key_id_of(aad, blob)? == self.current_key_id())
    }
}

type Parts<'b> = (&'b str, &'b [u8], &'b [u8], &'b [u8]);

fn split<'b>(aad: Aad<'_>, blob: &'b [u8]) -> Result<Parts<'b>, SealError> {
    let malformed = |reason| SealError::Malformed {
        aad: aad.to_string(),
        reason,
    };
    let (&id_len, rest) = blob.split_first().ok_or(malformed("empty blob"))?;
    let id_len = usize::from(id_len);
    if id_len == 0 || id_len > MAX_KEY_ID_LEN {
        return Err(malformed("key id length out of range"));
    }
    if rest.len() < id_len + NONCE_LEN + TAG_LEN {
        return Err(malformed("blob shorter than key id, nonce and tag"));
    }
    let (id, rest) = rest.split_at(id_len);
    let id = std::str::from_utf8(id).map_err(|_| malformed("key id is not UTF-8"))?;
    if !valid_key_id(id) {
        return Err(malformed("key id has invalid characters"));
    }
    let (nonce, rest) = rest.split_at(NONCE_LEN);
    let (ciphertext, tag) = rest.split_at(rest.len() - TAG_LEN);
    Ok((id, nonce, ciphertext, tag))
}

/// One key as written in the key file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyEntry {
    /// Key id, stored in every blob sealed under it.
    pub id: String,
    /// Base64 of the 32 key bytes.
    pub key: String,
    /// Whether new blobs are sealed under this key (exactly one entry).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub current: bool,
}

/// The server's key file: the lookup secret and the sealing keys.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyFile {
    /// Base64 of the lookup secret (≥ 32 bytes) for keyed hashes. Never rotates.
    pub lookup_secret: String,
    /// The sealing keys.
    pub keys: Vec<KeyEntry>,
}

impl KeyFile {
    /// A new key file with a random lookup secret and one random current key `key_id`.
    pub fn generate(key_id: &str) -> Result<Self, KeyFileError> {
        let mut secret = [0u8; 32];
        openssl::rand::rand_bytes(&mut secret).map_err(KeyFileError::Random)?;
        let key = SealingKey::generate(key_id)?;
        Ok(KeyFile {
            lookup_secret: BASE64.encode(secret),
            keys: vec![KeyEntry {
                id: key.id.clone(),
                key: BASE64.encode(key.key),
                current: true,
            }],
        })
    }

    /// Add a random key `key_id` and make it current (the others stay, for opening).
    pub fn rotate(&mut self, key_id: &str) -> Result<(), KeyFileError> {
        let key = SealingKey::generate(key_id)?;
        for k in &mut self.keys {
            k.current = false;
        }
        self.keys.push(KeyEntry {
            id: key.id.clone(),
            key: BASE64.encode(key.key),
            current: true,
        });
        Ok(())
    }

    /// Drop the key `key_id` from the file (after a reseal moved every row off it).
    pub fn remove(&mut self, key_id: &str) {
        self.keys.retain(|k| k.id != key_id);
    }

    /// Parse a key file's text; JSON when `json`, TOML otherwise.
    pub fn parse(text: &str, json: bool, path: &Path) -> Result<Self, KeyFileError> {
        let parse = |detail: String| KeyFileError::Parse {
            path: path.to_owned(),
            detail,
        };
        if json {
            serde_json::from_str(text).map_err(|e| parse(e.to_string()))
        } else {
            toml::from_str(text).map_err(|e| parse(e.to_string()))
        }
    }

    /// Read a key file; JSON when the name ends in `.json`, TOML otherwise.
    pub fn load(path: &Path) -> Result<Self, KeyFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeyFileError::Read {
            path: path.to_owned(),
            source,
        })?;
        let json = path.extension().is_some_and(|e| e == "json");
        Self::parse(&text, json, path)
    }

    /// The file as TOML text.
    pub fn to_toml(&self) -> Result<String, KeyFileError> {
        toml::to_string(self).map_err(|e| KeyFileError::Serialize(e.to_string()))
    }

    /// The file as JSON text.
    pub fn to_json(&self) -> Result<String, KeyFileError> {
        serde_json::to_string_pretty(self).map_err(|e| KeyFileError::Serialize(e.to_string()))
    }

    /// Validate and turn into the keys the store uses.
    pub fn into_keys(self) -> Result<ServerKeys, KeyFileError> {
        let secret = BASE64
            .decode(self.lookup_secret.trim())
            .map_err(|_| KeyFileError::BadLookupSecret)?;
        let lookup = ServerSecret::new(secret).map_err(|_| KeyFileError::BadLookupSecret)?;
        let currents: Vec<&KeyEntry> = self.keys.iter().filter(|k| k.current).collect();
        let current = match currents.as_slice() {
            [one] => one.id.clone(),
            other => return Err(KeyFileError::Current { found: other.len() }),
        };
        let mut keys = Vec::with_capacity(self.keys.len());
        for entry in &self.keys {
            let raw = BASE64
                .decode(entry.key.trim())
                .map_err(|_| KeyFileError::BadKey {
                    id: entry.id.clone(),
                })?;
            let raw: [u8; KEY_LEN] = raw.try_into().map_err(|_| KeyFileError::BadKey {
                id: entry.id.clone(),
            })?;
            keys.push(SealingKey::new(&entry.id, raw)?);
        }
        Ok(ServerKeys {
            sealer: Sealer::new(keys, &current)?,
            lookup,
        })
    }
}

/// Everything secret the store needs: the sealer and the lookup secret.
#[derive(Debug, Clone)]
pub struct ServerKeys {
    /// Seals and opens metadata.
    pub sealer: Sealer,
    /// Keys the lookup hashes (device handles, usernames, challenge nonces).
    pub lookup: ServerSecret,
}

impl ServerKeys {
    /// Load and validate the key file at `path`.
    pub fn load(path: &Path) -> Result<Self, KeyFileError> {
        KeyFile::load(path)?.into_keys()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealer() -> Sealer {
        KeyFile::generate("k1").unwrap().into_keys().unwrap().sealer
    }

    #[test]
    fn round_trip_and_aad_binding() {
        let s = sealer();
        let aad = Aad::new("t", "c", "r1");
        let blob = s.seal(aad, b"hello").unwrap();
        assert_eq!(s.open(aad, &blob).unwrap(), b"hello");
        assert_eq!(Sealer::key_id_of(aad, &blob).unwrap(), "k1");
        // Same blob in another row or column does not open.
        let other = Aad::new("t", "c", "r2");
        assert!(matches!(
            s.open(other, &blob),
            Err(SealError::Authentication { .. })
        ));
        assert!(matches!(
            s.open(Aad::new("t", "d", "r1"), &blob),
            Err(SealError::Authentication { .. })
        ));
        // Random nonce: sealing twice differs.
        assert_ne!(blob, s.seal(aad, b"hello").unwrap());
    }

    #[test]
    fn malformed_and_unknown_key() {
        let s = sealer();
        let aad = Aad::new("t", "c", "r");
        assert!(matches!(s.open(aad, &[]), Err(SealError::Malformed { .. })));
        assert!(matches!(
            s.open(aad, &[2, b'k', b'1', 0, 0]),
            Err(SealError::Malformed { .. })
        ));
        let other = KeyFile::generate("k9").unwrap().into_keys().unwrap().sealer;
        let blob = other.seal(aad, b"x").unwrap();
        let err = s.open(aad, &blob).unwrap_err();
        assert!(matches!(err, SealError::UnknownKeyId { ref key_id, .. } if key_id == "k9"));
        assert!(err.to_string().contains("k9"), "{err}");
        let mut tampered = s.seal(aad, b"x").unwrap();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(matches!(
            s.open(aad, &tampered),
            Err(SealError::Authentication { .. })
        ));
    }

    #[test]
    fn key_file_validation() {
        let p = Path::new("keys.toml");
        let mut kf = KeyFile::generate("a").unwrap();
        kf.rotate("b").unwrap();
        let text = kf.to_toml().unwrap();
        let keys = KeyFile::parse(&text, false, p)
            .unwrap()
            .into_keys()
            .unwrap();
        assert_eq!(keys.sealer.current_key_id(), "b");
        let json = kf.to_json().unwrap();
        let keys = KeyFile::parse(&json, true, p).unwrap().into_keys().unwrap();
        assert_eq!(keys.sealer.current_key_id(), "b");

        let mut none = kf.clone();
        for k in &mut none.keys {
            k.current = false;
        }
        assert!(matches!(
            none.into_keys(),
            Err(KeyFileError::Current { found: 0 })
        ));
        let mut two = kf.clone();
        for k in &mut two.keys {
            k.current = true;
        }
        assert!(matches!(
            two.into_keys(),
            Err(KeyFileError::Current { found: 2 })
        ));
        let mut short = kf.clone();
        short.keys[0].key = BASE64.encode([0u8; 16]);
        assert!(matches!(
            short.into_keys(),
            Err(KeyFileError::BadKey { .. })
        ));
        let mut dup = kf.clone();
        dup.keys[0].id = "b".into();
        assert!(matches!(
            dup.into_keys(),
            Err(KeyFileError::DuplicateId { .. })
        ));
        assert!(matches!(
            SealingKey::generate("bad id"),
            Err(KeyFileError::BadKeyId { .. })
        ));
        assert!(KeyFile::parse("nonsense = [", false, p).is_err());
    }
}
