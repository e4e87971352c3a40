//! `enigm-relay-client`: the device side of the relay, the transport the Enigm App would use.
//!
//! - [`keyfile`]: the device's message keys and its mailbox's capabilities, kept in a file only
//!   its owner can read (written atomically, refused when others can read it);
//! - [`bundle`]: the key directory's entries: the `KeyBundle` a device publishes, the nonce
//!   its TPM's attestation key binds it with ([`bundle::KeyBinder`]), and the checks on what a
//!   lookup lists;
//! - [`directory`]: a cache of looked-up devices, for checking senders;
//! - [`client`]: [`RelayClient`], a session with the backend as one device: setup (mailbox,
//!   keys, publication), and the calls the other modules build on;
//! - [`send`]: fan-out: one envelope to every trusted device of the recipient account and to
//!   the sender's own other devices;
//! - [`receive`]: push stream with fetch as fallback, opening, duplicate and cover
//!   suppression, acknowledgement after the application handled a message;
//! - [`seenlog`]: the duplicate filter kept across runs (an append-only private log);
//! - [`cover`]: optional cover traffic, dummy envelopes to the device's own queue;
//! - [`ids`]: message ids, the per-queue ids the server sees, the clock;
//! - [`error`]: [`RelayError`], what can go wrong.
//!
//! Nothing here logs keys, capabilities, queue ids or message content.

pub mod bundle;
pub mod client;
pub mod cover;
pub mod directory;
pub mod error;
pub mod ids;
pub mod keyfile;
pub mod receive;
pub mod seenlog;
pub mod send;

pub use bundle::{BindError, KeyBinder, Listed, Lookup};
pub use client::{Recipient, RelayClient};
pub use cover::{CoverConfig, CoverTraffic};
pub use error::RelayError;
pub use keyfile::{KeyFile, KeyFileError, Mailbox};
pub use receive::{Flow, ReceiveStats, Received};
pub use seenlog::{SeenLog, SeenLogError};
pub use send::SendReport;
