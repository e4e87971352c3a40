//! The state of one scan that scanners report into: indicator hits with their evidence,
//! heuristic findings, counts and the errors that make a scan incomplete. [`Scan::finish`]
//! turns hits into findings once every scanner has run, so patterns that need several
//! observations (`[a] AND [b]`) are resolved over the whole scan.

use std::collections::BTreeMap;
use std::path::Path;

use enigm_ioc::{Attribute, Hit, IocDb, Observation};
use serde::Serialize;

use crate::config::ScanConfig;
use crate::finding::{Category, Evidence, Finding, IndicatorRef, Severity};
use crate::fs::{FsError, ScanFs};

/// A read that failed for another reason than absence: the scan is incomplete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScanIssue {
    /// The scanner.
    pub scanner: &'static str,
    /// What failed (a system path and the error).
    pub problem: String,
}

/// The scan in progress.
#[derive(Debug)]
pub struct Scan<'a> {
    /// File access (boundary-checked).
    pub fs: &'a ScanFs,
    /// The indicators.
    pub db: &'a IocDb,
    /// The configuration.
    pub config: &'a ScanConfig,
    scanner: &'static str,
    hits: Vec<Hit>,
    hit_evidence: Vec<(Category, Evidence)>,
    scratch: Vec<Hit>,
    findings: Vec<Finding>,
    observed: BTreeMap<&'static str, u64>,
    issues: Vec<ScanIssue>,
}

impl<'a> Scan<'a> {
    /// A new scan.
    pub fn new(fs: &'a ScanFs, db: &'a IocDb, config: &'a ScanConfig) -> Self {
        Self {
            fs,
            db,
            config,
            scanner: "",
            hits: Vec::new(),
            hit_evidence: Vec::new(),
            scratch: Vec::new(),
            findings: Vec::new(),
            observed: BTreeMap::new(),
            issues: Vec::new(),
        }
    }

    /// Names the scanner that reports next (for counts and issues).
    pub fn set_scanner(&mut self, scanner: &'static str) {
        self.scanner = scanner;
        self.observed.entry(scanner).or_default();
    }

    /// Matches an observation against the indicators; `evidence` builds the minimized
    /// evidence only when something matched.
    pub fn observe(
        &mut self,
        category: Category,
        observation: &Observation<'_>,
        evidence: impl FnOnce() -> Evidence,
    ) {
        *self.observed.entry(self.scanner).or_default() += 1;
        self.scratch.clear();
        self.db.match_observation(observation, &mut self.scratch);
        if self.scratch.is_empty() {
            return;
        }
        let base = evidence();
        for hit in std::mem::take(&mut self.scratch) {
            let mut item = base.clone();
            if item.matched.is_none()
                && let Some(indicator) = self.db.indicators().get(hit.indicator as usize)
            {
                let matched: Vec<String> = observation
                    .values()
                    .iter()
                    .filter(|(a, _)| indicator.attributes.contains(a))
                    .map(|(a, v)| format!("{a}={v}"))
                    .collect();
                if !matched.is_empty() {
                    item.matched = Some(matched.join(" "));
                }
            }
            self.hits.push(hit);
            self.hit_evidence.push((category, item));
        }
    }

    /// Matches one value.
    pub fn observe_value(
        &mut self,
        category: Category,
        attribute: Attribute,
        value: &str,
        evidence: impl FnOnce() -> Evidence,
    ) {
        self.observe(category, &Observation::single(attribute, value), evidence);
    }

    /// Reports a heuristic finding (no indicator).
    pub fn heuristic(
        &mut self,
        rule: &str,
        severity: Severity,
        category: Category,
        title: String,
        evidence: Evidence,
    ) {
        self.findings.push(Finding::new(
            rule,
            severity,
            category,
            rule,
            title,
            None,
            vec![evidence],
        ));
    }

    /// Counts an item looked at that no indicator could name (heuristic-only scanners).
    pub fn count(&mut self) {
        *self.observed.entry(self.scanner).or_default() += 1;
    }

    /// Records a failed read, unless the path is just absent or the content boundary refused
    /// it (by design, not a gap in the scan).
    pub fn issue(&mut self, error: &FsError) {
        if !error.is_expected() {
            self.note(error.to_string());
        }
    }

    /// Records something that makes the scan incomplete (a walk cut short by its budget).
    pub fn note(&mut self, problem: String) {
        self.issues.push(ScanIssue {
            scanner: self.scanner,
            problem,
        });
    }

    /// Reads a text file for a scanner: `None` when absent or unreadable (then recorded).
    pub fn read_text(&mut self, path: &Path) -> Option<String> {
        match self.fs.read_text(path, self.config.max_text_bytes) {
            Ok(text) => Some(text),
            Err(error) => {
                self.issue(&error);
                None
            }
        }
    }

    /// Lists a directory for a scanner: empty when absent or unreadable (then recorded).
    pub fn list(&mut self, path: &Path) -> Vec<crate::fs::DirEntry> {
        match self.fs.list(path) {
            Ok(entries) => entries,
            Err(error) => {
                self.issue(&error);
                Vec::new()
            }
        }
    }

    /// Turns the indicator hits into findings, adds the heuristic ones, drops duplicates (the
    /// same id), and sorts by severity (highest first), then id.
    pub fn finish(self) -> ScanOutcome {
        let mut findings = self.findings;
        for satisfied in self.db.resolve(&self.hits) {
            let Some(indicator) = self.db.indicators().get(satisfied.indicator as usize) else {
                continue;
            };
            let reference = IndicatorRef {
                id: indicator.id.clone(),
                pattern: indicator.pattern.clone(),
                collections: self
                    .db
                    .collection_names(satisfied.indicator)
                    .into_iter()
                    .map(str::to_owned)
                    .collect(),
            };
            let label = reference.collections.join(", ");
            let complete_alone = satisfied
                .hits
                .iter()
                .all(|p| self.db.is_complete(self.hits[*p]));
            let groups: Vec<Vec<usize>> = if complete_alone {
                satisfied.hits.iter().map(|p| vec![*p]).collect()
            } else {
                vec![satisfied.hits.clone()]
            };
            for group in groups {
                let category = self.hit_evidence[group[0]].0;
                let evidence: Vec<Evidence> = group
                    .iter()
                    .map(|p| self.hit_evidence[*p].1.clone())
                    .collect();
                let severity = match category {
                    Category::Process | Category::Network | Category::Package => Severity::Critical,
                    _ => Severity::High,
                };
                let title = format!(
                    "{} indicator of {label} ({})",
                    match category {
                        Category::Process => "running process matches an",
                        Category::Network => "network connection matches an",
                        Category::Package => "installed app matches an",
                        Category::Dns => "DNS log matches an",
                        _ => "system artefact matches an",
                    },
                    evidence
                        .iter()
                        .map(|e| e.subject.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                findings.push(Finding::new(
                    &indicator.id,
                    severity,
                    category,
                    "ioc",
                    title,
                    Some(reference.clone()),
                    evidence,
                ));
            }
        }
        findings.sort_by(|a, b| b.severity.cmp(&a.severity).then_with(|| a.id.cmp(&b.id)));
        findings.dedup_by(|a, b| a.id == b.id);
        ScanOutcome {
            findings,
            observed: self.observed,
            issues: self.issues,
        }
    }
}

/// What a scan produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScanOutcome {
    /// Findings, highest severity first.
    pub findings: Vec<Finding>,
    /// Items each scanner looked at.
    pub observed: BTreeMap<&'static str, u64>,
    /// Reads that failed: the scan is incomplete when there are any.
    pub issues: Vec<ScanIssue>,
}
