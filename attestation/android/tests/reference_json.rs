//! Every captured chain's parsed KeyDescription equals the reference verifier's JSON, field by
//! field; the invalid chain is rejected for its tag order.

// Test helpers outside #[test] fns fail loudly too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;

use common::{Case, FIXTURES, cases, extra_cases, invalid_chain, json_diff, pem_file};
use enigm_android_attestation::{
    ExtensionError, KeyDescriptionError, key_description_from_certificate,
};

/// Parses every chain's leaf and diffs it with the reference JSON; returns the attestation
/// versions seen.
fn check_against_reference(cases: &[Case]) -> Vec<i128> {
    let mut failures = Vec::new();
    let mut versions = Vec::new();
    for case in cases {
        let leaf = case.chain.first().unwrap();
        let kd = match key_description_from_certificate(leaf) {
            Ok(Some(kd)) => kd,
            other => {
                failures.push(format!("{}: not parsed: {other:?}", case.name));
                continue;
            }
        };
        versions.push(kd.attestation_version);
        let diff = json_diff(&case.json, &kd.to_reference_json());
        if !diff.is_empty() {
            failures.push(format!("{}:\n  {}", case.name, diff.join("\n  ")));
        }
        // serde serialisation is the same JSON.
        assert_eq!(serde_json::to_value(&kd).unwrap(), kd.to_reference_json());
    }
    assert!(
        failures.is_empty(),
        "mismatches against the reference JSON:\n{}",
        failures.join("\n")
    );
    versions.sort_unstable();
    versions.dedup();
    versions
}

#[test]
fn every_chain_matches_its_reference_json() {
    // The shared testdata covers Keymaster 3 (attestation 2, 3) and KeyMint 3/4 (300, 400).
    assert_eq!(check_against_reference(&cases()), vec![2, 3, 300, 400]);
}

#[test]
fn later_versions_match_their_reference_json() {
    // Android 16/17 devices: attestation 3 (Sony), 300, 400 and 500 (usage count limit, trusted
    // confirmation, ML-DSA keys).
    assert_eq!(
        check_against_reference(&extra_cases()),
        vec![3, 300, 400, 500]
    );
}

#[test]
fn lenient_encodings_the_reference_accepts_are_accepted() {
    // deviceLocked encoded as BOOLEAN 0x01 instead of 0xFF: TRUE, as in the reference verifier.
    let chain = pem_file(&Path::new(FIXTURES).join("invalid/malformed_rot_device_locked.pem"));
    let kd = key_description_from_certificate(chain.first().unwrap())
        .unwrap()
        .unwrap();
    assert!(kd.root_of_trust().unwrap().device_locked);
    // allowWhileOnBody (506), which the reference parses but does not model.
    let chain = pem_file(&Path::new(FIXTURES).join("allow_while_on_body.pem"));
    let kd = key_description_from_certificate(chain.first().unwrap())
        .unwrap()
        .unwrap();
    let on_body =
        kd.software_enforced.allow_while_on_body || kd.hardware_enforced.allow_while_on_body;
    assert!(on_body);
}

#[test]
fn the_diff_reports_mismatches_readably() {
    let expected = serde_json::json!({"a": "1", "b": {"c": [true]}, "d": "x"});
    let actual = serde_json::json!({"a": "2", "b": {"c": [true, false]}, "e": "y"});
    let diff = json_diff(&expected, &actual);
    assert_eq!(
        diff,
        vec![
            r#"$.a: expected "1", got "2""#.to_owned(),
            "$.b.c: expected 1 elements, got 2".to_owned(),
            r#"$.d: missing (expected "x")"#.to_owned(),
            r#"$.e: unexpected "y""#.to_owned(),
        ]
    );
}

#[test]
fn tags_not_in_ascending_order_are_rejected() {
    let chain = invalid_chain();
    let err = key_description_from_certificate(chain.first().unwrap()).unwrap_err();
    assert!(
        matches!(
            err,
            ExtensionError::KeyDescription(KeyDescriptionError::TagsNotAscending { .. })
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("tags must be in ascending order"),
        "{err}"
    );
}

#[test]
fn intermediates_and_roots_carry_no_key_description() {
    for case in cases().into_iter().chain(extra_cases()) {
        for (i, cert) in case.chain.iter().enumerate().skip(1) {
            assert!(
                key_description_from_certificate(cert).unwrap().is_none(),
                "{} certificate {i}",
                case.name
            );
        }
    }
}
