//! Delta size for a realistic upgrade: a root file system holding numpy, scipy and
//! cryptography (Python wheels from PyPI, pinned versions), where one package is upgraded
//! (numpy 2.1.1 → 2.1.2) and `/etc/os-release` changes. Both trees are built into erofs
//! images the way `enigm-image build` does (`mkfs.erofs -T0 --all-root`), then compared:
//!
//! - the full new image, raw and as `zstd -19 --long` (what a full update would transfer);
//! - our delta (`enigm_delta::create`, level 19);
//! - `zstd --patch-from=OLD -19 --long` (the peer), measured in the same run.
//!
//! Run: `cargo bench -p enigm-delta --bench delta_size` (part of `cargo xtask bench`).
//! Needs python3 with pip, mkfs.erofs (erofs-utils) and zstd; downloads land in
//! `target/bench-delta/` and are reused.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

const BASE: &[&str] = &["scipy==1.14.1", "cryptography==43.0.3"];
const OLD: &str = "numpy==2.1.1";
const NEW: &str = "numpy==2.1.2";
const LEVEL: i32 = 19;

fn run(cmd: &mut Command) -> Result<()> {
    let out = cmd
        .output()
        .with_context(|| format!("running {:?}", cmd.get_program()))?;
    if !out.status.success() {
        bail!(
            "{:?} failed: {}",
            cmd.get_program(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// The wheel of `spec` in `cache` (downloaded once).
fn wheel(cache: &Path, spec: &str) -> Result<PathBuf> {
    let (name, version) = spec.split_once("==").context("pinned spec")?;
    let prefix = format!("{name}-{version}-");
    let find = || -> Result<Option<PathBuf>> {
        Ok(std::fs::read_dir(cache)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".whl"))
            }))
    };
    if let Some(path) = find()? {
        return Ok(path);
    }
    eprintln!("delta_size: downloading {spec} from PyPI");
    run(Command::new("python3")
        .args(["-m", "pip", "download", "--quiet", "--no-deps"])
        .args(["--only-binary=:all:", "--platform", "manylinux2014_x86_64"])
        .args(["--python-version", "3.11", "--dest"])
        .arg(cache)
        .arg(spec))?;
    find()?.with_context(|| format!("pip downloaded no wheel for {spec}"))
}

/// A root file system with the base wheels and `package` unpacked, and `os-release`.
fn rootfs(cache: &Path, dir: &Path, package: &str, release: &str) -> Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    let site = dir.join("usr/lib/python3/dist-packages");
    std::fs::create_dir_all(&site)?;
    std::fs::create_dir_all(dir.join("etc"))?;
    std::fs::write(
        dir.join("etc/os-release"),
        format!("NAME=\"Enigm OS\"\nVERSION_ID={release}\n"),
    )?;
    for spec in BASE.iter().copied().chain([package]) {
        let wheel = wheel(cache, spec)?;
        run(Command::new("python3")
            .args(["-m", "zipfile", "-e"])
            .arg(&wheel)
            .arg(&site))?;
    }
    Ok(())
}

fn erofs(rootfs: &Path, image: &Path) -> Result<Vec<u8>> {
    let _ = std::fs::remove_file(image);
    run(Command::new("mkfs.erofs")
        .args(["-T0", "--all-root", "--quiet"])
        .arg(image)
        .arg(rootfs))?;
    Ok(std::fs::read(image)?)
}

fn size_of(path: &Path) -> Result<u64> {
    Ok(std::fs::metadata(path)?.len())
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1 << 20)
}

fn main() -> Result<()> {
    if std::env::args().any(|a| a == "--list") {
        return Ok(());
    }
    let work = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../target/bench-delta"
    ));
    let cache = work.join("wheels");
    std::fs::create_dir_all(&cache)?;
    rootfs(&cache, &work.join("rootfs-1"), OLD, "1")?;
    rootfs(&cache, &work.join("rootfs-2"), NEW, "2")?;
    let (v1_path, v2_path) = (work.join("v1.erofs"), work.join("v2.erofs"));
    let v1 = erofs(&work.join("rootfs-1"), &v1_path)?;
    let v2 = erofs(&work.join("rootfs-2"), &v2_path)?;

    let full_zst = work.join("v2.erofs.zst");
    let window = enigm_delta::window_log_for(v1.len() as u64, v2.len() as u64)?;
    let started = Instant::now();
    run(Command::new("zstd")
        .args([
            "-q",
            "-f",
            &format!("-{LEVEL}"),
            &format!("--long={window}"),
        ])
        .arg(&v2_path)
        .arg("-o")
        .arg(&full_zst))?;
    let full_zst_secs = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let mut ours = Vec::new();
    enigm_delta::create(&v1, &v2, LEVEL, &mut ours)?;
    let ours_secs = started.elapsed().as_secs_f64();

    let peer = work.join("v2.patch-from.zst");
    let started = Instant::now();
    run(Command::new("zstd")
        .args([
            "-q",
            "-f",
            &format!("-{LEVEL}"),
            &format!("--long={window}"),
        ])
        .arg(format!("--patch-from={}", v1_path.display()))
        .arg(&v2_path)
        .arg("-o")
        .arg(&peer))?;
    let peer_secs = started.elapsed().as_secs_f64();

    let (full, full_c, ours_len, peer_len) = (
        v2.len() as u64,
        size_of(&full_zst)?,
        ours.len() as u64,
        size_of(&peer)?,
    );
    println!(
        "delta size: {OLD} -> {NEW} in a {:.1} MiB erofs root",
        mib(full)
    );
    println!("  full image            {:>10.2} MiB", mib(full));
    println!(
        "  full image, zstd -{LEVEL}  {:>10.2} MiB  ({full_zst_secs:.1} s)",
        mib(full_c)
    );
    println!(
        "  enigm-delta -{LEVEL}       {:>10.2} MiB  ({ours_secs:.1} s)  = {:.1}% of the full image, {:.1}% of full zstd",
        mib(ours_len),
        100.0 * ours_len as f64 / full as f64,
        100.0 * ours_len as f64 / full_c as f64
    );
    println!(
        "  zstd --patch-from -{LEVEL} {:>10.2} MiB  ({peer_secs:.1} s)  (peer)",
        mib(peer_len)
    );
    println!(
        "  ratio enigm-delta / zstd --patch-from: {:.3} (size), {:.2} (time)",
        ours_len as f64 / peer_len as f64,
        ours_secs / peer_secs
    );
    Ok(())
}
