//! `enigm-updated`: verified A/B updates on the system bus (`org.enigm.Update1`).
//!
//! - [`config`]: `/etc/enigm/updated.toml` (repository, trusted image keys, disk, slot);
//! - [`service`]: the D-Bus interface over `enigm-update-engine`;
//! - [`health`]: the health check of a newly booted slot (its services on the bus) and its
//!   confirmation;
//! - [`schedule`]: checks on a timer.

pub mod config;
pub mod health;
pub mod schedule;
pub mod service;
