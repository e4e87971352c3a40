//! The true state of Privacy Mode, computed from what the kernel reports (the nftables table,
//! rfkill, the live capture devices) against what the owner chose. Pure: the observations are
//! taken by `crate::mode`.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::kernel::{Difference, differences};
use crate::profile::{NetworkMode, Profile, Radio};
use crate::rfkill::RadioState;
use crate::ruleset::Ruleset;
use crate::sensors::Sensor;
use crate::state::Persisted;

/// Whether the mode holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ModeState {
    /// Off, and nothing of ours is in force.
    Off,
    /// On, and every switch reads back as the profile wants.
    On,
    /// The kernel does not match the choice (a switch failed, or someone changed it).
    Degraded,
}

impl ModeState {
    /// `off`, `on`, `degraded`.
    pub fn name(self) -> &'static str {
        match self {
            ModeState::Off => "off",
            ModeState::On => "on",
            ModeState::Degraded => "degraded",
        }
    }
}

/// One switch: what the profile wants, what the kernel shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Component {
    /// `network`, a radio type, `camera`, `microphone`, `location`.
    pub name: String,
    /// What the profile wants.
    pub wanted: String,
    /// What was read back.
    pub observed: String,
    /// Whether they agree.
    pub ok: bool,
}

/// The whole status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Status {
    /// Off, on, or degraded.
    pub state: ModeState,
    /// The profile that is on (empty when off).
    pub profile: String,
    /// Each switch.
    pub components: Vec<Component>,
}

impl Status {
    /// The `org.enigm.PostureSignal1` reading: `pass` when the kernel matches the owner's
    /// choice, `fail` otherwise.
    pub fn signal(&self) -> (String, String) {
        match self.state {
            ModeState::Off => ("pass".into(), "Privacy Mode is off".into()),
            ModeState::On => (
                "pass".into(),
                format!(
                    "Privacy Mode is on (profile {}), read back from the kernel",
                    self.profile
                ),
            ),
            ModeState::Degraded => {
                let failing: Vec<String> = self
                    .components
                    .iter()
                    .filter(|c| !c.ok)
                    .map(|c| format!("{}: wanted {}, found {}", c.name, c.wanted, c.observed))
                    .collect();
                ("fail".into(), failing.join("; "))
            }
        }
    }
}

/// What was read from the kernel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observations {
    /// Differences of the nftables table from the profile's (when the profile has one), or
    /// whether our table exists at all (when it has none).
    pub network: NetworkObservation,
    /// The rfkill switches.
    pub radios: Vec<RadioState>,
    /// Live capture devices per sensor.
    pub live: BTreeMap<Sensor, usize>,
}

/// The firewall as read back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum NetworkObservation {
    /// Compared with the intended table.
    Compared(Vec<Difference>),
    /// Our table is there (or not), with nothing to compare it with.
    #[default]
    Absent,
    /// Our table is there, with nothing to compare it with.
    Present,
}

/// The intended table of a persisted choice, if it has one.
pub fn intended(state: &Persisted) -> Option<Ruleset> {
    if !state.enabled {
        return None;
    }
    state
        .resolved
        .as_ref()
        .and_then(|p| Ruleset::for_profile(p, state.tor_uid))
}

/// How the network observation is taken: compare with `intended`, or only look for the table.
pub fn observe_network(
    intended: Option<&Ruleset>,
    actual: Option<&crate::kernel::KernelTable>,
) -> NetworkObservation {
    match intended {
        Some(ruleset) => {
            NetworkObservation::Compared(differences(&ruleset.expected_table(), actual))
        }
        None if actual.is_some() => NetworkObservation::Present,
        None => NetworkObservation::Absent,
    }
}

fn network_wanted(profile: &Profile) -> String {
    match profile.network {
        NetworkMode::Open => "open".into(),
        NetworkMode::Offline => "offline (loopback only)".into(),
        NetworkMode::TunnelOnly => {
            let mut paths = profile.tunnels.clone();
            if profile.tor {
                paths.push("tor".into());
            }
            format!("only through {}", paths.join(", "))
        }
    }
}

fn radio_component(radio: Radio, radios: &[RadioState]) -> Component {
    let of_type: Vec<&RadioState> = radios.iter().filter(|s| s.radio == radio).collect();
    let on = of_type.iter().filter(|s| !s.blocked()).count();
    let observed = if of_type.is_empty() {
        "absent".to_owned()
    } else if on == 0 {
        "off".to_owned()
    } else {
        format!("on ({on} of {})", of_type.len())
    };
    Component {
        name: radio.name().into(),
        wanted: "off".into(),
        ok: on == 0,
        observed,
    }
}

/// The status of `state` given what was read from the kernel.
pub fn summarize(state: &Persisted, observed: &Observations) -> Status {
    let mut components = Vec::new();
    let profile = state.resolved.as_ref().filter(|_| state.enabled);
    let network = match (&observed.network, profile) {
        (NetworkObservation::Compared(found), Some(profile)) => Component {
            name: "network".into(),
            wanted: network_wanted(profile),
            observed: if found.is_empty() {
                "nftables table verified".into()
            } else {
                found
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            },
            ok: found.is_empty(),
        },
        (NetworkObservation::Present, _) | (NetworkObservation::Compared(_), None) => Component {
            name: "network".into(),
            wanted: "open".into(),
            observed: "a lockdown table is in force".into(),
            ok: false,
        },
        (NetworkObservation::Absent, _) => Component {
            name: "network".into(),
            wanted: "open".into(),
            observed: "open".into(),
            ok: true,
        },
    };
    components.push(network);
    if let Some(profile) = profile {
        for radio in &profile.radios {
            components.push(radio_component(*radio, &observed.radios));
        }
        let sensors = [
            (Sensor::Camera, profile.camera_off),
            (Sensor::Microphone, profile.microphone_off),
            (Sensor::Location, profile.location_off),
        ];
        for (sensor, off) in sensors.into_iter().filter(|(_, off)| *off) {
            let live = observed.live.get(&sensor).copied().unwrap_or(0);
            components.push(Component {
                name: sensor.name().into(),
                wanted: if off { "off".into() } else { "on".into() },
                observed: if live == 0 {
                    "off".into()
                } else {
                    format!("on ({live} live)")
                },
                ok: live == 0,
            });
        }
    }
    let all_ok = components.iter().all(|c| c.ok);
    let mode = match (state.enabled, all_ok) {
        (_, false) => ModeState::Degraded,
        (true, true) => ModeState::On,
        (false, true) => ModeState::Off,
    };
    Status {
        state: mode,
        profile: if state.enabled {
            state.profile.clone()
        } else {
            String::new()
        },
        components,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::lockdown;

    fn enabled() -> Persisted {
        Persisted {
            enabled: true,
            profile: "lockdown".into(),
            resolved: Some(lockdown().resolve("lockdown", &["wg0".into()]).unwrap()),
            ..Persisted::default()
        }
    }

    fn radio(index: u32, radio: Radio, soft: bool) -> RadioState {
        RadioState {
            index,
            radio,
            soft,
            hard: false,
        }
    }

    #[test]
    fn states_from_observations() {
        let verified = NetworkObservation::Compared(vec![]);
        let all_off = Observations {
            network: verified.clone(),
            radios: vec![
                radio(0, Radio::Wlan, false),
                radio(1, Radio::Bluetooth, true),
            ],
            live: BTreeMap::new(),
        };
        let cases = [
            (
                Persisted::default(),
                Observations::default(),
                ModeState::Off,
            ),
            (
                Persisted::default(),
                Observations {
                    network: NetworkObservation::Present,
                    ..Observations::default()
                },
                ModeState::Degraded,
            ),
            (enabled(), all_off.clone(), ModeState::On),
            (
                enabled(),
                Observations {
                    network: NetworkObservation::Compared(vec![Difference::NoTable]),
                    ..all_off.clone()
                },
                ModeState::Degraded,
            ),
            (
                enabled(),
                Observations {
                    radios: vec![radio(1, Radio::Bluetooth, false)],
                    ..all_off.clone()
                },
                ModeState::Degraded,
            ),
            (
                enabled(),
                Observations {
                    live: BTreeMap::from([(Sensor::Camera, 1)]),
                    ..all_off.clone()
                },
                ModeState::Degraded,
            ),
        ];
        for (i, (state, observed, expected)) in cases.into_iter().enumerate() {
            let status = summarize(&state, &observed);
            assert_eq!(status.state, expected, "case {i}: {status:?}");
            let (result, _) = status.signal();
            assert_eq!(
                result == "pass",
                expected != ModeState::Degraded,
                "case {i}"
            );
        }
    }

    #[test]
    fn degraded_signals_say_what_is_wrong() {
        let status = summarize(
            &enabled(),
            &Observations {
                network: NetworkObservation::Compared(vec![Difference::NoTable]),
                ..Observations::default()
            },
        );
        let (result, observed) = status.signal();
        assert_eq!(result, "fail");
        assert!(
            observed.contains("network: wanted only through wg0, found the table is missing"),
            "{observed}"
        );
        let on = summarize(
            &enabled(),
            &Observations {
                network: NetworkObservation::Compared(vec![]),
                ..Observations::default()
            },
        );
        let names: Vec<&str> = on.components.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "network",
                "bluetooth",
                "gps",
                "nfc",
                "camera",
                "microphone",
                "location"
            ]
        );
    }
}
