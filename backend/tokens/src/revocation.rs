//! The revocation check relying parties consult, and a cacheable snapshot of it.
//!
//! Every device has a revocation *epoch*, a counter the backend bumps on every change of the
//! device's state (suspend, revoke, retire, reinstate, approve). A result carries the epoch at
//! issue; a relying party refuses it when the device's current epoch is higher (the device
//! changed state since), or when the check does not know the device at all. A token whose
//! epoch is *higher* than the check's is accepted: the check is a stale snapshot, and the
//! issuer vouched for that epoch.
//!
//! [`RevocationList`] is the snapshot the backend publishes: device → current epoch, with a
//! version and issue time, optionally signed with the same key ring as the results
//! ([`RevocationList::sign`] / [`RevocationList::open`]) so relying parties can fetch it over
//! any channel and cache it.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::keys::KeyRing;
use crate::token::{TokenError, open_compact, sign_compact};

/// The `typ` of a signed revocation list.
pub const LIST_TYP: &str = "enigm-rl";
/// Largest accepted signed list, in bytes.
pub const MAX_SIGNED_LIST_LEN: usize = 32 * 1024 * 1024;

/// Supplies a device's current revocation epoch.
pub trait RevocationCheck {
    /// The device's current epoch, or `None` if the device is unknown (its results are refused).
    fn current_epoch(&self, device: &str) -> Option<u64>;
}

impl RevocationCheck for HashMap<String, u64> {
    fn current_epoch(&self, device: &str) -> Option<u64> {
        self.get(device).copied()
    }
}

impl RevocationCheck for BTreeMap<String, u64> {
    fn current_epoch(&self, device: &str) -> Option<u64> {
        self.get(device).copied()
    }
}

impl<F: Fn(&str) -> Option<u64>> RevocationCheck for F {
    fn current_epoch(&self, device: &str) -> Option<u64> {
        self(device)
    }
}

/// A snapshot of every device's epoch, for relying parties to cache.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevocationList {
    /// Increases with every published snapshot; a cache keeps the highest it has seen.
    pub version: u64,
    /// When the snapshot was taken, seconds since the Unix epoch.
    pub issued_at: u64,
    /// Device handle → current epoch. Devices absent here have their results refused.
    pub devices: BTreeMap<String, u64>,
}

impl RevocationList {
    /// An empty snapshot.
    pub fn new(version: u64, issued_at: u64) -> Self {
        Self {
            version,
            issued_at,
            devices: BTreeMap::new(),
        }
    }

    /// Sets a device's epoch.
    pub fn set(&mut self, device: impl Into<String>, epoch: u64) {
        self.devices.insert(device.into(), epoch);
    }

    /// Signs the snapshot into the compact form (header `typ` `enigm-rl`).
    pub fn sign(&self, keyring: &KeyRing) -> Result<String, TokenError> {
        let payload = serde_json::to_vec(self).map_err(|e| TokenError::Encode(e.to_string()))?;
        sign_compact(LIST_TYP, &payload, keyring)
    }

    /// Verifies a signed snapshot and returns it. Freshness (`version`, `issued_at`) is the
    /// caller's policy.
    pub fn open(signed: &str, keyring: &KeyRing) -> Result<Self, TokenError> {
        let payload = open_compact(signed, LIST_TYP, keyring, MAX_SIGNED_LIST_LEN)?;
        serde_json::from_slice(&payload)
            .map_err(|_| TokenError::Malformed("revocation list is not the expected JSON"))
    }
}

impl RevocationCheck for RevocationList {
    fn current_epoch(&self, device: &str) -> Option<u64> {
        self.devices.get(device).copied()
    }
}
