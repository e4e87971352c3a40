//! Trust Security Center (`enigm-tscd`): the device's security posture, check by check.
//!
//! Checks are modelled on fwupd's Host Security ID and GrapheneOS Auditor. Each has a stable id,
//! a level (1–4, or 0 for runtime checks), a result, the observed value, why it matters and how
//! to fix it; [`score`] turns them into an HSI-style level and a runtime-issue flag. Every read
//! goes through a [`enigm_runtime::sysroot::Sysroot`], so the same code runs on a device and on
//! fixture trees. The daemon serves the posture on D-Bus ([`service`]) and re-evaluates on
//! file changes ([`watch`]), a timer, and `Refresh()` ([`engine`]).

pub mod checks;
pub mod config;
pub mod engine;
pub mod evaluate;
pub mod model;
pub mod mounts;
pub mod properties;
pub mod score;
pub mod service;
pub mod signals;
pub mod watch;

/// The client side of the D-Bus interface, for `enigmctl` and tests.
pub mod client {
    use crate::model::{Level, Posture};

    /// Proxy for `org.enigm.TrustSecurityCenter1`.
    #[zbus::proxy(
        interface = "org.enigm.TrustSecurityCenter1",
        default_service = "org.enigm.TrustSecurityCenter1",
        default_path = "/org/enigm/TrustSecurityCenter1"
    )]
    pub trait TrustSecurityCenter {
        /// Every check.
        fn get_posture(&self) -> zbus::Result<Posture>;
        /// Re-evaluate now (change class).
        fn refresh(&self) -> zbus::Result<Posture>;
        /// The level.
        #[zbus(property)]
        fn level(&self) -> zbus::Result<Level>;
        /// The runtime-issue flag.
        #[zbus(property)]
        fn runtime_issue(&self) -> zbus::Result<bool>;
        /// Last evaluation time.
        #[zbus(property)]
        fn last_evaluated(&self) -> zbus::Result<u64>;
        /// Posture changed.
        #[zbus(signal)]
        fn posture_changed(&self, level: Level, runtime_issue: bool) -> zbus::Result<()>;
    }
}
