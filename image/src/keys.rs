//! TUF role keys: ed25519, one PEM file per key in a key directory, readable by the owner
//! only. The key ID is the SHA-256 of the canonical JSON of the public key object, as the
//! specification defines it.

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use openssl::hash::{MessageDigest, hash};
use openssl::pkey::{PKey, Private};
use openssl::sign::Signer;
use serde_json::{Value, json};

/// The top-level roles, in the order keys are generated.
pub const ROLES: [&str; 4] = ["root", "targets", "snapshot", "timestamp"];
/// The key that signs image manifests (not a TUF role: the device trusts it directly).
pub const IMAGE: &str = "image";

/// A role's signing key.
pub struct RoleKey {
    key: PKey<Private>,
    /// The public key object as metadata lists it.
    pub public: Value,
    /// Its key ID.
    pub keyid: String,
}

impl std::fmt::Debug for RoleKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RoleKey({})", self.keyid)
    }
}

impl RoleKey {
    fn from_key(key: PKey<Private>) -> Result<Self> {
        let public = json!({
            "keytype": "ed25519",
            "scheme": "ed25519",
            "keyval": {"public": hex::encode(key.raw_public_key()?)},
        });
        let keyid = hex::encode(hash(
            MessageDigest::sha256(),
            &enigm_tuf::canonical::encode(&public)?,
        )?);
        Ok(Self { key, public, keyid })
    }

    /// A new key.
    pub fn generate() -> Result<Self> {
        Self::from_key(PKey::generate_ed25519()?)
    }

    /// The ed25519 signature (hex) over `message`.
    pub fn sign(&self, message: &[u8]) -> Result<String> {
        Ok(hex::encode(
            Signer::new_without_digest(&self.key)?.sign_oneshot_to_vec(message)?,
        ))
    }
}

/// The file a role's `index`th key lives in.
pub fn key_path(dir: &Path, role: &str, index: usize) -> PathBuf {
    dir.join(format!("{role}-{index}.pem"))
}

/// Writes a new key for `role` (number `index`) into `dir`; refuses to overwrite one.
pub fn generate(dir: &Path, role: &str, index: usize) -> Result<RoleKey> {
    let key = RoleKey::generate()?;
    let path = key_path(dir, role, index);
    let pem = key.key.private_key_to_pem_pkcs8()?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("creating {} (it must not exist yet)", path.display()))?;
    std::io::Write::write_all(&mut file, &pem)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(key)
}

/// The next free key number of `role` in `dir`.
pub fn next_index(dir: &Path, role: &str) -> usize {
    (1..)
        .find(|&i| !key_path(dir, role, i).exists())
        .unwrap_or(1)
}

/// Every key in `dir` (`*.pem`), by key ID.
pub fn load_all(dir: &Path) -> Result<std::collections::BTreeMap<String, RoleKey>> {
    let mut keys = std::collections::BTreeMap::new();
    let entries = std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
    for entry in entries {
        let path = entry?.path();
        if path.extension().is_none_or(|e| e != "pem") {
            continue;
        }
        let pem = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let key = PKey::private_key_from_pem(&pem)
            .with_context(|| format!("{}: not a PEM private key", path.display()))?;
        if key.id() != openssl::pkey::Id::ED25519 {
            bail!("{}: not an ed25519 key", path.display());
        }
        let key = RoleKey::from_key(key)?;
        keys.insert(key.keyid.clone(), key);
    }
    Ok(keys)
}

/// Loads every key of `role` from `dir` (`role-1.pem`, `role-2.pem`, ...).
pub fn load(dir: &Path, role: &str) -> Result<Vec<RoleKey>> {
    let mut keys = Vec::new();
    for index in 1.. {
        let path = key_path(dir, role, index);
        let pem = match std::fs::read(&path) {
            Ok(p) => p,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let key = PKey::private_key_from_pem(&pem)
            .with_context(|| format!("{}: not a PEM private key", path.display()))?;
        if key.id() != openssl::pkey::Id::ED25519 {
            bail!("{}: not an ed25519 key", path.display());
        }
        keys.push(RoleKey::from_key(key)?);
    }
    if keys.is_empty() {
        bail!(
            "no {role} key in {} (expected {})",
            dir.display(),
            key_path(dir, role, 1).display()
        );
    }
    Ok(keys)
}

/// The public keys of `role` in `dir`, by key ID: what a device trusts (for the image key,
/// the `image_keys_file` of `enigm-updated`).
pub fn public_map(dir: &Path, role: &str) -> Result<std::collections::BTreeMap<String, Value>> {
    Ok(load(dir, role)?
        .into_iter()
        .map(|k| (k.keyid, k.public))
        .collect())
}
