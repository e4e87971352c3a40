//! Keys and repository publishing: what is refused, and that our own client accepts each
//! published version (rollback protection between them included).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use enigm_image::keys;
use enigm_image::repo::{self, Expiries};
use enigm_tuf::fetch::UrlFetcher;
use enigm_tuf::{Config, Updater};

const NOW: i64 = 1_795_325_400;

fn setup(root_keys: usize) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let (k, r) = (dir.path().join("keys"), dir.path().join("repo"));
    std::fs::create_dir_all(&k).unwrap();
    for role in keys::ROLES {
        let count = if role == "root" { root_keys } else { 1 };
        for i in 1..=count {
            keys::generate(&k, role, i).unwrap();
        }
    }
    (dir, k, r)
}

#[test]
fn refusals() {
    let (dir, k, r) = setup(1);
    assert!(keys::generate(&k, "root", 1).is_err(), "overwriting a key");
    let err = repo::init(&r, &k, 2, NOW, Expiries::default()).unwrap_err();
    assert!(err.to_string().contains("threshold 2 with 1 key"), "{err}");
    std::fs::remove_dir_all(&r).unwrap();
    repo::init(&r, &k, 1, NOW, Expiries::default()).unwrap();
    assert!(
        repo::init(&r, &k, 1, NOW, Expiries::default()).is_err(),
        "init twice"
    );
    let file = dir.path().join("f");
    std::fs::write(&file, b"x").unwrap();
    for bad in ["../escape", "/abs", "a//b", ""] {
        let err = repo::publish(
            &r,
            &k,
            &[(bad.into(), file.clone())],
            NOW,
            Expiries::default(),
        );
        assert!(err.is_err(), "{bad:?} accepted");
    }
    let missing = keys::load(&dir.path().join("nowhere"), "root").unwrap_err();
    assert!(missing.to_string().contains("no root key"), "{missing}");
}

#[test]
fn each_published_version_verifies_with_our_client() {
    let (dir, k, r) = setup(3);
    repo::init(&r, &k, 2, NOW, Expiries::default()).unwrap();
    let trusted = dir.path().join("trusted");
    std::fs::create_dir_all(&trusted).unwrap();
    std::fs::copy(r.join("metadata/1.root.json"), trusted.join("root.json")).unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let url = format!("file://{}", r.join("metadata").display());
    let targets_url = format!("file://{}", r.join("targets").display());
    for round in 1..=3u64 {
        let file = dir.path().join(format!("f{round}"));
        std::fs::write(&file, format!("payload {round}")).unwrap();
        let done = repo::publish(
            &r,
            &k,
            &[(format!("p{round}"), file)],
            NOW,
            Expiries::default(),
        )
        .unwrap();
        assert_eq!(done.timestamp_version, round + 1);
        let mut updater = Updater::new(
            &trusted,
            &url,
            UrlFetcher::default(),
            NOW + 60,
            Config::default(),
        )
        .unwrap();
        updater.refresh().unwrap();
        // Every earlier target is still there.
        for earlier in 1..=round {
            let path = updater
                .download(&format!("p{earlier}"), &targets_url, &out)
                .unwrap();
            assert_eq!(
                std::fs::read_to_string(path).unwrap(),
                format!("payload {earlier}")
            );
        }
    }
    // Past the timestamp's one-day expiry, the client refuses (freeze).
    let mut updater = Updater::new(
        &trusted,
        &url,
        UrlFetcher::default(),
        NOW + 2 * 86_400,
        Config::default(),
    )
    .unwrap();
    let err = updater.refresh().unwrap_err();
    assert!(err.to_string().contains("timestamp expired"), "{err}");
}
