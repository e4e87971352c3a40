//! The installer on a real A/B disk image file: update → boot → healthy → marked good;
//! update → unhealthy boots → fallback; a tampered image is refused with the slot left
//! unbootable; signed manifests refused for the wrong key, hardware or a lower rollback index;
//! and a power cut at 200+ points of an install (inside the image and hash-area writes, and
//! around each slot-flag write) always boots a complete slot, after which a rerun completes.
//! Deltas against the running slot install the same image; a delta against another source
//! or for another image is refused with the disk unchanged.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use enigm_delta::DeltaError;
use enigm_installer::{
    FileRollbackStore, InstallError, RollbackStore, confirm, install, install_delta,
};
use enigm_manifest::{Manifest, ManifestError, VerityInfo};
use enigm_slots::disk::{AbLayout, create_ab_disk, root_name, verity_name};
use enigm_slots::fault::PowerCut;
use enigm_slots::simulator::boot;
use enigm_slots::table::{BLOCK, Disk, Table};
use enigm_slots::{BootControl, GptBootControl, Slot};
use enigm_verity::VerityParams;
use openssl::pkey::{PKey, Private};
use openssl::sha::sha256;
use openssl::sign::Signer;
use serde_json::{Value, json};

const LAYOUT: AbLayout = AbLayout {
    root_size: 2 << 20,
    verity_size: 1 << 20,
};
const HARDWARE: &str = "enigm-test-phone";

fn random(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    openssl::rand::rand_bytes(&mut v).unwrap();
    v
}

struct Image {
    data: Vec<u8>,
    manifest: Manifest,
}

fn image(blocks: usize, rollback_index: u64) -> Image {
    image_of(random(blocks * 4096), rollback_index)
}

/// The image (manifest with a fresh salt) of `data`.
fn image_of(data: Vec<u8>, rollback_index: u64) -> Image {
    let (salt, uuid) = (random(32), random(16));
    let params = VerityParams::new(salt.clone(), uuid.clone().try_into().unwrap());
    let tree = enigm_verity::build(&params, &data[..]).unwrap();
    let manifest = Manifest {
        version: format!("test.{rollback_index}"),
        rollback_index,
        hardware: HARDWARE.into(),
        root_size: data.len() as u64,
        root_sha256: hex::encode(sha256(&data)),
        verity: VerityInfo {
            root_hash: hex::encode(&tree.root_hash),
            salt: hex::encode(&salt),
            uuid: hex::encode(&uuid),
            data_block_size: 4096,
            hash_block_size: 4096,
            hash_size: tree.hash_area.len() as u64,
            hash_sha256: hex::encode(sha256(&tree.hash_area)),
        },
    };
    Image { data, manifest }
}

fn public(key: &PKey<Private>) -> (String, Value) {
    let public = json!({"keytype": "ed25519", "scheme": "ed25519",
                        "keyval": {"public": hex::encode(key.raw_public_key().unwrap())}});
    let id = hex::encode(sha256(&enigm_tuf::canonical::encode(&public).unwrap()));
    (id, public)
}

fn sign(manifest: &Manifest, key: &PKey<Private>) -> Vec<u8> {
    let signed = manifest.to_json();
    let msg = enigm_tuf::canonical::encode(&signed).unwrap();
    let sig = Signer::new_without_digest(key)
        .unwrap()
        .sign_oneshot_to_vec(&msg)
        .unwrap();
    let (id, _) = public(key);
    serde_json::to_vec(
        &json!({"signed": signed, "signatures": [{"keyid": id, "sig": hex::encode(sig)}]}),
    )
    .unwrap()
}

/// A fresh disk whose slot A holds an "old" image, booted and good.
fn disk(dir: &Path) -> (PathBuf, Vec<u8>) {
    let path = dir.join("disk.img");
    create_ab_disk(&path, LAYOUT).unwrap();
    let old = random(64 * 4096);
    let mut control = GptBootControl::open(&path).unwrap();
    let a = control.table().unwrap().find(&root_name(Slot::A)).unwrap();
    control
        .disk_mut()
        .write_at(a.first_lba * BLOCK, &old)
        .unwrap();
    (path, old)
}

fn read_partition(path: &Path, name: &str, len: usize) -> Vec<u8> {
    let mut file = std::fs::File::open(path).unwrap();
    let entry = Table::read(&mut file, "disk").unwrap().find(name).unwrap();
    let mut buf = vec![0u8; len];
    file.read_at(entry.first_lba * BLOCK, &mut buf).unwrap();
    buf
}

/// Slot `slot` holds exactly `image` (root and verity tree), checked with enigm-verity.
fn holds(path: &Path, slot: Slot, image: &Image) -> bool {
    let m = &image.manifest;
    let root = read_partition(path, &root_name(slot), m.root_size as usize);
    let area = read_partition(path, &verity_name(slot), m.verity.hash_size as usize);
    let params = enigm_installer::verity_params(m).unwrap();
    root == image.data
        && enigm_verity::verify(
            &params,
            &hex::decode(&m.verity.root_hash).unwrap(),
            &area,
            &root[..],
        )
        .is_ok()
}

#[test]
fn update_boot_mark_good_then_update_that_falls_back() {
    let dir = tempfile::tempdir().unwrap();
    let (path, old) = disk(dir.path());
    let mut rollback = FileRollbackStore::new(dir.path().join("rollback-index"));
    let mut control = GptBootControl::open(&path).unwrap();
    let new = image(300, 5);
    let mut seen = Vec::new();
    let slot = install(
        &mut control,
        Slot::A,
        &new.manifest,
        &new.data[..],
        3,
        &mut |w, t| seen.push((w, t)),
    )
    .unwrap();
    assert_eq!(slot, Slot::B);
    assert_eq!(
        seen.last(),
        Some(&(new.manifest.root_size, new.manifest.root_size))
    );
    assert!(holds(&path, Slot::B, &new));
    assert_eq!(boot(&mut control).unwrap(), Slot::B);
    assert!(confirm(&mut control, Slot::B, true, &new.manifest, &mut rollback).unwrap());
    assert_eq!(rollback.get().unwrap(), 5);
    for _ in 0..5 {
        assert_eq!(boot(&mut control).unwrap(), Slot::B);
    }
    // Next update into A never passes its health check: 3 tries, then B again.
    let bad = image(100, 6);
    install(
        &mut control,
        Slot::B,
        &bad.manifest,
        &bad.data[..],
        3,
        &mut |_, _| {},
    )
    .unwrap();
    for _ in 0..3 {
        assert_eq!(boot(&mut control).unwrap(), Slot::A);
        assert!(!confirm(&mut control, Slot::A, false, &bad.manifest, &mut rollback).unwrap());
    }
    assert_eq!(boot(&mut control).unwrap(), Slot::B);
    assert_eq!(
        rollback.get().unwrap(),
        5,
        "an unhealthy image never raises the index"
    );
    let _ = old;
}

#[test]
fn a_tampered_or_oversized_image_is_refused_and_never_boots() {
    let dir = tempfile::tempdir().unwrap();
    let (path, old) = disk(dir.path());
    let mut control = GptBootControl::open(&path).unwrap();
    let img = image(64, 1);
    let mut tampered = img.data.clone();
    tampered[5000] ^= 1;
    let err = install(
        &mut control,
        Slot::A,
        &img.manifest,
        &tampered[..],
        3,
        &mut |_, _| {},
    )
    .unwrap_err();
    assert!(matches!(err, InstallError::Mismatch(_)), "{err}");
    let mut longer = img.data.clone();
    longer.extend_from_slice(&[0; 4096]);
    let err = install(
        &mut control,
        Slot::A,
        &img.manifest,
        &longer[..],
        3,
        &mut |_, _| {},
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("longer than the manifest"),
        "{err}"
    );
    let huge = Manifest {
        root_size: 64 << 20,
        ..img.manifest.clone()
    };
    let err = install(
        &mut control,
        Slot::A,
        &huge,
        &img.data[..],
        3,
        &mut |_, _| {},
    )
    .unwrap_err();
    assert!(matches!(err, InstallError::TooLarge { .. }), "{err}");
    assert_eq!(boot(&mut control).unwrap(), Slot::A);
    assert_eq!(read_partition(&path, &root_name(Slot::A), old.len()), old);
}

#[test]
fn signed_manifests_refused_for_key_hardware_and_rollback() {
    let key = PKey::generate_ed25519().unwrap();
    let other = PKey::generate_ed25519().unwrap();
    let trusted = BTreeMap::from([public(&key)]);
    let img = image(4, 7);
    let signed = sign(&img.manifest, &key);
    assert_eq!(
        Manifest::open(&signed, &trusted, 1, HARDWARE, 7).unwrap(),
        img.manifest
    );
    assert!(matches!(
        Manifest::open(&sign(&img.manifest, &other), &trusted, 1, HARDWARE, 0),
        Err(ManifestError::Signature(_))
    ));
    assert!(matches!(
        Manifest::open(&signed, &trusted, 1, "another-phone", 0),
        Err(ManifestError::Hardware { .. })
    ));
    // A correctly signed older image: refused.
    let err = Manifest::open(&signed, &trusted, 1, HARDWARE, 8).unwrap_err();
    assert!(err.to_string().contains("anti-rollback"), "{err}");
    let mut tampered: Value = serde_json::from_slice(&signed).unwrap();
    tampered["signed"]["rollback_index"] = json!(99);
    assert!(
        Manifest::open(
            &serde_json::to_vec(&tampered).unwrap(),
            &trusted,
            1,
            HARDWARE,
            0
        )
        .is_err()
    );
}

fn open_cut(path: &Path, budget: u64) -> GptBootControl<PowerCut> {
    GptBootControl::new(PowerCut::open(path, budget).unwrap(), path.to_path_buf())
}

#[test]
fn a_power_cut_anywhere_boots_a_complete_slot_and_a_rerun_completes() {
    let dir = tempfile::tempdir().unwrap();
    let (pristine_path, old) = disk(dir.path());
    let pristine = std::fs::read(&pristine_path).unwrap();
    let new = image(200, 2);
    let path = dir.path().join("cut.img");
    // How many bytes one install writes.
    std::fs::write(&path, &pristine).unwrap();
    let mut counting = open_cut(&path, u64::MAX);
    install(
        &mut counting,
        Slot::A,
        &new.manifest,
        &new.data[..],
        3,
        &mut |_, _| {},
    )
    .unwrap();
    let total = counting.into_disk().written;
    // 200 cut points: every sector inside both slot-flag writes (disable and activate),
    // random points inside the image and hash-area writes, and the very end.
    let flag_write = 2 * (128 * 128 + 92) as u64;
    let mut cuts: Vec<u64> = (0..=flag_write).step_by(1024).collect();
    cuts.extend(
        (0..=flag_write)
            .step_by(1024)
            .map(|c| total - flag_write + c),
    );
    let bytes = random(8 * 150);
    cuts.extend(bytes.chunks(8).map(|c| {
        flag_write + u64::from_le_bytes(c.try_into().unwrap()) % (total - 2 * flag_write)
    }));
    cuts.push(total);
    assert!(cuts.len() >= 200, "{} cut points", cuts.len());
    let (mut old_boots, mut new_boots) = (0, 0);
    for &cut in &cuts {
        std::fs::write(&path, &pristine).unwrap();
        let mut control = open_cut(&path, cut);
        let _ = install(
            &mut control,
            Slot::A,
            &new.manifest,
            &new.data[..],
            3,
            &mut |_, _| {},
        );
        drop(control);
        // Power back on: the boot loader boots a complete slot.
        let mut control = GptBootControl::open(&path).unwrap();
        match boot(&mut control).unwrap_or_else(|e| panic!("cut at {cut}: {e}")) {
            Slot::A => {
                assert_eq!(
                    read_partition(&path, &root_name(Slot::A), old.len()),
                    old,
                    "cut at {cut}"
                );
                old_boots += 1;
            }
            Slot::B => {
                assert!(
                    holds(&path, Slot::B, &new),
                    "cut at {cut}: B boots half-written"
                );
                new_boots += 1;
            }
        }
        // Rerunning the update from the slot that booted completes (when A is running).
        let mut control = GptBootControl::open(&path).unwrap();
        if control.slots().unwrap().b.priority == 0 || !holds(&path, Slot::B, &new) {
            install(
                &mut control,
                Slot::A,
                &new.manifest,
                &new.data[..],
                3,
                &mut |_, _| {},
            )
            .unwrap();
        }
        assert_eq!(
            boot(&mut control).unwrap(),
            Slot::B,
            "cut at {cut}: after the rerun"
        );
        assert!(holds(&path, Slot::B, &new));
    }
    assert!(
        old_boots > 0 && new_boots > 0,
        "old {old_boots}, new {new_boots}"
    );
}

/// `old` with a few blocks rewritten and some appended: a small upgrade.
fn upgraded(old: &[u8]) -> Vec<u8> {
    let mut new = old.to_vec();
    new[40_960..49_152].copy_from_slice(&random(8192));
    new.extend_from_slice(&random(3 * 4096));
    new
}

fn delta(from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    enigm_delta::create(from, to, 3, &mut out).unwrap();
    out
}

#[test]
fn a_delta_against_the_running_slot_installs_the_new_image() {
    let dir = tempfile::tempdir().unwrap();
    let (path, old) = disk(dir.path());
    let new = image_of(upgraded(&old), 2);
    let patch = delta(&old, &new.data);
    assert!(patch.len() < new.data.len() / 8, "{} bytes", patch.len());
    let mut control = GptBootControl::open(&path).unwrap();
    let mut seen = 0;
    let slot = install_delta(
        &mut control,
        Slot::A,
        &new.manifest,
        &patch[..],
        3,
        &mut |w, _| seen = w,
    )
    .unwrap();
    assert_eq!((slot, seen), (Slot::B, new.manifest.root_size));
    assert!(holds(&path, Slot::B, &new));
    assert_eq!(boot(&mut control).unwrap(), Slot::B);
}

#[test]
fn a_delta_against_another_source_or_for_another_image_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (path, old) = disk(dir.path());
    let new = image_of(upgraded(&old), 2);
    let mut other_source = old.clone();
    other_source[100] ^= 1;
    let wrong_source = delta(&other_source, &new.data);
    let other = image_of(upgraded(&old), 2);
    let wrong_target = delta(&old, &other.data);
    let before = std::fs::read(&path).unwrap();
    for (patch, what) in [(&wrong_source, "source"), (&wrong_target, "target")] {
        let mut control = GptBootControl::open(&path).unwrap();
        let err = install_delta(
            &mut control,
            Slot::A,
            &new.manifest,
            &patch[..],
            3,
            &mut |_, _| panic!("wrote while the delta's {what} is wrong"),
        )
        .unwrap_err();
        match (what, &err) {
            ("source", InstallError::Delta(DeltaError::WrongSource { .. })) => {}
            ("target", InstallError::Mismatch(m)) if m.contains("the delta produces") => {}
            _ => panic!("wrong {what}: {err}"),
        }
        assert_eq!(
            std::fs::read(&path).unwrap(),
            before,
            "wrong {what}: the disk changed"
        );
    }
    // A truncated delta fails while streaming; the target slot stays unbootable.
    let good = delta(&old, &new.data);
    let mut control = GptBootControl::open(&path).unwrap();
    let err = install_delta(
        &mut control,
        Slot::A,
        &new.manifest,
        &good[..good.len() - 20],
        3,
        &mut |_, _| {},
    )
    .unwrap_err();
    assert!(
        matches!(err, InstallError::Source(_) | InstallError::Mismatch(_)),
        "{err}"
    );
    for _ in 0..3 {
        assert_eq!(boot(&mut control).unwrap(), Slot::A);
    }
}
