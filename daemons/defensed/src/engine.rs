//! The daemon's logic, without D-Bus: indicators loaded once at start (the image's bundles
//! and, when present, the signed feed, refused unless its signature verifies), scans over the
//! sysroot, the last findings persisted in the state directory (written to a temporary file,
//! synced, renamed), and the reading `enigm-tscd` takes through `PostureSignal1`.

use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use enigm_defense_scan::scanners::packages::{AppInventory, default_inventories};
use enigm_defense_scan::{ContentBoundary, Finding, ScanFs, Severity, run};
use enigm_ioc::{IocDb, IocDbBuilder};
use enigm_runtime::sysroot::Sysroot;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::config::DefensedConfig;

/// Why the engine cannot start or persist.
#[derive(Debug, Error)]
pub enum EngineError {
    /// Indicators could not be loaded (malformed bundle, refused feed).
    #[error("loading indicators: {0}")]
    Indicators(#[from] enigm_ioc::LoadError),
    /// The feed exists but its key cannot be read.
    #[error("reading the feed key {path}: {error}")]
    FeedKey {
        /// The key's system path.
        path: String,
        /// Why.
        #[source]
        error: std::io::Error,
    },
    /// The feed is older than one this device already used (a replayed feed).
    #[error("the IOC feed's sequence {offered} is older than {accepted}, which was already used")]
    FeedRollback {
        /// The sequence of the feed in place.
        offered: u64,
        /// The highest sequence accepted before.
        accepted: u64,
    },
    /// No indicator at all: scanning would claim too much.
    #[error("no indicators loaded (defense.ioc_paths and defense.feed)")]
    NoIndicators,
    /// The findings file cannot be read or written.
    #[error("findings store {path}: {error}")]
    Store {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        error: std::io::Error,
    },
    /// The findings file is not what this daemon wrote.
    #[error("findings store {path}: {error}")]
    StoreFormat {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        error: serde_json::Error,
    },
}

/// What is persisted after each scan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanRecord {
    /// Seconds since the epoch when the scan finished.
    pub scanned_at: u64,
    /// Milliseconds it took.
    pub duration_ms: u64,
    /// Whether every signal could be read.
    pub complete: bool,
    /// Findings, highest severity first.
    pub findings: Vec<Finding>,
}

impl ScanRecord {
    /// The highest severity, `none` without findings.
    pub fn highest(&self) -> String {
        self.findings
            .iter()
            .map(|f| f.severity)
            .max()
            .map_or_else(|| "none".to_owned(), |s| s.to_string())
    }

    /// The findings' ids, sorted.
    pub fn ids(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = self.findings.iter().map(|f| f.id.as_str()).collect();
        ids.sort_unstable();
        ids
    }
}

/// `(result, observed)` for `enigm-tscd`'s `signal.defense`: fail on any high or critical
/// finding; unavailable before the first scan, or when the last one was incomplete and found
/// nothing serious; pass otherwise.
pub fn posture_reading(record: Option<&ScanRecord>) -> (String, String) {
    let Some(record) = record else {
        return ("unavailable".into(), "no scan has run yet".into());
    };
    let serious = record
        .findings
        .iter()
        .filter(|f| f.severity >= Severity::High)
        .count();
    if serious > 0 {
        return (
            "fail".into(),
            format!(
                "{serious} high or critical finding(s) of {}; highest {}",
                record.findings.len(),
                record.highest()
            ),
        );
    }
    if !record.complete {
        return (
            "unavailable".into(),
            "the last scan could not read every signal".into(),
        );
    }
    let observed = if record.findings.is_empty() {
        "no findings".to_owned()
    } else {
        format!(
            "no indicator of compromise; {} lower-severity finding(s)",
            record.findings.len()
        )
    };
    ("pass".into(), observed)
}

/// Refuses a feed older than the newest one used before (kept in `state_dir/feed-sequence`),
/// and records `sequence` when it is newer.
pub fn accept_feed_sequence(state_dir: &Path, sequence: u64) -> Result<(), EngineError> {
    let path = state_dir.join("feed-sequence");
    let io = |error| EngineError::Store {
        path: path.clone(),
        error,
    };
    let accepted = match std::fs::read_to_string(&path) {
        Ok(text) => text.trim().parse::<u64>().map_err(|_| {
            io(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "not a sequence number",
            ))
        })?,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => 0,
        Err(error) => return Err(io(error)),
    };
    if sequence < accepted {
        return Err(EngineError::FeedRollback {
            offered: sequence,
            accepted,
        });
    }
    if sequence > accepted {
        let temporary = path.with_extension("tmp");
        std::fs::write(&temporary, format!("{sequence}\n")).map_err(io)?;
        std::fs::rename(&temporary, &path).map_err(io)?;
    }
    Ok(())
}

/// The engine.
pub struct Engine {
    sysroot: Sysroot,
    config: DefensedConfig,
    db: IocDb,
    inventories: Vec<Box<dyn AppInventory>>,
    last: Option<ScanRecord>,
    store: PathBuf,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("indicators", &self.db.indicators().len())
            .field("last", &self.last.as_ref().map(|r| r.scanned_at))
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Loads the indicators and the last persisted record.
    pub fn load(sysroot: Sysroot, config: DefensedConfig) -> Result<Self, EngineError> {
        let mut builder = IocDbBuilder::new();
        let paths: Vec<PathBuf> = config
            .defense
            .ioc_paths
            .iter()
            .map(|p| sysroot.path(p))
            .filter(|p| p.exists())
            .collect();
        enigm_ioc::load::add_paths(&mut builder, &paths)?;
        let feed = sysroot.path(&config.defense.feed);
        if feed.exists() {
            let key_path = sysroot.path(&config.defense.feed_key);
            let pem = std::fs::read(&key_path).map_err(|error| EngineError::FeedKey {
                path: config.defense.feed_key.clone(),
                error,
            })?;
            let mut signature = feed.clone().into_os_string();
            signature.push(".sig");
            let sequence =
                enigm_ioc::load::add_signed_feed(&mut builder, &feed, Path::new(&signature), &pem)?;
            accept_feed_sequence(Path::new(&config.defense.state_dir), sequence)?;
            tracing::info!(sequence, "signed IOC feed loaded");
        }
        let db = builder.build();
        if db.indicators().is_empty() {
            return Err(EngineError::NoIndicators);
        }
        let stats = db.stats();
        tracing::info!(
            indicators = stats.skipped.indicators,
            collections = stats.collections,
            unknown_types = stats.skipped.unknown_types.len(),
            "indicators loaded"
        );
        let store = PathBuf::from(&config.defense.state_dir).join("findings.json");
        let last =
            match std::fs::read(&store) {
                Ok(bytes) => Some(serde_json::from_slice(&bytes).map_err(|error| {
                    EngineError::StoreFormat {
                        path: store.clone(),
                        error,
                    }
                })?),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
                Err(error) => {
                    return Err(EngineError::Store {
                        path: store.clone(),
                        error,
                    });
                }
            };
        let inventories = default_inventories();
        Ok(Self {
            sysroot,
            config,
            db,
            inventories,
            last,
            store,
        })
    }

    /// The last scan's record.
    pub fn last(&self) -> Option<&ScanRecord> {
        self.last.as_ref()
    }

    /// Runs a full scan, persists it, and returns whether the set of findings changed.
    pub fn scan(&mut self) -> Result<bool, EngineError> {
        let started = Instant::now();
        let fs = ScanFs::new(
            self.sysroot.clone(),
            ContentBoundary::new(self.config.scan.content_boundary.iter()),
        );
        let outcome = run(&fs, &self.db, &self.config.scan, &self.inventories);
        let record = ScanRecord {
            scanned_at: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            complete: outcome.issues.is_empty(),
            findings: outcome.findings,
        };
        for issue in &outcome.issues {
            tracing::warn!(scanner = issue.scanner, problem = %issue.problem, "signal not read");
        }
        let changed = self.last.as_ref().map(ScanRecord::ids) != Some(record.ids());
        self.persist(&record)?;
        tracing::info!(
            findings = record.findings.len(),
            highest = %record.highest(),
            complete = record.complete,
            duration_ms = record.duration_ms,
            "scan finished"
        );
        self.last = Some(record);
        Ok(changed)
    }

    fn persist(&self, record: &ScanRecord) -> Result<(), EngineError> {
        let io = |error| EngineError::Store {
            path: self.store.clone(),
            error,
        };
        let bytes =
            serde_json::to_vec_pretty(record).map_err(|error| EngineError::StoreFormat {
                path: self.store.clone(),
                error,
            })?;
        let temporary = self.store.with_extension("json.tmp");
        {
            use std::io::Write;
            let mut file = std::fs::File::create(&temporary).map_err(io)?;
            file.write_all(&bytes).map_err(io)?;
            file.sync_all().map_err(io)?;
        }
        std::fs::rename(&temporary, &self.store).map_err(io)
    }

    /// The `PostureSignal1` reading.
    pub fn signal(&self) -> (String, String) {
        posture_reading(self.last.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use enigm_defense_scan::{Category, Evidence};

    fn finding(severity: Severity) -> Finding {
        Finding::new(
            "rule",
            severity,
            Category::File,
            "rule",
            "t".into(),
            None,
            vec![Evidence::new("file", format!("/x/{severity}"))],
        )
    }

    fn record(complete: bool, severities: &[Severity]) -> ScanRecord {
        ScanRecord {
            scanned_at: 1,
            duration_ms: 1,
            complete,
            findings: severities.iter().map(|s| finding(*s)).collect(),
        }
    }

    #[test]
    fn older_feeds_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(accept_feed_sequence(dir.path(), 5).is_ok());
        assert!(accept_feed_sequence(dir.path(), 5).is_ok());
        assert!(matches!(
            accept_feed_sequence(dir.path(), 4),
            Err(EngineError::FeedRollback {
                offered: 4,
                accepted: 5
            })
        ));
        assert!(accept_feed_sequence(dir.path(), 9).is_ok());
        assert_eq!(
            std::fs::read_to_string(dir.path().join("feed-sequence")).unwrap(),
            "9\n"
        );
    }

    #[test]
    fn posture_readings() {
        let cases = [
            (None, "unavailable"),
            (Some(record(true, &[])), "pass"),
            (
                Some(record(true, &[Severity::Medium, Severity::Low])),
                "pass",
            ),
            (
                Some(record(true, &[Severity::Medium, Severity::High])),
                "fail",
            ),
            (Some(record(false, &[Severity::Critical])), "fail"),
            (Some(record(false, &[])), "unavailable"),
            (Some(record(false, &[Severity::Medium])), "unavailable"),
        ];
        for (record, expected) in cases {
            let (result, observed) = posture_reading(record.as_ref());
            assert_eq!(result, expected, "{observed}");
        }
        assert_eq!(
            record(true, &[Severity::Low, Severity::High]).highest(),
            "high"
        );
        assert_eq!(record(true, &[]).highest(), "none");
    }
}
