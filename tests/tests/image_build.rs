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

fn run_fails(cmd: &mut Command, what: &str) -> String {
    let out = cmd.output().unwrap();
    assert!(!out.status.success(), "{what} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn publish_a_build_with_a_delta_from_the_previous_one() {
    require_tool("mkfs.erofs", "erofs-utils").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let image = binary("enigm-image").unwrap();
    let keys = d.join("keys");
    let repo = d.join("repo");
    run(
        Command::new(&image)
            .args(["keys", "generate", "--keys"])
            .arg(&keys),
        "keys generate",
    );
    run(
        Command::new(&image)
            .args(["repo", "init", "--keys"])
            .arg(&keys)
            .arg("--repo")
            .arg(&repo),
        "repo init",
    );
    rootfs(&d.join("rootfs-1"), "1");
    build(
        &image,
        &keys,
        &d.join("rootfs-1"),
        &d.join("v1"),
        "1",
        1,
        false,
    );
    // v2: the same tree with a new os-release.
    rootfs(&d.join("rootfs-2"), "2");
    std::fs::copy(
        d.join("rootfs-1/usr/bin/tool"),
        d.join("rootfs-2/usr/bin/tool"),
    )
    .unwrap();
    build(
        &image,
        &keys,
        &d.join("rootfs-2"),
        &d.join("v2"),
        "2",
        2,
        false,
    );
    let publish = |extra: &[&str]| {
        let mut cmd = Command::new(&image);
        cmd.args(["--json", "publish", "--keys"])
            .arg(&keys)
            .arg("--repo")
            .arg(&repo)
            .args(extra);
        cmd
    };
    let v1 = d.join("v1").display().to_string();
    let v2 = d.join("v2").display().to_string();
    let out = run(
        &mut publish(&["--build", &v2, "--delta-from", &v1, "--delta-level", "9"]),
        "publish",
    );
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    let sha = |build: &str| {
        let m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(Path::new(build).join("manifest.json")).unwrap())
                .unwrap();
        m["signed"]["root"]["sha256"].as_str().unwrap().to_owned()
    };
    let name = format!("test-phone/delta/{}-{}.zst", sha(&v1), sha(&v2));
    assert_eq!(report["deltas"][0]["name"], name.as_str(), "{report}");
    assert_eq!(report["deltas"][0]["from_version"], "1");
    let size = report["deltas"][0]["size"].as_u64().unwrap();
    let full = std::fs::metadata(d.join("v2/root.erofs")).unwrap().len();
    assert!(size * 10 < full, "delta {size} bytes, image {full}");
    assert_eq!(
        report["targets"],
        serde_json::json!(["test-phone/manifest.json", "test-phone/root.erofs", name])
    );
    let published = std::fs::read_dir(repo.join("targets/test-phone/delta"))
        .unwrap()
        .count();
    assert_eq!(published, 1);

    // The device's image-keys.json, exported: the keys the manifests verify with.
    let exported = d.join("image-keys.json");
    run(
        Command::new(&image)
            .args(["keys", "export", "--keys"])
            .arg(&keys)
            .arg("--out")
            .arg(&exported),
        "keys export",
    );
    let trusted: std::collections::BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(&std::fs::read(&exported).unwrap()).unwrap();
    Manifest::open(
        &std::fs::read(d.join("v2/manifest.json")).unwrap(),
        &trusted,
        1,
        "test-phone",
        0,
    )
    .unwrap();
    let err = run_fails(
        Command::new(&image)
            .args(["keys", "export", "--role", "nobody", "--keys"])
            .arg(&keys)
            .arg("--out")
            .arg(&exported),
        "export of an unknown role",
    );
    assert!(err.contains("unknown role"), "{err}");

    // Refused: a delta from the same image; --delta-from without --build.
    let err = run_fails(
        &mut publish(&["--build", &v2, "--delta-from", &v2]),
        "self delta",
    );
    assert!(err.contains("same image"), "{err}");
    let err = run_fails(&mut publish(&["--delta-from", &v1]), "no build");
    assert!(err.contains("--build"), "{err}");
}
