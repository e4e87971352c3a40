//! Pure rules of the companion backend's accounts and devices: no I/O, no clock, no storage.
//!
//! - [`state`]: the device states, what each may obtain from the attestation service, and the
//!   state a newly enrolled device starts in ("a new device is a new trust event").
//! - [`transition`](mod@transition): the table of allowed moves between states, who may request each move, and
//!   the one-step *replace* decision.
//! - [`password`]: argon2id hashing of account passwords (and of recovery phrases) to PHC strings.
//! - [`recovery`]: recovery phrases: generation, parsing, verification, account restore.
//! - [`wordlist`]: the fixed 2048-word list recovery phrases are drawn from.
//!
//! The backend's storage and API layers call these functions, persist the returned decisions and
//! record each one with its actor and reason; nothing here decides anything from stored state it
//! was not handed.

pub mod password;
pub mod recovery;
pub mod state;
pub mod transition;
pub mod wordlist;

pub use password::{Argon2Params, PasswordError, PasswordHasher, Verified};
pub use recovery::{Recovered, RecoveryError, RecoveryPhrase, recover_account};
pub use state::{AttestationAccess, DeviceState, EnrollmentContext, enrollment_state};
pub use transition::{
    AccountId, Actor, DeviceHandle, DeviceRef, LifecycleError, Replacement, Request, replace,
    target_state, transition,
};
