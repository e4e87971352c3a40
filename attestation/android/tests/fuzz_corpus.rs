//! The fuzz seed corpus (`fuzz/corpus/android_key_description/`) and a deterministic mutation run
//! over it, so the parsers' no-panic property is checked on every `cargo test`, not only when
//! someone runs `cargo fuzz`.
//!
//! Seeds: for every leaf of the shared testdata and of `tests/fixtures/keyattestation`, the raw
//! KeyDescription (`<chain>.kd`) and the whole leaf certificate (`<chain>.leaf`). Regenerate them
//! with `ENIGM_WRITE_FUZZ_SEEDS=1 cargo test -p enigm-android-attestation --test fuzz_corpus`.

// Test helpers outside #[test] fns fail loudly too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::{CORPUS, FIXTURES, TESTDATA, cases, extra_cases, pem_file};
use enigm_android_attestation::x509::{self, key_description_der};
use enigm_android_attestation::{KeyDescription, key_description_from_certificate};

/// Seed file name → contents, derived from the testdata.
fn expected_seeds() -> BTreeMap<String, Vec<u8>> {
    let mut leaves: Vec<(String, Vec<u8>)> = cases()
        .into_iter()
        .chain(extra_cases())
        .map(|c| (c.name, c.chain.into_iter().next().unwrap()))
        .collect();
    for (root, file) in [
        (TESTDATA, "invalid/tags_not_in_ascending_order.pem"),
        (FIXTURES, "invalid/malformed_rot_device_locked.pem"),
        (FIXTURES, "allow_while_on_body.pem"),
    ] {
        let leaf = pem_file(&Path::new(root).join(file))
            .into_iter()
            .next()
            .unwrap();
        leaves.push((file.trim_end_matches(".pem").to_owned(), leaf));
    }
    let mut seeds = BTreeMap::new();
    for (name, leaf) in leaves {
        let stem = name.replace(['/', '+'], "_");
        let kd = key_description_der(&leaf).unwrap().unwrap().to_vec();
        seeds.insert(format!("{stem}.kd"), kd);
        seeds.insert(format!("{stem}.leaf"), leaf);
    }
    seeds
}

#[test]
fn committed_seeds_are_the_testdata_leaves() {
    let expected = expected_seeds();
    let dir = PathBuf::from(CORPUS);
    if std::env::var_os("ENIGM_WRITE_FUZZ_SEEDS").is_some() {
        std::fs::create_dir_all(&dir).unwrap();
        for (name, bytes) in &expected {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }
    let mut on_disk = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        on_disk.insert(name, std::fs::read(&path).unwrap());
    }
    let missing: Vec<_> = expected
        .keys()
        .filter(|k| !on_disk.contains_key(*k))
        .collect();
    assert!(
        missing.is_empty(),
        "seeds missing from {CORPUS}: {missing:?} (see module docs)"
    );
    for (name, bytes) in &expected {
        assert_eq!(
            on_disk.get(name),
            Some(bytes),
            "seed {name} differs from the testdata"
        );
    }
}

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            usize::try_from(self.next() % n as u64).unwrap()
        }
    }
}

fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut data = seed.to_vec();
    for _ in 0..=rng.below(4) {
        let len = data.len();
        match rng.below(8) {
            0 if len > 0 => {
                let i = rng.below(len);
                data[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                data[i] = u8::try_from(rng.below(256)).unwrap();
            }
            // Interesting DER bytes: lengths, tags, long-form markers.
            2 if len > 0 => {
                let i = rng.below(len);
                data[i] = [0x00, 0x7f, 0x80, 0x81, 0x82, 0x84, 0xff, 0x30, 0xbf][rng.below(9)];
            }
            3 => {
                let i = rng.below(len + 1);
                data.insert(i, u8::try_from(rng.below(256)).unwrap());
            }
            4 if len > 0 => {
                let i = rng.below(len);
                data.remove(i);
            }
            5 => data.truncate(rng.below(len + 1)),
            6 if len > 0 => {
                let start = rng.below(len);
                let end = (start + rng.below(64)).min(len);
                let chunk = data[start..end].to_vec();
                let at = rng.below(len + 1);
                data.splice(at..at, chunk);
            }
            _ if len > 1 => {
                let a = rng.below(len);
                let b = rng.below(len);
                data.swap(a, b);
            }
            _ => {}
        }
    }
    data
}

fn exercise(data: &[u8]) -> (bool, bool) {
    let kd = KeyDescription::parse(data);
    if let Ok(kd) = &kd {
        let _ = kd.to_reference_json();
        let _ = kd.creation_time();
    }
    let cert = key_description_from_certificate(data);
    if let Ok(Some(kd)) = &cert {
        let _ = kd.to_reference_json();
    }
    let _ = x509::basic_constraints(data);
    (kd.is_ok(), matches!(cert, Ok(Some(_))))
}

#[test]
fn parsers_survive_ten_thousand_mutations_of_the_seeds() {
    let seeds: Vec<Vec<u8>> = expected_seeds().into_values().collect();
    assert!(seeds.len() >= 40);
    // Every seed parses except the one whose tags are out of order.
    let parsed = seeds
        .iter()
        .filter(|s| exercise(s) != (false, false))
        .count();
    assert_eq!(parsed, seeds.len() - 2);

    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut kd_ok, mut cert_ok) = (0, 0);
    for _ in 0..10_000 {
        let seed = &seeds[rng.below(seeds.len())];
        let (a, b) = exercise(&mutate(&mut rng, seed));
        kd_ok += usize::from(a);
        cert_ok += usize::from(b);
    }
    // The mutations reach both accepting and rejecting paths.
    assert!(kd_ok > 0 && kd_ok < 10_000, "{kd_ok}");
    assert!(cert_ok > 0 && cert_ok < 10_000, "{cert_ok}");
}
