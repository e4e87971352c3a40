//! Where each level of the tree sits in the hash area (pure arithmetic).
//!
//! Each data block's digest goes into level 0; every level is packed into hash blocks of
//! `2^bits` digests (`bits = floor(log2(hash_block_size / digest_len))`), zero-padded, and
//! hashed again into the level above, until one hash block holds a level. The hash area
//! stores the levels top first: after the optional superblock (one hash block) comes the
//! highest level, then the one below it, down to level 0.

use crate::error::VerityError;
use crate::params::VerityParams;

/// The tree's shape for a given number of data blocks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Digests per hash block, as a power of two.
    pub hash_per_block_bits: u32,
    /// Blocks in each level, level 0 (data-block digests) first. Empty for a single data
    /// block: its digest is the root hash.
    pub level_blocks: Vec<u64>,
    /// The hash block each level starts at, counted from the start of the hash area
    /// (superblock included), level 0 first.
    pub level_start: Vec<u64>,
    /// Hash blocks in the whole hash area (superblock included).
    pub total_blocks: u64,
}

impl Layout {
    /// The layout for `data_blocks` data blocks under `params`.
    pub fn new(params: &VerityParams, data_blocks: u64) -> Result<Self, VerityError> {
        params.validate()?;
        if data_blocks == 0 {
            return Err(VerityError::Empty);
        }
        let per_block = params.hash_block_size as usize / params.hash.digest_len();
        // floor(log2(per_block)); validate() guarantees per_block >= 2.
        let bits = usize::BITS - 1 - per_block.leading_zeros();
        let mut levels = 0u32;
        while bits * levels < 64 && (data_blocks - 1) >> (bits * levels) != 0 {
            levels += 1;
        }
        let level_blocks: Vec<u64> = (0..levels)
            .map(|i| {
                let shift = bits * (i + 1);
                if shift >= 64 {
                    1
                } else {
                    (data_blocks - 1) / (1u64 << shift) + 1
                }
            })
            .collect();
        let header = u64::from(params.superblock);
        let mut level_start = vec![0; level_blocks.len()];
        let mut position = header;
        for i in (0..level_blocks.len()).rev() {
            level_start[i] = position;
            position = position
                .checked_add(level_blocks[i])
                .ok_or_else(|| VerityError::Params("hash area too large".into()))?;
        }
        Ok(Self {
            hash_per_block_bits: bits,
            level_blocks,
            level_start,
            total_blocks: position,
        })
    }

    /// Digests per hash block.
    pub fn hash_per_block(&self) -> usize {
        1 << self.hash_per_block_bits
    }

    /// Bytes in the whole hash area.
    pub fn hash_area_len(&self, params: &VerityParams) -> u64 {
        self.total_blocks * u64::from(params.hash_block_size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(superblock: bool) -> VerityParams {
        VerityParams {
            superblock,
            ..VerityParams::new(vec![1; 32], [0; 16])
        }
    }

    /// (data blocks, expected level sizes (level 0 first), total hash blocks with a superblock)
    /// with 4 KiB blocks and SHA-256: 128 digests per hash block.
    const CASES: &[(u64, &[u64], u64)] = &[
        (1, &[], 1),
        (2, &[1], 2),
        (128, &[1], 2),
        (129, &[2, 1], 4),
        (128 * 128, &[128, 1], 1 + 129),
        (128 * 128 + 1, &[129, 2, 1], 1 + 132),
        (262_144, &[2048, 16, 1], 1 + 2065),
    ];

    #[test]
    fn level_sizes_and_positions() {
        for &(blocks, levels, total) in CASES {
            let layout = Layout::new(&params(true), blocks).unwrap();
            assert_eq!(layout.hash_per_block(), 128);
            assert_eq!(layout.level_blocks, levels, "{blocks} blocks");
            assert_eq!(layout.total_blocks, total, "{blocks} blocks");
            // Top level first, right after the superblock; level 0 last.
            if let Some(&top) = layout.level_start.last() {
                assert_eq!(top, 1);
                assert_eq!(
                    layout.level_start[0] + layout.level_blocks[0],
                    layout.total_blocks
                );
            }
            let bare = Layout::new(&params(false), blocks).unwrap();
            assert_eq!(bare.total_blocks, total - 1);
        }
    }

    #[test]
    fn refuses_empty_data_and_bad_sizes() {
        assert!(matches!(
            Layout::new(&params(true), 0),
            Err(VerityError::Empty)
        ));
        for size in [0, 100, 3000, 256] {
            let p = VerityParams {
                hash_block_size: size,
                ..params(true)
            };
            assert!(Layout::new(&p, 10).is_err(), "{size}");
        }
        let long_salt = VerityParams {
            salt: vec![0; 257],
            ..params(true)
        };
        assert!(Layout::new(&long_salt, 10).is_err());
    }
}
