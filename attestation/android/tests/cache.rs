//! The verification cache: a chain whose certificates above the leaf were verified before only
//! has its leaf checked, with exactly the result, or the error, it gets without the cache; roots,
//! time and revocation are checked on every call; the cache is bounded and shared across threads.

// Test helpers outside #[test] fns fail loudly too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{Case, case, cases, creation_time, date, extra_cases, roots};
use enigm_android_attestation::{
    AndroidError, RevocationList, TrustedRoots, VerificationCache, VerifiedAttestation,
    VerifyOptions, verify_chain,
};

type Outcome = Result<VerifiedAttestation, AndroidError>;

/// The outcome without what only says how it was computed (`cached_links`).
fn comparable(outcome: &Outcome) -> String {
    match outcome {
        Ok(v) => {
            let mut json = serde_json::to_value(v).unwrap();
            json.as_object_mut().unwrap().remove("cached_links");
            format!("Ok({json})")
        }
        Err(e) => format!("Err({e:?})"),
    }
}

/// Verifies `chain` with `options` using `cache` (which must already hold its upper chain: the
/// lookup must hit) and without a cache, checks both outcomes are the same, and returns the
/// attestation when it verified.
fn check_same(
    what: &str,
    chain: &[Vec<u8>],
    options: VerifyOptions<'_>,
    cache: &VerificationCache,
) -> Option<VerifiedAttestation> {
    let hits = cache.hits();
    let cached = verify_chain(chain, &options.with_cache(cache));
    assert_eq!(
        cache.hits(),
        hits + 1,
        "{what}: the upper chain was not a hit"
    );
    let uncached = verify_chain(
        chain,
        &VerifyOptions {
            cache: None,
            ..options
        },
    );
    assert_eq!(comparable(&cached), comparable(&uncached), "{what}");
    if let Ok(v) = &cached {
        assert_eq!(v.cached_links, chain.len() - 2, "{what}");
    }
    cached.ok()
}

fn revocation_of(serial: &str) -> RevocationList {
    RevocationList::from_json(&format!(
        r#"{{"entries": {{"{serial}": {{"status": "SUSPENDED", "reason": "KEY_COMPROMISE"}}}}}}"#
    ))
    .unwrap()
}

/// Warms a cache with `case` verified as of its creation time; `None` when it does not verify
/// (ML-DSA keys before OpenSSL 3.5).
fn warmed(case: &Case, roots: &TrustedRoots) -> Option<VerificationCache> {
    let cache = VerificationCache::new(16);
    let options = VerifyOptions::new(roots, creation_time(&case.json))
        .allow_software_root(true)
        .with_cache(&cache);
    verify_chain(&case.chain, &options).ok()?;
    assert_eq!(cache.upper_chains(), 1, "{}", case.name);
    Some(cache)
}

#[test]
fn a_cached_upper_chain_gives_the_same_results_and_errors_as_no_cache() {
    let roots = roots();
    let empty = TrustedRoots::new();
    let mut all = cases();
    all.extend(extra_cases());
    let mut compared = 0;
    for case in &all {
        let Some(cache) = warmed(case, &roots) else {
            continue;
        };
        let name = &case.name;
        let at = creation_time(&case.json);
        let base = VerifyOptions::new(&roots, at).allow_software_root(true);
        let genuine = check_same(name, &case.chain, base, &cache).unwrap();

        // The time, around every intermediate's window, and one OpenSSL cannot represent.
        let times = [
            date(1971, 1, 1),
            date(2017, 1, 1),
            date(2025, 1, 1),
            date(2026, 6, 1),
            date(2030, 1, 1),
            date(2090, 1, 1),
            UNIX_EPOCH + Duration::from_secs(400_000_000_000),
        ];
        for t in times {
            for enforce in [false, true] {
                let options = VerifyOptions { at: t, ..base }.enforce_factory_expiry(enforce);
                check_same(&format!("{name} at {t:?}"), &case.chain, options, &cache);
            }
        }
        // Roots and the software root.
        check_same(
            &format!("{name} no roots"),
            &case.chain,
            VerifyOptions {
                roots: &empty,
                ..base
            },
            &cache,
        );
        check_same(
            &format!("{name} software root refused"),
            &case.chain,
            base.allow_software_root(false),
            &cache,
        );
        // Revocation of each certificate, and a list that names none.
        let lists: Vec<_> = genuine
            .serials
            .iter()
            .map(|s| revocation_of(s))
            .chain([revocation_of("deadbeef")])
            .collect();
        for list in &lists {
            check_same(
                &format!("{name} revocations {list:?}"),
                &case.chain,
                base.with_revocations(list),
                &cache,
            );
        }

        // Other leaves under the cached upper chain: another device's, garbage, truncated, and
        // mutated ones (most keep parsing and fail their signature; some fail to parse).
        let mut leaves = vec![
            b"not a certificate".to_vec(),
            case.chain[0][..case.chain[0].len() / 2].to_vec(),
        ];
        leaves.extend(all.iter().map(|c| c.chain[0].clone()));
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..60 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let mut leaf = case.chain[0].clone();
            let at = usize::try_from(state % leaf.len() as u64).unwrap();
            leaf[at] ^= 1 << (state >> 60 & 7);
            leaves.push(leaf);
        }
        for (i, leaf) in leaves.into_iter().enumerate() {
            let mut chain = case.chain.clone();
            chain[0] = leaf;
            check_same(&format!("{name} leaf {i}"), &chain, base, &cache);
            compared += 1;
        }
    }
    assert!(compared > 1000, "{compared} leaves compared");
}

#[test]
fn the_upper_chain_is_cached_after_the_first_verification() {
    let c = case("caiman/sdk36/TEE_EC_RKP");
    let roots = roots();
    let cache = VerificationCache::new(64);
    let options = VerifyOptions::new(&roots, creation_time(&c.json)).with_cache(&cache);
    let first = verify_chain(&c.chain, &options).unwrap();
    assert_eq!(first.cached_links, 0);
    assert_eq!(cache.upper_chains(), 1);
    // One miss for the upper chain, one per intermediate link.
    assert_eq!((cache.hits(), cache.misses()), (0, 1 + 3));
    // The upper chain plus its three intermediate links.
    assert_eq!(cache.len(), 1 + 3);

    let second = verify_chain(&c.chain, &options).unwrap();
    assert_eq!(second.cached_links, 3);
    assert_eq!((cache.hits(), cache.misses()), (1, 4));
    assert_eq!(first.key_description, second.key_description);
    assert_eq!(first.serials, second.serials);
    assert_eq!(first.leaf_public_key_der, second.leaf_public_key_der);
    assert_eq!(first.verdict, second.verdict);

    cache.clear();
    assert!(cache.is_empty());
    assert_eq!(verify_chain(&c.chain, &options).unwrap().cached_links, 0);
}

#[test]
fn a_rejected_leaf_still_caches_its_verified_upper_chain_and_a_failed_upper_chain_does_not() {
    let c = case("caiman/sdk36/TEE_EC_RKP");
    let roots = roots();
    let cache = VerificationCache::new(64);
    let options = VerifyOptions::new(&roots, creation_time(&c.json)).with_cache(&cache);

    // A tampered leaf fails, but the certificates above it verified.
    let mut tampered = c.chain.clone();
    let last = tampered[0].len() - 1;
    tampered[0][last] ^= 1;
    assert!(matches!(
        verify_chain(&tampered, &options),
        Err(AndroidError::Signature { index: 0 })
    ));
    assert_eq!(cache.upper_chains(), 1);
    assert_eq!(verify_chain(&c.chain, &options).unwrap().cached_links, 3);

    // Checks above the leaf that fail (time, root, tampered intermediate) cache no upper chain.
    let cache = VerificationCache::new(64);
    let expired = VerifyOptions::new(&roots, date(2026, 6, 1)).with_cache(&cache);
    assert!(matches!(
        verify_chain(&c.chain, &expired),
        Err(AndroidError::Expired { .. })
    ));
    let empty = TrustedRoots::new();
    let untrusted = VerifyOptions::new(&empty, creation_time(&c.json)).with_cache(&cache);
    assert!(matches!(
        verify_chain(&c.chain, &untrusted),
        Err(AndroidError::UntrustedRoot)
    ));
    let mut bad_intermediate = c.chain.clone();
    let last = bad_intermediate[2].len() - 1;
    bad_intermediate[2][last] ^= 1;
    assert!(matches!(
        verify_chain(&bad_intermediate, &options.with_cache(&cache)),
        Err(AndroidError::Signature { index: 2 })
    ));
    assert_eq!(cache.upper_chains(), 0);
}

#[test]
fn roots_time_and_revocation_are_checked_on_every_call() {
    let c = case("caiman/sdk36/TEE_EC_RKP");
    let roots = roots();
    let cache = VerificationCache::new(64);
    let at = creation_time(&c.json);
    let good = verify_chain(&c.chain, &VerifyOptions::new(&roots, at).with_cache(&cache)).unwrap();

    let empty = TrustedRoots::new();
    assert!(matches!(
        verify_chain(&c.chain, &VerifyOptions::new(&empty, at).with_cache(&cache)),
        Err(AndroidError::UntrustedRoot)
    ));
    // Droid CA3 (certificate 2) is valid from 25 September to 4 December 2025; the attestation
    // certificate (certificate 1) from 24 September to 3 October 2025.
    for (at, index, expired) in [
        (date(2026, 6, 1), 2, true),
        (date(2025, 10, 10), 1, true),
        (date(2025, 9, 1), 2, false),
    ] {
        let result = verify_chain(&c.chain, &VerifyOptions::new(&roots, at).with_cache(&cache));
        if expired {
            assert!(
                matches!(result, Err(AndroidError::Expired { index: i, .. }) if i == index),
                "{result:?}"
            );
        } else {
            assert!(
                matches!(result, Err(AndroidError::NotYetValid { index: i, .. }) if i == index),
                "{result:?}"
            );
        }
    }
    for index in 0..c.chain.len() {
        let list = revocation_of(&good.serials[index]);
        let options = VerifyOptions::new(&roots, at)
            .with_revocations(&list)
            .with_cache(&cache);
        assert!(
            matches!(verify_chain(&c.chain, &options), Err(AndroidError::Revoked { index: i, .. }) if i == index),
            "{index}"
        );
    }
    // Every call above was a hit on the same upper chain.
    assert_eq!(cache.upper_chains(), 1);
    assert_eq!(cache.hits(), 4 + c.chain.len() as u64);

    // A chain rooted at the software root, cached while allowed, is refused when not.
    let soft = case("marlin/sdk29/TEE_EC_NONE");
    let at = creation_time(&soft.json);
    let allowed = VerifyOptions::new(&roots, at)
        .allow_software_root(true)
        .with_cache(&cache);
    verify_chain(&soft.chain, &allowed).unwrap();
    assert!(!verify_chain(&soft.chain, &allowed).unwrap().hardware_backed);
    assert!(matches!(
        verify_chain(
            &soft.chain,
            &VerifyOptions::new(&roots, at).with_cache(&cache)
        ),
        Err(AndroidError::SoftwareRoot)
    ));
}

#[test]
fn the_cache_is_bounded_and_shared_across_threads() {
    let roots = roots();
    let cache = VerificationCache::new(3);
    for c in cases() {
        let options = VerifyOptions::new(&roots, creation_time(&c.json))
            .allow_software_root(true)
            .with_cache(&cache);
        verify_chain(&c.chain, &options).unwrap();
        assert!(cache.len() <= 3);
    }

    let c = case("caiman/sdk36/TEE_EC_RKP");
    let cache = VerificationCache::default();
    let at: SystemTime = creation_time(&c.json);
    let options = VerifyOptions::new(&roots, at).with_cache(&cache);
    let expected = comparable(&verify_chain(&c.chain, &VerifyOptions::new(&roots, at)));
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                for _ in 0..25 {
                    assert_eq!(comparable(&verify_chain(&c.chain, &options)), expected);
                }
            });
        }
    });
    assert_eq!(cache.upper_chains(), 1);
    // At most one miss per thread before the first insertion.
    assert!(cache.hits() >= 48, "{}", cache.hits());
}
