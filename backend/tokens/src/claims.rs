//! What an attestation result says about a device.

use serde::{Deserialize, Serialize};

/// The appraisal's trustworthiness tier, after IETF AR4SI (same names as the verifier's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// Every claim holds.
    Affirming,
    /// Holds with a caveat (also the ceiling for a device still pending approval).
    Warning,
    /// Refuted: do not trust the device.
    Contraindicated,
}

impl Tier {
    /// The stable lowercase name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Tier::Affirming => "affirming",
            Tier::Warning => "warning",
            Tier::Contraindicated => "contraindicated",
        }
    }
}

/// The device's posture, as summarized in a result (the Trust Security Center's score).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostureSummary {
    /// HSI-style level, 0–4 ([`PostureSummary::MAX_LEVEL`]).
    pub level: u8,
    /// Whether a runtime check failed.
    pub runtime_issue: bool,
}

impl PostureSummary {
    /// The highest level.
    pub const MAX_LEVEL: u8 = 4;
}

/// The claims of one attestation result.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claims {
    /// The device handle (keyed hash), never a hardware identifier.
    pub sub: String,
    /// The trust tier.
    pub tier: Tier,
    /// The posture summary.
    pub posture: PostureSummary,
    /// Issued at, seconds since the Unix epoch.
    pub iat: u64,
    /// Expires at, seconds since the Unix epoch (minutes after `iat`).
    pub exp: u64,
    /// The device's revocation epoch when the result was issued.
    pub epoch: u64,
    /// Unique token id (16 random bytes, base64url), for audit and replay tracking.
    pub jti: String,
}

impl Claims {
    /// Longest accepted `sub`.
    pub const MAX_SUB_LEN: usize = 128;
    /// Longest accepted `jti`.
    pub const MAX_JTI_LEN: usize = 64;
}
