//! Writing the files the backend generates on first start.

use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

fn write_mode(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Creates `path` (never overwriting) readable by its owner only (0600).
pub fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_mode(path, bytes, 0o600)
}

/// Creates `path` (never overwriting) world-readable (0644).
pub fn write_public(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_mode(path, bytes, 0o644)
}
