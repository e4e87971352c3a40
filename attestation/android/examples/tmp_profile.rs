#![allow(clippy::unwrap_used, missing_docs)]
use enigm_android_attestation::*;
use openssl::x509::X509;
use std::hint::black_box;
use std::time::{Duration, Instant, UNIX_EPOCH};
const T: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/testdata/android-attestation"
);
fn time(name: &str, n: u32, mut f: impl FnMut()) {
    let s = Instant::now();
    for _ in 0..n {
        f()
    }
    let d = s.elapsed() / n;
    println!("{name:40} {:>9.1?}  {:>8.0}/s", d, 1.0 / d.as_secs_f64());
}
fn main() {
    let roots = TrustedRoots::from_roots_json_file(format!("{T}/roots.json").as_ref()).unwrap();
    let chain = parse_pem_chain(
        &std::fs::read_to_string(format!("{T}/caiman/sdk36/TEE_EC_RKP.pem")).unwrap(),
    )
    .unwrap();
    let at = UNIX_EPOCH + Duration::from_secs(1_758_900_681);
    let cache = VerificationCache::default();
    let o = VerifyOptions::new(&roots, at).with_cache(&cache);
    let mode = std::env::args().nth(1).unwrap_or_default();
    if mode == "parse" {
        loop {
            black_box(X509::from_der(&chain[0]).unwrap());
        }
    }
    if mode == "loop" {
        loop {
            black_box(verify_chain(&chain, &o).unwrap());
        }
    }
    let n = 2000;
    time("verify_chain cached", n, || {
        black_box(verify_chain(&chain, &o).unwrap());
    });
    time("verify_chain uncached", n / 4, || {
        black_box(verify_chain(&chain, &VerifyOptions::new(&roots, at)).unwrap());
    });
    let issuer = X509::from_der(&chain[1]).unwrap();
    let ik = issuer.public_key().unwrap();
    time("X509::from_der leaf", n, || {
        black_box(X509::from_der(&chain[0]).unwrap());
    });
    let leaf = X509::from_der(&chain[0]).unwrap();
    time("leaf.public_key", n, || {
        black_box(leaf.public_key().unwrap());
    });
    let lk = leaf.public_key().unwrap();
    time("pk.public_key_to_der", n, || {
        black_box(lk.public_key_to_der().unwrap());
    });
    time("leaf.verify(issuer)", n, || {
        assert!(leaf.verify(&ik).unwrap());
    });
    time("issuer.public_key", n, || {
        black_box(issuer.public_key().unwrap());
    });
    time("key_description parse", n, || {
        black_box(key_description_from_certificate(&chain[0]).unwrap());
    });
    time("serial", n, || {
        black_box(leaf.serial_number().to_bn().unwrap().to_hex_str().unwrap());
    });
    time("asn1time from_unix", n, || {
        black_box(openssl::asn1::Asn1Time::from_unix(1_758_900_681).unwrap());
    });
    time("name cmp", n, || {
        black_box(leaf.issuer_name().try_cmp(issuer.subject_name()).unwrap());
    });
    for (i, c) in chain.iter().enumerate() {
        let x = X509::from_der(c).unwrap();
        println!(
            "{i}: {:?} {:?} {}",
            x.signature_algorithm().object(),
            x.public_key().unwrap().id(),
            c.len()
        );
    }
}
