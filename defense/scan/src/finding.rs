//! Findings: what a scan reports. Each has a stable id (the same artefact found by the same
//! rule or indicator gets the same id on every scan), a severity, a category, the indicator
//! and its collections when one matched, minimized evidence (what was observed and where,
//! never file contents) and a recommended action.

use std::fmt;

use openssl::sha::Sha256;
use serde::{Deserialize, Serialize};

/// How urgent a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing; rarely a compromise alone.
    Low,
    /// Suspicious; look closer.
    Medium,
    /// A known indicator of compromise on disk or in configuration.
    High,
    /// A known indicator of compromise running or connected now.
    Critical,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        })
    }
}

/// Where a finding was seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Category {
    /// A running process.
    Process,
    /// An installed package or app.
    Package,
    /// A system property.
    Property,
    /// A file in a system location.
    File,
    /// A network connection.
    Network,
    /// A DNS log.
    Dns,
    /// A persistence point (service unit, cron, preload, mail forwarding).
    Persistence,
    /// The kernel (modules, taint).
    Kernel,
    /// A setuid or setgid binary.
    Setuid,
    /// A mounted file system.
    Mount,
    /// An installed configuration profile.
    Profile,
}

impl Category {
    /// What the device owner should do about a finding of this category.
    pub fn action(self) -> &'static str {
        match self {
            Category::Process => {
                "Do not trust this device with sensitive data; keep it isolated and contact your security team before stopping the process (evidence is lost on reboot)."
            }
            Category::Package => {
                "Uninstall the app or package after your security team has preserved evidence."
            }
            Category::Property => {
                "The system configuration matches known spyware; reinstall the OS image from a trusted source."
            }
            Category::File => {
                "Preserve the file for analysis, then reinstall the OS image from a trusted source."
            }
            Category::Network => {
                "Enable Privacy Mode to cut the connection and contact your security team."
            }
            Category::Dns => {
                "The device contacted spyware infrastructure; contact your security team and rotate account credentials."
            }
            Category::Persistence => {
                "Remove the persistence entry after preserving it, then reinstall the OS image."
            }
            Category::Kernel => {
                "Reboot into a verified image; an untrusted kernel module undermines every other check."
            }
            Category::Setuid => {
                "Remove the privilege bit or the binary; nothing outside the signed image should be setuid."
            }
            Category::Mount => "Remount read-only and reboot into the verified image.",
            Category::Profile => {
                "Remove the configuration profile; it was installed by a known attacker."
            }
        }
    }
}

/// What was observed, minimized: kind and subject are stable (they make the id); `detail`
/// carries what changes between scans (a pid, a local port).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    /// What kind of thing (`process`, `file`, `connection`, `package`, ...).
    pub kind: String,
    /// Which one: a path, a process name, an address, a package id.
    pub subject: String,
    /// The observed value that matched (a domain, a hash, a name), when not the subject.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub matched: Option<String>,
    /// Volatile details (pid, local port), not part of the id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Evidence {
    /// Evidence of `kind` about `subject`.
    pub fn new(kind: &str, subject: impl Into<String>) -> Self {
        Self {
            kind: kind.to_owned(),
            subject: subject.into(),
            matched: None,
            detail: None,
        }
    }

    /// With the observed value that matched.
    pub fn matched(mut self, value: impl Into<String>) -> Self {
        self.matched = Some(value.into());
        self
    }

    /// With volatile details.
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
}

/// The indicator behind a finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndicatorRef {
    /// STIX id.
    pub id: String,
    /// The pattern.
    pub pattern: String,
    /// Its collections ("Pegasus", ...).
    pub collections: Vec<String>,
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// Stable id: hex of SHA-256 over rule, evidence kinds and subjects (first 16 bytes).
    pub id: String,
    /// How urgent.
    pub severity: Severity,
    /// Where it was seen.
    pub category: Category,
    /// The rule: `ioc` for an indicator match, or the heuristic's name.
    pub rule: String,
    /// One line for people.
    pub title: String,
    /// The indicator, for indicator matches.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub indicator: Option<IndicatorRef>,
    /// What was observed.
    pub evidence: Vec<Evidence>,
    /// What to do.
    pub action: String,
}

impl Finding {
    /// A finding with its id computed from `rule_key` (the indicator id, or the rule) and the
    /// evidence's stable parts.
    pub fn new(
        rule_key: &str,
        severity: Severity,
        category: Category,
        rule: &str,
        title: String,
        indicator: Option<IndicatorRef>,
        evidence: Vec<Evidence>,
    ) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(rule_key.as_bytes());
        for item in &evidence {
            hasher.update(b"\0");
            hasher.update(item.kind.as_bytes());
            hasher.update(b"\0");
            hasher.update(item.subject.as_bytes());
        }
        let digest = hasher.finish();
        let id = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
        Self {
            id,
            severity,
            category,
            rule: rule.to_owned(),
            title,
            indicator,
            evidence,
            action: category.action().to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_ignore_volatile_detail() {
        let make = |detail: &str, subject: &str| {
            Finding::new(
                "indicator--1",
                Severity::Critical,
                Category::Process,
                "ioc",
                "t".to_owned(),
                None,
                vec![Evidence::new("process", subject).detail(detail)],
            )
        };
        assert_eq!(make("pid 1", "x").id, make("pid 2", "x").id);
        assert_ne!(make("pid 1", "x").id, make("pid 1", "y").id);
        assert_eq!(make("pid 1", "x").id.len(), 32);
        let json = serde_json::to_value(make("pid 1", "x")).unwrap();
        assert_eq!(json["severity"], "critical");
        assert_eq!(json["category"], "process");
        assert!(json.get("indicator").is_none());
    }
}
