//! The real MVT bundles in `shared/testdata/stix2` load, with their collections, and every
//! indicator in them matches the value it names.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use enigm_ioc::{Attribute, Observation, load_paths};

const STIX: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/testdata/stix2"
);

#[test]
fn shared_bundles_load_with_their_collections() {
    let db = load_paths(&[PathBuf::from(STIX)]).unwrap();
    let stats = db.stats();
    assert_eq!(stats.bundles, 4);
    assert_eq!(stats.skipped.indicators, 343 + 1549 + 40 + 53);
    assert!(stats.skipped.unknown_types.is_empty());
    let mut names: Vec<&str> = db.collections().iter().map(|c| c.name.as_str()).collect();
    names.sort();
    assert_eq!(
        names,
        ["Pegasus", "Predator", "RCSLab", "WyrmSpy_DragonEgg"]
    );
    assert_eq!(
        stats.by_type.get(&Attribute::DomainName),
        Some(&(336 + 1438 + 26 + 7))
    );
    assert_eq!(stats.by_type.get(&Attribute::ProcessName), Some(&81));
    assert_eq!(stats.by_type.get(&Attribute::FileSha256), Some(&43));

    let cases = [
        (Attribute::DomainName, "weather4free.com", "Pegasus"),
        (Attribute::DomainName, "a.b.weather4free.com", "Pegasus"),
        (Attribute::DomainName, "shortenurls.me", "Predator"),
        (Attribute::ProcessName, "fservernetd", "Pegasus"),
        (Attribute::EmailAddr, "bogaardlisa803@gmail.com", "Pegasus"),
        (Attribute::FileName, "roleaccountd.plist", "Pegasus"),
        (Attribute::FilePath, "/data/local/tmp/wd/fs.db", "Predator"),
        (
            Attribute::ConfigurationProfileId,
            "76DAB334-7E17-475D-A5D6-0794EB5818A5",
            "Predator",
        ),
        (
            Attribute::FileSha256,
            "e38d7ba21a48ad32963bfe6cb0203afe0839eca9a73268a67422109da282eae3",
            "RCSLab",
        ),
        (Attribute::AppId, "com.vodaservices", "RCSLab"),
        (Attribute::Ipv4Addr, "121.201.109.98", "WyrmSpy_DragonEgg"),
        (Attribute::AppId, "com.adobe.flash.jni", "WyrmSpy_DragonEgg"),
    ];
    for (attribute, value, collection) in cases {
        let mut hits = Vec::new();
        db.match_observation(&Observation::single(attribute, value), &mut hits);
        let satisfied = db.resolve(&hits);
        assert!(!satisfied.is_empty(), "{attribute} {value}");
        for s in satisfied {
            assert_eq!(db.collection_names(s.indicator), [collection], "{value}");
        }
    }
    let mut hits = Vec::new();
    db.match_value(Attribute::DomainName, "example.org", &mut hits);
    assert!(hits.is_empty());
}

#[test]
fn a_malformed_bundle_names_file_and_object() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.stix2"),
        r#"{"type":"bundle","objects":[{"type":"indicator","id":"indicator--x","pattern":"[domain-name:value='a.com'"}]}"#,
    )
    .unwrap();
    let error = load_paths(&[dir.path().to_owned()])
        .unwrap_err()
        .to_string();
    assert_eq!(
        error,
        "bad.stix2: object #0 (indicator--x): malformed pattern: syntax error at byte 26: expected ']'"
    );
}
