//! The kernel side of the network lockdown, behind a small trait: [`crate::nft::Nftables`]
//! in production and in the namespace tests, [`FakeFirewall`] for unit tests of the logic.
//!
//! [`apply_verified`] is the only way the daemon turns the lockdown on: replace the table in
//! one batch, read it back, and compare with what was intended.

use crate::kernel::{Difference, KernelTable, differences};
use crate::ruleset::Ruleset;

/// A firewall operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    /// The netlink socket failed.
    #[error("netlink {step}: {source}")]
    Netlink {
        /// What was being done.
        step: &'static str,
        /// The error.
        source: std::io::Error,
    },
    /// The kernel refused the change (nothing of it was applied).
    #[error("the kernel refused the nftables change: {source}")]
    Refused {
        /// The errno it answered with.
        source: std::io::Error,
    },
    /// The kernel's answer did not parse.
    #[error(transparent)]
    Malformed(#[from] crate::nft::netlink::Malformed),
    /// The ruleset could not be encoded.
    #[error(transparent)]
    Encode(#[from] crate::nft::batch::EncodeError),
    /// Read back after applying, the kernel's table is not the intended one.
    #[error("the kernel's table differs from the intended one: {}", list(.0))]
    Mismatch(Vec<Difference>),
}

fn list(differences: &[Difference]) -> String {
    differences
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// nftables as the daemon uses it: one table of its own.
pub trait Firewall: Send {
    /// Atomically replaces (or creates) `ruleset.table` with `ruleset`.
    fn replace(&mut self, ruleset: &Ruleset) -> Result<(), FirewallError>;
    /// Removes table `table` if it exists; leaves every other table alone.
    fn remove(&mut self, table: &str) -> Result<(), FirewallError>;
    /// The table as the kernel holds it, or `None` when it does not exist.
    fn read(&mut self, table: &str) -> Result<Option<KernelTable>, FirewallError>;
}

/// Replaces the table with `ruleset`, then reads it back and compares. A difference gets one
/// more replacement (say, someone changed the table between the read and the batch); a
/// second one is `Mismatch` (the table stays: whatever it holds drops by default).
pub fn apply_verified(firewall: &mut dyn Firewall, ruleset: &Ruleset) -> Result<(), FirewallError> {
    firewall.replace(ruleset)?;
    match verify(firewall, ruleset) {
        Err(FirewallError::Mismatch(found)) => {
            tracing::warn!(
                differences = found.len(),
                "read-back differs: replacing once more"
            );
            firewall.replace(ruleset)?;
            verify(firewall, ruleset)
        }
        other => other,
    }
}

/// Compares the kernel's table with `ruleset`.
pub fn verify(firewall: &mut dyn Firewall, ruleset: &Ruleset) -> Result<(), FirewallError> {
    let actual = firewall.read(&ruleset.table)?;
    let found = differences(&ruleset.expected_table(), actual.as_ref());
    if found.is_empty() {
        Ok(())
    } else {
        Err(FirewallError::Mismatch(found))
    }
}

/// An in-memory firewall for unit tests: holds what a perfect kernel would.
#[derive(Debug, Default, Clone)]
pub struct FakeFirewall {
    /// The tables it holds.
    pub tables: Vec<KernelTable>,
    /// When set, `replace` stores this instead of the ruleset (a kernel that misapplies).
    pub tamper: Option<KernelTable>,
}

impl Firewall for FakeFirewall {
    fn replace(&mut self, ruleset: &Ruleset) -> Result<(), FirewallError> {
        self.tables.retain(|t| t.name != ruleset.table);
        let table = self
            .tamper
            .clone()
            .unwrap_or_else(|| ruleset.expected_table());
        self.tables.push(table);
        Ok(())
    }

    fn remove(&mut self, table: &str) -> Result<(), FirewallError> {
        self.tables.retain(|t| t.name != table);
        Ok(())
    }

    fn read(&mut self, table: &str) -> Result<Option<KernelTable>, FirewallError> {
        Ok(self.tables.iter().find(|t| t.name == table).cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::lockdown;

    fn ruleset() -> Ruleset {
        let mut profile = lockdown();
        profile.tunnels = vec!["wg0".into()];
        Ruleset::for_profile(&profile, None).unwrap()
    }

    #[test]
    fn applied_tables_are_verified_and_removed_exactly() {
        let mut other = ruleset().expected_table();
        other.name = "someone_else".into();
        let mut firewall = FakeFirewall {
            tables: vec![other],
            tamper: None,
        };
        apply_verified(&mut firewall, &ruleset()).unwrap();
        firewall.remove(crate::ruleset::TABLE).unwrap();
        assert_eq!(firewall.tables.len(), 1);
        assert_eq!(firewall.tables[0].name, "someone_else");
        assert!(matches!(
            verify(&mut firewall, &ruleset()),
            Err(FirewallError::Mismatch(d)) if d == [Difference::NoTable]
        ));
    }

    #[test]
    fn a_kernel_that_misapplies_is_caught() {
        let mut bad = ruleset().expected_table();
        bad.chains[0].policy = Some(1);
        let mut firewall = FakeFirewall {
            tables: vec![],
            tamper: Some(bad),
        };
        let err = apply_verified(&mut firewall, &ruleset()).unwrap_err();
        assert!(err.to_string().contains("chain input"), "{err}");
    }
}
