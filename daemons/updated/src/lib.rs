//! `enigm-updated`: verified A/B updates on the system bus (`org.enigm.Update1`).
//!
//! - [`config`]: `/etc/enigm/updated.toml` (repository, trusted image keys, disk, slot);
//! - [`service`]: the D-Bus interface over `enigm-update-engine`.

pub mod config;
pub mod service;
