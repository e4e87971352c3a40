//! dm-verity hash trees in the on-disk format of cryptsetup's `veritysetup` (format version 1,
//! "normal" hash type): what `enigm-image build` writes next to a slot's root filesystem, and
//! what the installer checks a written slot against before it may boot.
//!
//! - [`VerityParams`]: hash algorithm, block sizes, salt, UUID, and whether a superblock heads
//!   the hash area (veritysetup's default);
//! - [`build`]: streams the data once and returns the root hash and the bytes of the hash area
//!   (superblock, then the tree's levels, top level first), equal byte for byte to what
//!   `veritysetup format` writes for the same parameters;
//! - [`verify`]: recomputes the tree and names the first data block or hash block that
//!   disagrees with the expected root hash and hash area;
//! - [`Superblock`]: the 512-byte header, written and parsed.
//!
//! Only SHA-256 is supported (what Android Verified Boot and our images use).

mod error;
mod layout;
mod params;
mod superblock;
mod tree;

pub use error::VerityError;
pub use layout::Layout;
pub use params::{HashAlg, VerityParams};
pub use superblock::{SUPERBLOCK_SIZE, Superblock};
pub use tree::{VerityTree, build, verify};
