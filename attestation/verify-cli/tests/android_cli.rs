//! `enigm-verify android` on every chain in the shared testdata: the printed record equals the
//! reference verifier's JSON field by field, the verdict and exit status are right, software
//! roots and the invalid chain are refused with their reasons, and a policy appraisal runs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

use std::path::{Path, PathBuf};
use std::process::Command;

fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testdata/android-attestation")
}

fn rfc3339(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

fn verify(chain: &Path, extra: &[&str]) -> (bool, serde_json::Value, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_enigm-verify"))
        .arg("android")
        .arg(chain)
        .arg("--roots")
        .arg(testdata().join("roots.json"))
        .arg("--json")
        .args(extra)
        .output()
        .unwrap();
    let json = serde_json::from_slice(&output.stdout).unwrap_or(serde_json::Value::Null);
    (
        output.status.success(),
        json,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn chains() -> Vec<(PathBuf, serde_json::Value)> {
    let mut out = Vec::new();
    for device in [
        "blueline/sdk28",
        "akita/sdk34",
        "caiman/sdk36",
        "marlin/sdk29",
    ] {
        for entry in std::fs::read_dir(testdata().join(device)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "pem") {
                let reference = serde_json::from_str(
                    &std::fs::read_to_string(path.with_extension("json")).unwrap(),
                )
                .unwrap();
                out.push((path, reference));
            }
        }
    }
    assert!(out.len() >= 14, "testdata present");
    out
}

fn creation_time(reference: &serde_json::Value) -> String {
    let ms: i64 = ["softwareEnforced", "hardwareEnforced"]
        .iter()
        .find_map(|list| reference[list]["creationDateTime"].as_str())
        .unwrap()
        .parse()
        .unwrap();
    rfc3339(ms / 1000 + 1)
}

#[test]
fn every_chain_prints_the_reference_record_and_the_right_verdict() {
    for (chain, reference) in chains() {
        let at = creation_time(&reference);
        let (ok, mut json, stderr) = verify(&chain, &["--at", &at]);
        let verdict = json
            .as_object_mut()
            .and_then(|o| o.remove("verdict"))
            .expect("a verdict");
        assert_eq!(
            json,
            reference,
            "{}: record differs from the reference JSON",
            chain.display()
        );
        let software_root = chain.to_string_lossy().contains("marlin");
        assert_eq!(
            ok,
            !software_root,
            "{}: exit status ({stderr})",
            chain.display()
        );
        assert_eq!(verdict["passed"], !software_root);
        if software_root {
            assert_eq!(verdict["hardwareBacked"], false);
            assert!(
                stderr.contains("not rooted in a Google hardware root"),
                "{stderr}"
            );
        } else {
            let expected = if chain
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("SB_")
            {
                "STRONG_BOX"
            } else {
                "TRUSTED_ENVIRONMENT"
            };
            assert_eq!(verdict["securityLevel"], expected, "{}", chain.display());
            assert_eq!(verdict["hardwareBacked"], true);
        }
    }
}

#[test]
fn the_invalid_chain_is_rejected_with_its_reason() {
    let (ok, _, stderr) = verify(
        &testdata().join("invalid/tags_not_in_ascending_order.pem"),
        &[],
    );
    assert!(!ok);
    assert!(stderr.contains("ascending order"), "{stderr}");
}

#[test]
fn time_and_revocation_are_enforced() {
    let (chain, reference) = chains()
        .into_iter()
        .find(|(p, _)| p.ends_with("caiman/sdk36/TEE_EC_RKP.pem"))
        .unwrap();
    let (ok, _, _) = verify(&chain, &["--at", "2001-01-01T00:00:00Z"]);
    assert!(!ok, "before the chain's validity");
    let at = creation_time(&reference);
    let pem = std::fs::read_to_string(&chain).unwrap();
    let leaf = openssl::x509::X509::from_pem(pem.as_bytes()).unwrap();
    let serial = leaf
        .serial_number()
        .to_bn()
        .unwrap()
        .to_hex_str()
        .unwrap()
        .to_lowercase();
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("status.json");
    std::fs::write(
        &list,
        format!(
            r#"{{"entries": {{"{serial}": {{"status": "REVOKED", "reason": "KEY_COMPROMISE"}}}}}}"#
        ),
    )
    .unwrap();
    let (ok, _, stderr) = verify(
        &chain,
        &["--at", &at, "--revocations", list.to_str().unwrap()],
    );
    assert!(!ok && stderr.to_lowercase().contains("revoked"), "{stderr}");
}

#[test]
fn a_policy_appraises_the_root_of_trust_and_challenge() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, "[android]\nrequire_locked_bootloader = true\nallowed_verified_boot_states = [\"VERIFIED\"]\nmin_os_patch_level = 202501\n").unwrap();
    let policy = policy.to_str().unwrap().to_owned();
    for (chain, reference) in chains() {
        if chain.to_string_lossy().contains("marlin") {
            continue;
        }
        let challenge = hex::encode(base64_decode(
            reference["attestationChallenge"].as_str().unwrap(),
        ));
        let at = creation_time(&reference);
        let (ok, json, _) = verify(
            &chain,
            &["--at", &at, "--policy", &policy, "--challenge", &challenge],
        );
        let claims = json["verdict"]["appraisal"]["claims"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let refuted: Vec<&str> = claims
            .iter()
            .filter(|c| c["tier"] == "contraindicated")
            .filter_map(|c| c["name"].as_str())
            .collect();
        // Pixel 9 Pro (caiman) is locked, verified and patched in 2025; the others are unlocked.
        if chain.to_string_lossy().contains("caiman") {
            assert!(ok && refuted.is_empty(), "{}: {refuted:?}", chain.display());
        } else {
            assert!(
                !ok && refuted.contains(&"bootloader") && refuted.contains(&"boot-state"),
                "{}: {refuted:?}",
                chain.display()
            );
        }
        let (ok, json, _) = verify(
            &chain,
            &["--at", &at, "--policy", &policy, "--challenge", "00"],
        );
        assert!(!ok);
        let claims = json["verdict"]["appraisal"]["claims"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(
            claims
                .iter()
                .any(|c| c["name"] == "challenge" && c["tier"] == "contraindicated")
        );
    }
}

fn base64_decode(text: &str) -> Vec<u8> {
    openssl::base64::decode_block(text).unwrap()
}
