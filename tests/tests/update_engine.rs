//! The update engine end to end over HTTP: `enigm-image` builds v1 (on an A/B disk) and v2,
//! publishes v2 to a TUF repository served by a small HTTP server; the engine checks (TUF +
//! signed manifest), downloads the payload (resumable, TUF and manifest must agree), applies
//! it into slot B; the boot simulator boots B; after confirming, the engine reports the device
//! up to date. Steps out of order and a payload that differs from its manifest are refused.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use enigm_e2e::require_tool;
use enigm_image::build::{BuildOptions, build};
use enigm_image::{keys, repo};
use enigm_installer::{FileRollbackStore, RollbackStore};
use enigm_slots::simulator::boot;
use enigm_slots::{GptBootControl, Slot};
use enigm_update_engine::{Engine, EngineConfig, EngineError, State};

/// Serves files under `root` over HTTP/1.1 (GET; 404 when missing).
fn serve(root: PathBuf) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            reader.read_line(&mut request).unwrap_or(0);
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
            }
            let path = request
                .split_whitespace()
                .nth(1)
                .unwrap_or("/")
                .trim_start_matches('/');
            match std::fs::read(root.join(path)) {
                Ok(body) if !path.contains("..") => {
                    let _ = write!(
                        stream,
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
                        body.len()
                    );
                    let _ = stream.write_all(&body);
                }
                _ => {
                    let _ =
                        stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
                }
            }
        }
    });
    url
}

fn now() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

fn rootfs(dir: &Path, release: &str) -> PathBuf {
    let root = dir.join(format!("rootfs-{release}"));
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(
        root.join("etc/os-release"),
        format!("VERSION_ID={release}\n"),
    )
    .unwrap();
    let mut blob = vec![0u8; 150_000];
    openssl::rand::rand_bytes(&mut blob).unwrap();
    std::fs::write(root.join("etc/blob"), blob).unwrap();
    root
}

fn options(dir: &Path, keys: &Path, release: &str, index: u64, disk: bool) -> BuildOptions {
    BuildOptions {
        rootfs: rootfs(dir, release),
        out: dir.join(format!("build-{release}")),
        keys: keys.to_path_buf(),
        version: format!("{release}.0"),
        rollback_index: index,
        hardware: "test-phone".into(),
        timestamp: 0,
        slot_size: if disk { 4 << 20 } else { 0 },
    }
}

#[test]
fn check_download_apply_boot_confirm() {
    require_tool("mkfs.erofs", "erofs-utils").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key_dir = d.join("keys");
    std::fs::create_dir_all(&key_dir).unwrap();
    for role in keys::ROLES.into_iter().chain([keys::IMAGE]) {
        keys::generate(&key_dir, role, 1).unwrap();
    }
    let v1 = build(&options(d, &key_dir, "1", 1, true)).unwrap();
    let v2 = build(&options(d, &key_dir, "2", 2, false)).unwrap();
    let repo_dir = d.join("repo");
    repo::init(&repo_dir, &key_dir, 1, now(), repo::Expiries::default()).unwrap();
    repo::publish(
        &repo_dir,
        &key_dir,
        &[
            ("test-phone/manifest.json".into(), v2.manifest.clone()),
            ("test-phone/root.erofs".into(), v2.image.clone()),
        ],
        now(),
        repo::Expiries::default(),
    )
    .unwrap();
    let url = serve(repo_dir.clone());

    // The device: trusts root v1 and the image key; runs v1 from slot A.
    let state = d.join("state");
    std::fs::create_dir_all(state.join("tuf")).unwrap();
    std::fs::copy(
        repo_dir.join("metadata/1.root.json"),
        state.join("tuf/root.json"),
    )
    .unwrap();
    let image_keys: BTreeMap<_, _> = keys::load(&key_dir, keys::IMAGE)
        .unwrap()
        .into_iter()
        .map(|k| (k.keyid.clone(), k.public.clone()))
        .collect();
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
    match engine.check(now()).unwrap() {
        State::Available(m) => assert_eq!(m.version, "2.0"),
        other => panic!("{other:?}"),
    }
    let mut progress = Vec::new();
    engine
        .download(now(), &mut |done, total| progress.push((done, total)))
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
    assert_eq!(engine.check(now()).unwrap(), &State::UpToDate);

    // A repository whose payload differs from its manifest: refused at download.
    let v3 = build(&options(d, &key_dir, "3", 3, false)).unwrap();
    let other = build(&options(d, &key_dir, "3b", 3, false)).unwrap();
    repo::publish(
        &repo_dir,
        &key_dir,
        &[
            ("test-phone/manifest.json".into(), v3.manifest.clone()),
            ("test-phone/root.erofs".into(), other.image.clone()),
        ],
        now(),
        repo::Expiries::default(),
    )
    .unwrap();
    assert!(matches!(engine.check(now()).unwrap(), State::Available(_)));
    let err = engine.download(now(), &mut |_, _| {}).unwrap_err();
    assert!(matches!(err, EngineError::PayloadMismatch { .. }), "{err}");
    assert!(matches!(
        engine.state(),
        State::Failed {
            step: "download",
            ..
        }
    ));
}
