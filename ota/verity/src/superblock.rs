//! The 512-byte verity superblock veritysetup writes at the start of the hash area
//! (little-endian): signature `verity\0\0`, version 1, hash type 1, UUID, algorithm name,
//! block sizes, data block count, salt.

use crate::error::VerityError;
use crate::params::{HashAlg, MAX_SALT_LEN, VerityParams};

/// The superblock's size on disk.
pub const SUPERBLOCK_SIZE: usize = 512;

const SIGNATURE: &[u8; 8] = b"verity\0\0";
const VERSION: u32 = 1;
/// Hash type 1: "normal" (salt before the data). Type 0 is Chrome OS's.
const HASH_TYPE_NORMAL: u32 = 1;
const ALGORITHM_LEN: usize = 32;

/// A parsed superblock: the parameters and the number of data blocks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Superblock {
    /// The parameters it records (`superblock` is true).
    pub params: VerityParams,
    /// Data blocks covered.
    pub data_blocks: u64,
}

impl Superblock {
    /// Encodes the superblock.
    pub fn encode(
        params: &VerityParams,
        data_blocks: u64,
    ) -> Result<[u8; SUPERBLOCK_SIZE], VerityError> {
        params.validate()?;
        let mut sb = [0u8; SUPERBLOCK_SIZE];
        sb[0..8].copy_from_slice(SIGNATURE);
        sb[8..12].copy_from_slice(&VERSION.to_le_bytes());
        sb[12..16].copy_from_slice(&HASH_TYPE_NORMAL.to_le_bytes());
        sb[16..32].copy_from_slice(&params.uuid);
        let name = params.hash.name().as_bytes();
        sb[32..32 + name.len()].copy_from_slice(name);
        sb[64..68].copy_from_slice(&params.data_block_size.to_le_bytes());
        sb[68..72].copy_from_slice(&params.hash_block_size.to_le_bytes());
        sb[72..80].copy_from_slice(&data_blocks.to_le_bytes());
        let salt_len = u16::try_from(params.salt.len())
            .map_err(|_| VerityError::Params("salt too long".into()))?;
        sb[80..82].copy_from_slice(&salt_len.to_le_bytes());
        sb[88..88 + params.salt.len()].copy_from_slice(&params.salt);
        Ok(sb)
    }

    /// Parses a superblock from the first bytes of a hash area.
    pub fn parse(bytes: &[u8]) -> Result<Self, VerityError> {
        let bad = |what: String| VerityError::Superblock(what);
        let sb = bytes
            .get(..SUPERBLOCK_SIZE)
            .ok_or_else(|| bad(format!("{} bytes, need {SUPERBLOCK_SIZE}", bytes.len())))?;
        if &sb[0..8] != SIGNATURE {
            return Err(bad("no verity signature".into()));
        }
        let u32_at = |at: usize| u32::from_le_bytes([sb[at], sb[at + 1], sb[at + 2], sb[at + 3]]);
        let version = u32_at(8);
        if version != VERSION {
            return Err(bad(format!("version {version}, only 1 is known")));
        }
        let hash_type = u32_at(12);
        if hash_type != HASH_TYPE_NORMAL {
            return Err(bad(format!(
                "hash type {hash_type}, only 1 (normal) is supported"
            )));
        }
        let algorithm = &sb[32..32 + ALGORITHM_LEN];
        let end = algorithm
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(ALGORITHM_LEN);
        let name = std::str::from_utf8(&algorithm[..end])
            .map_err(|_| bad("algorithm name is not text".into()))?;
        let hash = HashAlg::from_name(&name.to_ascii_lowercase())?;
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(&sb[16..32]);
        let mut blocks = [0u8; 8];
        blocks.copy_from_slice(&sb[72..80]);
        let salt_len = usize::from(u16::from_le_bytes([sb[80], sb[81]]));
        if salt_len > MAX_SALT_LEN {
            return Err(bad(format!("salt of {salt_len} bytes")));
        }
        let params = VerityParams {
            hash,
            data_block_size: u32_at(64),
            hash_block_size: u32_at(68),
            salt: sb[88..88 + salt_len].to_vec(),
            uuid,
            superblock: true,
        };
        params.validate()?;
        Ok(Self {
            params,
            data_blocks: u64::from_le_bytes(blocks),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let params = VerityParams::new(vec![7; 32], [9; 16]);
        let sb = Superblock::encode(&params, 1234).unwrap();
        let parsed = Superblock::parse(&sb).unwrap();
        assert_eq!(parsed.params, params);
        assert_eq!(parsed.data_blocks, 1234);

        let mut bad = sb;
        bad[0] = b'V';
        assert!(Superblock::parse(&bad).is_err());
        let mut bad = sb;
        bad[8] = 2;
        assert!(Superblock::parse(&bad).is_err());
        let mut bad = sb;
        bad[12] = 0;
        assert!(
            Superblock::parse(&bad)
                .unwrap_err()
                .to_string()
                .contains("hash type 0")
        );
        let mut bad = sb;
        bad[32..38].copy_from_slice(b"md5\0\0\0");
        assert!(Superblock::parse(&bad).is_err());
        let mut bad = sb;
        bad[80..82].copy_from_slice(&300u16.to_le_bytes());
        assert!(Superblock::parse(&bad).is_err());
        let mut bad = sb;
        bad[68..72].copy_from_slice(&1000u32.to_le_bytes());
        assert!(Superblock::parse(&bad).is_err());
        assert!(Superblock::parse(&sb[..100]).is_err());
    }
}
