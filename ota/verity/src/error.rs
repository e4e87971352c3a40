//! Errors of building, parsing and verifying verity trees.

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum VerityError {
    /// The parameters cannot describe a verity device.
    #[error("invalid verity parameters: {0}")]
    Params(String),
    /// The data is not a whole number of data blocks.
    #[error("data size {size} is not a multiple of the {block_size}-byte data block")]
    PartialBlock {
        /// Bytes read.
        size: u64,
        /// The data block size.
        block_size: u32,
    },
    /// There is no data.
    #[error("no data: a verity device needs at least one data block")]
    Empty,
    /// Reading the data failed.
    #[error("reading the data: {0}")]
    Read(#[from] std::io::Error),
    /// Hashing failed.
    #[error("hashing: {0}")]
    Hash(#[from] openssl::error::ErrorStack),
    /// The superblock is malformed or not a verity superblock.
    #[error("verity superblock: {0}")]
    Superblock(String),
    /// A data block hashes to something else than the tree says.
    #[error("data block {block} does not match the hash tree")]
    DataMismatch {
        /// Its index.
        block: u64,
    },
    /// The hash area differs from the expected one (outside the data-block hashes).
    #[error("hash area differs at byte {offset} (hash block {block})")]
    HashAreaMismatch {
        /// First differing byte in the hash area.
        offset: u64,
        /// The hash block it falls in.
        block: u64,
    },
    /// The tree does not lead to the expected root hash.
    #[error("root hash mismatch: expected {expected}, computed {computed}")]
    RootMismatch {
        /// Hex of the expected root hash.
        expected: String,
        /// Hex of the computed one.
        computed: String,
    },
}
