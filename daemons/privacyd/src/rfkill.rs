//! Radio kill switches through rfkill: the radios are listed from sysfs
//! (`/sys/class/rfkill/rfkillN/{type,soft,hard}`), switched by writing `RFKILL_OP_CHANGE`
//! events to `/dev/rfkill`, and read back from sysfs after every switch.
//!
//! Every path is under the [`Sysroot`], so tests use a fixture tree (with a FIFO standing in
//! for `/dev/rfkill` and a thread playing the kernel).

use std::io::Write;
use std::time::{Duration, Instant};

use enigm_runtime::sysroot::Sysroot;
use serde::{Deserialize, Serialize};

use crate::profile::Radio;

/// How long the kernel may take to show a switch in sysfs.
const SETTLE: Duration = Duration::from_secs(2);

/// One rfkill switch as sysfs reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RadioState {
    /// The rfkill index (`rfkillN`).
    pub index: u32,
    /// Its radio type.
    pub radio: Radio,
    /// Soft-blocked (by software, e.g. us).
    pub soft: bool,
    /// Hard-blocked (a hardware switch).
    pub hard: bool,
}

impl RadioState {
    /// Whether the radio is off, by either switch.
    pub fn blocked(&self) -> bool {
        self.soft || self.hard
    }
}

/// A radio operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum RfkillError {
    /// sysfs could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The path.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// `/dev/rfkill` could not be written.
    #[error("writing /dev/rfkill: {0}")]
    Write(std::io::Error),
    /// After the switch, sysfs still reports the old state.
    #[error("rfkill{index} ({radio}) still reads soft={soft} after the switch")]
    NotApplied {
        /// The switch.
        index: u32,
        /// Its type name.
        radio: &'static str,
        /// What sysfs reads.
        soft: bool,
    },
}

/// `RFKILL_OP_CHANGE`.
const OP_CHANGE: u8 = 2;

/// The 8-byte `struct rfkill_event` that sets switch `index`'s soft block.
pub fn change_event(index: u32, radio: Radio, block: bool) -> [u8; 8] {
    let mut event = [0u8; 8];
    event[..4].copy_from_slice(&index.to_ne_bytes());
    event[4] = type_number(radio);
    event[5] = OP_CHANGE;
    event[6] = u8::from(block);
    event
}

/// `RFKILL_TYPE_*`.
pub fn type_number(radio: Radio) -> u8 {
    match radio {
        Radio::Wlan => 1,
        Radio::Bluetooth => 2,
        Radio::Wwan => 5,
        Radio::Gps => 6,
        Radio::Nfc => 8,
    }
}

/// The switches to block so that every radio of a type in `off` is soft-blocked: (index,
/// radio, true) for each one not blocked yet.
pub fn plan(current: &[RadioState], off: &[Radio]) -> Vec<(u32, Radio, bool)> {
    current
        .iter()
        .filter(|state| off.contains(&state.radio) && !state.soft)
        .map(|state| (state.index, state.radio, true))
        .collect()
}

/// Radio switches as the daemon uses them.
pub trait RadioSwitch: Send {
    /// Every switch of a known radio type.
    fn list(&self) -> Result<Vec<RadioState>, RfkillError>;
    /// Sets a switch's soft block and waits until it reads back so.
    fn set(&self, index: u32, radio: Radio, block: bool) -> Result<(), RfkillError>;
}

impl RadioSwitch for Rfkill {
    fn list(&self) -> Result<Vec<RadioState>, RfkillError> {
        Rfkill::list(self)
    }

    fn set(&self, index: u32, radio: Radio, block: bool) -> Result<(), RfkillError> {
        Rfkill::set(self, index, radio, block)
    }
}

/// In-memory radios for unit tests.
#[derive(Debug, Default)]
pub struct FakeRadios {
    /// The switches.
    pub states: std::sync::Mutex<Vec<RadioState>>,
}

impl RadioSwitch for FakeRadios {
    fn list(&self) -> Result<Vec<RadioState>, RfkillError> {
        Ok(self.states.lock().map(|s| s.clone()).unwrap_or_default())
    }

    fn set(&self, index: u32, _radio: Radio, block: bool) -> Result<(), RfkillError> {
        if let Ok(mut states) = self.states.lock() {
            for state in states.iter_mut().filter(|s| s.index == index) {
                state.soft = block;
            }
        }
        Ok(())
    }
}

/// rfkill under a sysroot.
#[derive(Debug, Clone)]
pub struct Rfkill {
    sysroot: Sysroot,
}

impl Rfkill {
    /// rfkill under `sysroot` (`/` on a device).
    pub fn new(sysroot: Sysroot) -> Self {
        Self { sysroot }
    }

    /// Every switch of a known radio type, by index.
    pub fn list(&self) -> Result<Vec<RadioState>, RfkillError> {
        let class = "/sys/class/rfkill";
        let read_err = |path: String| move |source| RfkillError::Read { path, source };
        let names = self
            .sysroot
            .list_dir(class)
            .map_err(read_err(class.into()))?
            .unwrap_or_default();
        let mut out = Vec::new();
        for name in names {
            let Some(index) = name.strip_prefix("rfkill").and_then(|n| n.parse().ok()) else {
                continue;
            };
            let dir = format!("{class}/{name}");
            let value = |attr: &str| {
                let path = format!("{dir}/{attr}");
                self.sysroot
                    .read_value(&path)
                    .map_err(read_err(path))
                    .map(Option::unwrap_or_default)
            };
            let Some(radio) = Radio::from_name(&value("type")?) else {
                continue;
            };
            out.push(RadioState {
                index,
                radio,
                soft: value("soft")? == "1",
                hard: value("hard")? == "1",
            });
        }
        out.sort_by_key(|s| s.index);
        Ok(out)
    }

    /// Sets switch `index`'s soft block and waits until sysfs shows it.
    pub fn set(&self, index: u32, radio: Radio, block: bool) -> Result<(), RfkillError> {
        let mut device = std::fs::OpenOptions::new()
            .write(true)
            .open(self.sysroot.path("/dev/rfkill"))
            .map_err(RfkillError::Write)?;
        device
            .write_all(&change_event(index, radio, block))
            .map_err(RfkillError::Write)?;
        drop(device);
        let deadline = Instant::now() + SETTLE;
        loop {
            let soft = self
                .list()?
                .iter()
                .find(|s| s.index == index)
                .is_some_and(|s| s.soft);
            if soft == block {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(RfkillError::NotApplied {
                    index,
                    radio: radio.name(),
                    soft,
                });
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(index: u32, radio: Radio, soft: bool) -> RadioState {
        RadioState {
            index,
            radio,
            soft,
            hard: false,
        }
    }

    #[test]
    fn events_are_the_kernel_layout() {
        let event = change_event(3, Radio::Bluetooth, true);
        assert_eq!(event, [3, 0, 0, 0, 2, 2, 1, 0]);
        assert_eq!(change_event(1, Radio::Nfc, false)[4..], [8, 2, 0, 0]);
    }

    #[test]
    fn only_unblocked_radios_of_the_wanted_types_are_switched() {
        let current = [
            state(0, Radio::Wlan, false),
            state(1, Radio::Bluetooth, false),
            state(2, Radio::Bluetooth, true),
            state(3, Radio::Nfc, false),
        ];
        assert_eq!(
            plan(&current, &[Radio::Bluetooth, Radio::Nfc, Radio::Gps]),
            [(1, Radio::Bluetooth, true), (3, Radio::Nfc, true)]
        );
        assert!(plan(&current, &[]).is_empty());
    }
}
