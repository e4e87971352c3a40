//! Camera, microphone and satellite-positioning kill switches, behind [`SensorSwitch`].
//!
//! [`SysfsSensors`] finds the capture devices under sysfs — cameras in `video4linux`,
//! microphones as ALSA capture PCMs (`/sys/class/sound/pcmC*D*c`), GNSS receivers in `gnss`
//! — and switches each off at the device that carries it: by writing `0` to the nearest
//! `authorized` attribute (USB devices and interfaces), else by unbinding the nearest driver.
//! The state is read back from sysfs after every switch.
//!
//! On Android the same trait sits over the platform's sensor-privacy service (camera and
//! microphone toggles) through Binder: [`crate::sensor_privacy::SensorPrivacySwitch`].

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use enigm_runtime::sysroot::Sysroot;
use serde::{Deserialize, Serialize};

/// How long a device may take to go away after its switch.
const SETTLE: Duration = Duration::from_secs(2);

/// A sensor class the daemon can switch off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sensor {
    /// Cameras (video4linux).
    Camera,
    /// Microphones (ALSA capture devices).
    Microphone,
    /// Satellite positioning receivers (the GNSS class).
    Location,
}

impl Sensor {
    /// Its name in status and logs.
    pub fn name(self) -> &'static str {
        match self {
            Sensor::Camera => "camera",
            Sensor::Microphone => "microphone",
            Sensor::Location => "location",
        }
    }

    /// The sysfs class its devices appear in, and which entries count.
    fn class(self) -> (&'static str, fn(&str) -> bool) {
        match self {
            Sensor::Camera => ("/sys/class/video4linux", |n| n.starts_with("video")),
            Sensor::Microphone => ("/sys/class/sound", is_capture_pcm),
            Sensor::Location => ("/sys/class/gnss", |n| n.starts_with("gnss")),
        }
    }
}

/// Whether an ALSA class entry is a capture PCM (`pcmC0D0c`).
pub fn is_capture_pcm(name: &str) -> bool {
    name.strip_prefix("pcmC")
        .and_then(|rest| rest.strip_suffix('c'))
        .and_then(|rest| rest.split_once('D'))
        .is_some_and(|(card, device)| {
            !card.is_empty()
                && !device.is_empty()
                && card
                    .chars()
                    .chain(device.chars())
                    .all(|c| c.is_ascii_digit())
        })
}

/// How a device was switched off, so it can be switched back on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Cut {
    /// `0` written to `<device>/authorized` (a path under the sysroot).
    Deauthorized {
        /// The device directory, as a system path (`/sys/devices/...`).
        device: String,
    },
    /// The device unbound from its driver.
    Unbound {
        /// The device directory, as a system path.
        device: String,
        /// The driver directory it was bound to, as a system path.
        driver: String,
    },
    /// Android's sensor-privacy toggle set for a user.
    PrivacyToggle {
        /// The sensor.
        sensor: Sensor,
        /// The Android user.
        user: i32,
    },
}

/// A sensor switch that failed.
#[derive(Debug, thiserror::Error)]
pub enum SensorError {
    /// sysfs could not be read or written.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// A device has neither an `authorized` attribute nor a driver to unbind from.
    #[error("{sensor}: no way to switch off {device}")]
    NoSwitch {
        /// The sensor.
        sensor: &'static str,
        /// The device (system path).
        device: String,
    },
    /// The platform's sensor-privacy service failed.
    #[error("{sensor}: sensor-privacy service {call}: {detail}")]
    Service {
        /// The sensor.
        sensor: &'static str,
        /// The call.
        call: &'static str,
        /// What it said.
        detail: String,
    },
    /// Read back after the switch, the device is still live.
    #[error("{sensor}: {device} is still live after the switch")]
    StillLive {
        /// The sensor.
        sensor: &'static str,
        /// The device (system path).
        device: String,
    },
}

/// Camera, microphone and location switches.
pub trait SensorSwitch: Send {
    /// Switches every device of `sensor` off; returns how, for [`SensorSwitch::restore`].
    fn switch_off(&mut self, sensor: Sensor) -> Result<Vec<Cut>, SensorError>;
    /// Switches back on what `cuts` switched off.
    fn restore(&mut self, cuts: &[Cut]) -> Result<(), SensorError>;
    /// How many devices of `sensor` are live now (0: the sensor is off).
    fn live(&self, sensor: Sensor) -> Result<usize, SensorError>;
}

/// The sysfs implementation.
#[derive(Debug, Clone)]
pub struct SysfsSensors {
    sysroot: Sysroot,
}

impl SysfsSensors {
    /// Sensors under `sysroot`.
    pub fn new(sysroot: Sysroot) -> Self {
        Self { sysroot }
    }

    fn system_path(&self, real: &Path) -> String {
        let relative = real.strip_prefix(self.sysroot.root()).unwrap_or(real);
        format!("/{}", relative.display())
    }

    fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> SensorError {
        let path = path.display().to_string();
        move |source| SensorError::Io {
            action,
            path,
            source,
        }
    }

    /// The real device directories of `sensor`'s class entries.
    fn devices(&self, sensor: Sensor) -> Result<Vec<PathBuf>, SensorError> {
        let (class, counts) = sensor.class();
        let dir = self.sysroot.path(class);
        let names = self
            .sysroot
            .list_dir(class)
            .map_err(Self::io("listing", &dir))?
            .unwrap_or_default();
        let mut out = Vec::new();
        for name in names.into_iter().filter(|n| counts(n)) {
            let entry = dir.join(&name);
            let real = std::fs::canonicalize(&entry).map_err(Self::io("resolving", &entry))?;
            out.push(real);
        }
        Ok(out)
    }

    /// Where `device` can be switched: the nearest directory (itself or an ancestor under
    /// `/sys/devices`) with `authorized`, else the nearest with a `driver` link.
    fn control(&self, device: &Path) -> Option<(PathBuf, bool)> {
        let top = self.sysroot.path("/sys/devices");
        let within = |p: &Path| p.starts_with(&top) && p != top;
        let mut authorized = device.ancestors().take_while(|p| within(p));
        if let Some(dir) = authorized.find(|p| p.join("authorized").is_file()) {
            return Some((dir.to_path_buf(), true));
        }
        device
            .ancestors()
            .take_while(|p| within(p))
            .find(|p| p.join("driver").exists())
            .map(|dir| (dir.to_path_buf(), false))
    }

    fn is_live(&self, device: &Path) -> Result<bool, SensorError> {
        match self.control(device) {
            Some((dir, true)) => {
                let path = dir.join("authorized");
                let value = std::fs::read_to_string(&path).map_err(Self::io("reading", &path))?;
                Ok(value.trim() != "0")
            }
            Some((_, false)) => Ok(true),
            // Nothing bound and nothing to authorize: the device cannot capture.
            None => Ok(false),
        }
    }

    /// Waits up to [`SETTLE`] for `device` to stop being live; whether it did.
    fn settled(&self, device: &Path) -> Result<bool, SensorError> {
        let deadline = Instant::now() + SETTLE;
        loop {
            if !self.is_live(device)? {
                return Ok(true);
            }
            if Instant::now() > deadline {
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn write(path: &Path, value: &str) -> Result<(), SensorError> {
        std::fs::write(path, value).map_err(Self::io("writing", path))
    }
}

impl SensorSwitch for SysfsSensors {
    fn switch_off(&mut self, sensor: Sensor) -> Result<Vec<Cut>, SensorError> {
        let mut cuts = Vec::new();
        for device in self.devices(sensor)? {
            if !self.is_live(&device)? {
                continue;
            }
            let Some((dir, authorized)) = self.control(&device) else {
                continue;
            };
            let cut = if authorized {
                Self::write(&dir.join("authorized"), "0")?;
                Cut::Deauthorized {
                    device: self.system_path(&dir),
                }
            } else {
                let link = dir.join("driver");
                let driver = std::fs::canonicalize(&link).map_err(Self::io("resolving", &link))?;
                let name = dir.file_name().map(|n| n.to_string_lossy().into_owned());
                let Some(name) = name else {
                    return Err(SensorError::NoSwitch {
                        sensor: sensor.name(),
                        device: self.system_path(&dir),
                    });
                };
                Self::write(&driver.join("unbind"), &name)?;
                Cut::Unbound {
                    device: self.system_path(&dir),
                    driver: self.system_path(&driver),
                }
            };
            if !cuts.contains(&cut) {
                cuts.push(cut);
            }
            if !self.settled(&device)? {
                return Err(SensorError::StillLive {
                    sensor: sensor.name(),
                    device: self.system_path(&device),
                });
            }
        }
        Ok(cuts)
    }

    fn restore(&mut self, cuts: &[Cut]) -> Result<(), SensorError> {
        for cut in cuts {
            match cut {
                Cut::Deauthorized { device } => {
                    Self::write(&self.sysroot.path(device).join("authorized"), "1")?;
                }
                Cut::Unbound { device, driver } => {
                    let name = Path::new(device)
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    Self::write(&self.sysroot.path(driver).join("bind"), &name)?;
                }
                // Android's toggles are the sensor-privacy switch's to restore.
                Cut::PrivacyToggle { .. } => {}
            }
        }
        Ok(())
    }

    fn live(&self, sensor: Sensor) -> Result<usize, SensorError> {
        let mut live = 0;
        for device in self.devices(sensor)? {
            if self.is_live(&device)? {
                live += 1;
            }
        }
        Ok(live)
    }
}

/// An in-memory switch for unit tests: `devices` live devices per sensor.
#[derive(Debug, Default, Clone)]
pub struct FakeSensors {
    /// (sensor, device name, live).
    pub devices: Vec<(Sensor, String, bool)>,
}

impl SensorSwitch for FakeSensors {
    fn switch_off(&mut self, sensor: Sensor) -> Result<Vec<Cut>, SensorError> {
        let mut cuts = Vec::new();
        for (kind, name, live) in &mut self.devices {
            if *kind == sensor && *live {
                *live = false;
                cuts.push(Cut::Deauthorized {
                    device: name.clone(),
                });
            }
        }
        Ok(cuts)
    }

    fn restore(&mut self, cuts: &[Cut]) -> Result<(), SensorError> {
        for cut in cuts {
            if let Cut::Deauthorized { device } = cut {
                for (_, name, live) in &mut self.devices {
                    if name == device {
                        *live = true;
                    }
                }
            }
        }
        Ok(())
    }

    fn live(&self, sensor: Sensor) -> Result<usize, SensorError> {
        Ok(self
            .devices
            .iter()
            .filter(|(kind, _, live)| *kind == sensor && *live)
            .count())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_pcms_only() {
        let cases = [
            ("pcmC0D0c", true),
            ("pcmC12D3c", true),
            ("pcmC0D0p", false),
            ("controlC0", false),
            ("pcmCD0c", false),
            ("pcmC0Dxc", false),
            ("timer", false),
        ];
        for (name, capture) in cases {
            assert_eq!(is_capture_pcm(name), capture, "{name}");
        }
    }
}
