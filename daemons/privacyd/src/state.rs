//! The persisted state: which profile the owner turned on (as it was resolved then) and what
//! the daemon switched off for it, so the mode survives a crash or a reboot and can be undone
//! exactly.
//!
//! Written atomically (temporary file, fsync, rename). A file that exists but does not parse
//! is an error the daemon answers by locking down (fail closed), never by assuming "off".

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::profile::{Profile, Radio};
use crate::sensors::{Cut, Sensor};

/// What is persisted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Persisted {
    /// Whether Privacy Mode is on.
    pub enabled: bool,
    /// The profile's name (empty when off).
    pub profile: String,
    /// The profile as it was resolved when turned on.
    pub resolved: Option<Profile>,
    /// The Tor uid used in the rules.
    pub tor_uid: Option<u32>,
    /// rfkill switches the daemon blocked: (index, radio).
    pub radios: Vec<(u32, Radio)>,
    /// Devices the daemon cut, per sensor.
    pub cuts: Vec<(Sensor, Cut)>,
}

/// The state file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// I/O.
    #[error("state file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// It exists but is not a state.
    #[error("state file {path} is corrupt: {source}")]
    Corrupt {
        /// The file.
        path: String,
        /// The parse error.
        source: serde_json::Error,
    },
}

/// Reads the state; `Ok(None)` when there is none yet (Privacy Mode was never turned on).
pub fn load(path: &Path) -> Result<Option<Persisted>, StateError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(StateError::Io {
                path: path.display().to_string(),
                source,
            });
        }
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|source| StateError::Corrupt {
            path: path.display().to_string(),
            source,
        })
}

/// Writes the state atomically.
pub fn save(path: &Path, state: &Persisted) -> Result<(), StateError> {
    let io = |source| StateError::Io {
        path: path.display().to_string(),
        source,
    };
    let bytes = serde_json::to_vec_pretty(state).map_err(|e| io(std::io::Error::other(e)))?;
    let temporary = path.with_extension("json.tmp");
    let mut file = std::fs::File::create(&temporary).map_err(io)?;
    file.write_all(&bytes).map_err(io)?;
    file.sync_all().map_err(io)?;
    drop(file);
    std::fs::rename(&temporary, path).map_err(io)?;
    if let Some(dir) = path.parent()
        && let Ok(dir) = std::fs::File::open(dir)
    {
        let _ = dir.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::lockdown;

    #[test]
    fn round_trip_absence_and_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        assert_eq!(load(&path).unwrap(), None);
        let state = Persisted {
            enabled: true,
            profile: "lockdown".into(),
            resolved: Some(lockdown()),
            tor_uid: None,
            radios: vec![(1, Radio::Bluetooth)],
            cuts: vec![(
                Sensor::Camera,
                Cut::Deauthorized {
                    device: "/sys/devices/x".into(),
                },
            )],
        };
        save(&path, &state).unwrap();
        assert_eq!(load(&path).unwrap(), Some(state));
        std::fs::write(&path, b"{\"enabled\": tru").unwrap();
        assert!(matches!(load(&path), Err(StateError::Corrupt { .. })));
    }
}
