//! The update engine end to end over HTTP: `enigm-image` builds v1 (on an A/B disk) and v2,
//! publishes v2 to a TUF repository served by a small HTTP server; the engine checks (TUF +
//! signed manifest), downloads the payload (resumable, TUF and manifest must agree), applies
//! it into slot B; the boot simulator boots B; after confirming, the engine reports the device
//! up to date. Steps out of order and a payload that differs from its manifest are refused.
//! With a delta published from the image a device runs, the engine fetches and applies the
//! delta; a device running another image gets the full image.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use enigm_e2e::require_tool;
use enigm_e2e::update::{
    generate_keys, publish_release, release_options, serve_directory, unix_now, upgraded_rootfs,
};
use enigm_image::build::build;
use enigm_image::release::release;
use enigm_image::{keys, repo};
use enigm_installer::{FileRollbackStore, RollbackStore};
use enigm_slots::simulator::boot;
use enigm_slots::{BootControl, GptBootControl, Slot};
use enigm_update_engine::{Engine, EngineConfig, EngineError, Payload, State};

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
        tls: Default::default(),
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
    let err = fallen.confirm_boot(Ok(())).unwrap_err();
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
    assert!(engine.awaiting_health_check());
    // The system's health check fails on this boot: not confirmed, the record kept.
    let err = engine
        .confirm_boot(Err("enigm-tscd did not come up".into()))
        .unwrap_err();
    assert!(
        matches!(err, EngineError::Unhealthy { slot: Slot::B, .. }),
        "{err}"
    );
    assert_eq!(engine.signal().0, "fail");
    assert_eq!(rollback.get().unwrap(), 1);
    assert!(!engine.control().slots().unwrap().b.successful);
    assert!(
        engine.awaiting_health_check(),
        "checked again on the next boot"
    );
    // The next boot (a try left) is healthy.
    assert_eq!(boot(engine.control()).unwrap(), Slot::B);
    assert!(engine.confirm_boot(Ok(())).unwrap());
    assert!(!engine.awaiting_health_check());
    assert_eq!(rollback.get().unwrap(), 2);
    assert_eq!(engine.signal().0, "pass");
    assert!(
        !engine.confirm_boot(Ok(())).unwrap(),
        "nothing pending any more"
    );
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

#[test]
fn a_delta_is_fetched_when_offered_for_the_running_image_and_the_full_image_otherwise() {
    require_tool("mkfs.erofs", "erofs-utils").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key_dir = d.join("keys");
    generate_keys(&key_dir).unwrap();
    let v1_options = release_options(d, &key_dir, "1", 1, true, 600_000).unwrap();
    let v1 = build(&v1_options).unwrap();
    let mut v2_options = release_options(d, &key_dir, "2", 2, false, 0).unwrap();
    v2_options.rootfs = d.join("rootfs-2-upgraded");
    upgraded_rootfs(&v1_options.rootfs, &v2_options.rootfs).unwrap();
    let v2 = build(&v2_options).unwrap();
    // Another device runs a different v1 build: no delta fits it.
    let other_v1 = build(&release_options(d, &key_dir, "1b", 1, true, 600_000).unwrap()).unwrap();

    let repo_dir = d.join("repo");
    repo::init(
        &repo_dir,
        &key_dir,
        1,
        unix_now(),
        repo::Expiries::default(),
    )
    .unwrap();
    let made = release(&v2_options.out, std::slice::from_ref(&v1_options.out), 19).unwrap();
    assert_eq!(made.deltas.len(), 1);
    let delta_size = made.deltas[0].size;
    assert!(
        delta_size * 10 < v2.signed.root_size,
        "delta {delta_size} bytes for a {} byte image",
        v2.signed.root_size
    );
    repo::publish(
        &repo_dir,
        &key_dir,
        &made.files,
        unix_now(),
        repo::Expiries::default(),
    )
    .unwrap();
    let url = serve_directory(repo_dir.clone()).unwrap();

    for (disk, expected) in [
        (v1.disk.clone().unwrap(), Payload::Delta),
        (other_v1.disk.clone().unwrap(), Payload::Full),
    ] {
        let state = d.join(format!("state-{expected:?}"));
        std::fs::create_dir_all(state.join("tuf")).unwrap();
        std::fs::copy(
            repo_dir.join("metadata/1.root.json"),
            state.join("tuf/root.json"),
        )
        .unwrap();
        let config = EngineConfig {
            metadata_url: format!("{url}/metadata"),
            targets_url: format!("{url}/targets"),
            state_dir: state.clone(),
            hardware: "test-phone".into(),
            image_keys: keys::public_map(&key_dir, keys::IMAGE).unwrap(),
            image_threshold: 1,
            tries: 3,
            tls: Default::default(),
        };
        let rollback = FileRollbackStore::new(state.join("rollback-index"));
        let mut engine = Engine::new(
            config.clone(),
            GptBootControl::open(&disk).unwrap(),
            Slot::A,
            Box::new(rollback.clone()),
        );
        assert!(matches!(
            engine.check(unix_now()).unwrap(),
            State::Available(_)
        ));
        let mut last = (0, 0);
        engine
            .download(unix_now(), &mut |done, total| last = (done, total))
            .unwrap();
        assert_eq!(engine.payload(), expected);
        let downloaded = match expected {
            Payload::Delta => delta_size,
            Payload::Full => v2.signed.root_size,
        };
        assert_eq!(last, (downloaded, downloaded));
        assert!(matches!(
            engine.apply(&mut |_, _| {}).unwrap(),
            State::Applied { slot: Slot::B, .. }
        ));
        let mut control = GptBootControl::open(&disk).unwrap();
        assert_eq!(boot(&mut control).unwrap(), Slot::B);
        let mut engine = Engine::new(config, control, Slot::B, Box::new(rollback.clone()));
        assert!(engine.confirm_boot(Ok(())).unwrap(), "{expected:?}");
        assert_eq!(rollback.clone().get().unwrap(), 2);
    }
}
