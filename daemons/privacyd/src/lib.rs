//! Privacy Mode: fail-closed network lockdown and radio, camera and microphone kill switches.
//!
//! The logic is plain data and pure functions — [`profile`] (what a profile switches off),
//! [`ruleset`] (the nftables table it means), [`kernel`] (what the kernel reports, and how it
//! differs), [`status`] (the true state from what was read back) — and the side effects sit
//! behind small traits: [`firewall::Firewall`] (nf_tables over netlink, [`nft`]),
//! [`rfkill::RadioSwitch`] and [`sensors::SensorSwitch`] (sysfs, or Android's sensor-privacy
//! service: [`sensor_privacy`]). [`mode`] ties them to the persisted
//! [`state`]; [`service`] serves it on D-Bus.

pub mod config;
pub mod firewall;
pub mod kernel;
pub mod mode;
pub mod nft;
pub mod profile;
pub mod rfkill;
pub mod ruleset;
pub mod sensor_privacy;
pub mod sensors;
pub mod service;
pub mod state;
pub mod status;
