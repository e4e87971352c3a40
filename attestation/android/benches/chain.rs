//! Criterion benchmark: verifying the Pixel 9 Pro RKP chain (`caiman/sdk36/TEE_EC_RKP`, 5
//! certificates) without a cache and with a warm [`VerificationCache`] (goal ≥ 5,000 chains/s on
//! one core, cached). The peer, measured in the same run, is the one signature verification a
//! cached chain cannot avoid: the leaf's, parsed and checked with OpenSSL alone.
//!
//! `cargo bench -p enigm-android-attestation --bench chain`; throughput is in chains/s
//! ("elem/s").

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::{Duration, UNIX_EPOCH};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use enigm_android_attestation::{
    RevocationList, TrustedRoots, VerificationCache, VerifyOptions, parse_pem_chain, verify_chain,
};
use openssl::x509::X509;

const TESTDATA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/testdata/android-attestation"
);

/// The chain's key creation time (seconds since the epoch).
const AT: u64 = 1_758_900_681;

fn chain(c: &mut Criterion) {
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
        chain.len() - 2
    );

    let mut group = c.benchmark_group("android chain caiman/sdk36/TEE_EC_RKP");
    group.throughput(Throughput::Elements(1));
    group.bench_function("verify_chain, no cache", |b| {
        b.iter(|| verify_chain(black_box(&chain), &uncached).unwrap())
    });
    group.bench_function("verify_chain, warm cache", |b| {
        b.iter(|| verify_chain(black_box(&chain), &cached).unwrap())
    });
    // Peer: parse the leaf and verify its signature with a ready issuer key (OpenSSL only).
    let issuer_key = X509::from_der(&chain[1]).unwrap().public_key().unwrap();
    group.bench_function("peer: leaf parse + signature (OpenSSL)", |b| {
        b.iter(|| {
            let leaf = X509::from_der(black_box(&chain[0])).unwrap();
            assert!(leaf.verify(&issuer_key).unwrap());
        })
    });
    group.finish();
}

criterion_group!(benches, chain);
criterion_main!(benches);
