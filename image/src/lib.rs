//! `enigm-image`, the OEM integrator's tool.
//!
//! - [`keys`]: TUF role keys (ed25519, private keys as PKCS#8 PEM files readable by the owner
//!   only) and their public form in metadata;
//! - [`repo`]: a TUF repository directory with consistent snapshots: created with root v1,
//!   then every `publish` adds targets and signs new targets, snapshot and timestamp
//!   versions with expiries.
//!
//! - [`build`]: root file system → erofs → dm-verity → signed manifest → A/B GPT disk;
//! - [`release`]: a build as repository targets (manifest, full image, deltas from earlier
//!   builds).

pub mod build;
pub mod keys;
pub mod release;
pub mod repo;
