//! Signals from the other Enigm daemons (Privacy Mode, Active Defense, updates, attestation).
//!
//! They are runtime checks: a failing signal raises the runtime-issue flag. A daemon that is
//! not running reports "unavailable" — its state is never guessed.

use super::{Check, Rule};
use crate::model::RUNTIME;

/// A daemon that reports a posture signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignalSource {
    /// Check id.
    pub id: &'static str,
    /// Title.
    pub title: &'static str,
    /// The daemon's program name, for messages.
    pub daemon: &'static str,
    /// Its well-known bus name.
    pub bus_name: &'static str,
    /// Its object path.
    pub path: &'static str,
    /// Why it matters.
    pub why: &'static str,
    /// How to fix a failure.
    pub fix: &'static str,
}

/// Every signal source, in report order.
pub const SIGNAL_SOURCES: &[SignalSource] = &[
    SignalSource {
        id: "signal.active-defense",
        title: "Active Defense: no spyware indicators",
        daemon: "enigm-defensed",
        bus_name: "org.enigm.ActiveDefense1",
        path: "/org/enigm/ActiveDefense1",
        why: "Indicators of compromise on the device mean it may be under someone else's control",
        fix: "Review the findings with enigmctl defense and follow their recommended actions",
    },
    SignalSource {
        id: "signal.update",
        title: "Update state",
        daemon: "enigm-updated",
        bus_name: "org.enigm.Update1",
        path: "/org/enigm/Update1",
        why: "A failed or pending update leaves known vulnerabilities open",
        fix: "Check and apply updates with enigmctl update",
    },
    SignalSource {
        id: "signal.attestation",
        title: "Last attestation",
        daemon: "enigm-attestd",
        bus_name: "org.enigm.Attestation1",
        path: "/org/enigm/Attestation1",
        why: "A device whose attestation fails cannot prove its state to the services it uses",
        fix: "Run enigmctl attest and read the appraisal's reasons",
    },
    SignalSource {
        id: "signal.privacy-mode",
        title: "Privacy Mode",
        daemon: "enigm-privacyd",
        bus_name: "org.enigm.PrivacyMode1",
        path: "/org/enigm/PrivacyMode1",
        why: "Privacy Mode's kill switches must be in the state the owner chose, read back from the kernel",
        fix: "Check enigmctl privacy status",
    },
];

/// The signal checks.
pub(super) fn checks() -> Vec<Check> {
    SIGNAL_SOURCES
        .iter()
        .map(|source| Check {
            id: source.id,
            category: "signal",
            title: source.title,
            level: RUNTIME,
            why: source.why,
            fix: source.fix,
            inputs: &[],
            rule: Rule::Signal(source.id),
        })
        .collect()
}
