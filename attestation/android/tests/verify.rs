//! Chain verification against the captured chains: every valid chain verifies as of its creation
//! time with the reference's security level; software-rooted chains never count as hardware;
//! tampering, revocation, time and malformed input all fail with their reason.

// Test helpers outside #[test] fns fail loudly too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::SystemTime;

use common::{Case, case, cases, creation_time, date, extra_cases, invalid_chain, roots};
use enigm_android_attestation::{
    AndroidError, KeyDescriptionError, Provisioning, RevocationList, RootKind, SecurityLevel,
    TrustedRoots, Verdict, VerificationCache, VerifiedAttestation, VerifyOptions,
    key_description_from_certificate, parse_pem_chain, verify_chain,
};
use openssl::x509::X509;

fn verify_at(chain: &[Vec<u8>], at: SystemTime) -> Result<VerifiedAttestation, AndroidError> {
    let roots = roots();
    verify_chain(
        chain,
        &VerifyOptions::new(&roots, at).allow_software_root(true),
    )
}

fn level(json: &serde_json::Value) -> SecurityLevel {
    match json["attestationSecurityLevel"].as_str().unwrap() {
        "SOFTWARE" => SecurityLevel::Software,
        "TRUSTED_ENVIRONMENT" => SecurityLevel::TrustedEnvironment,
        "STRONG_BOX" => SecurityLevel::StrongBox,
        other => panic!("unknown level {other}"),
    }
}

fn check_valid_chain(case: &Case) {
    let at = creation_time(&case.json);
    let v = verify_at(&case.chain, at).unwrap_or_else(|e| panic!("{}: {e}", case.name));
    // Same checks as the reference verifier's verify_validChain_returnsSuccess.
    assert_eq!(v.security_level, level(&case.json), "{}", case.name);
    assert_eq!(
        v.key_description.attestation_challenge,
        key_description_from_certificate(&case.chain[0])
            .unwrap()
            .unwrap()
            .attestation_challenge
    );
    let leaf = X509::from_der(&case.chain[0]).unwrap();
    assert_eq!(
        v.leaf_public_key_der,
        leaf.public_key().unwrap().public_key_to_der().unwrap()
    );
    assert_eq!(v.serials.len(), case.chain.len());
    let json = serde_json::to_value(&v).unwrap();
    assert_eq!(
        json["key_description"],
        v.key_description.to_reference_json()
    );
    assert_eq!(json["hardware_backed"], v.hardware_backed);
    assert_eq!(
        json["security_level"],
        case.json["attestationSecurityLevel"]
    );
    let software = case.name.starts_with("marlin/");
    if software {
        assert_eq!(v.root, RootKind::GoogleSoftware, "{}", case.name);
        assert!(!v.hardware_backed, "{}", case.name);
        assert!(
            v.verdict
                .reasons()
                .iter()
                .any(|r| r.contains("not rooted in a Google hardware root")),
            "{}: {:?}",
            case.name,
            v.verdict
        );
    } else {
        assert_eq!(v.root, RootKind::GoogleHardware, "{}", case.name);
        assert!(v.hardware_backed, "{}", case.name);
        assert_eq!(v.verdict, Verdict::Passed, "{}", case.name);
    }
    let model = case.name.split('/').next();
    let expected_provisioning = if case.name.ends_with("_FACTORY")
        || matches!(model, Some("blueline" | "sony-xperia10-iii"))
    {
        Provisioning::Factory
    } else if case.name.ends_with("_RKP") || matches!(model, Some("akita" | "tegu")) {
        Provisioning::Remote
    } else {
        Provisioning::Unknown
    };
    assert_eq!(v.provisioning, expected_provisioning, "{}", case.name);
}

#[test]
fn every_valid_chain_verifies_as_of_its_creation_time() {
    let all = cases();
    for case in &all {
        check_valid_chain(case);
    }
    assert!(
        all.iter().any(|c| c.name.starts_with("caiman/")),
        "RKP chains present"
    );
}

#[test]
fn later_chains_verify_including_the_2025_root_and_a_non_ca_attestation_key() {
    for case in extra_cases() {
        if case.name.starts_with("tokay/") {
            // ML-DSA: OpenSSL learned it in 3.5.
            let result = verify_at(&case.chain, creation_time(&case.json));
            if openssl::version::number() >= 0x3050_0000 {
                check_valid_chain(&case);
            } else {
                assert!(
                    matches!(result, Err(AndroidError::UnsupportedPublicKey { .. })),
                    "{}: {result:?}",
                    case.name
                );
            }
            continue;
        }
        check_valid_chain(&case);
    }
}

#[test]
fn software_rooted_chains_never_appraise_as_hardware() {
    let roots = roots();
    for case in cases().iter().filter(|c| c.name.starts_with("marlin/")) {
        let at = creation_time(&case.json);
        // Default options: an error that says why.
        let err = verify_chain(&case.chain, &VerifyOptions::new(&roots, at)).unwrap_err();
        assert!(
            matches!(err, AndroidError::SoftwareRoot),
            "{}: {err}",
            case.name
        );
        assert!(
            err.to_string()
                .contains("not rooted in a Google hardware root")
        );
        // Allowed: verifies, but never hardware-backed and the verdict fails.
        let v = verify_at(&case.chain, at).unwrap();
        assert!(!v.hardware_backed);
        assert!(!v.verdict.passed());
        assert_eq!(v.security_level, SecurityLevel::Software);
        // The software root cannot be smuggled in as a trusted root.
        let root = X509::from_der(case.chain.last().unwrap()).unwrap();
        assert!(TrustedRoots::new().add_certificate(&root).is_err());
    }
}

#[test]
fn the_invalid_chain_is_rejected_for_its_tag_order() {
    let chain = invalid_chain();
    let err = verify_at(&chain, date(2023, 1, 1)).unwrap_err();
    assert!(
        matches!(
            err,
            AndroidError::KeyDescription(KeyDescriptionError::TagsNotAscending {
                list: "hardwareEnforced",
                ..
            })
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("tags must be in ascending order"),
        "{err}"
    );
    // The file was made by editing a real leaf: its signature is broken too (OpenSSL agrees),
    // which is why the reason above relies on structure being checked before signatures.
    let leaf = X509::from_der(&chain[0]).unwrap();
    let issuer = X509::from_der(&chain[1]).unwrap();
    assert!(!leaf.verify(&issuer.public_key().unwrap()).unwrap_or(false));
}

fn flip_last_byte(der: &[u8]) -> Vec<u8> {
    let mut out = der.to_vec();
    if let Some(b) = out.last_mut() {
        *b ^= 0x01;
    }
    out
}

#[test]
fn a_flipped_signature_byte_fails_with_and_without_the_cache() {
    for name in [
        "caiman/sdk36/TEE_EC_RKP",
        "blueline/sdk28/TEE_RSA_NONE",
        "akita/sdk34/SB_RSA_NONE",
    ] {
        let c = case(name);
        let at = creation_time(&c.json);
        let roots = roots();
        let cache = VerificationCache::default();
        let cached = VerifyOptions::new(&roots, at).with_cache(&cache);
        // Warm the cache with the genuine chain.
        assert_eq!(verify_chain(&c.chain, &cached).unwrap().cached_links, 0);
        assert_eq!(
            verify_chain(&c.chain, &cached).unwrap().cached_links,
            c.chain.len() - 2
        );
        // The root is trusted by its key, not by its self-signature.
        let mut root_flipped = c.chain.clone();
        let last = root_flipped.len() - 1;
        root_flipped[last] = flip_last_byte(&root_flipped[last]);
        assert!(verify_chain(&root_flipped, &VerifyOptions::new(&roots, at)).is_ok());
        for index in 0..c.chain.len() - 1 {
            let mut tampered = c.chain.clone();
            tampered[index] = flip_last_byte(&tampered[index]);
            for options in [VerifyOptions::new(&roots, at), cached] {
                let err = verify_chain(&tampered, &options).unwrap_err();
                assert!(
                    matches!(err, AndroidError::Signature { index: i } if i == index),
                    "{name} cert {index}: {err}"
                );
            }
        }
    }
}

#[test]
fn the_cache_skips_intermediate_signatures_only() {
    let roots = roots();
    let cache = VerificationCache::new(64);
    for c in cases().iter().filter(|c| !c.name.starts_with("marlin/")) {
        let opts = VerifyOptions::new(&roots, creation_time(&c.json)).with_cache(&cache);
        let first = verify_chain(&c.chain, &opts).unwrap();
        let second = verify_chain(&c.chain, &opts).unwrap();
        assert_eq!(second.cached_links, c.chain.len() - 2, "{}", c.name);
        assert!(first.cached_links <= second.cached_links);
        assert_eq!(first.key_description, second.key_description);
    }
    assert!(cache.hits() > 0 && cache.misses() > 0);
    assert!(!cache.is_empty());
}

#[test]
fn a_revoked_serial_fails_verification() {
    let c = case("blueline/sdk28/TEE_EC_NONE");
    let at = creation_time(&c.json);
    let roots = roots();
    let good = verify_chain(&c.chain, &VerifyOptions::new(&roots, at)).unwrap();
    let dir = std::env::temp_dir().join(format!("enigm-android-revocation-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (index, status) in [(2, "REVOKED"), (1, "SUSPENDED")] {
        // Upper case with a leading zero: the list is matched like Java's BigInteger hex.
        let serial = format!("0{}", good.serials[index].to_uppercase());
        let path = dir.join(format!("status-{index}.json"));
        std::fs::write(
            &path,
            format!(
                r#"{{"entries": {{"{serial}": {{"status": "{status}", "reason": "KEY_COMPROMISE"}},
                    "deadbeef": {{"status": "REVOKED"}}}}}}"#
            ),
        )
        .unwrap();
        let list = RevocationList::from_file(&path).unwrap();
        let err = verify_chain(
            &c.chain,
            &VerifyOptions::new(&roots, at).with_revocations(&list),
        )
        .unwrap_err();
        assert!(
            matches!(err, AndroidError::Revoked { index: i, .. } if i == index),
            "{err}"
        );
        let msg = err.to_string();
        assert!(msg.contains("revoked") && msg.contains(status) && msg.contains("KEY_COMPROMISE"));
    }
    // A list that names none of the chain's serials passes.
    let list =
        RevocationList::from_json(r#"{"entries": {"deadbeef": {"status": "REVOKED"}}}"#).unwrap();
    assert!(
        verify_chain(
            &c.chain,
            &VerifyOptions::new(&roots, at).with_revocations(&list)
        )
        .is_ok()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn verification_outside_the_validity_window_fails() {
    // RKP chain: Droid CA3 expired in December 2025.
    let c = case("caiman/sdk36/TEE_EC_RKP");
    let err = verify_at(&c.chain, date(2026, 6, 1)).unwrap_err();
    assert!(matches!(err, AndroidError::Expired { .. }), "{err}");
    let err = verify_at(&c.chain, date(2025, 1, 1)).unwrap_err();
    assert!(matches!(err, AndroidError::NotYetValid { .. }), "{err}");

    // Factory chain: before the intermediates existed fails; after they expired passes like the
    // reference verifier, unless expiry is enforced.
    let c = case("blueline/sdk28/TEE_EC_NONE");
    let err = verify_at(&c.chain, date(2017, 1, 1)).unwrap_err();
    assert!(matches!(err, AndroidError::NotYetValid { .. }), "{err}");
    assert!(verify_at(&c.chain, date(2030, 1, 1)).is_ok());
    let roots = roots();
    let strict = VerifyOptions::new(&roots, date(2030, 1, 1)).enforce_factory_expiry(true);
    let err = verify_chain(&c.chain, &strict).unwrap_err();
    assert!(matches!(err, AndroidError::Expired { .. }), "{err}");

    // Software chain: its intermediate expired in January 2026.
    let c = case("marlin/sdk29/TEE_EC_NONE");
    assert!(matches!(
        verify_at(&c.chain, date(2027, 1, 1)),
        Err(AndroidError::Expired { .. })
    ));
}

#[test]
fn wrong_roots_shapes_and_names_fail() {
    let c = case("caiman/sdk36/SB_EC_RKP");
    let at = creation_time(&c.json);
    let empty = TrustedRoots::new();
    let err = verify_chain(&c.chain, &VerifyOptions::new(&empty, at)).unwrap_err();
    assert!(matches!(err, AndroidError::UntrustedRoot), "{err}");

    // A certificate added in front of the leaf (chain extension) or the leaf removed.
    let other = case("caiman/sdk36/TEE_EC_RKP");
    let mut extended = vec![other.chain[0].clone()];
    extended.extend(c.chain.iter().cloned());
    assert!(matches!(
        verify_at(&extended, at),
        Err(AndroidError::ChainLength { .. })
    ));
    assert!(matches!(
        verify_at(&c.chain[1..], at),
        Err(AndroidError::ChainLength { .. })
    ));
    assert!(matches!(
        verify_at(&c.chain[3..], at),
        Err(AndroidError::ChainTooShort(2))
    ));

    // The attestation certificate (with no extension) as leaf of a re-shaped chain.
    let mut no_ext = c.chain.clone();
    no_ext[0] = no_ext[1].clone();
    assert!(matches!(
        verify_at(&no_ext, at),
        Err(AndroidError::MissingExtension)
    ));
    // A leaf in the intermediate position.
    let mut ext_inside = c.chain.clone();
    ext_inside[1] = ext_inside[0].clone();
    assert!(matches!(
        verify_at(&ext_inside, at),
        Err(AndroidError::ExtensionOutsideLeaf { index: 1 })
    ));

    // Another device's leaf under this chain: names do not chain.
    let mut mixed = c.chain.clone();
    mixed[0] = other.chain[0].clone();
    assert!(matches!(
        verify_at(&mixed, at),
        Err(AndroidError::NameChaining { index: 0 })
    ));
}

#[test]
fn truncated_and_garbage_input_gives_errors() {
    let c = case("akita/sdk34/TEE_EC_NONE");
    let at = creation_time(&c.json);
    for index in 0..c.chain.len() {
        for cut in [0, 1, 10, c.chain[index].len() / 2, c.chain[index].len() - 1] {
            let mut chain = c.chain.clone();
            chain[index].truncate(cut);
            let err = verify_at(&chain, at).unwrap_err();
            assert!(
                matches!(err, AndroidError::Certificate { index: i, .. } if i == index),
                "cert {index} cut at {cut}: {err}"
            );
        }
    }
    let garbage = vec![b"not a certificate".to_vec(); 4];
    assert!(matches!(
        verify_at(&garbage, at),
        Err(AndroidError::Certificate { index: 0, .. })
    ));
    assert!(verify_at(&[], at).is_err());
    assert!(parse_pem_chain("This is not a certificate").is_err());
    // Truncated leaf for the standalone extension path.
    let leaf = &c.chain[0];
    for cut in 0..leaf.len() {
        assert!(
            key_description_from_certificate(&leaf[..cut]).is_err(),
            "cut {cut}"
        );
    }
}
