//! A cache of looked-up devices, by account, for checking the senders of received envelopes
//! without a lookup per message. A sender missing from the cache triggers a fresh lookup of
//! its account (it may be new); a device no longer listed (revoked since) stops verifying.

use std::collections::HashMap;

use enigm_envelope::keys::{DeviceId, PublicDeviceKeys};

use crate::bundle::Lookup;

/// Devices by account id.
#[derive(Debug, Default)]
pub struct Directory {
    accounts: HashMap<String, Vec<PublicDeviceKeys>>,
}

impl Directory {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// The cached keys of device `id`.
    pub fn get(&self, id: &DeviceId) -> Option<PublicDeviceKeys> {
        self.accounts
            .get(&id.account)?
            .iter()
            .find(|k| k.id == *id)
            .cloned()
    }

    /// Replaces what is cached for the lookup's account.
    pub fn store(&mut self, lookup: &Lookup) {
        self.accounts.insert(
            lookup.account_id.clone(),
            lookup.devices.iter().map(|d| d.keys.clone()).collect(),
        );
    }
}
