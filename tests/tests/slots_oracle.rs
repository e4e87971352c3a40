//! Our A/B disk images and slot-flag writes, read by tools we did not write: `sgdisk -v`
//! (gdisk) finds both GPT copies consistent after our crash-safe attribute writes, and
//! `sfdisk --json` (fdisk) reads the ChromeOS-style bits where we put them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

use enigm_e2e::require_tool;
use enigm_slots::disk::{AbLayout, create_ab_disk};
use enigm_slots::{BootControl, GptBootControl, Slot};

/// `sfdisk --json`'s view: (name, attrs) per partition.
fn sfdisk_attrs(path: &std::path::Path) -> Vec<(String, String)> {
    let out = Command::new("sfdisk")
        .arg("--json")
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    json["partitiontable"]["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap_or_default().to_owned(),
                p["attrs"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn sgdisk_verifies(path: &std::path::Path) {
    let out = Command::new("sgdisk").arg("-v").arg(path).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("No problems found"),
        "sgdisk -v: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn gdisk_and_fdisk_read_our_tables_and_bits() {
    require_tool("sgdisk", "gdisk").unwrap();
    require_tool("sfdisk", "fdisk").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("disk.img");
    create_ab_disk(
        &path,
        AbLayout {
            root_size: 4 << 20,
            verity_size: 1 << 20,
        },
    )
    .unwrap();
    sgdisk_verifies(&path);
    assert_eq!(
        sfdisk_attrs(&path),
        [
            ("root_a".into(), "GUID:48,56".into()),
            ("verity_a".into(), String::new()),
            ("root_b".into(), String::new()),
            ("verity_b".into(), String::new()),
        ]
    );

    // An update into B: priority 2 (bit 49), 3 tries (bits 52, 53), not successful.
    let mut control = GptBootControl::open(&path).unwrap();
    control.disable(Slot::B).unwrap();
    control.activate(Slot::B, 3).unwrap();
    sgdisk_verifies(&path);
    let attrs = sfdisk_attrs(&path);
    assert_eq!(attrs[0].1, "GUID:48,56");
    assert_eq!(attrs[2].1, "GUID:49,52,53");

    // Marked good: tries cleared, successful (bit 56).
    control.mark_successful(Slot::B).unwrap();
    sgdisk_verifies(&path);
    assert_eq!(sfdisk_attrs(&path)[2].1, "GUID:49,56");
}
