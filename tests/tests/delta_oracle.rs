#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Our delta frames against the reference `zstd` command line, both ways: what
//! `enigm_delta::create` writes, `zstd -d --patch-from` decodes to the target; what
//! `zstd --patch-from` writes, behind our header, `enigm-delta` applies.

use std::io::Read;
use std::process::Command;

use enigm_delta::{HEADER_LEN, Header, ImageId, create, window_log_for};
use enigm_e2e::require_tool;

/// A pseudo-random "image" of `len` bytes.
fn image(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The source with a few regions rewritten and a block inserted: what a package upgrade
/// does to a file system image, in miniature.
fn changed(source: &[u8]) -> Vec<u8> {
    let mut target = source.to_vec();
    for (at, seed) in [(10_000, 5), (300_000, 6), (900_000, 7)] {
        target[at..at + 2048].copy_from_slice(&image(2048, seed));
    }
    target.splice(500_000..500_000, image(8192, 8));
    target
}

#[test]
fn zstd_decodes_our_delta() {
    require_tool("zstd", "zstd").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let source = image(1 << 20, 1);
    let target = changed(&source);
    let mut delta = Vec::new();
    let header = create(&source, &target, 19, &mut delta).unwrap();
    assert!(delta.len() < 32 * 1024, "delta is {} bytes", delta.len());
    std::fs::write(dir.path().join("source"), &source).unwrap();
    std::fs::write(dir.path().join("frame.zst"), &delta[HEADER_LEN..]).unwrap();
    let status = Command::new("zstd")
        .args(["-q", "-d", "-f", "--patch-from=source"])
        .arg(format!("--long={}", header.window_log))
        .args(["frame.zst", "-o", "decoded"])
        .current_dir(dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(std::fs::read(dir.path().join("decoded")).unwrap(), target);
}

#[test]
fn we_apply_a_zstd_patch_from_frame() {
    require_tool("zstd", "zstd").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let source = image(1 << 20, 2);
    let target = changed(&source);
    std::fs::write(dir.path().join("source"), &source).unwrap();
    std::fs::write(dir.path().join("target"), &target).unwrap();
    let window_log = window_log_for(source.len() as u64, target.len() as u64).unwrap();
    let status = Command::new("zstd")
        .args(["-q", "-19", "-f", "--patch-from=source"])
        .arg(format!("--long={window_log}"))
        .args(["target", "-o", "frame.zst"])
        .current_dir(dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    let header = Header {
        source: ImageId::of(&source),
        target: ImageId::of(&target),
        window_log,
    };
    let frame = std::fs::read(dir.path().join("frame.zst")).unwrap();
    let verified = header.verify_source(&source).unwrap();
    let mut decoded = Vec::new();
    header
        .decoder(verified, &frame[..])
        .unwrap()
        .read_to_end(&mut decoded)
        .unwrap();
    assert_eq!(decoded, target);
}
