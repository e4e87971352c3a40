//! The posture data model: one [`CheckReport`] per check, and the scored [`Posture`].
//!
//! These types are also the D-Bus wire format of `org.enigm.TrustSecurityCenter1`
//! (signature of a check: `(sssyssss)`), and the `--json` output of `enigmctl posture`.

use serde::{Deserialize, Serialize};
use zbus::zvariant::Type;

/// The level of a check, after fwupd's Host Security ID: 1 critical … 4 system protection.
/// Level 0 marks a runtime check, which feeds the runtime-issue flag instead of the level.
pub type Level = u8;

/// The level given to runtime checks.
pub const RUNTIME: Level = 0;

/// The highest level.
pub const MAX_LEVEL: Level = 4;

/// What a check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// The protection is in place.
    Pass,
    /// The protection is missing or weakened.
    Fail,
    /// The check does not apply to this kind of device (e.g. an Android property on Linux).
    NotApplicable,
    /// The state could not be determined (a file unreadable, a daemon not running). Never
    /// counted as a pass.
    Unavailable,
}

impl Outcome {
    /// The stable wire name (`pass`, `fail`, `not-applicable`, `unavailable`).
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Fail => "fail",
            Outcome::NotApplicable => "not-applicable",
            Outcome::Unavailable => "unavailable",
        }
    }

    /// Parses a wire name.
    pub fn parse(name: &str) -> Option<Self> {
        [
            Outcome::Pass,
            Outcome::Fail,
            Outcome::NotApplicable,
            Outcome::Unavailable,
        ]
        .into_iter()
        .find(|outcome| outcome.as_str() == name)
    }
}

/// A check's result with the value that was observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The result.
    pub outcome: Outcome,
    /// What was observed, for a human (e.g. `2`, `none [integrity] confidentiality`).
    pub observed: String,
}

impl Finding {
    /// A finding with `outcome` and `observed`.
    pub fn new(outcome: Outcome, observed: impl Into<String>) -> Self {
        Self {
            outcome,
            observed: observed.into(),
        }
    }

    /// A pass.
    pub fn pass(observed: impl Into<String>) -> Self {
        Self::new(Outcome::Pass, observed)
    }

    /// A failure.
    pub fn fail(observed: impl Into<String>) -> Self {
        Self::new(Outcome::Fail, observed)
    }

    /// Not applicable to this device.
    pub fn not_applicable(observed: impl Into<String>) -> Self {
        Self::new(Outcome::NotApplicable, observed)
    }

    /// Could not be determined.
    pub fn unavailable(observed: impl Into<String>) -> Self {
        Self::new(Outcome::Unavailable, observed)
    }

    /// A pass when `ok`, else a failure.
    pub fn pass_if(ok: bool, observed: impl Into<String>) -> Self {
        Self::new(if ok { Outcome::Pass } else { Outcome::Fail }, observed)
    }
}

/// One evaluated check, as reported over D-Bus and JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct CheckReport {
    /// Stable identifier, e.g. `kernel.sysctl.kptr_restrict`.
    pub id: String,
    /// Group: `boot`, `kernel`, `hardware`, `debug`, `patch`, `signal`.
    pub category: String,
    /// Short human title.
    pub title: String,
    /// 1–4, or 0 for a runtime check.
    pub level: Level,
    /// `pass`, `fail`, `not-applicable` or `unavailable`.
    pub result: String,
    /// The observed value.
    pub observed: String,
    /// Why it matters, in one line.
    pub why: String,
    /// How to fix it, in one line.
    pub fix: String,
}

impl CheckReport {
    /// The parsed result; an unknown wire value reads as unavailable.
    pub fn outcome(&self) -> Outcome {
        Outcome::parse(&self.result).unwrap_or(Outcome::Unavailable)
    }
}

/// The device's scored posture.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct Posture {
    /// The HSI-style level, 0–4.
    pub level: Level,
    /// Whether a runtime check failed (HSI's `!`).
    pub runtime_issue: bool,
    /// When it was evaluated, in seconds since the Unix epoch.
    pub evaluated_at: u64,
    /// Every check, in catalogue order.
    pub checks: Vec<CheckReport>,
}

impl Posture {
    /// Whether the scored part (level and runtime issue) differs from `other`'s, ignoring the
    /// evaluation time.
    pub fn differs_from(&self, other: &Posture) -> bool {
        self.level != other.level
            || self.runtime_issue != other.runtime_issue
            || self.checks != other.checks
    }
}
