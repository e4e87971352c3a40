//! Active Defense scanners: the device's security signals — processes, packages, properties,
//! files in system locations, connections, DNS logs, persistence points, the kernel, setuid
//! binaries, mounts, configuration profiles — matched against indicators of compromise
//! ([`enigm_ioc`]) and a few heuristics, producing [`finding::Finding`]s.
//!
//! Everything is read through [`fs::ScanFs`] under a [`enigm_runtime::sysroot::Sysroot`], so
//! the same scan runs on the live device (`/`), a mounted image or an extracted dump, and
//! nothing inside the configured user-content locations is ever opened or listed.

pub mod config;
pub mod context;
pub mod finding;
pub mod fs;
pub mod scan;
pub mod scanners;
pub mod walk;

pub use config::ScanConfig;
pub use context::{ScanIssue, ScanOutcome};
pub use finding::{Category, Evidence, Finding, Severity};
pub use fs::{ContentBoundary, ScanFs};
pub use scan::{ScanReport, run};
