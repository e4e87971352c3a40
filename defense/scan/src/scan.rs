//! A full scan: every scanner in turn over one device tree, then the findings.

use std::time::Duration;

use enigm_ioc::{IocDb, LoadStats};
use serde::Serialize;

use crate::config::ScanConfig;
use crate::context::{Scan, ScanOutcome};
use crate::fs::ScanFs;
use crate::scanners::packages::AppInventory;
use crate::scanners::{
    dns, files, kernel, mounts, network, packages, persistence, processes, profiles, properties,
    setuid,
};

/// Runs every scanner and returns the findings.
pub fn run(
    fs: &ScanFs,
    db: &IocDb,
    config: &ScanConfig,
    inventories: &[Box<dyn AppInventory>],
) -> ScanOutcome {
    let mut scan = Scan::new(fs, db, config);
    processes::scan(&mut scan);
    packages::scan(&mut scan, inventories);
    properties::scan(&mut scan);
    profiles::scan(&mut scan);
    files::scan(&mut scan);
    network::scan(&mut scan);
    dns::scan(&mut scan);
    persistence::scan(&mut scan);
    kernel::scan(&mut scan);
    setuid::scan(&mut scan);
    mounts::scan(&mut scan);
    scan.finish()
}

/// What `enigmctl defense scan --json` prints and `enigm-defensed` keeps.
#[derive(Debug, Clone, Serialize)]
pub struct ScanReport {
    /// The tree scanned (`/` on a device).
    pub root: String,
    /// Whether every signal could be read (no issues).
    pub complete: bool,
    /// Scan time in milliseconds.
    pub duration_ms: u128,
    /// The indicators used.
    pub indicators: LoadStats,
    /// Findings, issues and counts.
    #[serde(flatten)]
    pub outcome: ScanOutcome,
}

impl ScanReport {
    /// A report of a finished scan.
    pub fn new(root: String, indicators: LoadStats, outcome: ScanOutcome, took: Duration) -> Self {
        Self {
            root,
            complete: outcome.issues.is_empty(),
            duration_ms: took.as_millis(),
            indicators,
            outcome,
        }
    }
}
