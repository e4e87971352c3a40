//! The key file: the device's message keys (secret form), its mailbox (queue and both
//! capabilities) and when its bundle was last published, as JSON.
//!
//! Written atomically with mode 0600 (a temporary file in the same directory, synced, then
//! renamed over the old one), so a crash leaves the old file or the new one. On load a file
//! that its group or others may read or write is refused, as is anything but a regular file.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use enigm_envelope::keys::{DeviceKeys, SecretDeviceKeys};
use serde::{Deserialize, Serialize};

/// Why the key file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// There is none yet.
    #[error("no key file at {0} (set up the device first)")]
    Missing(PathBuf),
    /// Reading or writing failed.
    #[error("key file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Its group or others may access it.
    #[error("key file {path} has mode {mode:o}: others may read it; refusing it (chmod 600)")]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// It is not a regular file.
    #[error("key file {0} is not a regular file")]
    NotAFile(PathBuf),
    /// Its contents are not a key file.
    #[error("key file {path} is malformed: {reason}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong (never its contents).
        reason: String,
    },
}

/// A mailbox: the queue and its capabilities. `Debug` shows none of them.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mailbox {
    /// The queue id.
    pub queue: String,
    /// The capability correspondents send with (published in the directory).
    pub send_capability: String,
    /// The capability the owner fetches and acknowledges with (never leaves the device).
    pub receive_capability: String,
}

impl std::fmt::Debug for Mailbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailbox").finish_non_exhaustive()
    }
}

/// What the key file holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyFile {
    /// The message keys.
    pub keys: SecretDeviceKeys,
    /// The device's mailbox.
    pub mailbox: Mailbox,
    /// When the published bundle was issued (Unix seconds); a new one must be later.
    pub published_at_unix: u64,
}

impl KeyFile {
    /// The keys, checked.
    pub fn device_keys(&self) -> Result<DeviceKeys, enigm_envelope::EnvelopeError> {
        DeviceKeys::from_secret(&self.keys)
    }

    /// Loads `path`, refusing a file others may access and keys that do not load.
    pub fn load(path: &Path) -> Result<Self, KeyFileError> {
        let io = |source| KeyFileError::Io {
            path: path.to_owned(),
            source,
        };
        let metadata = match std::fs::symlink_metadata(path) {
            Ok(metadata) => metadata,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(KeyFileError::Missing(path.to_owned()));
            }
            Err(e) => return Err(io(e)),
        };
        if !metadata.file_type().is_file() {
            return Err(KeyFileError::NotAFile(path.to_owned()));
        }
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyFileError::Permissions {
                path: path.to_owned(),
                mode,
            });
        }
        let bytes = std::fs::read(path).map_err(io)?;
        let malformed = |reason: String| KeyFileError::Malformed {
            path: path.to_owned(),
            reason,
        };
        // Only where it failed: a parse message could quote a secret.
        let file: KeyFile = serde_json::from_slice(&bytes).map_err(|e| {
            malformed(format!(
                "not a key file (line {}, column {})",
                e.line(),
                e.column()
            ))
        })?;
        file.device_keys()
            .map_err(|e| malformed(format!("the keys do not load: {e}")))?;
        Ok(file)
    }

    /// Writes it to `path` atomically, mode 0600.
    pub fn save(&self, path: &Path) -> Result<(), KeyFileError> {
        let io = |source| KeyFileError::Io {
            path: path.to_owned(),
            source,
        };
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| io(std::io::Error::other(e)))?;
        // Created 0600 by tempfile; set again in case the umask or platform differs.
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(io)?;
        tmp.write_all(&bytes).map_err(io)?;
        tmp.as_file().sync_all().map_err(io)?;
        tmp.persist(path).map_err(|e| io(e.error))?;
        if let Ok(dir) = std::fs::File::open(dir) {
            // The rename is durable once the directory is synced; failure to sync is not fatal.
            let _ = dir.sync_all();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use enigm_envelope::keys::DeviceId;

    fn sample() -> KeyFile {
        let keys = DeviceKeys::generate(DeviceId {
            account: "acct".into(),
            device: "h1".into(),
        })
        .unwrap();
        KeyFile {
            keys: keys.to_secret().unwrap(),
            mailbox: Mailbox {
                queue: "q".into(),
                send_capability: "s".into(),
                receive_capability: "r".into(),
            },
            published_at_unix: 7,
        }
    }

    #[test]
    fn saved_private_and_atomically_then_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/keys.json");
        let file = sample();
        file.save(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(KeyFile::load(&path).unwrap(), file);
        // Replaced whole; no temporary file left behind.
        let mut second = sample();
        second.published_at_unix = 8;
        second.save(&path).unwrap();
        assert_eq!(KeyFile::load(&path).unwrap(), second);
        assert_eq!(
            std::fs::read_dir(dir.path().join("sub")).unwrap().count(),
            1
        );
        assert!(!format!("{file:?}").contains(&file.keys.hpke_secret));
        assert!(!format!("{file:?}").contains("\"r\""));
    }

    #[test]
    fn unsafe_missing_and_malformed_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let good = serde_json::to_vec(&sample()).unwrap();
        let mut bad_key = sample();
        bad_key.keys.signing_secret = "00".into();
        let bad_key = serde_json::to_vec(&bad_key).unwrap();
        type Check = fn(&KeyFileError) -> bool;
        type Contents<'a> = Option<(&'a [u8], u32)>;
        let cases: [(&str, Contents, Check); 8] = [
            ("ok", Some((&good, 0o600)), |_| false),
            ("owner-only-read", Some((&good, 0o400)), |_| false),
            ("world", Some((&good, 0o644)), |e| {
                matches!(e, KeyFileError::Permissions { mode: 0o644, .. })
            }),
            ("group", Some((&good, 0o640)), |e| {
                matches!(e, KeyFileError::Permissions { .. })
            }),
            ("other-write", Some((&good, 0o602)), |e| {
                matches!(e, KeyFileError::Permissions { .. })
            }),
            ("missing", None, |e| matches!(e, KeyFileError::Missing(_))),
            ("garbage", Some((b"{not json", 0o600)), |e| {
                matches!(e, KeyFileError::Malformed { .. })
            }),
            ("bad-key", Some((&bad_key, 0o600)), |e| {
                matches!(e, KeyFileError::Malformed { .. })
            }),
        ];
        for (name, contents, expected) in cases {
            let path = dir.path().join(name);
            if let Some((bytes, mode)) = contents {
                std::fs::write(&path, bytes).unwrap();
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            }
            match KeyFile::load(&path) {
                Ok(_) => assert!(matches!(name, "ok" | "owner-only-read"), "{name} loaded"),
                Err(e) => assert!(expected(&e), "{name}: {e}"),
            }
        }
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(dir.path().join("ok"), &link).unwrap();
        assert!(matches!(
            KeyFile::load(&link),
            Err(KeyFileError::NotAFile(_))
        ));
    }
}
