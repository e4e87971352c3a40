//! The parsers reject malformed input with an error and never panic: every truncation of a
//! valid structure, and 20,000 deterministic random mutations of each. (`fuzz/` runs the same
//! parsers under libFuzzer; this test keeps the property in the ordinary test suite.)

#![allow(clippy::unwrap_used, clippy::panic)] // test helpers: a failed setup should stop the test

use enigm_tpm_evidence::attest::{Attest, ClockInfo};
use enigm_tpm_evidence::eventlog::{EventLog, EventLogWriter};
use enigm_tpm_evidence::hash::HashAlg;
use enigm_tpm_evidence::pcr::{PcrSelection, PcrValues, parse_tpm2_tools_pcrs};
use enigm_tpm_evidence::public::PublicArea;
use enigm_tpm_evidence::signature::Signature;
use enigm_tpm_evidence::soft::{KeyKind, SoftwareAk};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn mutate(seed: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut bytes = seed.to_vec();
    for _ in 0..1 + rng.next() % 4 {
        match rng.next() % 4 {
            0 if !bytes.is_empty() => {
                let at = (rng.next() % bytes.len() as u64) as usize;
                bytes[at] = rng.next() as u8;
            }
            1 if !bytes.is_empty() => {
                let at = (rng.next() % bytes.len() as u64) as usize;
                bytes.truncate(at);
            }
            2 => {
                let at = (rng.next() % (bytes.len() as u64 + 1)) as usize;
                bytes.insert(at, rng.next() as u8);
            }
            _ if bytes.len() >= 2 => {
                // Large sizes where length fields live.
                let at = (rng.next() % (bytes.len() as u64 - 1)) as usize;
                bytes[at] = 0xff;
                bytes[at + 1] = 0xff;
            }
            _ => {}
        }
    }
    bytes
}

/// Valid seeds: a quote, its signature, the AK's public area (ECC and RSA), an event log.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let mut seeds = Vec::new();
    let selection = PcrSelection::parse("sha256:0,1,7+sha1:0").unwrap();
    let mut values = PcrValues::default();
    for (alg, pcr) in selection.slots() {
        values.insert(alg, pcr, vec![pcr as u8; alg.size()]);
    }
    for kind in [KeyKind::EccP256, KeyKind::Rsa2048] {
        let ak = SoftwareAk::generate(kind).unwrap();
        let clock = ClockInfo {
            clock: 1,
            reset_count: 2,
            restart_count: 3,
            safe: true,
        };
        let (attest, signature) = ak.quote(b"nonce", &selection, &values, clock).unwrap();
        seeds.push(("attest", attest));
        seeds.push(("signature", signature));
        seeds.push(("public", ak.tpm2b_public()));
    }
    let mut log = EventLogWriter::new(&[HashAlg::Sha1, HashAlg::Sha256]);
    log.measure(0, 8, b"firmware").unwrap();
    log.measure(7, 0x8000_00e0, b"db").unwrap();
    seeds.push(("eventlog", log.bytes().to_vec()));
    seeds
}

fn parse_all(bytes: &[u8]) {
    let _ = Attest::parse(bytes);
    let _ = Signature::parse(bytes);
    let _ = PublicArea::parse_tpm2b(bytes);
    let _ = PublicArea::parse_tpmt(bytes);
    let _ = EventLog::parse(bytes);
    let _ = parse_tpm2_tools_pcrs(bytes);
}

#[test]
fn seeds_parse_as_what_they_are() {
    for (kind, bytes) in seeds() {
        let ok = match kind {
            "attest" => Attest::parse(&bytes).is_ok(),
            "signature" => Signature::parse(&bytes).is_ok(),
            "public" => PublicArea::parse_tpm2b(&bytes).is_ok(),
            _ => EventLog::parse(&bytes).is_ok(),
        };
        assert!(ok, "{kind} seed parses");
    }
}

#[test]
fn truncations_and_mutations_never_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for (kind, seed) in seeds() {
        for cut in 0..seed.len() {
            parse_all(&seed[..cut]);
            let truncated_ok = match kind {
                "attest" => Attest::parse(&seed[..cut]).is_ok(),
                "signature" => Signature::parse(&seed[..cut]).is_ok(),
                "public" => PublicArea::parse_tpm2b(&seed[..cut]).is_ok(),
                // A log cut between events is a shorter valid log (see the unit tests).
                _ => false,
            };
            assert!(!truncated_ok, "{kind} truncated to {cut} bytes parsed");
        }
        for _ in 0..20_000 {
            parse_all(&mutate(&seed, &mut rng));
        }
    }
}

/// Writes the seeds as the fuzz corpus (`cargo test -p enigm-tpm-evidence --test robustness
/// -- --ignored write_fuzz_corpus`).
#[test]
#[ignore]
fn write_fuzz_corpus() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    for (n, (kind, bytes)) in seeds().into_iter().enumerate() {
        let target = if kind == "eventlog" {
            "tpm_eventlog"
        } else {
            "tpm_structures"
        };
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("seed-{n}-{kind}")), bytes).unwrap();
    }
}
