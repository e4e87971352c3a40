//! The whole update path on files: `enigm-image build` makes an erofs root, its dm-verity
//! tree, a signed manifest and an A/B disk; tools we did not write accept them (`fsck.erofs`,
//! `veritysetup verify`, `sgdisk -v`); the boot simulator boots slot A; a second build is
//! installed into slot B from its signed manifest, boots, is confirmed, and an older build is
//! then refused by the rollback index.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;

use enigm_e2e::{binary, require_tool};
use enigm_installer::{FileRollbackStore, RollbackStore, confirm, install};
use enigm_manifest::{Manifest, ManifestError};
use enigm_slots::simulator::boot;
use enigm_slots::{GptBootControl, Slot};

fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn rootfs(dir: &Path, release: &str) {
    std::fs::create_dir_all(dir.join("etc")).unwrap();
    std::fs::create_dir_all(dir.join("usr/bin")).unwrap();
    std::fs::write(
        dir.join("etc/os-release"),
        format!("NAME=\"Enigm OS\"\nVERSION_ID={release}\n"),
    )
    .unwrap();
    let mut tool = vec![0u8; 200_000];
    openssl::rand::rand_bytes(&mut tool).unwrap();
    std::fs::write(dir.join("usr/bin/tool"), tool).unwrap();
}

fn build(
    image: &Path,
    keys: &Path,
    rootfs: &Path,
    out: &Path,
    version: &str,
    index: u64,
    disk: bool,
) {
    let mut cmd = Command::new(image);
    cmd.args(["build", "--rootfs"])
        .arg(rootfs)
        .arg("--out")
        .arg(out)
        .arg("--keys")
        .arg(keys)
        .args([
            "--version",
            version,
            "--rollback-index",
            &index.to_string(),
            "--hardware",
            "test-phone",
        ]);
    if disk {
        cmd.args(["--disk-slot-mib", "4"]);
    }
    run(&mut cmd, "enigm-image build");
}

#[test]
fn build_check_boot_update_confirm_and_refuse_rollback() {
    for (tool, package) in [
        ("mkfs.erofs", "erofs-utils"),
        ("fsck.erofs", "erofs-utils"),
        ("veritysetup", "cryptsetup-bin"),
        ("sgdisk", "gdisk"),
    ] {
        require_tool(tool, package).unwrap();
    }
    let image = binary("enigm-image").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    run(
        Command::new(&image)
            .args(["keys", "generate", "--keys"])
            .arg(&keys),
        "keys generate",
    );
    let (v1, v2) = (dir.path().join("v1"), dir.path().join("v2"));
    rootfs(&dir.path().join("rootfs1"), "1");
    rootfs(&dir.path().join("rootfs2"), "2");
    build(
        &image,
        &keys,
        &dir.path().join("rootfs1"),
        &v1,
        "1.0",
        1,
        true,
    );
    build(
        &image,
        &keys,
        &dir.path().join("rootfs2"),
        &v2,
        "2.0",
        2,
        false,
    );

    // Outside checks of what build wrote.
    let trusted = enigm_image::keys::public_map(&keys, enigm_image::keys::IMAGE).unwrap();
    let m1 = Manifest::open(
        &std::fs::read(v1.join("manifest.json")).unwrap(),
        &trusted,
        1,
        "test-phone",
        0,
    )
    .unwrap();
    run(
        Command::new("fsck.erofs").arg(v1.join("root.erofs")),
        "fsck.erofs",
    );
    run(
        Command::new("veritysetup")
            .arg("verify")
            .arg(v1.join("root.erofs"))
            .arg(v1.join("root.verity"))
            .arg(&m1.verity.root_hash),
        "veritysetup verify",
    );
    let disk = v1.join("disk.img");
    let verified = run(Command::new("sgdisk").arg("-v").arg(&disk), "sgdisk -v");
    assert!(verified.contains("No problems found"), "{verified}");

    // The device: boots A, installs v2 into B from its signed manifest, boots B, confirms.
    let mut control = GptBootControl::open(&disk).unwrap();
    let mut rollback = FileRollbackStore::new(dir.path().join("rollback-index"));
    rollback.raise(m1.rollback_index).unwrap();
    assert_eq!(boot(&mut control).unwrap(), Slot::A);
    let m2 = Manifest::open(
        &std::fs::read(v2.join("manifest.json")).unwrap(),
        &trusted,
        1,
        "test-phone",
        rollback.get().unwrap(),
    )
    .unwrap();
    let payload = std::fs::File::open(v2.join("root.erofs")).unwrap();
    assert_eq!(
        install(&mut control, Slot::A, &m2, payload, 3, &mut |_, _| {}).unwrap(),
        Slot::B
    );
    assert_eq!(boot(&mut control).unwrap(), Slot::B);
    assert!(confirm(&mut control, Slot::B, true, &m2, &mut rollback).unwrap());
    assert_eq!(boot(&mut control).unwrap(), Slot::B);
    let verified = run(
        Command::new("sgdisk").arg("-v").arg(&disk),
        "sgdisk -v after the update",
    );
    assert!(verified.contains("No problems found"), "{verified}");

    // v1 is correctly signed but older than what now runs: refused.
    let err = Manifest::open(
        &std::fs::read(v1.join("manifest.json")).unwrap(),
        &trusted,
        1,
        "test-phone",
        rollback.get().unwrap(),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            ManifestError::Rollback {
                found: 1,
                minimum: 2
            }
        ),
        "{err}"
    );
}
