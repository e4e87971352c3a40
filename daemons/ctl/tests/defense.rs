//! `enigmctl defense scan` and `sign-feed` end to end, offline, on fixture trees: exit status
//! 2 with findings (JSON), 0 on a clean tree, 1 with a clear error for a malformed bundle or a
//! tampered feed; a signed feed is accepted only with its key.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Command, Output};

use openssl::pkey::PKey;

const STIX: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/testdata/stix2"
);

fn enigmctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_enigmctl"))
        .args(args)
        .env_remove("ENIGM_BUS_ADDRESS")
        .output()
        .unwrap()
}

fn write(root: &Path, path: &str, contents: &str) {
    let full = root.join(path);
    std::fs::create_dir_all(full.parent().unwrap()).unwrap();
    std::fs::write(full, contents).unwrap();
}

fn tree(root: &Path, infected: bool) {
    write(root, "proc/1/comm", "systemd\n");
    write(root, "proc/mounts", "/dev/dm-0 / erofs ro 0 0\n");
    write(root, "proc/sys/kernel/tainted", "0\n");
    if infected {
        write(root, "proc/4242/comm", "fservernetd\n");
        write(
            root,
            "var/log/dnsmasq.log",
            "query[A] a.weather4free.com from 10.0.0.2\n",
        );
    }
}

#[test]
fn scan_reports_findings_as_json_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    tree(dir.path(), true);
    let root = dir.path().to_str().unwrap();
    let output = enigmctl(&["defense", "scan", "--iocs", STIX, "--root", root, "--json"]);
    assert_eq!(
        output.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["complete"], true);
    assert_eq!(report["indicators"]["bundles"], 4);
    let findings = report["findings"].as_array().unwrap();
    let mut subjects: Vec<(&str, &str)> = findings
        .iter()
        .map(|f| {
            (
                f["indicator"]["collections"][0].as_str().unwrap(),
                f["evidence"][0]["subject"].as_str().unwrap(),
            )
        })
        .collect();
    subjects.sort();
    assert_eq!(
        subjects,
        [
            ("Pegasus", "a.weather4free.com"),
            ("Pegasus", "fservernetd")
        ]
    );

    let text = enigmctl(&["defense", "scan", "--iocs", STIX, "--root", root]);
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(
        stdout.contains("[CRITICAL] running process matches an indicator of Pegasus"),
        "{stdout}"
    );
}

#[test]
fn a_clean_tree_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    tree(dir.path(), false);
    let output = enigmctl(&[
        "defense",
        "scan",
        "--iocs",
        STIX,
        "--root",
        dir.path().to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("No findings."), "{stdout}");
}

#[test]
fn a_malformed_bundle_fails_naming_the_object() {
    let dir = tempfile::tempdir().unwrap();
    tree(dir.path(), false);
    let bad = dir.path().join("bad.stix2");
    std::fs::write(
        &bad,
        r#"{"type":"bundle","objects":[{"type":"malware","id":"malware--1","name":"X"},{"type":"indicator","id":"indicator--broken","pattern":"[process:name = 'x' AND]"}]}"#,
    )
    .unwrap();
    let output = enigmctl(&[
        "defense",
        "scan",
        "--iocs",
        bad.to_str().unwrap(),
        "--root",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("bad.stix2: object #1 (indicator--broken): malformed pattern"),
        "{stderr}"
    );
}

#[test]
fn signed_feeds_load_only_with_their_key_and_untampered() {
    let dir = tempfile::tempdir().unwrap();
    tree(dir.path(), true);
    let key = PKey::generate_ed25519().unwrap();
    let other = PKey::generate_ed25519().unwrap();
    let key_pem = dir.path().join("feed.key");
    let pub_pem = dir.path().join("feed.pub");
    let other_pem = dir.path().join("other.pub");
    std::fs::write(&key_pem, key.private_key_to_pem_pkcs8().unwrap()).unwrap();
    std::fs::write(&pub_pem, key.public_key_to_pem().unwrap()).unwrap();
    std::fs::write(&other_pem, other.public_key_to_pem().unwrap()).unwrap();
    let feed = dir.path().join("iocs.feed");
    let output = enigmctl(&[
        "defense",
        "sign-feed",
        "--key",
        key_pem.to_str().unwrap(),
        "--sequence",
        "3",
        "--out",
        feed.to_str().unwrap(),
        &format!("{STIX}/pegasus.stix2"),
        &format!("{STIX}/cytrox.stix2"),
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let root = dir.path().to_str().unwrap();
    let scan = |key: &Path| {
        enigmctl(&[
            "defense",
            "scan",
            "--feed",
            feed.to_str().unwrap(),
            "--feed-key",
            key.to_str().unwrap(),
            "--root",
            root,
            "--json",
        ])
    };
    let output = scan(&pub_pem);
    assert_eq!(
        output.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["indicators"]["bundles"], 2);

    let output = scan(&other_pem);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("signature does not verify"));

    let mut bytes = std::fs::read(&feed).unwrap();
    let at = bytes.len() / 3;
    bytes[at] ^= 0x20;
    std::fs::write(&feed, bytes).unwrap();
    let output = scan(&pub_pem);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("signature does not verify"));
}
