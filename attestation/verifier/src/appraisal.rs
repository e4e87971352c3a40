//! Per-claim appraisal results, after IETF AR4SI's trustworthiness tiers.

use serde::Serialize;

/// The tier of one claim, or of a whole appraisal (its worst claim).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// The claim holds.
    Affirming,
    /// The claim holds with a caveat a relying party may weigh.
    Warning,
    /// The claim is refuted: do not trust the device.
    Contraindicated,
}

/// One appraised claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Claim {
    /// Stable name, e.g. `signature`, `nonce`, `pcrs`, `event-log`, `clock`, `ak-binding`.
    pub name: &'static str,
    /// Its tier.
    pub tier: Tier,
    /// Why, for a human.
    pub reason: String,
}

/// The appraisal of one piece of evidence.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Appraisal {
    /// Every claim, in the order checked.
    pub claims: Vec<Claim>,
}

impl Appraisal {
    /// Records a claim.
    pub fn push(&mut self, name: &'static str, tier: Tier, reason: impl Into<String>) {
        self.claims.push(Claim {
            name,
            tier,
            reason: reason.into(),
        });
    }

    /// Affirms a claim.
    pub fn affirm(&mut self, name: &'static str, reason: impl Into<String>) {
        self.push(name, Tier::Affirming, reason);
    }

    /// Contraindicates a claim.
    pub fn refute(&mut self, name: &'static str, reason: impl Into<String>) {
        self.push(name, Tier::Contraindicated, reason);
    }

    /// The overall tier: the worst claim's, or contraindicated when nothing was appraised.
    pub fn tier(&self) -> Tier {
        self.claims
            .iter()
            .map(|claim| claim.tier)
            .max()
            .unwrap_or(Tier::Contraindicated)
    }

    /// The first contraindicated claim, if any.
    pub fn first_refuted(&self) -> Option<&Claim> {
        self.claims
            .iter()
            .find(|claim| claim.tier == Tier::Contraindicated)
    }

    /// Whether the claim named `name` is contraindicated.
    pub fn refutes(&self, name: &str) -> bool {
        self.claims
            .iter()
            .any(|claim| claim.name == name && claim.tier == Tier::Contraindicated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overall_tier_is_the_worst_claim() {
        let mut appraisal = Appraisal::default();
        assert_eq!(
            appraisal.tier(),
            Tier::Contraindicated,
            "nothing appraised is not trusted"
        );
        appraisal.affirm("signature", "ok");
        assert_eq!(appraisal.tier(), Tier::Affirming);
        appraisal.push("clock", Tier::Warning, "clock not safe");
        assert_eq!(appraisal.tier(), Tier::Warning);
        appraisal.refute("pcrs", "PCR 7 changed");
        assert_eq!(appraisal.tier(), Tier::Contraindicated);
        assert_eq!(appraisal.first_refuted().map(|c| c.name), Some("pcrs"));
        assert!(appraisal.refutes("pcrs") && !appraisal.refutes("clock"));
    }
}
