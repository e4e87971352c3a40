//! The check catalogue: every posture check with its id, level, why and fix, and the rule that
//! decides it.
//!
//! Rules are pure functions of a [`Context`] (everything read from the sysroot once per
//! evaluation), so each is table-tested on fixture trees.

mod boot;
mod debug;
mod hardware;
mod kernel;
mod patch;
mod signal;
mod sysctl;

use enigm_runtime::sysroot::Sysroot;

use crate::config::PostureConfig;
use crate::model::{Finding, Level};
use crate::mounts::Mount;
use crate::properties::Properties;
use crate::signals::SignalSnapshot;

pub use signal::SIGNAL_SOURCES;
pub use sysctl::{Expect, SysctlRule};

/// What a check reads, gathered once per evaluation.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// Where system paths are read from.
    pub sysroot: &'a Sysroot,
    /// Android system properties (empty on Linux).
    pub properties: &'a Properties,
    /// The mount table.
    pub mounts: &'a [Mount],
    /// Check settings.
    pub config: &'a PostureConfig,
    /// Readings from the other daemons.
    pub signals: &'a SignalSnapshot,
    /// The evaluation time, seconds since the Unix epoch.
    pub now_unix: u64,
}

/// How a check is decided.
#[derive(Debug, Clone, Copy)]
pub enum Rule {
    /// A probe function.
    Probe(fn(&Context<'_>) -> Result<Finding, Unreadable>),
    /// A sysctl compared with its expected value.
    Sysctl(SysctlRule),
    /// A reading from another daemon, by signal id.
    Signal(&'static str),
}

/// One posture check.
#[derive(Debug, Clone, Copy)]
pub struct Check {
    /// Stable identifier.
    pub id: &'static str,
    /// Group name.
    pub category: &'static str,
    /// Short title.
    pub title: &'static str,
    /// 1–4, or 0 for runtime checks.
    pub level: Level,
    /// Why it matters.
    pub why: &'static str,
    /// How to fix it.
    pub fix: &'static str,
    /// System paths whose change should trigger a re-evaluation.
    pub inputs: &'static [&'static str],
    /// How it is decided.
    pub rule: Rule,
}

impl Check {
    /// Runs the check.
    pub fn evaluate(&self, context: &Context<'_>) -> Finding {
        match self.rule {
            Rule::Probe(probe) => probe(context).unwrap_or_else(Unreadable::into_finding),
            Rule::Sysctl(rule) => rule.evaluate(context.sysroot),
            Rule::Signal(id) => context.signals.finding(id),
        }
    }
}

/// Every check, in report order.
pub fn catalogue() -> Vec<Check> {
    let mut checks = Vec::new();
    checks.extend_from_slice(boot::CHECKS);
    checks.extend_from_slice(kernel::CHECKS);
    checks.extend(sysctl::checks());
    checks.extend_from_slice(hardware::CHECKS);
    checks.extend_from_slice(debug::CHECKS);
    checks.extend_from_slice(patch::CHECKS);
    checks.extend(signal::checks());
    checks
}

/// An input that exists but could not be read. The check is then undetermined, never passed:
/// only a file that is really absent may count as "feature compiled out".
#[derive(Debug)]
pub struct Unreadable(String);

impl Unreadable {
    fn new(path: &str, err: &std::io::Error) -> Self {
        Self(format!("{path} is unreadable: {}", err.kind()))
    }

    /// The undetermined finding.
    pub fn into_finding(self) -> Finding {
        Finding::unavailable(self.0)
    }
}

/// A one-line value: `Ok(None)` when absent.
fn value(context: &Context<'_>, path: &str) -> Result<Option<String>, Unreadable> {
    context
        .sysroot
        .read_value(path)
        .map_err(|err| Unreadable::new(path, &err))
}

/// A directory's entries: `Ok(None)` when absent.
fn entries(context: &Context<'_>, path: &str) -> Result<Option<Vec<String>>, Unreadable> {
    context
        .sysroot
        .list_dir(path)
        .map_err(|err| Unreadable::new(path, &err))
}

/// Whether a path exists.
fn exists(context: &Context<'_>, path: &str) -> Result<bool, Unreadable> {
    context
        .sysroot
        .path(path)
        .try_exists()
        .map_err(|err| Unreadable::new(path, &err))
}

/// A whole file's bytes: `Ok(None)` when absent.
fn bytes(context: &Context<'_>, path: &str) -> Result<Option<Vec<u8>>, Unreadable> {
    match context.sysroot.read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(Unreadable::new(path, &err)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_are_unique_and_every_check_is_documented() {
        let checks = catalogue();
        let mut seen = HashSet::new();
        for check in &checks {
            assert!(seen.insert(check.id), "duplicate id {}", check.id);
            assert!(
                check.id.starts_with(check.category),
                "{} not under {}",
                check.id,
                check.category
            );
            assert!(check.level <= 4, "{}", check.id);
            for text in [check.title, check.why, check.fix] {
                assert!(
                    !text.is_empty() && !text.contains('\n'),
                    "{}: {text:?}",
                    check.id
                );
            }
        }
        for level in 1..=4 {
            assert!(
                checks.iter().any(|c| c.level == level),
                "no check at level {level}"
            );
        }
    }
}
