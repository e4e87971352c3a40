//! A TUF (The Update Framework, specification 1.0) client for verified updates: the
//! specification's client workflow exactly, with every refusal named.
//!
//! - [`canonical`]: canonical JSON, what signatures cover;
//! - [`keys`]: ed25519, ECDSA P-256 and RSA-PSS keys and signature checks;
//! - [`metadata`]: the signed envelope, root, timestamp, snapshot, targets, delegations;
//! - [`client`]: the update workflow ([`Updater::refresh`]), the delegation walk and target
//!   download;
//! - [`fetch`]: capped `http://`, `https://` and `file://` fetching behind a trait;
//! - [`download`]: resumable payload downloads (HTTP `Range`), checked before they count;
//! - [`transport`]: the TCP or TLS connection under both;
//! - [`time`]: `expires` timestamps.
//!
//! `enigm-tuf-client` wraps it in the tuf-conformance client command line.

pub mod canonical;
pub mod client;
pub mod download;
pub mod fetch;
pub mod keys;
pub mod metadata;
pub mod time;
pub mod transport;

mod error;

pub use client::{Config, Updater};
pub use error::TufError;
