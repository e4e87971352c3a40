//! Turning Privacy Mode on and off, and reconciling at start, over the three backends
//! ([`Firewall`], [`RadioSwitch`], [`SensorSwitch`]) and the persisted state.
//!
//! Fail-closed order: the choice is persisted before anything is switched (a crash half-way
//! is finished at the next start), the firewall goes first, and a failing step leaves what
//! was already switched in force; the status then reads "degraded". Turning off undoes
//! exactly what the daemon switched: our table, the radios and devices it recorded.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::firewall::{Firewall, FirewallError, apply_verified};
use crate::profile::{Profile, ProfileError};
use crate::rfkill::{RadioSwitch, RfkillError, plan};
use crate::ruleset::{Ruleset, TABLE};
use crate::sensors::{Sensor, SensorError, SensorSwitch};
use crate::state::{self, Persisted, StateError};
use crate::status::{Observations, Status, intended, observe_network, summarize};

/// A change that failed.
#[derive(Debug, thiserror::Error)]
pub enum ModeError {
    /// No such profile.
    #[error(transparent)]
    Profile(#[from] ProfileError),
    /// The firewall.
    #[error(transparent)]
    Firewall(#[from] FirewallError),
    /// rfkill.
    #[error(transparent)]
    Radio(#[from] RfkillError),
    /// A camera, microphone or GNSS switch.
    #[error(transparent)]
    Sensor(#[from] SensorError),
    /// The state file.
    #[error(transparent)]
    State(#[from] StateError),
}

/// The kernel-side switches.
pub struct Backends {
    /// nftables.
    pub firewall: Box<dyn Firewall>,
    /// rfkill.
    pub radios: Box<dyn RadioSwitch>,
    /// Camera, microphone, GNSS.
    pub sensors: Box<dyn SensorSwitch>,
}

/// Privacy Mode.
pub struct PrivacyMode {
    backends: Backends,
    state_file: PathBuf,
    profiles: BTreeMap<String, Profile>,
    tor_uid: Option<u32>,
    state: Persisted,
    /// What the state file holds, so unchanged state is not written (and fsynced) again.
    saved: Option<Persisted>,
}

fn wanted_sensors(profile: &Profile) -> Vec<Sensor> {
    [
        (Sensor::Camera, profile.camera_off),
        (Sensor::Microphone, profile.microphone_off),
        (Sensor::Location, profile.location_off),
    ]
    .into_iter()
    .filter(|(_, off)| *off)
    .map(|(sensor, _)| sensor)
    .collect()
}

impl PrivacyMode {
    /// Privacy Mode over `backends`, with the validated `profiles`, persisting to
    /// `state_file`, starting from the persisted `state`.
    pub fn new(
        backends: Backends,
        state_file: PathBuf,
        profiles: BTreeMap<String, Profile>,
        tor_uid: Option<u32>,
        state: Persisted,
    ) -> Self {
        Self {
            backends,
            state_file,
            profiles,
            tor_uid,
            state,
            saved: None,
        }
    }

    /// The persisted choice.
    pub fn persisted(&self) -> &Persisted {
        &self.state
    }

    /// The profile names.
    pub fn profile_names(&self) -> impl Iterator<Item = &str> {
        self.profiles.keys().map(String::as_str)
    }

    /// Turns profile `name` on (or switches to it).
    pub fn enable(&mut self, name: &str) -> Result<Status, ModeError> {
        let profile = self
            .profiles
            .get(name)
            .cloned()
            .ok_or_else(|| ProfileError::Unknown(name.to_owned()))?;
        self.apply(name, profile, self.tor_uid)?;
        self.status()
    }

    fn save(&mut self) -> Result<(), ModeError> {
        if self.saved.as_ref() == Some(&self.state) {
            return Ok(());
        }
        state::save(&self.state_file, &self.state)?;
        self.saved = Some(self.state.clone());
        Ok(())
    }

    fn apply(
        &mut self,
        name: &str,
        profile: Profile,
        tor_uid: Option<u32>,
    ) -> Result<(), ModeError> {
        self.state.enabled = true;
        self.state.profile = name.to_owned();
        self.state.resolved = Some(profile.clone());
        self.state.tor_uid = tor_uid;
        self.save()?;

        match Ruleset::for_profile(&profile, tor_uid) {
            Some(ruleset) => apply_verified(self.backends.firewall.as_mut(), &ruleset)?,
            None => self.backends.firewall.remove(TABLE)?,
        }
        tracing::info!(profile = name, "network lockdown verified in the kernel");

        let current = self.backends.radios.list()?;
        for (index, radio, block) in plan(&current, &profile.radios) {
            self.backends.radios.set(index, radio, block)?;
            if !self.state.radios.contains(&(index, radio)) {
                self.state.radios.push((index, radio));
            }
            self.save()?;
        }
        let mut released = Vec::new();
        self.state.radios.retain(|(index, radio)| {
            let keep = profile.radios.contains(radio);
            if !keep {
                released.push((*index, *radio));
            }
            keep
        });
        for (index, radio) in released {
            self.backends.radios.set(index, radio, false)?;
        }

        let wanted = wanted_sensors(&profile);
        for sensor in &wanted {
            for cut in self.backends.sensors.switch_off(*sensor)? {
                if !self.state.cuts.contains(&(*sensor, cut.clone())) {
                    self.state.cuts.push((*sensor, cut));
                }
            }
            self.save()?;
        }
        let (keep, release): (Vec<_>, Vec<_>) = std::mem::take(&mut self.state.cuts)
            .into_iter()
            .partition(|(sensor, _)| wanted.contains(sensor));
        self.state.cuts = keep;
        let release: Vec<_> = release.into_iter().map(|(_, cut)| cut).collect();
        self.backends.sensors.restore(&release)?;
        self.save()?;
        Ok(())
    }

    /// Turns Privacy Mode off: removes our table, unblocks the radios and restores the devices
    /// the daemon switched off.
    pub fn disable(&mut self) -> Result<Status, ModeError> {
        self.backends.firewall.remove(TABLE)?;
        for (index, radio) in std::mem::take(&mut self.state.radios) {
            self.backends.radios.set(index, radio, false)?;
        }
        let cuts: Vec<_> = std::mem::take(&mut self.state.cuts)
            .into_iter()
            .map(|(_, cut)| cut)
            .collect();
        self.backends.sensors.restore(&cuts)?;
        self.state = Persisted::default();
        self.save()?;
        tracing::info!("Privacy Mode off");
        self.status()
    }

    /// While a profile is on: reads the kernel back and, when anything drifted from the profile
    /// (a radio unblocked, a capture device plugged in, the table changed), applies the
    /// profile again. The new status when it did, `None` when nothing was to do.
    pub fn enforce(&mut self) -> Result<Option<Status>, ModeError> {
        if !self.state.enabled {
            return Ok(None);
        }
        let before = self.status()?;
        if before.state == crate::status::ModeState::On {
            return Ok(None);
        }
        let drifted: Vec<&str> = before
            .components
            .iter()
            .filter(|c| !c.ok)
            .map(|c| c.name.as_str())
            .collect();
        tracing::warn!(
            ?drifted,
            "Privacy Mode drifted in the kernel: applying it again"
        );
        self.reconcile().map(Some)
    }

    /// At start, before serving: makes the kernel match the persisted choice (re-applies an
    /// enabled profile as it was resolved then; removes a stale table when off).
    pub fn reconcile(&mut self) -> Result<Status, ModeError> {
        if self.state.enabled {
            let name = self.state.profile.clone();
            let profile = match self.state.resolved.clone() {
                Some(profile) => profile,
                None => self
                    .profiles
                    .get(&name)
                    .cloned()
                    .ok_or_else(|| ProfileError::Unknown(name.clone()))?,
            };
            let tor_uid = self.state.tor_uid;
            self.apply(&name, profile, tor_uid)?;
        } else if self.backends.firewall.read(TABLE)?.is_some() {
            tracing::warn!("Privacy Mode is off but our table was in force: removing it");
            self.backends.firewall.remove(TABLE)?;
        }
        self.status()
    }

    /// The status, read from the kernel now.
    pub fn status(&mut self) -> Result<Status, ModeError> {
        let ruleset = intended(&self.state);
        let actual = self.backends.firewall.read(TABLE)?;
        let mut live = BTreeMap::new();
        for sensor in [Sensor::Camera, Sensor::Microphone, Sensor::Location] {
            live.insert(sensor, self.backends.sensors.live(sensor)?);
        }
        let observations = Observations {
            network: observe_network(ruleset.as_ref(), actual.as_ref()),
            radios: self.backends.radios.list()?,
            live,
        };
        Ok(summarize(&self.state, &observations))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::FakeFirewall;
    use crate::profile::{Radio, built_in};
    use crate::rfkill::{FakeRadios, RadioState};
    use crate::sensors::FakeSensors;
    use crate::status::ModeState;

    fn mode(dir: &std::path::Path) -> PrivacyMode {
        let radios = FakeRadios::default();
        if let Ok(mut states) = radios.states.lock() {
            for (index, radio) in [Radio::Wlan, Radio::Bluetooth, Radio::Nfc]
                .into_iter()
                .enumerate()
            {
                states.push(RadioState {
                    index: index as u32,
                    radio,
                    soft: false,
                    hard: false,
                });
            }
        }
        let sensors = FakeSensors {
            devices: vec![
                (Sensor::Camera, "cam0".into(), true),
                (Sensor::Microphone, "mic0".into(), true),
            ],
        };
        let profiles = built_in()
            .into_iter()
            .map(|(name, p)| {
                let resolved = p.resolve(&name, &["wg0".into()]).unwrap();
                (name, resolved)
            })
            .collect();
        PrivacyMode::new(
            Backends {
                firewall: Box::new(FakeFirewall::default()),
                radios: Box::new(radios),
                sensors: Box::new(sensors),
            },
            dir.join("state.json"),
            profiles,
            None,
            Persisted::default(),
        )
    }

    #[test]
    fn enable_switch_profiles_and_disable() {
        let dir = tempfile::tempdir().unwrap();
        let mut mode = mode(dir.path());
        assert_eq!(mode.status().unwrap().state, ModeState::Off);

        let status = mode.enable("lockdown").unwrap();
        assert_eq!(status.state, ModeState::On, "{status:?}");
        assert_eq!(
            mode.persisted().radios,
            [(1, Radio::Bluetooth), (2, Radio::Nfc)]
        );
        assert_eq!(mode.persisted().cuts.len(), 2);
        let saved = state::load(&dir.path().join("state.json"))
            .unwrap()
            .unwrap();
        assert_eq!(&saved, mode.persisted());

        // travel keeps the camera and microphone on: switching gives them back.
        let status = mode.enable("travel").unwrap();
        assert_eq!(status.state, ModeState::On, "{status:?}");
        assert!(mode.persisted().cuts.is_empty());
        assert_eq!(mode.persisted().radios.len(), 2);

        let status = mode.disable().unwrap();
        assert_eq!(status.state, ModeState::Off, "{status:?}");
        assert_eq!(mode.persisted(), &Persisted::default());
        assert!(matches!(
            mode.enable("nope"),
            Err(ModeError::Profile(ProfileError::Unknown(_)))
        ));
    }

    #[test]
    fn enforcement_switches_back_what_drifted() {
        let dir = tempfile::tempdir().unwrap();
        let mut mode = mode(dir.path());
        assert!(mode.enforce().unwrap().is_none(), "off: nothing to enforce");
        mode.enable("lockdown").unwrap();
        assert!(mode.enforce().unwrap().is_none(), "on and in force");
        // Someone unblocks bluetooth.
        mode.backends
            .radios
            .set(1, Radio::Bluetooth, false)
            .unwrap();
        assert_eq!(mode.status().unwrap().state, ModeState::Degraded);
        let status = mode.enforce().unwrap().unwrap();
        assert_eq!(status.state, ModeState::On, "{status:?}");
        assert!(mode.backends.radios.list().unwrap()[1].soft);
    }

    #[test]
    fn reconcile_reapplies_the_persisted_choice() {
        let dir = tempfile::tempdir().unwrap();
        let mut first = mode(dir.path());
        first.enable("lockdown").unwrap();
        // A new daemon (fresh kernel fakes: a reboot) with the persisted state.
        let persisted = state::load(&dir.path().join("state.json"))
            .unwrap()
            .unwrap();
        let mut second = mode(dir.path());
        second.state = persisted;
        assert_eq!(second.status().unwrap().state, ModeState::Degraded);
        assert_eq!(second.reconcile().unwrap().state, ModeState::On);
    }
}
