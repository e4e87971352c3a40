//! Building and verifying the tree.

use std::io::Read;

use openssl::sha::Sha256;

use crate::error::VerityError;
use crate::layout::Layout;
use crate::params::VerityParams;
use crate::superblock::{SUPERBLOCK_SIZE, Superblock};

/// How much data is read at a time.
const READ_CHUNK: usize = 1 << 20;

/// A built tree: what goes on the hash device, and the root hash the boot loader or the
/// installer's signed manifest pins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerityTree {
    /// The root hash.
    pub root_hash: Vec<u8>,
    /// The hash area: superblock (when enabled, padded to one hash block), then the levels,
    /// top first.
    pub hash_area: Vec<u8>,
    /// Data blocks covered.
    pub data_blocks: u64,
    /// The layout of `hash_area`.
    pub layout: Layout,
}

/// Hashes blocks as `SHA-256(salt || block)`, the salt absorbed once.
struct BlockHasher {
    salted: Sha256,
}

impl BlockHasher {
    fn new(salt: &[u8]) -> Self {
        let mut salted = Sha256::new();
        salted.update(salt);
        Self { salted }
    }

    fn digest(&self, block: &[u8]) -> [u8; 32] {
        let mut h = self.salted.clone();
        h.update(block);
        h.finish()
    }
}

/// Digests per hash block: the largest power of two that fits.
fn digests_per_hash_block(params: &VerityParams) -> usize {
    let fit = params.hash_block_size as usize / params.hash.digest_len();
    1 << (usize::BITS - 1 - fit.leading_zeros())
}

/// Reads `data` to its end and returns the digests of its data blocks, packed into zero-padded
/// hash blocks (level 0), and the number of data blocks.
fn level_zero(
    params: &VerityParams,
    hasher: &BlockHasher,
    mut data: impl Read,
) -> Result<(Vec<u8>, u64, [u8; 32]), VerityError> {
    let block = params.data_block_size as usize;
    let hash_block = params.hash_block_size as usize;
    let per_block = digests_per_hash_block(params);
    let mut digests = Vec::new();
    let mut in_block = 0usize;
    let mut blocks = 0u64;
    let mut first = [0u8; 32];
    let mut buf = vec![0u8; READ_CHUNK.max(block)];
    let mut filled = 0usize;
    let mut total = 0u64;
    loop {
        let n = data.read(&mut buf[filled..])?;
        total += n as u64;
        filled += n;
        let whole = filled / block * block;
        for chunk in buf[..whole].chunks_exact(block) {
            let digest = hasher.digest(chunk);
            if blocks == 0 {
                first = digest;
            }
            blocks += 1;
            digests.extend_from_slice(&digest);
            in_block += 1;
            if in_block == per_block {
                digests.resize(digests.len() + hash_block - per_block * 32, 0);
                in_block = 0;
            }
        }
        buf.copy_within(whole..filled, 0);
        filled -= whole;
        if n == 0 {
            break;
        }
    }
    if filled != 0 {
        return Err(VerityError::PartialBlock {
            size: total,
            block_size: params.data_block_size,
        });
    }
    if in_block != 0 {
        digests.resize(digests.len() + hash_block - in_block * 32, 0);
    }
    Ok((digests, blocks, first))
}

/// The level above `level`: the digest of each of its hash blocks, packed the same way.
fn level_above(params: &VerityParams, hasher: &BlockHasher, level: &[u8]) -> Vec<u8> {
    let hash_block = params.hash_block_size as usize;
    let per_block = digests_per_hash_block(params);
    let mut out = Vec::new();
    for (i, block) in level.chunks_exact(hash_block).enumerate() {
        out.extend_from_slice(&hasher.digest(block));
        if (i + 1) % per_block == 0 {
            out.resize(out.len() + hash_block - per_block * 32, 0);
        }
    }
    let used = out.len() % hash_block;
    if used != 0 {
        out.resize(out.len() + hash_block - used, 0);
    }
    out
}

/// Builds the tree over all of `data` (a whole number of data blocks, at least one).
pub fn build(params: &VerityParams, data: impl Read) -> Result<VerityTree, VerityError> {
    params.validate()?;
    let hasher = BlockHasher::new(&params.salt);
    let (level0, data_blocks, first_digest) = level_zero(params, &hasher, data)?;
    let layout = Layout::new(params, data_blocks)?;
    let mut levels = vec![level0];
    while levels.len() < layout.level_blocks.len() {
        let below = levels.last().map_or(&[][..], Vec::as_slice);
        let above = level_above(params, &hasher, below);
        levels.push(above);
    }
    let hash_block = params.hash_block_size as usize;
    let root_hash = if layout.level_blocks.is_empty() {
        // A single data block: its digest is the root, and there are no levels.
        first_digest.to_vec()
    } else {
        let top = levels.last().map_or(&[][..], Vec::as_slice);
        hasher.digest(top.get(..hash_block).unwrap_or(top)).to_vec()
    };
    let mut hash_area =
        Vec::with_capacity(usize::try_from(layout.hash_area_len(params)).unwrap_or(0));
    if params.superblock {
        hash_area.extend_from_slice(&Superblock::encode(params, data_blocks)?);
        hash_area.resize(hash_block.max(SUPERBLOCK_SIZE), 0);
    }
    if !layout.level_blocks.is_empty() {
        for level in levels.iter().rev() {
            hash_area.extend_from_slice(level);
        }
    }
    Ok(VerityTree {
        root_hash,
        hash_area,
        data_blocks,
        layout,
    })
}

/// Checks `data` against `root_hash` and `hash_area` (as [`build`] makes them): the first
/// data block whose digest differs from the stored one, then any other difference in the
/// hash area, then the root hash.
pub fn verify(
    params: &VerityParams,
    root_hash: &[u8],
    hash_area: &[u8],
    data: impl Read,
) -> Result<(), VerityError> {
    let tree = build(params, data)?;
    let hash_block = u64::from(params.hash_block_size);
    if let Some(&start) = tree.layout.level_start.first() {
        // Level 0 holds one digest per data block: name the block that changed.
        let per_block = tree.layout.hash_per_block() as u64;
        for block in 0..tree.data_blocks {
            let at =
                start * hash_block + (block / per_block) * hash_block + (block % per_block) * 32;
            let (Ok(at), Ok(end)) = (usize::try_from(at), usize::try_from(at + 32)) else {
                return Err(VerityError::DataMismatch { block });
            };
            if hash_area.get(at..end) != tree.hash_area.get(at..end) {
                return Err(VerityError::DataMismatch { block });
            }
        }
    }
    if let Some(offset) = first_difference(hash_area, &tree.hash_area) {
        return Err(VerityError::HashAreaMismatch {
            offset,
            block: offset / hash_block,
        });
    }
    if tree.root_hash != root_hash {
        return Err(VerityError::RootMismatch {
            expected: hex(root_hash),
            computed: hex(&tree.root_hash),
        });
    }
    Ok(())
}

fn first_difference(a: &[u8], b: &[u8]) -> Option<u64> {
    let common = a.len().min(b.len());
    a[..common]
        .iter()
        .zip(&b[..common])
        .position(|(x, y)| x != y)
        .or((a.len() != b.len()).then_some(common))
        .map(|i| i as u64)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> VerityParams {
        VerityParams::new(b"salt".to_vec(), [3; 16])
    }

    fn data(blocks: usize) -> Vec<u8> {
        (0..blocks * 4096)
            .map(|i| (i * 7 + i / 4096) as u8)
            .collect()
    }

    #[test]
    fn one_block_root_is_its_salted_digest() {
        let d = data(1);
        let tree = build(&params(), &d[..]).unwrap();
        let mut h = Sha256::new();
        h.update(b"salt");
        h.update(&d);
        assert_eq!(tree.root_hash, h.finish());
        assert_eq!(tree.hash_area.len(), 4096, "superblock only");
    }

    #[test]
    fn two_blocks_one_level() {
        let d = data(2);
        let tree = build(&params(), &d[..]).unwrap();
        assert_eq!(tree.hash_area.len(), 2 * 4096);
        let level = &tree.hash_area[4096..];
        let salted = |b: &[u8]| {
            let mut h = Sha256::new();
            h.update(b"salt");
            h.update(b);
            h.finish()
        };
        assert_eq!(&level[..32], salted(&d[..4096]));
        assert_eq!(&level[32..64], salted(&d[4096..]));
        assert!(level[64..].iter().all(|&b| b == 0));
        assert_eq!(tree.root_hash, salted(level));
    }

    #[test]
    fn verify_names_the_changed_block() {
        let mut d = data(300);
        let tree = build(&params(), &d[..]).unwrap();
        verify(&params(), &tree.root_hash, &tree.hash_area, &d[..]).unwrap();
        d[200 * 4096 + 17] ^= 1;
        assert!(matches!(
            verify(&params(), &tree.root_hash, &tree.hash_area, &d[..]),
            Err(VerityError::DataMismatch { block: 200 })
        ));
        d[200 * 4096 + 17] ^= 1;
        let mut area = tree.hash_area.clone();
        area[4096 + 5] ^= 1; // the top level
        assert!(matches!(
            verify(&params(), &tree.root_hash, &area, &d[..]),
            Err(VerityError::HashAreaMismatch { block: 1, .. })
        ));
        let mut root = tree.root_hash.clone();
        root[0] ^= 1;
        assert!(matches!(
            verify(&params(), &root, &tree.hash_area, &d[..]),
            Err(VerityError::RootMismatch { .. })
        ));
    }

    #[test]
    fn partial_and_empty_data_are_refused() {
        assert!(matches!(
            build(&params(), &[0u8; 5000][..]),
            Err(VerityError::PartialBlock { size: 5000, .. })
        ));
        assert!(matches!(build(&params(), &[][..]), Err(VerityError::Empty)));
    }

    /// Reads of any size give the same tree.
    #[test]
    fn short_reads_change_nothing() {
        struct Trickle<'a>(&'a [u8]);
        impl Read for Trickle<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let n = buf.len().min(1000).min(self.0.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let d = data(130);
        assert_eq!(
            build(&params(), Trickle(&d)).unwrap(),
            build(&params(), &d[..]).unwrap()
        );
    }
}
