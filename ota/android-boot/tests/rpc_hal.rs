//! `BinderBootControl` against a boot-control HAL served over rsbinder's binder RPC transport
//! (a Unix socket): the HAL under test keeps its state in the GPT attributes of an A/B disk
//! image, so the boot simulator shows what the bootloader would do. The update engine's moves
//! through Binder — disable the target, activate it, boot, mark it good — boot the new slot;
//! marking a slot that is not running is refused, and so is a HAL with other than two slots.
//! With the partitions as files by name (`AndroidSlots`), the installer writes slot B's
//! partitions, the HAL activates it, and the confirmation marks it good through the HAL.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};

use enigm_aidl::IBootControl::{BnBootControl, IBootControl};
use enigm_aidl::MergeStatus::MergeStatus;
use enigm_android_boot::{AndroidSlots, BinderBootControl, hal_slot, slot_of};
use enigm_installer::{FileRollbackStore, RollbackStore, confirm, install, verify_slot};
use enigm_manifest::{Manifest, VerityInfo};
use enigm_slots::disk::{AbLayout, create_ab_disk};
use enigm_slots::simulator::boot;
use enigm_slots::{BootControl, GptBootControl, Slot};
use enigm_verity::VerityParams;
use openssl::sha::sha256;
use rsbinder::{Interface, Status, StatusCode};

/// A boot-control HAL over a GPT disk: the running slot is whatever the test last booted.
struct GptHal {
    control: Mutex<GptBootControl<std::fs::File>>,
    current: Arc<Mutex<Slot>>,
    slots: i32,
}

impl Interface for GptHal {}

fn slot(n: i32) -> rsbinder::BinderResult<Slot> {
    slot_of(n).ok_or_else(|| Status::new_service_specific_error(1, Some(format!("slot {n}"))))
}

fn failed(e: impl std::fmt::Display) -> Status {
    Status::new_service_specific_error(2, Some(e.to_string()))
}

impl IBootControl for GptHal {
    fn r#getActiveBootSlot(&self) -> rsbinder::BinderResult<i32> {
        let slots = self.control.lock().unwrap().slots().map_err(failed)?;
        let active = if slots.b.priority > slots.a.priority {
            Slot::B
        } else {
            Slot::A
        };
        Ok(hal_slot(active))
    }
    fn r#getCurrentSlot(&self) -> rsbinder::BinderResult<i32> {
        Ok(hal_slot(*self.current.lock().unwrap()))
    }
    fn r#getNumberSlots(&self) -> rsbinder::BinderResult<i32> {
        Ok(self.slots)
    }
    fn r#getSnapshotMergeStatus(&self) -> rsbinder::BinderResult<MergeStatus> {
        Ok(MergeStatus::NONE)
    }
    fn r#getSuffix(&self, n: i32) -> rsbinder::BinderResult<String> {
        Ok(format!("_{}", slot(n)?.suffix()))
    }
    fn r#isSlotBootable(&self, n: i32) -> rsbinder::BinderResult<bool> {
        let slots = self.control.lock().unwrap().slots().map_err(failed)?;
        Ok(slots.get(slot(n)?).priority > 0)
    }
    fn r#isSlotMarkedSuccessful(&self, n: i32) -> rsbinder::BinderResult<bool> {
        let slots = self.control.lock().unwrap().slots().map_err(failed)?;
        Ok(slots.get(slot(n)?).successful)
    }
    fn r#markBootSuccessful(&self) -> rsbinder::BinderResult<()> {
        let current = *self.current.lock().unwrap();
        self.control
            .lock()
            .unwrap()
            .mark_successful(current)
            .map_err(failed)
    }
    fn r#setActiveBootSlot(&self, n: i32) -> rsbinder::BinderResult<()> {
        self.control
            .lock()
            .unwrap()
            .activate(slot(n)?, 3)
            .map_err(failed)
    }
    fn r#setSlotAsUnbootable(&self, n: i32) -> rsbinder::BinderResult<()> {
        self.control
            .lock()
            .unwrap()
            .disable(slot(n)?)
            .map_err(failed)
    }
    fn r#setSnapshotMergeStatus(&self, _status: MergeStatus) -> rsbinder::BinderResult<()> {
        Err(StatusCode::UnknownTransaction.into())
    }
}

/// An A/B disk image in `dir` whose GPT attributes hold the HAL's slot flags.
fn flags_disk(dir: &std::path::Path) -> std::path::PathBuf {
    let disk = dir.join("flags.img");
    create_ab_disk(
        &disk,
        AbLayout {
            root_size: 1 << 20,
            verity_size: 1 << 20,
        },
    )
    .unwrap();
    disk
}

/// Serves a HAL over the disk at `disk` on `socket`.
fn serve(
    disk: &std::path::Path,
    socket: &std::path::Path,
    slots: i32,
) -> (Arc<rsbinder::rpc::RpcServer>, Arc<Mutex<Slot>>) {
    let current = Arc::new(Mutex::new(Slot::A));
    let hal = GptHal {
        control: Mutex::new(GptBootControl::open(disk).unwrap()),
        current: current.clone(),
        slots,
    };
    let server = rsbinder::rpc::RpcServer::setup_unix_server(socket).unwrap();
    server
        .set_root(BnBootControl::new_binder(hal).as_binder())
        .unwrap();
    let _accepting = server.run_background();
    (server, current)
}

#[test]
fn update_moves_through_binder_boot_the_new_slot() {
    let dir = tempfile::tempdir().unwrap();
    let disk = flags_disk(dir.path());
    let socket = dir.path().join("boot-hal.sock");
    let (_server, current) = serve(&disk, &socket, 2);
    let mut hal = BinderBootControl::connect_rpc(&socket).unwrap();

    // The factory state: A active and good, B bootable but never confirmed.
    let slots = hal.slots().unwrap();
    assert!(slots.a.priority > slots.b.priority, "{slots:?}");
    assert_eq!(hal.current_slot().unwrap(), Slot::A);

    // The installer's moves into B, through Binder.
    hal.disable(Slot::B).unwrap();
    assert_eq!(hal.slots().unwrap().b.priority, 0);
    hal.activate(Slot::B, 3).unwrap();
    let slots = hal.slots().unwrap();
    assert_eq!((slots.b.priority, slots.b.successful), (15, false));

    // Marking a slot that is not running is refused; the bootloader then boots B.
    let err = hal.mark_successful(Slot::B).unwrap_err().to_string();
    assert!(err.contains("only the running slot"), "{err}");
    let booted = boot(&mut GptBootControl::open(&disk).unwrap()).unwrap();
    assert_eq!(booted, Slot::B);
    *current.lock().unwrap() = booted;
    hal.mark_successful(Slot::B).unwrap();
    let slots = hal.slots().unwrap();
    assert!(slots.b.successful);
    // What the HAL wrote is what the GPT holds.
    assert!(
        GptBootControl::open(&disk)
            .unwrap()
            .slots()
            .unwrap()
            .b
            .successful
    );
}

#[test]
fn a_hal_without_two_slots_or_without_a_server_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let disk = flags_disk(dir.path());
    let socket = dir.path().join("one-slot.sock");
    let (_server, _) = serve(&disk, &socket, 1);
    let mut hal = BinderBootControl::connect_rpc(&socket).unwrap();
    let err = hal.slots().unwrap_err().to_string();
    assert!(err.contains("1 slots"), "{err}");

    let err = BinderBootControl::connect_rpc(&dir.path().join("nobody.sock"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("connecting"), "{err}");
}

/// A root image of `blocks` 4 KiB blocks and its manifest (not signed: the installer takes an
/// already verified manifest).
fn image(blocks: usize, rollback_index: u64) -> (Vec<u8>, Manifest) {
    let mut data = vec![0u8; blocks * 4096];
    openssl::rand::rand_bytes(&mut data).unwrap();
    let (salt, uuid) = (vec![7u8; 32], [9u8; 16]);
    let params = VerityParams::new(salt.clone(), uuid);
    let tree = enigm_verity::build(&params, &data[..]).unwrap();
    let manifest = Manifest {
        version: format!("android.{rollback_index}"),
        rollback_index,
        hardware: "test-phone".into(),
        root_size: data.len() as u64,
        root_sha256: hex::encode(sha256(&data)),
        verity: VerityInfo {
            root_hash: hex::encode(&tree.root_hash),
            salt: hex::encode(&salt),
            uuid: hex::encode(uuid),
            data_block_size: 4096,
            hash_block_size: 4096,
            hash_size: tree.hash_area.len() as u64,
            hash_sha256: hex::encode(sha256(&tree.hash_area)),
        },
    };
    (data, manifest)
}

#[test]
fn the_installer_updates_android_partitions_by_name_through_the_hal() {
    let dir = tempfile::tempdir().unwrap();
    let disk = flags_disk(dir.path());
    // The device's partitions by name, under the device's own base names.
    let by_name = dir.path().join("by-name");
    std::fs::create_dir_all(&by_name).unwrap();
    for name in ["system_a", "system_b", "system_verity_a", "system_verity_b"] {
        let file = std::fs::File::create(by_name.join(name)).unwrap();
        file.set_len(1 << 20).unwrap();
    }
    let socket = dir.path().join("boot-hal.sock");
    let (_server, current) = serve(&disk, &socket, 2);
    let hal = BinderBootControl::connect_rpc(&socket).unwrap();
    let mut slots =
        AndroidSlots::new(hal, by_name.clone()).with_base_names("system", "system_verity");

    let (data, manifest) = image(100, 2);
    let written = install(&mut slots, Slot::A, &manifest, &data[..], 3, &mut |_, _| {}).unwrap();
    assert_eq!(written, Slot::B);
    let on_device = std::fs::read(by_name.join("system_b")).unwrap();
    assert_eq!(&on_device[..data.len()], &data[..]);
    assert!(
        std::fs::read(by_name.join("system_a"))
            .unwrap()
            .iter()
            .all(|b| *b == 0)
    );

    // The bootloader picks B; the engine's confirmation runs through the HAL.
    let booted = boot(&mut GptBootControl::open(&disk).unwrap()).unwrap();
    assert_eq!(booted, Slot::B);
    *current.lock().unwrap() = booted;
    verify_slot(&mut slots, Slot::B, &manifest).unwrap();
    let mut rollback = FileRollbackStore::new(dir.path().join("rollback-index"));
    assert!(confirm(&mut slots, Slot::B, true, &manifest, &mut rollback).unwrap());
    assert!(slots.slots().unwrap().b.successful);
    assert_eq!(rollback.get().unwrap(), 2);

    // An image larger than the partition is refused before anything is written.
    let (big, big_manifest) = image(300, 3);
    let err = install(
        &mut slots,
        Slot::B,
        &big_manifest,
        &big[..],
        3,
        &mut |_, _| {},
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("does not fit"), "{err}");
}
