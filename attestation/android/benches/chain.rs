//! Benchmark: Android key attestation chains verified per second on one core, for the Pixel 9 Pro
//! RKP chain (`caiman/sdk36/TEE_EC_RKP`, 5 certificates), with a warm [`VerificationCache`] (goal:
//! at least 5,000/s) and without a cache. The peer, measured in the same run, is the one step a
//! cached verification cannot skip, done with OpenSSL alone: checking the leaf's signature with
//! its issuer's ready key; next to it, what the leaf costs when OpenSSL parses it first.
//!
//! `cargo bench -p enigm-android-attestation --bench chain` (no criterion: it keeps the
//! dependency set unchanged). Each figure is the best of three 1-second rounds, as another
//! process may share the core.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::time::{Duration, Instant, UNIX_EPOCH};

use enigm_android_attestation::{
    RevocationList, TrustedRoots, VerificationCache, VerifyOptions, parse_pem_chain, verify_chain,
};
use openssl::hash::MessageDigest;
use openssl::sign::Verifier;
use openssl::x509::X509;

const TESTDATA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/testdata/android-attestation"
);

/// The chain's key creation time, seconds since the epoch.
const AT: u64 = 1_758_900_681;

/// Calls per second of `f`: the best of three 1-second rounds.
fn rate(mut f: impl FnMut()) -> f64 {
    f();
    (0..3)
        .map(|_| {
            let started = Instant::now();
            let mut count = 0u64;
            while started.elapsed() < Duration::from_secs(1) {
                for _ in 0..16 {
                    f();
                }
                count += 16;
            }
            count as f64 / started.elapsed().as_secs_f64()
        })
        .fold(0.0, f64::max)
}

fn main() {
    let roots = TrustedRoots::from_roots_json_file(format!("{TESTDATA}/roots.json").as_ref())
        .expect("roots.json");
    let pem = std::fs::read_to_string(format!("{TESTDATA}/caiman/sdk36/TEE_EC_RKP.pem"))
        .expect("caiman chain");
    let chain = parse_pem_chain(&pem).unwrap();
    let at = UNIX_EPOCH + Duration::from_secs(AT);
    let revocations =
        RevocationList::from_json(r#"{"entries": {"deadbeef": {"status": "REVOKED"}}}"#).unwrap();
    let cache = VerificationCache::default();
    let uncached = VerifyOptions::new(&roots, at).with_revocations(&revocations);
    let cached = uncached.with_cache(&cache);
    verify_chain(&chain, &cached).unwrap();
    assert_eq!(
        verify_chain(&chain, &cached).unwrap().cached_links,
        chain.len() - 2,
        "the cache is warm"
    );

    // The leaf's signed bytes and signature, for the peer.
    let leaf = X509::from_der(&chain[0]).unwrap();
    let issuer_key = X509::from_der(&chain[1]).unwrap().public_key().unwrap();
    let tbs = leaf.to_der().unwrap();
    let tbs = {
        // tbsCertificate: the first element inside the outer SEQUENCE (long-form lengths).
        let outer_header = 2 + usize::from(tbs[1] & 0x7f);
        let inner_len_octets = usize::from(tbs[outer_header + 1] & 0x7f);
        let len = tbs[outer_header + 2..outer_header + 2 + inner_len_octets]
            .iter()
            .fold(0usize, |acc, b| acc << 8 | usize::from(*b));
        tbs[outer_header..outer_header + 2 + inner_len_octets + len].to_vec()
    };
    let signature = leaf.signature().as_slice().to_vec();
    assert!(
        Verifier::new(MessageDigest::sha256(), &issuer_key)
            .unwrap()
            .verify_oneshot(&signature, &tbs)
            .unwrap(),
        "peer set-up"
    );

    println!(
        "Android key attestation, one core (Pixel 9 Pro RKP chain, {} certificates)",
        chain.len()
    );
    let with_cache = rate(|| {
        black_box(verify_chain(black_box(&chain), &cached).unwrap());
    });
    println!(
        "  verify_chain, warm cache              {with_cache:>9.0} chains/s  (goal >= 5,000/s)"
    );
    let without = rate(|| {
        black_box(verify_chain(black_box(&chain), &uncached).unwrap());
    });
    println!("  verify_chain, no cache                {without:>9.0} chains/s");
    let peer = rate(|| {
        let mut v = Verifier::new(MessageDigest::sha256(), &issuer_key).unwrap();
        assert!(
            v.verify_oneshot(black_box(&signature), black_box(&tbs))
                .unwrap()
        );
    });
    println!(
        "  peer: OpenSSL leaf signature check    {peer:>9.0} /s  (cached chain at {:.0}% of it)",
        100.0 * with_cache / peer
    );
    let parsed = rate(|| {
        let leaf = X509::from_der(black_box(&chain[0])).unwrap();
        assert!(leaf.verify(&issuer_key).unwrap());
        black_box(leaf.public_key().unwrap().public_key_to_der().unwrap());
    });
    println!("  OpenSSL leaf parse + verify + key DER {parsed:>9.0} /s");
}
