//! The parameters of a verity device.

use crate::error::VerityError;

/// The largest salt the superblock can carry.
pub const MAX_SALT_LEN: usize = 256;

/// The hash algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashAlg {
    /// SHA-256.
    Sha256,
}

impl HashAlg {
    /// Digest size in bytes.
    pub fn digest_len(self) -> usize {
        match self {
            HashAlg::Sha256 => 32,
        }
    }

    /// The name veritysetup and the kernel use.
    pub fn name(self) -> &'static str {
        match self {
            HashAlg::Sha256 => "sha256",
        }
    }

    /// The algorithm called `name`.
    pub fn from_name(name: &str) -> Result<Self, VerityError> {
        match name {
            "sha256" => Ok(HashAlg::Sha256),
            other => Err(VerityError::Params(format!(
                "hash algorithm {other:?} is not supported (sha256)"
            ))),
        }
    }
}

/// How a verity device is laid out and hashed (veritysetup's format version 1, hash type
/// "normal": each block is hashed as `H(salt || block)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerityParams {
    /// The hash algorithm.
    pub hash: HashAlg,
    /// Data block size in bytes (a power of two, 512 to 1 MiB).
    pub data_block_size: u32,
    /// Hash block size in bytes (a power of two, 512 to 1 MiB).
    pub hash_block_size: u32,
    /// The salt (up to 256 bytes; may be empty).
    pub salt: Vec<u8>,
    /// The UUID recorded in the superblock.
    pub uuid: [u8; 16],
    /// Whether the hash area starts with a superblock (veritysetup's default).
    pub superblock: bool,
}

impl VerityParams {
    /// 4096-byte blocks, SHA-256, with a superblock: what `veritysetup format` does by default.
    pub fn new(salt: Vec<u8>, uuid: [u8; 16]) -> Self {
        Self {
            hash: HashAlg::Sha256,
            data_block_size: 4096,
            hash_block_size: 4096,
            salt,
            uuid,
            superblock: true,
        }
    }

    /// Checks the parameters describe a device the kernel would accept.
    pub fn validate(&self) -> Result<(), VerityError> {
        for (what, size) in [
            ("data block size", self.data_block_size),
            ("hash block size", self.hash_block_size),
        ] {
            if !size.is_power_of_two() || !(512..=1 << 20).contains(&size) {
                return Err(VerityError::Params(format!(
                    "{what} {size} is not a power of two between 512 and 1048576"
                )));
            }
        }
        if self.salt.len() > MAX_SALT_LEN {
            return Err(VerityError::Params(format!(
                "salt of {} bytes is longer than {MAX_SALT_LEN}",
                self.salt.len()
            )));
        }
        if (self.hash_block_size as usize) < 2 * self.hash.digest_len() {
            return Err(VerityError::Params(
                "hash block too small for two digests".into(),
            ));
        }
        Ok(())
    }
}
