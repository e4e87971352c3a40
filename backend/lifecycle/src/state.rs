//! Device states, what each state may obtain from the attestation service, and the state a
//! device enrolls in.
//!
//! ```text
//!            approve              suspend
//!  pending ───────────► trusted ◄─────────► suspended
//!     │                    │     reinstate      │
//!     └──────── revoke ────┴──────┬─────────────┘
//!                                 ▼
//!                              revoked ──► retired   (retire is also allowed from
//!                                                     pending, trusted and suspended)
//! ```
//!
//! Every change of state bumps the device's revocation epoch (kept by storage), so attestation
//! results issued before the change stop being accepted by relying parties.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::transition::LifecycleError;

/// The lifecycle state of one device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceState {
    /// Enrolled, waiting for approval by a trusted device of its account or by an admin.
    Pending,
    /// Approved: may attest and hold full attestation results.
    Trusted,
    /// Temporarily barred (lost, out of compliance); may be reinstated.
    Suspended,
    /// Permanently barred; its results are refused. Kept for history until retired.
    Revoked,
    /// Decommissioned. Terminal: nothing leaves this state.
    Retired,
}

impl DeviceState {
    /// Every state, in lifecycle order (for tables and tests).
    pub const ALL: [DeviceState; 5] = [
        DeviceState::Pending,
        DeviceState::Trusted,
        DeviceState::Suspended,
        DeviceState::Revoked,
        DeviceState::Retired,
    ];

    /// The stable lowercase name used in storage, APIs and audit records.
    pub const fn as_str(self) -> &'static str {
        match self {
            DeviceState::Pending => "pending",
            DeviceState::Trusted => "trusted",
            DeviceState::Suspended => "suspended",
            DeviceState::Revoked => "revoked",
            DeviceState::Retired => "retired",
        }
    }

    /// What the attestation service may give a device in this state.
    ///
    /// Decision: a *pending* device may attest, so whoever approves it (its owner's trusted
    /// device, or an admin) can see its posture before deciding, but its result is
    /// [`AttestationAccess::Limited`]: the tier is capped at `warning`, below the `affirming`
    /// that the relay requires. Suspended, revoked and retired devices get no result at all.
    pub const fn attestation_access(self) -> AttestationAccess {
        match self {
            DeviceState::Trusted => AttestationAccess::Full,
            DeviceState::Pending => AttestationAccess::Limited,
            DeviceState::Suspended | DeviceState::Revoked | DeviceState::Retired => {
                AttestationAccess::Denied
            }
        }
    }
}

impl fmt::Display for DeviceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DeviceState {
    type Err = LifecycleError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DeviceState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| LifecycleError::UnknownState(s.chars().take(32).collect()))
    }
}

/// What a device may obtain from the attestation service, by state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttestationAccess {
    /// A result with whatever tier the appraisal gives.
    Full,
    /// A result whose tier is capped at `warning`, whatever the appraisal gives.
    Limited,
    /// No result: the challenge is refused.
    Denied,
}

/// What the backend knows about an account when one of its devices enrolls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EnrollmentContext {
    /// Devices ever enrolled in the account, in any state (retired ones included).
    pub devices_ever_enrolled: u64,
    /// Devices of the account that are trusted now.
    pub trusted_devices: u64,
    /// Whether this enrollment comes with a recovery-phrase restore of the account, verified in
    /// the same request.
    pub recovered_with_phrase: bool,
}

/// The state a newly enrolled device starts in.
///
/// - The first device an account ever has is trusted at enrollment.
/// - Every further device is pending until approved: a new device is a new trust event, never
///   an automatic extension of an existing one. "First" counts every device ever enrolled, so
///   losing or revoking all devices does not make the next one trusted by password alone.
/// - Decision: one exception, so an account whose devices are all lost is not stuck: an
///   enrollment that comes with a verified recovery phrase, while the account has no trusted
///   device, is trusted. The phrase is the account's root secret, shown once at creation.
///   While a trusted device exists, even a phrase-backed enrollment stays pending.
pub const fn enrollment_state(account: EnrollmentContext) -> DeviceState {
    if account.devices_ever_enrolled == 0
        || (account.recovered_with_phrase && account.trusted_devices == 0)
    {
        DeviceState::Trusted
    } else {
        DeviceState::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_fail() {
        for state in DeviceState::ALL {
            assert_eq!(state.as_str().parse::<DeviceState>().unwrap(), state);
            assert_eq!(state.to_string(), state.as_str());
            let json = serde_json::to_string(&state).unwrap();
            assert_eq!(json, format!("\"{}\"", state.as_str()));
            assert_eq!(serde_json::from_str::<DeviceState>(&json).unwrap(), state);
        }
        for bad in ["", "Trusted", "active", "trusted "] {
            assert!(matches!(
                bad.parse::<DeviceState>(),
                Err(LifecycleError::UnknownState(_))
            ));
        }
    }

    #[test]
    fn attestation_access_by_state() {
        let table = [
            (DeviceState::Pending, AttestationAccess::Limited),
            (DeviceState::Trusted, AttestationAccess::Full),
            (DeviceState::Suspended, AttestationAccess::Denied),
            (DeviceState::Revoked, AttestationAccess::Denied),
            (DeviceState::Retired, AttestationAccess::Denied),
        ];
        for (state, access) in table {
            assert_eq!(state.attestation_access(), access, "{state}");
        }
    }

    #[test]
    fn enrollment_states() {
        let ctx = |ever, trusted, recovered| EnrollmentContext {
            devices_ever_enrolled: ever,
            trusted_devices: trusted,
            recovered_with_phrase: recovered,
        };
        let table = [
            // first device of the account
            (ctx(0, 0, false), DeviceState::Trusted),
            (ctx(0, 0, true), DeviceState::Trusted),
            // second device while the first is trusted
            (ctx(1, 1, false), DeviceState::Pending),
            (ctx(3, 2, false), DeviceState::Pending),
            // all earlier devices revoked or retired: password alone is not enough
            (ctx(2, 0, false), DeviceState::Pending),
            // ... but a verified recovery phrase restores the account onto a new device
            (ctx(2, 0, true), DeviceState::Trusted),
            // a phrase never bypasses approval while a trusted device exists
            (ctx(2, 1, true), DeviceState::Pending),
        ];
        for (context, expected) in table {
            assert_eq!(enrollment_state(context), expected, "{context:?}");
        }
    }
}
