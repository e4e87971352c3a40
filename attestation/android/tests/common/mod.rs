//! Shared helpers for the integration tests: the testdata captured from real devices (from
//! Google's reference verifier, see shared/testdata/README.md) and a readable JSON diff.

// Test helpers: failing loudly on broken testdata is the point.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use enigm_android_attestation::{TrustedRoots, parse_pem_chain};
use serde_json::Value;

/// The shared testdata directory (`shared/` sits beside the repository).
pub const TESTDATA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/testdata/android-attestation"
);

/// The fuzz seed corpus of this crate.
pub const CORPUS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../fuzz/corpus/android_key_description"
);

/// One captured chain with its reference JSON.
pub struct Case {
    /// e.g. `blueline/sdk28/TEE_EC_NONE`.
    pub name: String,
    /// The chain, DER, leaf first.
    pub chain: Vec<Vec<u8>>,
    /// The reference verifier's expected KeyDescription JSON.
    pub json: Value,
}

/// The chains copied from the reference verifier beyond shared/ (see the README there).
pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/keyattestation");

/// Every `<model>/sdk<N>/<name>.pem` of the shared testdata with its `.json`, sorted by name.
/// Panics when the testdata is missing, so a broken checkout cannot pass silently.
pub fn cases() -> Vec<Case> {
    let out = load_cases(Path::new(TESTDATA));
    assert!(
        out.len() >= 14,
        "testdata missing under {TESTDATA}: found {} chains",
        out.len()
    );
    out
}

/// The extra chains in `tests/fixtures/keyattestation`.
pub fn extra_cases() -> Vec<Case> {
    let out = load_cases(Path::new(FIXTURES));
    assert!(
        out.len() >= 7,
        "fixtures missing under {FIXTURES}: found {} chains",
        out.len()
    );
    out
}

fn load_cases(root: &Path) -> Vec<Case> {
    let mut out = Vec::new();
    for model in dirs(root) {
        if model.file_name().is_some_and(|n| n == "invalid") {
            continue;
        }
        for sdk in dirs(&model) {
            let mut pems: Vec<PathBuf> = std::fs::read_dir(&sdk)
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|e| e == "pem"))
                .collect();
            pems.sort();
            for pem in pems {
                let json = reference_json(&pem.with_extension("json"));
                let name = pem
                    .strip_prefix(root)
                    .unwrap()
                    .with_extension("")
                    .to_string_lossy()
                    .into_owned();
                let chain = parse_pem_chain(&std::fs::read_to_string(&pem).unwrap()).unwrap();
                out.push(Case { name, chain, json });
            }
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Reads a reference JSON file: drops `//` comment lines and the reference-internal
/// `areTagsOrdered` flag (this crate rejects unordered tags rather than flagging them).
pub fn reference_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let text: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut json: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    for list in ["softwareEnforced", "hardwareEnforced"] {
        if let Some(Value::Object(m)) = json.get_mut(list)
            && let Some(flag) = m.remove("areTagsOrdered")
        {
            assert_eq!(flag, Value::Bool(true), "{}", path.display());
        }
    }
    json
}

/// Reads a PEM file of the fixtures or the shared testdata.
pub fn pem_file(path: &Path) -> Vec<Vec<u8>> {
    parse_pem_chain(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn dirs(p: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    v.sort();
    v
}

/// A chain by name, e.g. `caiman/sdk36/TEE_EC_RKP`.
pub fn case(name: &str) -> Case {
    cases()
        .into_iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no case {name}"))
}

/// The invalid chain (tags not in ascending order).
pub fn invalid_chain() -> Vec<Vec<u8>> {
    let p = Path::new(TESTDATA).join("invalid/tags_not_in_ascending_order.pem");
    parse_pem_chain(&std::fs::read_to_string(p).unwrap()).unwrap()
}

/// Google's hardware roots from `roots.json`.
pub fn roots() -> TrustedRoots {
    TrustedRoots::from_roots_json_file(&Path::new(TESTDATA).join("roots.json")).unwrap()
}

/// The reference JSON's creationDateTime (ms) as a time.
pub fn creation_time(json: &Value) -> SystemTime {
    let ms = json["softwareEnforced"]["creationDateTime"]
        .as_str()
        .or_else(|| json["hardwareEnforced"]["creationDateTime"].as_str())
        .unwrap()
        .parse::<u64>()
        .unwrap();
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// A UTC date as a time.
pub fn date(year: i32, month: u32, day: u32) -> SystemTime {
    // Days from civil (Howard Hinnant's algorithm).
    let y = i64::from(if month <= 2 { year - 1 } else { year });
    let m = i64::from(month);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    UNIX_EPOCH + Duration::from_secs(u64::try_from(days * 86_400).unwrap())
}

/// Field-by-field differences between two JSON values, one line per difference.
pub fn json_diff(expected: &Value, actual: &Value) -> Vec<String> {
    let mut out = Vec::new();
    diff_at("$", expected, actual, &mut out);
    out
}

fn diff_at(path: &str, expected: &Value, actual: &Value, out: &mut Vec<String>) {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            let mut keys: Vec<&String> = e.keys().chain(a.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let p = format!("{path}.{k}");
                match (e.get(k), a.get(k)) {
                    (Some(ev), Some(av)) => diff_at(&p, ev, av, out),
                    (Some(ev), None) => out.push(format!("{p}: missing (expected {ev})")),
                    (None, Some(av)) => out.push(format!("{p}: unexpected {av}")),
                    (None, None) => {}
                }
            }
        }
        (Value::Array(e), Value::Array(a)) => {
            if e.len() != a.len() {
                out.push(format!(
                    "{path}: expected {} elements, got {}",
                    e.len(),
                    a.len()
                ));
            }
            for (i, (ev, av)) in e.iter().zip(a).enumerate() {
                diff_at(&format!("{path}[{i}]"), ev, av, out);
            }
        }
        _ if expected != actual => out.push(format!("{path}: expected {expected}, got {actual}")),
        _ => {}
    }
}
