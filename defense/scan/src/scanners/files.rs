//! Files in system locations: a bounded walk of the configured roots matches every entry's
//! name and path (directories too, for indicators naming a directory) and, when hash
//! indicators are loaded, the digests of regular files up to a size limit. Every `file:path`
//! indicator is also checked directly, wherever it points — except inside the content
//! boundary, which [`crate::fs::ScanFs`] refuses.

use std::io::Read;
use std::path::Path;

use enigm_ioc::{Attribute, Observation};
use openssl::hash::{Hasher, MessageDigest};

use crate::context::Scan;
use crate::finding::{Category, Evidence};
use crate::fs::{EntryKind, FsError, ScanFs};
use crate::scanners::processes::basename;
use crate::walk::{Budget, walk};

/// Which digests to compute.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Digests {
    /// MD5.
    pub md5: bool,
    /// SHA-1.
    pub sha1: bool,
    /// SHA-256.
    pub sha256: bool,
}

impl Digests {
    /// Whether any digest is wanted.
    pub fn any(self) -> bool {
        self.md5 || self.sha1 || self.sha256
    }
}

/// Hex digests of a file (streamed through `buffer`; files larger than `limit` are not
/// hashed).
pub fn hash_file(
    fs: &ScanFs,
    path: &Path,
    wanted: Digests,
    limit: u64,
    buffer: &mut [u8],
) -> Result<Vec<(Attribute, String)>, FsError> {
    let io = |error: std::io::Error| FsError::Io {
        path: path.to_owned(),
        error,
    };
    let crypto = |error: openssl::error::ErrorStack| FsError::Io {
        path: path.to_owned(),
        error: std::io::Error::other(error),
    };
    let mut hashers = Vec::new();
    for (on, attribute, digest) in [
        (wanted.md5, Attribute::FileMd5, MessageDigest::md5()),
        (wanted.sha1, Attribute::FileSha1, MessageDigest::sha1()),
        (
            wanted.sha256,
            Attribute::FileSha256,
            MessageDigest::sha256(),
        ),
    ] {
        if on {
            hashers.push((attribute, Hasher::new(digest).map_err(crypto)?));
        }
    }
    let file = fs.open(path)?;
    let mut reader = file.take(limit + 1);
    let mut total = 0u64;
    loop {
        let n = reader.read(buffer).map_err(io)?;
        if n == 0 {
            break;
        }
        total += n as u64;
        if total > limit {
            return Err(FsError::TooLarge(path.to_owned()));
        }
        for (_, hasher) in &mut hashers {
            hasher.update(&buffer[..n]).map_err(crypto)?;
        }
    }
    let mut out = Vec::with_capacity(hashers.len());
    for (attribute, mut hasher) in hashers {
        let digest = hasher.finish().map_err(crypto)?;
        out.push((
            attribute,
            digest.iter().map(|b| format!("{b:02x}")).collect(),
        ));
    }
    Ok(out)
}

fn observe_path(
    scan: &mut Scan<'_>,
    path: &Path,
    kind: EntryKind,
    digests: Digests,
    buffer: &mut [u8],
) {
    let text = path.display().to_string();
    let name = basename(&text);
    let hashes = if kind == EntryKind::File && digests.any() {
        match hash_file(scan.fs, path, digests, scan.config.max_hash_bytes, buffer) {
            Ok(hashes) => hashes,
            Err(FsError::TooLarge(_)) => Vec::new(),
            Err(error) => {
                scan.issue(&error);
                Vec::new()
            }
        }
    } else {
        Vec::new()
    };
    let mut observation = Observation::new()
        .with(Attribute::FilePath, &text)
        .with(Attribute::FileName, name);
    for (attribute, digest) in &hashes {
        observation.push(*attribute, digest);
    }
    scan.observe(Category::File, &observation, || {
        Evidence::new("file", text.clone())
    });
}

/// Walks the file roots and checks the `file:path` indicators.
pub fn scan(scan: &mut Scan<'_>) {
    scan.set_scanner("files");
    let digests = Digests {
        md5: scan.db.wants(Attribute::FileMd5),
        sha1: scan.db.wants(Attribute::FileSha1),
        sha256: scan.db.wants(Attribute::FileSha256),
    };
    let mut budget = Budget(scan.config.max_entries);
    let mut buffer = vec![0u8; 64 * 1024];
    for root in scan.config.file_roots.clone() {
        // A root that is a link (`/bin` → `usr/bin`) is walked through its target's own root.
        match scan.fs.symlink_metadata(&root) {
            Ok(metadata) if metadata.is_dir() => {}
            Ok(_) => continue,
            Err(error) => {
                scan.issue(&error);
                continue;
            }
        }
        let mut entries = Vec::new();
        let mut errors = Vec::new();
        let finished = walk(
            scan.fs,
            &root,
            scan.config.max_depth,
            &mut budget,
            &mut |entry| {
                if entry.kind != EntryKind::Other {
                    entries.push((entry.path.clone(), entry.kind));
                }
            },
            &mut |error| {
                if !error.is_expected() {
                    errors.push(error.to_string());
                }
            },
        );
        for (path, kind) in entries {
            observe_path(scan, &path, kind, digests, &mut buffer);
        }
        for problem in errors {
            scan.note(problem);
        }
        if !finished {
            scan.note(format!(
                "{}: entry budget exhausted; walk incomplete",
                root.display()
            ));
            break;
        }
    }

    let indicated: Vec<String> = scan
        .db
        .values_of(Attribute::FilePath)
        .map(str::to_owned)
        .collect();
    for path in indicated {
        let path = Path::new(&path);
        if !scan.fs.allowed(path) {
            continue;
        }
        match scan.fs.symlink_metadata(path) {
            Ok(metadata) => {
                let kind = if metadata.is_dir() {
                    EntryKind::Dir
                } else if metadata.is_file() {
                    EntryKind::File
                } else {
                    EntryKind::Other
                };
                observe_path(scan, path, kind, digests, &mut buffer);
            }
            Err(error) => scan.issue(&error),
        }
    }
}
