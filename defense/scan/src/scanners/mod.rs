//! The scanners. Each reads one kind of security signal through [`crate::fs::ScanFs`] and
//! reports observations (matched against the indicators) and heuristic findings into a
//! [`crate::context::Scan`]. None reads user content: processes are known by name and
//! executable (never arguments beyond the program, never memory), files by name, path and
//! hash (only in system locations), logs only for hostnames.

pub mod dns;
pub mod files;
pub mod kernel;
pub mod mounts;
pub mod network;
pub mod packages;
pub mod persistence;
pub mod processes;
pub mod profiles;
pub mod properties;
pub mod setuid;
