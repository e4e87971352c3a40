//! The duplicate filter kept across runs: an append-only log of the (sender, message id)
//! pairs handed to the application, one JSON line each, so a message whose acknowledgement was
//! lost is recognized when it comes again in a later run.
//!
//! The log is private (mode 0600; refused on open when its group or others may access it) and
//! is rewritten atomically with only the newest entries when it has grown to twice the
//! filter's capacity. A damaged line (a crash in mid-write) is skipped.

use std::io::{BufRead as _, Write as _};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use enigm_envelope::dedup::Seen;

/// Why the log could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SeenLogError {
    /// Reading or writing failed.
    #[error("duplicate log {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Its group or others may access it.
    #[error("duplicate log {path} has mode {mode:o}: others may read it; refusing it (chmod 600)")]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
}

/// An open log.
#[derive(Debug)]
pub struct SeenLog {
    path: PathBuf,
    file: std::fs::File,
}

impl SeenLog {
    /// Opens (or creates) the log at `path` and the filter of `capacity` entries it holds.
    pub fn open(path: &Path, capacity: usize) -> Result<(Self, Seen), SeenLogError> {
        let io = |source| SeenLogError::Io {
            path: path.to_owned(),
            source,
        };
        let mut seen = Seen::new(capacity);
        let mut lines = 0usize;
        match std::fs::File::open(path) {
            Ok(file) => {
                let mode = file.metadata().map_err(io)?.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    return Err(SeenLogError::Permissions {
                        path: path.to_owned(),
                        mode,
                    });
                }
                for line in std::io::BufReader::new(file).lines() {
                    let line = line.map_err(io)?;
                    lines += 1;
                    if let Ok((sender, id)) = serde_json::from_str::<(String, String)>(&line) {
                        seen.first_time(&sender, &id);
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
        if lines >= 2 * capacity.max(1) {
            Self::rewrite(path, &seen)?;
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .map_err(io)?;
        Ok((
            Self {
                path: path.to_owned(),
                file,
            },
            seen,
        ))
    }

    /// Replaces the log with `seen`'s entries.
    fn rewrite(path: &Path, seen: &Seen) -> Result<(), SeenLogError> {
        let io = |source| SeenLogError::Io {
            path: path.to_owned(),
            source,
        };
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
        for entry in seen.entries() {
            let line = serde_json::to_string(&entry).map_err(|e| io(std::io::Error::other(e)))?;
            writeln!(tmp, "{line}").map_err(io)?;
        }
        tmp.as_file().sync_all().map_err(io)?;
        tmp.persist(path).map_err(|e| io(e.error))?;
        Ok(())
    }

    /// Appends one handled message.
    pub fn record(&mut self, sender: &str, id: &str) -> Result<(), SeenLogError> {
        let line = serde_json::to_string(&(sender, id)).map_err(|e| SeenLogError::Io {
            path: self.path.clone(),
            source: std::io::Error::other(e),
        })?;
        self.file
            .write_all(format!("{line}\n").as_bytes())
            .and_then(|()| self.file.sync_data())
            .map_err(|source| SeenLogError::Io {
                path: self.path.clone(),
                source,
            })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn entries_survive_a_reopen_and_the_log_is_compacted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/seen.log");
        let (mut log, seen) = SeenLog::open(&path, 3).unwrap();
        assert!(!seen.contains("a/1", "m0"));
        for i in 0..6 {
            log.record("a/1", &format!("m{i}")).unwrap();
        }
        drop(log);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // A damaged last line is skipped.
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        file.write_all(b"[\"a/1\",\"m").unwrap();
        drop(file);
        let (_, seen) = SeenLog::open(&path, 3).unwrap();
        assert!(seen.contains("a/1", "m5") && seen.contains("a/1", "m3"));
        assert!(!seen.contains("a/1", "m2"), "beyond capacity");
        // Seven lines for a capacity of three: rewritten with the newest three.
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 3);
        let (_, seen) = SeenLog::open(&path, 3).unwrap();
        assert!(seen.contains("a/1", "m5") && seen.contains("a/1", "m3"));
    }

    #[test]
    fn a_log_others_may_read_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seen.log");
        std::fs::write(&path, "").unwrap();
        for (mode, ok) in [(0o600, true), (0o644, false), (0o620, false)] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            assert_eq!(SeenLog::open(&path, 3).is_ok(), ok, "{mode:o}");
        }
    }
}
