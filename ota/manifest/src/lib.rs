//! The signed image manifest: what `enigm-image build` records about a slot image and what the
//! installer checks before, while and after writing it.
//!
//! The manifest is JSON, `{"signed": {...}, "signatures": [{"keyid", "sig"}]}`, signed over the
//! canonical JSON of `signed` (the same envelope and key formats as TUF metadata, so the
//! checks are `enigm-tuf`'s). The signed part carries:
//! `version` (human), `rollback_index` (monotonic; a device refuses lower), `hardware` (target
//! device), the root file system image (`size`, `sha256`) and its dm-verity tree (`root_hash`,
//! `salt`, block sizes, `hash_size`, `hash_sha256`).

use std::collections::BTreeMap;

use enigm_tuf::metadata::{Envelope, RoleKeys};
use serde_json::{Value, json};

/// Why a manifest was refused.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// Malformed.
    #[error("image manifest: {0}")]
    Format(String),
    /// Not signed by the trusted image key.
    #[error("image manifest signature: {0}")]
    Signature(String),
    /// For another device.
    #[error("image is for hardware {found:?}, this device is {expected:?}")]
    Hardware {
        /// What the manifest says.
        found: String,
        /// This device.
        expected: String,
    },
    /// Older than what the device already runs.
    #[error("rollback index {found} is below the device's {minimum} (anti-rollback)")]
    Rollback {
        /// The manifest's index.
        found: u64,
        /// The device's stored index.
        minimum: u64,
    },
}

/// The dm-verity part of a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerityInfo {
    /// Root hash (hex).
    pub root_hash: String,
    /// Salt (hex).
    pub salt: String,
    /// The UUID in the hash area's superblock (hex, 16 bytes).
    pub uuid: String,
    /// Data block size.
    pub data_block_size: u32,
    /// Hash block size.
    pub hash_block_size: u32,
    /// Size of the hash area in bytes.
    pub hash_size: u64,
    /// SHA-256 of the hash area (hex).
    pub hash_sha256: String,
}

/// The signed part of a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// Human version ("2026.11.1").
    pub version: String,
    /// Monotonic rollback index.
    pub rollback_index: u64,
    /// Target hardware.
    pub hardware: String,
    /// Root file system image size.
    pub root_size: u64,
    /// Its SHA-256 (hex).
    pub root_sha256: String,
    /// Its verity tree.
    pub verity: VerityInfo,
}

fn text(v: &Value, name: &str) -> Result<String, ManifestError> {
    v.get(name)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| ManifestError::Format(format!("{name} missing or not a string")))
}

fn number(v: &Value, name: &str) -> Result<u64, ManifestError> {
    v.get(name)
        .and_then(Value::as_u64)
        .ok_or_else(|| ManifestError::Format(format!("{name} missing or not a number")))
}

fn hex_of_len(s: &str, bytes: usize, name: &str) -> Result<(), ManifestError> {
    match hex::decode(s) {
        Ok(b) if b.len() == bytes || bytes == 0 => Ok(()),
        _ => Err(ManifestError::Format(format!(
            "{name} is not {bytes} bytes of hex"
        ))),
    }
}

impl Manifest {
    /// The JSON of the signed part.
    pub fn to_json(&self) -> Value {
        json!({
            "_type": "enigm-image-manifest",
            "version": self.version,
            "rollback_index": self.rollback_index,
            "hardware": self.hardware,
            "root": {"size": self.root_size, "sha256": self.root_sha256},
            "verity": {
                "root_hash": self.verity.root_hash,
                "salt": self.verity.salt,
                "uuid": self.verity.uuid,
                "data_block_size": self.verity.data_block_size,
                "hash_block_size": self.verity.hash_block_size,
                "hash_size": self.verity.hash_size,
                "hash_sha256": self.verity.hash_sha256,
            },
        })
    }

    /// Parses the signed part.
    pub fn from_json(v: &Value) -> Result<Self, ManifestError> {
        if v.get("_type").and_then(Value::as_str) != Some("enigm-image-manifest") {
            return Err(ManifestError::Format("not an enigm image manifest".into()));
        }
        let root = v
            .get("root")
            .ok_or_else(|| ManifestError::Format("root missing".into()))?;
        let verity = v
            .get("verity")
            .ok_or_else(|| ManifestError::Format("verity missing".into()))?;
        let block = |name: &str| -> Result<u32, ManifestError> {
            u32::try_from(number(verity, name)?)
                .map_err(|_| ManifestError::Format(format!("{name} too large")))
        };
        let manifest = Self {
            version: text(v, "version")?,
            rollback_index: number(v, "rollback_index")?,
            hardware: text(v, "hardware")?,
            root_size: number(root, "size")?,
            root_sha256: text(root, "sha256")?,
            verity: VerityInfo {
                root_hash: text(verity, "root_hash")?,
                salt: text(verity, "salt")?,
                uuid: text(verity, "uuid")?,
                data_block_size: block("data_block_size")?,
                hash_block_size: block("hash_block_size")?,
                hash_size: number(verity, "hash_size")?,
                hash_sha256: text(verity, "hash_sha256")?,
            },
        };
        hex_of_len(&manifest.root_sha256, 32, "root.sha256")?;
        hex_of_len(&manifest.verity.root_hash, 32, "verity.root_hash")?;
        hex_of_len(&manifest.verity.hash_sha256, 32, "verity.hash_sha256")?;
        hex_of_len(&manifest.verity.salt, 0, "verity.salt")?;
        hex_of_len(&manifest.verity.uuid, 16, "verity.uuid")?;
        Ok(manifest)
    }

    /// Parses a signed manifest file and checks it is signed by `image_keys` (key ID → TUF
    /// public key object) over `threshold` distinct keys, is for `hardware`, and is not below
    /// `minimum_rollback_index`.
    pub fn open(
        bytes: &[u8],
        image_keys: &BTreeMap<String, Value>,
        threshold: u64,
        hardware: &str,
        minimum_rollback_index: u64,
    ) -> Result<Self, ManifestError> {
        let envelope = Envelope::parse(bytes, "image manifest")
            .map_err(|e| ManifestError::Format(e.to_string()))?;
        let role = RoleKeys {
            keyids: image_keys.keys().cloned().collect(),
            threshold,
        };
        envelope
            .verify("image manifest", image_keys, &role)
            .map_err(|e| ManifestError::Signature(e.to_string()))?;
        let manifest = Self::from_json(&envelope.signed)?;
        if manifest.hardware != hardware {
            return Err(ManifestError::Hardware {
                found: manifest.hardware,
                expected: hardware.to_owned(),
            });
        }
        if manifest.rollback_index < minimum_rollback_index {
            return Err(ManifestError::Rollback {
                found: manifest.rollback_index,
                minimum: minimum_rollback_index,
            });
        }
        Ok(manifest)
    }
}
