//! The Android camera and microphone switch against a sensor-privacy service served over
//! rsbinder's binder RPC transport: the toggles are set for the owner's user with the source
//! `OTHER`, read back, and cleared again by restore; location is refused (the service has no
//! toggle for it); a service that does not keep a toggle is reported, not believed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use enigm_aidl::sensor_privacy::ISensorPrivacyListener::ISensorPrivacyListener;
use enigm_aidl::sensor_privacy::ISensorPrivacyManager::{
    BnSensorPrivacyManager, ISensorPrivacyManager,
};
use enigm_privacyd::sensor_privacy::{SOURCE_OTHER, SensorPrivacySwitch, TOGGLE_SOFTWARE};
use enigm_privacyd::sensors::{Cut, Sensor, SensorError, SensorSwitch};
use rsbinder::{Interface, Status, Strong};

/// The service's toggles: (toggle type, sensor) → blocked; and every set call seen.
#[derive(Default)]
struct Toggles {
    blocked: BTreeMap<(i32, i32), bool>,
    calls: Vec<(i32, i32, i32, bool)>,
}

struct Service {
    toggles: Arc<Mutex<Toggles>>,
    /// A broken service accepts sets and keeps nothing.
    keeps: bool,
}

impl Interface for Service {}

impl ISensorPrivacyManager for Service {
    fn r#supportsSensorToggle(&self, toggle: i32, sensor: i32) -> rsbinder::BinderResult<bool> {
        Ok(toggle == TOGGLE_SOFTWARE && matches!(sensor, 1 | 2))
    }
    fn r#addSensorPrivacyListener(
        &self,
        _: &Strong<dyn ISensorPrivacyListener>,
    ) -> rsbinder::BinderResult<()> {
        Ok(())
    }
    fn r#addToggleSensorPrivacyListener(
        &self,
        _: &Strong<dyn ISensorPrivacyListener>,
    ) -> rsbinder::BinderResult<()> {
        Ok(())
    }
    fn r#removeSensorPrivacyListener(
        &self,
        _: &Strong<dyn ISensorPrivacyListener>,
    ) -> rsbinder::BinderResult<()> {
        Ok(())
    }
    fn r#removeToggleSensorPrivacyListener(
        &self,
        _: &Strong<dyn ISensorPrivacyListener>,
    ) -> rsbinder::BinderResult<()> {
        Ok(())
    }
    fn r#isSensorPrivacyEnabled(&self) -> rsbinder::BinderResult<bool> {
        Ok(false)
    }
    fn r#isCombinedToggleSensorPrivacyEnabled(&self, sensor: i32) -> rsbinder::BinderResult<bool> {
        self.r#isToggleSensorPrivacyEnabled(TOGGLE_SOFTWARE, sensor)
    }
    fn r#isToggleSensorPrivacyEnabled(
        &self,
        toggle: i32,
        sensor: i32,
    ) -> rsbinder::BinderResult<bool> {
        let toggles = self.toggles.lock().unwrap();
        Ok(toggles
            .blocked
            .get(&(toggle, sensor))
            .copied()
            .unwrap_or(false))
    }
    fn r#setSensorPrivacy(&self, _: bool) -> rsbinder::BinderResult<()> {
        Err(Status::new_service_specific_error(
            1,
            Some("not used".into()),
        ))
    }
    fn r#setToggleSensorPrivacy(
        &self,
        user: i32,
        source: i32,
        sensor: i32,
        enable: bool,
    ) -> rsbinder::BinderResult<()> {
        let mut toggles = self.toggles.lock().unwrap();
        toggles.calls.push((user, source, sensor, enable));
        if self.keeps {
            toggles.blocked.insert((TOGGLE_SOFTWARE, sensor), enable);
        }
        Ok(())
    }
    fn r#setToggleSensorPrivacyForProfileGroup(
        &self,
        user: i32,
        source: i32,
        sensor: i32,
        enable: bool,
    ) -> rsbinder::BinderResult<()> {
        self.r#setToggleSensorPrivacy(user, source, sensor, enable)
    }
}

fn serve(
    socket: &std::path::Path,
    keeps: bool,
) -> (Arc<rsbinder::rpc::RpcServer>, Arc<Mutex<Toggles>>) {
    let toggles = Arc::new(Mutex::new(Toggles::default()));
    let service = Service {
        toggles: toggles.clone(),
        keeps,
    };
    let server = rsbinder::rpc::RpcServer::setup_unix_server(socket).unwrap();
    server
        .set_root(BnSensorPrivacyManager::new_binder(service).as_binder())
        .unwrap();
    let _accepting = server.run_background();
    (server, toggles)
}

#[test]
fn camera_and_microphone_toggles_are_set_read_back_and_restored() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("sensor_privacy.sock");
    let (_server, toggles) = serve(&socket, true);
    let mut switch = SensorPrivacySwitch::connect_rpc(&socket, 10).unwrap();

    let mut cuts = Vec::new();
    for sensor in [Sensor::Camera, Sensor::Microphone] {
        assert_eq!(switch.live(sensor).unwrap(), 1, "{sensor:?} starts live");
        cuts.extend(switch.switch_off(sensor).unwrap());
        assert_eq!(switch.live(sensor).unwrap(), 0, "{sensor:?} off");
    }
    assert_eq!(
        cuts,
        [
            Cut::PrivacyToggle {
                sensor: Sensor::Camera,
                user: 10
            },
            Cut::PrivacyToggle {
                sensor: Sensor::Microphone,
                user: 10
            },
        ]
    );
    assert_eq!(
        toggles.lock().unwrap().calls,
        [(10, SOURCE_OTHER, 2, true), (10, SOURCE_OTHER, 1, true)]
    );

    switch.restore(&cuts).unwrap();
    for sensor in [Sensor::Camera, Sensor::Microphone] {
        assert_eq!(switch.live(sensor).unwrap(), 1, "{sensor:?} restored");
    }
    // Cuts another switch made (sysfs) are not this one's to restore.
    switch
        .restore(&[Cut::Deauthorized {
            device: "/sys/devices/usb1/1-1".into(),
        }])
        .unwrap();
    assert_eq!(toggles.lock().unwrap().calls.len(), 4);

    let err = switch.switch_off(Sensor::Location).unwrap_err();
    assert!(
        matches!(
            err,
            SensorError::NoSwitch {
                sensor: "location",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn a_service_that_keeps_no_toggle_or_is_missing_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("broken.sock");
    let (_server, _) = serve(&socket, false);
    let mut switch = SensorPrivacySwitch::connect_rpc(&socket, 0).unwrap();
    let err = switch.switch_off(Sensor::Camera).unwrap_err();
    assert!(
        matches!(
            err,
            SensorError::StillLive {
                sensor: "camera",
                ..
            }
        ),
        "{err}"
    );

    let err = SensorPrivacySwitch::connect_rpc(&dir.path().join("nobody.sock"), 0).unwrap_err();
    assert!(err.to_string().contains("connecting"), "{err}");
}
