//! enigm-tuf-client against repositories written by python-tuf's Metadata API
//! (`tests/fixtures/tuf/make_repo.py`; python-tuf installed from PyPI if missing): a
//! consistent-snapshot repository with a root rotation, ECDSA and ed25519 keys and a
//! delegation is accepted and both targets download; each attack is refused with its reason,
//! and the trusted metadata is left as it was.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use enigm_e2e::{binary, require_python_module};

fn make_repo(out: &Path, attack: &str) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/tuf/make_repo.py");
    let status = Command::new("python3")
        .arg(&script)
        .arg(out)
        .arg(attack)
        .status()
        .unwrap();
    assert!(status.success(), "make_repo.py {attack}");
}

struct Client {
    bin: PathBuf,
    metadata_dir: PathBuf,
    out: PathBuf,
}

impl Client {
    fn run(&self, args: &[&str]) -> Output {
        Command::new(&self.bin)
            .arg("--metadata-dir")
            .arg(&self.metadata_dir)
            .args(args)
            .output()
            .unwrap()
    }

    fn refresh(&self, repo: &Path) -> Output {
        let url = format!("file://{}", repo.join("metadata").display());
        self.run(&["--metadata-url", &url, "refresh"])
    }

    fn download(&self, repo: &Path, target: &str) -> Output {
        let url = format!("file://{}", repo.join("metadata").display());
        let targets = format!("file://{}", repo.join("targets").display());
        self.run(&[
            "--metadata-url",
            &url,
            "--target-name",
            target,
            "--target-base-url",
            &targets,
            "--target-dir",
            self.out.to_str().unwrap(),
            "download",
        ])
    }
}

fn ok(output: &Output, what: &str) {
    assert!(
        output.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn refused(output: &Output, what: &str, reason: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{what} accepted: {stderr}");
    assert!(
        stderr.contains(reason),
        "{what}: expected {reason:?} in: {stderr}"
    );
}

#[test]
fn python_tuf_repositories_are_accepted_and_attacks_refused() {
    require_python_module("tuf", "tuf==7.0.1").unwrap();
    let bin = binary("enigm-tuf-client").unwrap();
    // (attack, whether it is in the metadata (refresh) or the target (download), reason)
    let cases = [
        ("none", "", ""),
        (
            "rollback-timestamp",
            "refresh",
            "timestamp: version 1 is older than the trusted 2 (rollback)",
        ),
        (
            "rollback-snapshot",
            "refresh",
            "snapshot version 1 is older than the trusted 2 (rollback)",
        ),
        ("freeze", "refresh", "timestamp expired"),
        ("mix-and-match", "refresh", "(mix-and-match)"),
        (
            "timestamp-threshold",
            "refresh",
            "timestamp: 0 valid signature(s) from distinct keys, threshold 1",
        ),
        (
            "root-threshold",
            "refresh",
            "root (by the previous root's keys): 0 valid signature(s)",
        ),
        (
            "arbitrary-target",
            "download",
            "file.txt: sha256 hash differs",
        ),
        ("endless-data", "download", "file.txt: more than 22 bytes"),
        (
            "diamond",
            "diamond",
            "role1: 0 valid signature(s) from distinct keys",
        ),
    ];
    for (attack, stage, reason) in cases {
        let dir = tempfile::tempdir().unwrap();
        let repos = dir.path().join("repos");
        make_repo(&repos, attack);
        let (good, bad) = (repos.join("good"), repos.join("attack"));
        let client = Client {
            bin: bin.clone(),
            metadata_dir: dir.path().join("trusted"),
            out: dir.path().join("out"),
        };
        std::fs::create_dir_all(&client.out).unwrap();
        let root = good.join("metadata/1.root.json");
        ok(&client.run(&["init", root.to_str().unwrap()]), "init");
        ok(&client.refresh(&good), "refresh (good)");
        // Root v2 was reached through the rotation.
        let trusted_root = std::fs::read(client.metadata_dir.join("root.json")).unwrap();
        assert_eq!(
            trusted_root,
            std::fs::read(good.join("metadata/2.root.json")).unwrap()
        );
        ok(&client.download(&good, "file.txt"), "download file.txt");
        ok(
            &client.download(&good, "delegated/inner.txt"),
            "download via delegation",
        );
        assert_eq!(
            std::fs::read(client.out.join("file.txt")).unwrap(),
            b"hello from python-tuf\n"
        );
        assert_eq!(
            std::fs::read(client.out.join("delegated%2Finner.txt")).unwrap(),
            b"delegated content\n"
        );
        let trusted_before: Vec<Vec<u8>> = ["root.json", "timestamp.json", "snapshot.json"]
            .iter()
            .map(|f| std::fs::read(client.metadata_dir.join(f)).unwrap())
            .collect();
        std::fs::remove_file(client.out.join("file.txt")).unwrap();

        match stage {
            "" => {
                ok(&client.refresh(&bad), "refresh (next version)");
                ok(
                    &client.download(&bad, "file.txt"),
                    "download (next version)",
                );
                continue;
            }
            "refresh" => refused(&client.refresh(&bad), attack, reason),
            "diamond" => {
                // role1 is trusted through targets; reached again through parent-b, whose
                // delegation names another key, it must be verified anew and refused. One
                // invocation, one updater, both targets in order.
                let url = format!("file://{}", bad.join("metadata").display());
                let targets = format!("file://{}", bad.join("targets").display());
                let out = client.run(&[
                    "--metadata-url",
                    &url,
                    "--target-name",
                    "delegated/inner.txt",
                    "--target-name",
                    "team-b/evil.txt",
                    "--target-base-url",
                    &targets,
                    "--target-dir",
                    client.out.to_str().unwrap(),
                    "download",
                ]);
                refused(&out, attack, reason);
                assert!(client.out.join("delegated%2Finner.txt").exists());
                assert!(
                    !client.out.join("team-b%2Fevil.txt").exists(),
                    "diamond: a target through the unverified path was written"
                );
                continue;
            }
            _ => {
                refused(&client.download(&bad, "file.txt"), attack, reason);
                assert!(
                    !client.out.join("file.txt").exists(),
                    "{attack}: file written"
                );
            }
        }
        let trusted_after: Vec<Vec<u8>> = ["root.json", "timestamp.json", "snapshot.json"]
            .iter()
            .map(|f| std::fs::read(client.metadata_dir.join(f)).unwrap())
            .collect();
        for (i, file) in ["root.json", "timestamp.json", "snapshot.json"]
            .iter()
            .enumerate()
        {
            // Mix-and-match: the new timestamp is itself valid and trusted (as the
            // specification says); the snapshot it names is what gets refused.
            if attack == "mix-and-match" && *file == "timestamp.json" {
                continue;
            }
            assert!(
                trusted_after[i] == trusted_before[i],
                "{attack}: trusted {file} changed"
            );
        }
    }
}

/// `enigm-image` keys, repository, publishing and key rotation, read by python-tuf's ngclient
/// over HTTP and by our client: both download what was published, before and after a root
/// and a timestamp key rotation.
#[test]
fn enigm_image_repositories_are_accepted_by_python_tuf_and_by_us() {
    require_python_module("tuf", "tuf==7.0.1").unwrap();
    let image = binary("enigm-image").unwrap();
    let client_bin = binary("enigm-tuf-client").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (keys, repo) = (dir.path().join("keys"), dir.path().join("repo"));
    let tool = |args: &[&str]| {
        let out = Command::new(&image).args(args).output().unwrap();
        ok(&out, &format!("enigm-image {args:?}"));
    };
    tool(&[
        "keys",
        "generate",
        "--keys",
        keys.to_str().unwrap(),
        "--root-keys",
        "2",
    ]);
    tool(&[
        "repo",
        "init",
        "--keys",
        keys.to_str().unwrap(),
        "--repo",
        repo.to_str().unwrap(),
        "--root-threshold",
        "2",
    ]);
    let ngclient = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/tuf/ngclient_download.py");
    let root = repo.join("metadata/1.root.json");
    let client = Client {
        bin: client_bin,
        metadata_dir: dir.path().join("trusted"),
        out: dir.path().join("ours"),
    };
    std::fs::create_dir_all(&client.out).unwrap();
    ok(&client.run(&["init", root.to_str().unwrap()]), "init");
    for (round, content) in [(1, "first payload\n"), (2, "second payload, longer\n")] {
        if round == 2 {
            // Rotate the root keys (2 new, threshold 2) and the timestamp key: both clients,
            // starting from 1.root.json, walk the new root versions.
            for (role, count) in [("root", "2"), ("timestamp", "1")] {
                tool(&[
                    "keys",
                    "rotate",
                    "--keys",
                    keys.to_str().unwrap(),
                    "--repo",
                    repo.to_str().unwrap(),
                    "--role",
                    role,
                    "--count",
                    count,
                    "--threshold",
                    count,
                ]);
            }
            assert!(repo.join("metadata/3.root.json").exists());
        }
        let file = dir.path().join(format!("payload-{round}"));
        std::fs::write(&file, content).unwrap();
        let name = format!("update/image-{round}.bin");
        tool(&[
            "publish",
            "--keys",
            keys.to_str().unwrap(),
            "--repo",
            repo.to_str().unwrap(),
            &format!("{name}={}", file.display()),
        ]);
        let theirs = dir.path().join(format!("theirs-{round}"));
        std::fs::create_dir_all(&theirs).unwrap();
        let out = Command::new("python3")
            .arg(&ngclient)
            .args([&repo, &root])
            .arg(&name)
            .arg(&theirs)
            .output()
            .unwrap();
        ok(&out, &format!("python-tuf ngclient, round {round}"));
        let encoded = name.replace('/', "%2F");
        assert_eq!(
            std::fs::read_to_string(theirs.join(&encoded)).unwrap(),
            content
        );
        ok(
            &client.download(&repo, &name),
            &format!("our client, round {round}"),
        );
        assert_eq!(
            std::fs::read_to_string(client.out.join(&encoded)).unwrap(),
            content
        );
    }
}
