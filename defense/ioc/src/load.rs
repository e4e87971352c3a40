//! Loading indicators from the file system: STIX bundle files, directories of them (searched
//! recursively for `*.stix2` and `*.json`, in name order), and signed feeds.

use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::db::{IocDb, IocDbBuilder};
use crate::feed::{FeedError, public_key_from_pem, verify_feed};
use crate::stix::{StixError, parse_bundle};

/// Deepest directory level searched for bundles.
const MAX_DEPTH: usize = 8;

/// Why indicators cannot be loaded.
#[derive(Debug, Error)]
pub enum LoadError {
    /// A path cannot be read.
    #[error("{path}: {error}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        error: std::io::Error,
    },
    /// A bundle is malformed.
    #[error(transparent)]
    Stix(#[from] StixError),
    /// A signed feed is refused.
    #[error("{path}: {error}")]
    Feed {
        /// The feed.
        path: PathBuf,
        /// Why.
        #[source]
        error: FeedError,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LoadError + '_ {
    move |error| LoadError::Io {
        path: path.to_owned(),
        error,
    }
}

/// The bundle files a path stands for: itself, or the bundles under a directory.
pub fn bundle_files(path: &Path) -> Result<Vec<PathBuf>, LoadError> {
    let metadata = std::fs::metadata(path).map_err(io(path))?;
    if !metadata.is_dir() {
        return Ok(vec![path.to_owned()]);
    }
    let mut files = Vec::new();
    let mut pending = vec![(path.to_owned(), 0usize)];
    while let Some((dir, depth)) = pending.pop() {
        for entry in std::fs::read_dir(&dir).map_err(io(&dir))? {
            let entry = entry.map_err(io(&dir))?;
            let child = entry.path();
            let kind = entry.file_type().map_err(io(&child))?;
            if kind.is_dir() && depth < MAX_DEPTH {
                pending.push((child, depth + 1));
            } else if kind.is_file()
                && child.extension().is_some_and(|e| {
                    e.eq_ignore_ascii_case("stix2") || e.eq_ignore_ascii_case("json")
                })
            {
                files.push(child);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Loads bundles from files and directories into `builder`.
pub fn add_paths(builder: &mut IocDbBuilder, paths: &[PathBuf]) -> Result<(), LoadError> {
    for path in paths {
        for file in bundle_files(path)? {
            let bytes = std::fs::read(&file).map_err(io(&file))?;
            let name = file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| file.display().to_string());
            let parsed = parse_bundle(&name, &bytes)?;
            builder.add_bundle(&name, parsed);
        }
    }
    Ok(())
}

/// Loads a signed feed (`feed` and its detached signature) into `builder`, after checking the
/// signature with the PEM public key `key_pem`. Returns the feed's sequence number.
pub fn add_signed_feed(
    builder: &mut IocDbBuilder,
    feed: &Path,
    signature: &Path,
    key_pem: &[u8],
) -> Result<u64, LoadError> {
    let fail = |error| LoadError::Feed {
        path: feed.to_owned(),
        error,
    };
    let key = public_key_from_pem(key_pem).map_err(fail)?;
    let bytes = std::fs::read(feed).map_err(io(feed))?;
    let signature = std::fs::read(signature).map_err(io(signature))?;
    let parsed = verify_feed(&bytes, &signature, &key).map_err(fail)?;
    for (name, bundle) in parsed.bundles {
        builder.add_bundle(&name, bundle);
    }
    Ok(parsed.sequence)
}

/// Loads bundles from files and directories.
pub fn load_paths(paths: &[PathBuf]) -> Result<IocDb, LoadError> {
    let mut builder = IocDbBuilder::new();
    add_paths(&mut builder, paths)?;
    Ok(builder.build())
}
