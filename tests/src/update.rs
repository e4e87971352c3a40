//! Fixtures for the update tests: a static HTTP server for a repository directory, signing
//! keys, and builds of small root file systems with `enigm-image`.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Result;
use enigm_image::build::{BuildOptions, Built};
use enigm_image::{keys, repo};

/// Serves the files under `root` over HTTP/1.1 on a loopback port (GET; 404 when missing or
/// when the path has `..`), from a background thread for the rest of the test. Returns the
/// base URL.
pub fn serve_directory(root: PathBuf) -> Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let url = format!("http://{}", listener.local_addr()?);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let Ok(clone) = stream.try_clone() else {
                continue;
            };
            let mut reader = BufReader::new(clone);
            let mut request = String::new();
            let _ = reader.read_line(&mut request);
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
    Ok(url)
}

/// Now, in unix seconds.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// One key per TUF role and the image key, in `dir`.
pub fn generate_keys(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    for role in keys::ROLES.into_iter().chain([keys::IMAGE]) {
        keys::generate(dir, role, 1)?;
    }
    Ok(())
}

/// Build options for release `release` of hardware `test-phone`: a small root file system
/// (`/etc/os-release` and `blob_size` random bytes) under `dir`, built into
/// `dir/build-RELEASE`, with a 4 MiB A/B disk image when `disk`.
pub fn release_options(
    dir: &Path,
    keys: &Path,
    release: &str,
    rollback_index: u64,
    disk: bool,
    blob_size: usize,
) -> Result<BuildOptions> {
    let root = dir.join(format!("rootfs-{release}"));
    std::fs::create_dir_all(root.join("etc"))?;
    std::fs::write(
        root.join("etc/os-release"),
        format!("VERSION_ID={release}\n"),
    )?;
    let mut blob = vec![0u8; blob_size];
    openssl::rand::rand_bytes(&mut blob)?;
    std::fs::write(root.join("etc/blob"), blob)?;
    Ok(BuildOptions {
        rootfs: root,
        out: dir.join(format!("build-{release}")),
        keys: keys.to_path_buf(),
        version: format!("{release}.0"),
        rollback_index,
        hardware: "test-phone".into(),
        timestamp: 0,
        slot_size: if disk { 4 << 20 } else { 0 },
    })
}

/// A new TUF repository at `repo` signed with the keys in `keys`, offering `built` to
/// hardware `test-phone` (`test-phone/manifest.json`, `test-phone/root.erofs`).
pub fn publish_release(repo_dir: &Path, keys: &Path, built: &Built) -> Result<()> {
    repo::init(repo_dir, keys, 1, unix_now(), repo::Expiries::default())?;
    repo::publish(
        repo_dir,
        keys,
        &[
            ("test-phone/manifest.json".into(), built.manifest.clone()),
            ("test-phone/root.erofs".into(), built.image.clone()),
        ],
        unix_now(),
        repo::Expiries::default(),
    )?;
    Ok(())
}

/// Gives `path` and everything under it to `user` (a daemon's state directory).
pub fn chown_tree(path: &Path, user: &nix::unistd::User) -> Result<()> {
    nix::unistd::chown(path, Some(user.uid), Some(user.gid))?;
    if path.is_dir() {
        for entry in std::fs::read_dir(path)? {
            chown_tree(&entry?.path(), user)?;
        }
    }
    Ok(())
}

/// Copies release `from`'s root file system (`etc/`) to `to`, with a new `/etc/os-release`
/// and an added `/etc/motd`: a small upgrade, for deltas.
pub fn upgraded_rootfs(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to.join("etc"))?;
    for entry in std::fs::read_dir(from.join("etc"))? {
        let entry = entry?;
        std::fs::copy(entry.path(), to.join("etc").join(entry.file_name()))?;
    }
    std::fs::write(to.join("etc/os-release"), "VERSION_ID=2\n")?;
    std::fs::write(to.join("etc/motd"), "upgraded\n")?;
    Ok(())
}

/// Where an `enigm-updated` under test finds its repository and its device.
pub struct UpdatedSetup<'a> {
    /// The daemon's sysroot (`/etc/enigm/image-keys.json`).
    pub sysroot: &'a Path,
    /// The bus address.
    pub bus: &'a str,
    /// The repository's base URL (`URL/metadata`, `URL/targets`).
    pub url: &'a str,
    /// The state directory (trusted root in `tuf/`).
    pub state: &'a Path,
    /// The A/B disk image.
    pub disk: &'a Path,
}

/// The command that starts `enigm-updated` for hardware `test-phone` running slot `slot`
/// (`a` or `b`); callers add or remove settings with further `env` calls.
pub fn updated_command(setup: &UpdatedSetup<'_>, slot: &str) -> Result<std::process::Command> {
    let mut command =
        std::process::Command::new(crate::package_binary("enigm-updated", "enigm-updated")?);
    command
        .arg("--sysroot")
        .arg(setup.sysroot)
        .env("DBUS_SYSTEM_BUS_ADDRESS", setup.bus)
        .env(
            "ENIGM_UPDATED__UPDATE__METADATA_URL",
            format!("{}/metadata", setup.url),
        )
        .env(
            "ENIGM_UPDATED__UPDATE__TARGETS_URL",
            format!("{}/targets", setup.url),
        )
        .env("ENIGM_UPDATED__UPDATE__STATE_DIR", setup.state)
        .env("ENIGM_UPDATED__UPDATE__HARDWARE", "test-phone")
        .env("ENIGM_UPDATED__UPDATE__DISK", setup.disk)
        .env("ENIGM_UPDATED__UPDATE__RUNNING_SLOT", slot)
        .env_remove("NOTIFY_SOCKET");
    Ok(command)
}
