//! `enigm-defensed`: Active Defense on the system bus (`org.enigm.ActiveDefense1`) — scans of
//! the device's security signals against indicators of compromise, never its user content.
//!
//! - [`config`]: `/etc/enigm/defensed.toml` (indicators, feed key, schedule, scan settings);
//! - [`engine`]: loading indicators, scanning, persisting findings, the posture reading;
//! - [`service`]: the D-Bus interfaces over the engine.

pub mod config;
pub mod engine;
pub mod service;
