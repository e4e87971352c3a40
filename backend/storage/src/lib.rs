//! Storage for the Enigm companion backend: accounts, devices, their state transitions,
//! attestation challenges, appraisal history, connection records and revocation epochs.
//!
//! One [`Store`] works on an SQLite file (the embedded default, in WAL mode) or on a
//! PostgreSQL server (for several backend nodes sharing one database), chosen by URL, with
//! one set of migrations (`migrations/`) for both.
//!
//! Privacy rules (see the design document) are kept here:
//! - devices are known by [`DeviceHandle`]s, keyed hashes of their attestation public key
//!   ([`handle`]); raw keys, EK certificates and serials are only ever stored sealed;
//! - every field not needed for lookups is sealed with AES-256-GCM ([`seal`]) under a key
//!   from the server's key file, with the key id stored so keys can rotate
//!   ([`Store::reseal`]); lookup fields are keyed hashes ([`lookup`]);
//! - records are deleted when past their retention period ([`Store::purge`]).
//!
//! Passwords and recovery phrases reach the store only as argon2id PHC strings computed by
//! the caller. Lifecycle rules (who may approve whom) belong to the lifecycle crate: the
//! store applies the state changes it is given, atomically and as compare-and-set.

pub mod error;
pub mod lookup;
pub mod model;
pub mod seal;
pub mod store;

pub use error::{Engine, StoreError};
pub use lookup::{DeviceHandle, LookupError, ServerSecret, handle, username_hash};
pub use model::{
    Account, AccountId, Actor, Appraisal, AttestationRecord, ChallengeIssue, ChallengeOutcome,
    ChallengePeek, ClockInfo, ConnectionRecord, Device, DeviceState, Epochs, NewAccount, NewDevice,
    PurgeCounts, Recorded, ResealCounts, Retention, Transition, VerifierData, invalidates_results,
};
pub use seal::{Aad, KeyFile, KeyFileError, SealError, Sealer, SealingKey, ServerKeys};
pub use store::Store;
