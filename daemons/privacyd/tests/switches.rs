//! Radio, camera, microphone and location switches against a sysfs fixture tree.
//!
//! The tree mimics a phone: rfkill switches for wlan, bluetooth, nfc and gps; a USB camera
//! (two video4linux nodes on one interface); a USB microphone (capture and playback PCMs) and
//! an internal sound card bound to a PCI driver; a GNSS receiver. `/dev/rfkill` and the
//! driver's `unbind`/`bind` are FIFOs read by a thread that plays the kernel (updates `soft`,
//! removes or restores the `driver` link), so the daemon's real write paths are exercised and
//! every state is read back from the tree.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Read;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use enigm_privacyd::profile::Radio;
use enigm_privacyd::rfkill::{Rfkill, plan};
use enigm_privacyd::sensors::{Cut, Sensor, SensorSwitch, SysfsSensors};
use enigm_runtime::sysroot::Sysroot;

const USB_CAMERA: &str = "sys/devices/pci0000:00/0000:00:14.0/usb1/1-1/1-1:1.0";
const USB_MIC: &str = "sys/devices/pci0000:00/0000:00:14.0/usb1/1-2/1-2:1.1";
const HDA: &str = "sys/devices/pci0000:00/0000:00:1f.3";
const HDA_DRIVER: &str = "sys/bus/pci/drivers/snd_hda_intel";
const GNSS: &str = "sys/devices/platform/gnss-uart/serial0/gnss/gnss0";

fn write(root: &Path, path: &str, value: &str) {
    let path = root.join(path);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, value).unwrap();
}

fn class_link(root: &Path, class: &str, name: &str, device_dir: &str) {
    let dir = root.join("sys/class").join(class);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::create_dir_all(root.join(device_dir)).unwrap();
    symlink(root.join(device_dir), dir.join(name)).unwrap();
}

fn fifo(path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
}

/// Reads whole writes from a FIFO forever, handing each to `apply`.
fn kernel(path: PathBuf, apply: impl Fn(&[u8]) + Send + 'static) {
    std::thread::spawn(move || {
        loop {
            let Ok(mut file) = std::fs::File::open(&path) else {
                return;
            };
            let mut data = Vec::new();
            if file.read_to_end(&mut data).is_ok() && !data.is_empty() {
                apply(&data);
            }
        }
    });
}

fn phone() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    for (index, kind) in ["wlan", "bluetooth", "nfc", "gps"].iter().enumerate() {
        let device = format!("sys/devices/platform/radios/rfkill/rfkill{index}");
        write(&root, &format!("{device}/type"), &format!("{kind}\n"));
        write(&root, &format!("{device}/soft"), "0\n");
        write(&root, &format!("{device}/hard"), "0\n");
        class_link(&root, "rfkill", &format!("rfkill{index}"), &device);
    }
    fifo(&root.join("dev/rfkill"));
    let tree = root.clone();
    kernel(root.join("dev/rfkill"), move |data| {
        for event in data.chunks_exact(8) {
            let index = u32::from_ne_bytes(event[..4].try_into().unwrap());
            assert_eq!(event[5], 2, "RFKILL_OP_CHANGE");
            write(
                &tree,
                &format!("sys/devices/platform/radios/rfkill/rfkill{index}/soft"),
                &format!("{}\n", event[6]),
            );
        }
    });

    write(&root, &format!("{USB_CAMERA}/authorized"), "1\n");
    class_link(
        &root,
        "video4linux",
        "video0",
        &format!("{USB_CAMERA}/video4linux/video0"),
    );
    class_link(
        &root,
        "video4linux",
        "video1",
        &format!("{USB_CAMERA}/video4linux/video1"),
    );

    write(&root, &format!("{USB_MIC}/authorized"), "1\n");
    class_link(
        &root,
        "sound",
        "pcmC1D0c",
        &format!("{USB_MIC}/sound/card1/pcmC1D0c"),
    );
    class_link(
        &root,
        "sound",
        "pcmC1D0p",
        &format!("{USB_MIC}/sound/card1/pcmC1D0p"),
    );
    class_link(
        &root,
        "sound",
        "pcmC0D0c",
        &format!("{HDA}/sound/card0/pcmC0D0c"),
    );
    std::fs::create_dir_all(root.join(HDA_DRIVER)).unwrap();
    symlink(root.join(HDA_DRIVER), root.join(HDA).join("driver")).unwrap();
    for (file, bind) in [("unbind", false), ("bind", true)] {
        fifo(&root.join(HDA_DRIVER).join(file));
        let tree = root.clone();
        kernel(root.join(HDA_DRIVER).join(file), move |data| {
            assert_eq!(data, b"0000:00:1f.3");
            let link = tree.join(HDA).join("driver");
            if bind {
                symlink(tree.join(HDA_DRIVER), &link).unwrap();
            } else {
                std::fs::remove_file(&link).unwrap();
            }
        });
    }

    write(
        &root,
        "sys/devices/platform/gnss-uart/serial0/authorized",
        "1\n",
    );
    class_link(&root, "gnss", "gnss0", GNSS);
    dir
}

fn read(root: &Path, path: &str) -> String {
    std::fs::read_to_string(root.join(path))
        .unwrap()
        .trim()
        .to_owned()
}

#[test]
fn radios_are_blocked_through_dev_rfkill_and_read_back() {
    let dir = phone();
    let rfkill = Rfkill::new(Sysroot::new(dir.path()));
    let before = rfkill.list().unwrap();
    assert_eq!(before.len(), 4);
    assert!(before.iter().all(|s| !s.blocked()));
    let switches = plan(&before, &[Radio::Bluetooth, Radio::Nfc, Radio::Gps]);
    assert_eq!(switches.len(), 3);
    for (index, radio, block) in switches {
        rfkill.set(index, radio, block).unwrap();
        let now = rfkill.list().unwrap();
        assert!(
            now.iter().find(|s| s.index == index).unwrap().soft,
            "{radio:?}"
        );
    }
    let after = rfkill.list().unwrap();
    let blocked: Vec<_> = after
        .iter()
        .filter(|s| s.blocked())
        .map(|s| s.radio)
        .collect();
    assert_eq!(
        blocked,
        [Radio::Bluetooth, Radio::Nfc, Radio::Gps],
        "wlan stays on"
    );
    assert!(
        plan(&after, &[Radio::Bluetooth]).is_empty(),
        "nothing left to block"
    );
    rfkill.set(1, Radio::Bluetooth, false).unwrap();
    assert!(!rfkill.list().unwrap()[1].soft);
}

#[test]
fn camera_microphone_and_location_are_cut_and_restored() {
    let dir = phone();
    let root = dir.path();
    let mut sensors = SysfsSensors::new(Sysroot::new(root));
    assert_eq!(
        sensors.live(Sensor::Camera).unwrap(),
        2,
        "two nodes of one camera"
    );
    assert_eq!(
        sensors.live(Sensor::Microphone).unwrap(),
        2,
        "capture PCMs only"
    );
    assert_eq!(sensors.live(Sensor::Location).unwrap(), 1);

    let camera = sensors.switch_off(Sensor::Camera).unwrap();
    assert_eq!(
        camera,
        [Cut::Deauthorized {
            device: format!("/{USB_CAMERA}")
        }],
        "one interface carries both nodes"
    );
    assert_eq!(read(root, &format!("{USB_CAMERA}/authorized")), "0");
    assert_eq!(sensors.live(Sensor::Camera).unwrap(), 0);
    assert_eq!(sensors.live(Sensor::Microphone).unwrap(), 2, "untouched");

    let microphone = sensors.switch_off(Sensor::Microphone).unwrap();
    assert_eq!(microphone.len(), 2, "{microphone:?}");
    assert!(microphone.contains(&Cut::Unbound {
        device: format!("/{HDA}"),
        driver: format!("/{HDA_DRIVER}"),
    }));
    assert_eq!(read(root, &format!("{USB_MIC}/authorized")), "0");
    assert!(
        !root.join(HDA).join("driver").exists(),
        "the kernel unbound it"
    );
    assert_eq!(sensors.live(Sensor::Microphone).unwrap(), 0);

    let location = sensors.switch_off(Sensor::Location).unwrap();
    assert_eq!(location.len(), 1);
    assert_eq!(sensors.live(Sensor::Location).unwrap(), 0);
    assert!(
        sensors.switch_off(Sensor::Location).unwrap().is_empty(),
        "already off"
    );

    for cuts in [&camera, &microphone, &location] {
        sensors.restore(cuts).unwrap();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while !root.join(HDA).join("driver").exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(sensors.live(Sensor::Camera).unwrap(), 2);
    assert_eq!(sensors.live(Sensor::Microphone).unwrap(), 2);
    assert_eq!(sensors.live(Sensor::Location).unwrap(), 1);
    assert_eq!(read(root, &format!("{USB_CAMERA}/authorized")), "1");
}
