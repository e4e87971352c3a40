//! The records the store keeps, as the rest of the backend sees them (opened, typed).
//!
//! Rows hold these values sealed or hashed (see the crate docs); the types here are what
//! the repository methods take and return.

use std::fmt;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Deserializer, Serialize};

use crate::lookup::DeviceHandle;

/// A device's lifecycle state, stored as its lowercase name: the lifecycle crate's type, so
/// storage and the rules that decide transitions share one definition.
pub use enigm_backend_lifecycle::DeviceState;

/// Whether entering `state` must invalidate results the device already holds (its revocation
/// epoch is bumped in the same transaction).
pub fn invalidates_results(state: DeviceState) -> bool {
    matches!(
        state,
        DeviceState::Suspended | DeviceState::Revoked | DeviceState::Retired
    )
}

/// Who made a transition. Stored sealed as `<handle>`, `admin:<name>` or `system`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// A device (an already-trusted device approving another, or the device itself).
    Device(DeviceHandle),
    /// An administrator, by name.
    Admin(String),
    /// The backend itself (enrollment of a first device, automatic rules).
    System,
}

impl Actor {
    /// The stored text.
    pub fn encode(&self) -> String {
        match self {
            Actor::Device(h) => h.as_str().to_owned(),
            Actor::Admin(name) => format!("admin:{name}"),
            Actor::System => "system".to_owned(),
        }
    }

    /// Parse the stored text; `None` when it is none of the three forms.
    pub fn decode(text: &str) -> Option<Actor> {
        if text == "system" {
            Some(Actor::System)
        } else if let Some(name) = text.strip_prefix("admin:") {
            Some(Actor::Admin(name.to_owned()))
        } else {
            DeviceHandle::parse(text).ok().map(Actor::Device)
        }
    }
}

/// The TPM clock state last seen in a quote (for the verifier's monotonicity checks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockInfo {
    /// TPM clock, milliseconds.
    pub clock: u64,
    /// TPM reset count.
    pub reset_count: u32,
    /// TPM restart count.
    pub restart_count: u32,
    /// Whether the clock is known to be safe.
    pub safe: bool,
}

/// What the verifier keeps per device. Stored sealed (JSON), never in clear.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifierData {
    /// The attestation key's public part (encoded as the evidence carries it).
    pub ak_public: Vec<u8>,
    /// The endorsement key's public part.
    pub ek_public: Vec<u8>,
    /// The EK certificate (DER), when the device has one.
    pub ek_certificate: Option<Vec<u8>>,
    /// Whether credential activation proved the AK and EK share a TPM.
    pub activated: bool,
    /// Clock state of the last accepted quote.
    pub last_clock: Option<ClockInfo>,
}

/// An account's id (random, opaque).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccountId(pub String);

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An account to create.
#[derive(Debug, Clone)]
pub struct NewAccount<'a> {
    /// The username; stored only as a keyed hash (lookup) and sealed (display).
    pub username: &'a str,
    /// Argon2id PHC string of the password, produced by the caller.
    pub password_hash: &'a str,
    /// Argon2id PHC string of the recovery phrase, produced by the caller.
    pub recovery_hash: &'a str,
    /// Further account metadata, sealed.
    pub metadata: serde_json::Value,
    /// Creation time.
    pub at: SystemTime,
}

/// A stored account, opened.
#[derive(Debug, Clone, PartialEq)]
pub struct Account {
    /// The account id.
    pub id: AccountId,
    /// The username (opened from its sealed copy).
    pub username: String,
    /// Argon2id PHC string of the password.
    pub password_hash: String,
    /// Argon2id PHC string of the recovery phrase.
    pub recovery_hash: String,
    /// Creation time (millisecond precision).
    pub created_at: SystemTime,
    /// Further metadata (opened).
    pub metadata: serde_json::Value,
}

/// A device to enroll; its state is decided by the caller (lifecycle rules).
#[derive(Debug, Clone)]
pub struct NewDevice<'a> {
    /// The device's handle.
    pub handle: &'a DeviceHandle,
    /// The owning account.
    pub account: &'a AccountId,
    /// Initial state (trusted for an account's first device, pending otherwise).
    pub state: DeviceState,
    /// The verifier's data, sealed.
    pub verifier: &'a VerifierData,
    /// Who enrolled it (recorded as the first transition).
    pub actor: &'a Actor,
    /// Why (recorded as the first transition).
    pub reason: &'a str,
    /// Enrollment time.
    pub at: SystemTime,
}

/// A stored device, opened.
#[derive(Debug, Clone, PartialEq)]
pub struct Device {
    /// The handle.
    pub handle: DeviceHandle,
    /// The owning account.
    pub account: AccountId,
    /// Current state.
    pub state: DeviceState,
    /// The verifier's data (opened).
    pub verifier: VerifierData,
    /// Enrollment time.
    pub created_at: SystemTime,
    /// Time of the last state change.
    pub state_changed_at: SystemTime,
}

/// A recorded state change.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// The device.
    pub device: DeviceHandle,
    /// Order of the transition among the device's transitions (1, 2, ...).
    pub seq: i64,
    /// The state before (`None` at enrollment).
    pub from: Option<DeviceState>,
    /// The state after.
    pub to: DeviceState,
    /// Who did it (opened).
    pub actor: Actor,
    /// Why (opened).
    pub reason: String,
    /// When.
    pub at: SystemTime,
}

/// A recorded appraisal.
#[derive(Debug, Clone, PartialEq)]
pub struct Appraisal {
    /// The random id of the record.
    pub id: String,
    /// The device.
    pub device: DeviceHandle,
    /// When.
    pub at: SystemTime,
    /// Resulting trust tier.
    pub tier: String,
    /// The appraised claims (opened).
    pub claims: serde_json::Value,
}

/// A recorded connection.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectionRecord {
    /// The random id of the record.
    pub id: String,
    /// When.
    pub at: SystemTime,
    /// The remote address (opened).
    pub remote_addr: String,
}

/// What consuming a challenge found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChallengeOutcome {
    /// The challenge was pending and is now used; it was issued to this device.
    Consumed(DeviceHandle),
    /// No such challenge (never issued, or purged).
    Unknown,
    /// Already used.
    AlreadyUsed,
    /// Past its expiry.
    Expired,
}

/// What issuing a challenge did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChallengeIssue {
    /// Stored.
    Issued,
    /// No device with that handle.
    NotEnrolled,
    /// The device is in a state that gets no attestation results; nothing was stored.
    Refused(DeviceState),
}

/// What a challenge is, read without using it up ([`crate::Store::peek_challenge`]).
#[derive(Debug, Clone)]
pub enum ChallengePeek {
    /// Pending: the device it was issued to, and that device's revocation epoch.
    Pending {
        /// The device the challenge was issued to.
        device: Device,
        /// Its current revocation epoch.
        epoch: i64,
    },
    /// No such challenge (never issued, or purged).
    Unknown,
    /// Already used.
    AlreadyUsed,
    /// Past its expiry.
    Expired,
}

/// The write half of one attestation ([`crate::Store::record_attestation`]).
#[derive(Debug, Clone, Copy)]
pub struct AttestationRecord<'a> {
    /// The challenge nonce the evidence answered.
    pub nonce: &'a [u8],
    /// The device that answered it.
    pub device: &'a DeviceHandle,
    /// When.
    pub at: SystemTime,
    /// The verifier's new data for the device (a new clock reading), if it changed.
    pub verifier: Option<&'a VerifierData>,
    /// The appraisal's tier.
    pub tier: &'a str,
    /// The appraisal's claims (sealed at rest).
    pub claims: &'a serde_json::Value,
}

/// What recording an attestation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// The challenge was consumed and the appraisal recorded under this id.
    Appraisal(String),
    /// The challenge was no longer pending for this device (used, expired, unknown):
    /// nothing was written.
    ChallengeRefused(ChallengeOutcome),
}

/// Revocation epochs after a bump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Epochs {
    /// The device's epoch.
    pub device: i64,
    /// The global epoch (bumped with every device bump).
    pub global: i64,
}

fn secs<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    u64::deserialize(d).map(Duration::from_secs)
}

/// How long each record class is kept (configurable; seconds in config files).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Retention {
    /// Challenges: counted from their expiry.
    #[serde(rename = "challenges_secs", deserialize_with = "secs")]
    pub challenges: Duration,
    /// Appraisal history: counted from the appraisal.
    #[serde(rename = "appraisals_secs", deserialize_with = "secs")]
    pub appraisals: Duration,
    /// Transition history: counted from the transition.
    #[serde(rename = "transitions_secs", deserialize_with = "secs")]
    pub transitions: Duration,
    /// Connection records: counted from the connection.
    #[serde(rename = "connection_records_secs", deserialize_with = "secs")]
    pub connection_records: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        const DAY: u64 = 86_400;
        Retention {
            challenges: Duration::from_secs(DAY),
            appraisals: Duration::from_secs(30 * DAY),
            transitions: Duration::from_secs(365 * DAY),
            connection_records: Duration::from_secs(7 * DAY),
        }
    }
}

/// How many records one purge deleted, per class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PurgeCounts {
    /// Challenges.
    pub challenges: u64,
    /// Appraisals.
    pub appraisals: u64,
    /// Transitions.
    pub transitions: u64,
    /// Connection records.
    pub connection_records: u64,
}

/// How many sealed values a reseal re-encrypted, per table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResealCounts {
    /// Account metadata.
    pub accounts: u64,
    /// Device verifier data.
    pub devices: u64,
    /// Transition actor/reason rows.
    pub transitions: u64,
    /// Appraisal claims.
    pub appraisals: u64,
    /// Connection records.
    pub connection_records: u64,
    /// Key directory entries.
    pub key_directory: u64,
}

impl ResealCounts {
    /// Total over every table.
    pub fn total(&self) -> u64 {
        self.accounts
            + self.devices
            + self.transitions
            + self.appraisals
            + self.connection_records
            + self.key_directory
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_and_actor_text() {
        for s in DeviceState::ALL {
            assert_eq!(s.as_str().parse::<DeviceState>().unwrap(), s);
        }
        assert!("approved".parse::<DeviceState>().is_err());
        let h = DeviceHandle::parse(&"ab".repeat(32)).unwrap();
        for a in [Actor::Device(h), Actor::Admin("ops".into()), Actor::System] {
            assert_eq!(Actor::decode(&a.encode()), Some(a));
        }
        assert_eq!(Actor::decode("nobody"), None);
    }

    #[test]
    fn retention_from_toml() {
        let r: Retention = toml::from_str("challenges_secs = 60\nappraisals_secs = 120").unwrap();
        assert_eq!(r.challenges, Duration::from_secs(60));
        assert_eq!(r.appraisals, Duration::from_secs(120));
        assert_eq!(r.transitions, Retention::default().transitions);
    }
}
