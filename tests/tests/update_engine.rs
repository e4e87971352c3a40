//! The update engine end to end over HTTP: `enigm-image` builds v1 (on an A/B disk) and v2,
//! publishes v2 to a TUF repository served by a small HTTP server; the engine checks (TUF +
//! signed manifest), downloads the payload (resumable, TUF and manifest must agree), applies
//! it into slot B; the boot simulator boots B; after confirming, the engine reports the device
//! up to date. Steps out of order and a payload that differs from its manifest are refused.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use enigm_e2e::require_tool;
use enigm_e2e::update::{
    generate_keys, publish_release, release_options, serve_directory, unix_now,
};
use enigm_image::build::build;
use enigm_image::{keys, repo};
use enigm_installer::{FileRollbackStore, RollbackStore};
use enigm_slots::simulator::boot;
use enigm_slots::{GptBootControl, Slot};
use enigm_update_engine::{Engine, EngineConfig, EngineError, State};

#[test]
fn check_download_apply_boot_confirm() {
    require_tool("mkfs.erofs", "erofs-utils").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key_dir = d.join("keys");
    generate_keys(&key_dir).unwrap();
    let v1 = build(&release_options(d, &key_dir, "1", 1, true, 150000).unwrap()).unwrap();
    let v2 = build(&release_options(d, &key_dir, "2", 2, false, 150000).unwrap()).unwrap();
    let repo_dir = d.join("repo");
    publish_release(&repo_dir, &key_dir, &v2).unwrap();
    let url = serve_directory(repo_dir.clone()).unwrap();

    // The device: trusts root v1 and the image key; runs v1 from slot A.
    let state = d.join("state");
    std::fs::create_dir_all(state.join("tuf")).unwrap();
    std::fs::copy(
        repo_dir.join("metadata/1.root.json"),
        state.join("tuf/root.json"),
    )
    .unwrap();
    let image_keys = keys::public_map(&key_dir, keys::IMAGE).unwrap();
    let config = EngineConfig {
        metadata_url: format!("{url}/metadata"),
        targets_url: format!("{url}/targets"),
        state_dir: state.clone(),
        hardware: "test-phone".into(),
        image_keys,
        image_threshold: 1,
        tries: 3,
    };
    let disk = v1.disk.clone().unwrap();
    let mut rollback = FileRollbackStore::new(d.join("rollback-index"));
    rollback.raise(1).unwrap();
    let mut engine = Engine::new(
        config.clone(),
        GptBootControl::open(&disk).unwrap(),
        Slot::A,
        Box::new(rollback.clone()),
    );
    assert!(matches!(
        engine.apply(&mut |_, _| {}),
        Err(EngineError::OutOfOrder { .. })
    ));
    match engine.check(unix_now()).unwrap() {
        State::Available(m) => assert_eq!(m.version, "2.0"),
        other => panic!("{other:?}"),
    }
    let mut progress = Vec::new();
    engine
        .download(unix_now(), &mut |done, total| progress.push((done, total)))
        .unwrap();
    let size = v2.signed.root_size;
    assert_eq!(progress.last(), Some(&(size, size)));
    assert!(matches!(
        engine.apply(&mut |_, _| {}).unwrap(),
        State::Applied { slot: Slot::B, .. }
    ));
    let pending = std::fs::read(state.join("pending.json")).unwrap();

    // Had B never come up, A boots again: the engine says the update fell back.
    let mut fallen = Engine::new(
        config.clone(),
        GptBootControl::open(&disk).unwrap(),
        Slot::A,
        Box::new(rollback.clone()),
    );
    let err = fallen.confirm_boot().unwrap_err();
    assert!(
        matches!(
            err,
            EngineError::FellBack {
                running: Slot::A,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(fallen.signal().0, "fail");
    std::fs::write(state.join("pending.json"), &pending).unwrap();

    // Reboot into B: the engine checks the slot against its manifest and confirms it (marked
    // good, rollback index raised); it then finds nothing newer.
    let mut control = GptBootControl::open(&disk).unwrap();
    assert_eq!(boot(&mut control).unwrap(), Slot::B);
    let mut engine = Engine::new(config.clone(), control, Slot::B, Box::new(rollback.clone()));
    assert!(engine.confirm_boot().unwrap());
    assert_eq!(rollback.get().unwrap(), 2);
    assert_eq!(engine.signal().0, "pass");
    assert!(!engine.confirm_boot().unwrap(), "nothing pending any more");
    assert_eq!(engine.check(unix_now()).unwrap(), &State::UpToDate);

    // A repository whose payload differs from its manifest: refused at download.
    let v3 = build(&release_options(d, &key_dir, "3", 3, false, 150000).unwrap()).unwrap();
    let other = build(&release_options(d, &key_dir, "3b", 3, false, 150000).unwrap()).unwrap();
    repo::publish(
        &repo_dir,
        &key_dir,
        &[
            ("test-phone/manifest.json".into(), v3.manifest.clone()),
            ("test-phone/root.erofs".into(), other.image.clone()),
        ],
        unix_now(),
        repo::Expiries::default(),
    )
    .unwrap();
    assert!(matches!(
        engine.check(unix_now()).unwrap(),
        State::Available(_)
    ));
    let err = engine.download(unix_now(), &mut |_, _| {}).unwrap_err();
    assert!(matches!(err, EngineError::PayloadMismatch { .. }), "{err}");
    assert!(matches!(
        engine.state(),
        State::Failed {
            step: "download",
            ..
        }
    ));
}
