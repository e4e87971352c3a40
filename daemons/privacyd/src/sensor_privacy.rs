//! The camera and microphone switches on Android: the platform's sensor-privacy service
//! (`android.hardware.ISensorPrivacyManager`, the toggles behind the quick-settings tiles)
//! over Binder, behind the same [`SensorSwitch`] trait as the sysfs switches.
//!
//! A switch sets the software toggle for the device owner's user and reads it back; restore
//! clears exactly the toggles it set. The service has no location toggle, so location on
//! Android is refused here rather than reported as off.

use enigm_aidl::sensor_privacy::ISensorPrivacyManager::ISensorPrivacyManager;
use rsbinder::{FromIBinder, Strong};

use crate::sensors::{Cut, Sensor, SensorError, SensorSwitch};

/// The service's name in the service manager.
pub const SERVICE_NAME: &str = "sensor_privacy";
/// `SensorPrivacyManager.ToggleTypes.SOFTWARE`.
pub const TOGGLE_SOFTWARE: i32 = 1;
/// `SensorPrivacyManager.Sources.OTHER`.
pub const SOURCE_OTHER: i32 = 5;

/// The service's number for `sensor` (`Sensors.MICROPHONE` 1, `Sensors.CAMERA` 2).
pub fn sensor_id(sensor: Sensor) -> Option<i32> {
    match sensor {
        Sensor::Microphone => Some(1),
        Sensor::Camera => Some(2),
        Sensor::Location => None,
    }
}

fn unsupported(sensor: Sensor) -> SensorError {
    SensorError::NoSwitch {
        sensor: sensor.name(),
        device: "the sensor-privacy service (no toggle for it)".into(),
    }
}

fn service_err(sensor: Sensor, call: &'static str) -> impl FnOnce(rsbinder::Status) -> SensorError {
    move |status| SensorError::Service {
        sensor: sensor.name(),
        call,
        detail: status.to_string(),
    }
}

/// The sensor-privacy service as a [`SensorSwitch`], for one Android user.
pub struct SensorPrivacySwitch {
    service: Strong<dyn ISensorPrivacyManager>,
    user: i32,
    // Keeps an RPC connection open for as long as the service is used.
    _session: Option<rsbinder::rpc::RpcSession>,
}

impl std::fmt::Debug for SensorPrivacySwitch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SensorPrivacySwitch")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl SensorPrivacySwitch {
    /// The service at the root of the binder RPC socket at `path`, switching for `user`.
    pub fn connect_rpc(path: &std::path::Path, user: i32) -> Result<Self, SensorError> {
        let failed = |what: &'static str| {
            move |e: rsbinder::StatusCode| SensorError::Service {
                sensor: "camera/microphone",
                call: what,
                detail: format!("{}: {e}", path.display()),
            }
        };
        let session =
            rsbinder::rpc::RpcSession::setup_unix_client(path).map_err(failed("connecting"))?;
        let root = session.get_root().map_err(failed("root object"))?;
        let service = <dyn ISensorPrivacyManager as FromIBinder>::try_from(root)
            .map_err(failed("not an ISensorPrivacyManager"))?;
        Ok(Self {
            service,
            user,
            _session: Some(session),
        })
    }

    /// The service from a binder already obtained (on a device, from the service manager).
    pub fn from_service(service: Strong<dyn ISensorPrivacyManager>, user: i32) -> Self {
        Self {
            service,
            user,
            _session: None,
        }
    }

    fn set(&mut self, sensor: Sensor, id: i32, enable: bool) -> Result<(), SensorError> {
        self.service
            .setToggleSensorPrivacy(self.user, SOURCE_OTHER, id, enable)
            .map_err(service_err(sensor, "setToggleSensorPrivacy"))?;
        let enabled = self
            .service
            .isToggleSensorPrivacyEnabled(TOGGLE_SOFTWARE, id)
            .map_err(service_err(sensor, "isToggleSensorPrivacyEnabled"))?;
        if enabled != enable {
            return Err(SensorError::StillLive {
                sensor: sensor.name(),
                device: format!(
                    "the sensor-privacy toggle (still {})",
                    if enabled { "on" } else { "off" }
                ),
            });
        }
        Ok(())
    }
}

impl SensorSwitch for SensorPrivacySwitch {
    fn switch_off(&mut self, sensor: Sensor) -> Result<Vec<Cut>, SensorError> {
        let id = sensor_id(sensor).ok_or_else(|| unsupported(sensor))?;
        let supported = self
            .service
            .supportsSensorToggle(TOGGLE_SOFTWARE, id)
            .map_err(service_err(sensor, "supportsSensorToggle"))?;
        if !supported {
            return Err(unsupported(sensor));
        }
        self.set(sensor, id, true)?;
        Ok(vec![Cut::PrivacyToggle {
            sensor,
            user: self.user,
        }])
    }

    fn restore(&mut self, cuts: &[Cut]) -> Result<(), SensorError> {
        for cut in cuts {
            if let Cut::PrivacyToggle { sensor, user } = cut
                && *user == self.user
                && let Some(id) = sensor_id(*sensor)
            {
                self.set(*sensor, id, false)?;
            }
        }
        Ok(())
    }

    fn live(&self, sensor: Sensor) -> Result<usize, SensorError> {
        let id = sensor_id(sensor).ok_or_else(|| unsupported(sensor))?;
        let blocked = self
            .service
            .isToggleSensorPrivacyEnabled(TOGGLE_SOFTWARE, id)
            .map_err(service_err(sensor, "isToggleSensorPrivacyEnabled"))?;
        Ok(usize::from(!blocked))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sensor_numbers() {
        assert_eq!(sensor_id(Sensor::Microphone), Some(1));
        assert_eq!(sensor_id(Sensor::Camera), Some(2));
        assert_eq!(sensor_id(Sensor::Location), None);
    }
}
