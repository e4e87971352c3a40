//! Keeps the attestation key across restarts: its public and private blobs, as the TPM
//! marshals them (`TPM2B_PUBLIC`, `TPM2B_PRIVATE`, the formats `tpm2_load -u/-r` read), in the
//! state directory, one pair per EK algorithm.
//!
//! The private blob is wrapped by the EK, so it is useless off this TPM; files are still written
//! owner-only, atomically (temporary file, fsync, rename), so a crash never leaves half a key.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::config::EkAlgorithm;

/// A stored attestation key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAk {
    /// `TPM2B_PUBLIC`.
    pub public: Vec<u8>,
    /// `TPM2B_PRIVATE`.
    pub private: Vec<u8>,
}

/// The attestation-key files of one EK algorithm in a state directory.
#[derive(Debug, Clone)]
pub struct AkStore {
    public: PathBuf,
    private: PathBuf,
}

/// A store that cannot be read or written.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct StoreError {
    path: PathBuf,
    source: std::io::Error,
}

fn at(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError {
        path: path.to_path_buf(),
        source,
    }
}

impl AkStore {
    /// The files for `algorithm` under `state_dir`.
    pub fn new(state_dir: &Path, algorithm: EkAlgorithm) -> Self {
        let name = algorithm.as_str();
        Self {
            public: state_dir.join(format!("ak-{name}.pub")),
            private: state_dir.join(format!("ak-{name}.priv")),
        }
    }

    /// The stored key; `Ok(None)` when there is none (or only half of one).
    pub fn load(&self) -> Result<Option<StoredAk>, StoreError> {
        let read = |path: &Path| match std::fs::read(path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(at(path)(err)),
        };
        match (read(&self.public)?, read(&self.private)?) {
            (Some(public), Some(private)) => Ok(Some(StoredAk { public, private })),
            _ => Ok(None),
        }
    }

    /// Stores a key, replacing any previous one.
    pub fn save(&self, key: &StoredAk) -> Result<(), StoreError> {
        if let Some(dir) = self.public.parent() {
            std::fs::create_dir_all(dir).map_err(at(dir))?;
        }
        write_atomically(&self.private, &key.private)?;
        write_atomically(&self.public, &key.public)
    }

    /// Moves an unusable key aside (kept for inspection as `*.rejected`).
    pub fn set_aside(&self) -> Result<(), StoreError> {
        for path in [&self.public, &self.private] {
            let mut aside = path.clone().into_os_string();
            aside.push(".rejected");
            match std::fs::rename(path, &aside) {
                Ok(()) => {}
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => return Err(at(path)(err)),
            }
        }
        Ok(())
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let mut temporary = path.to_path_buf().into_os_string();
    temporary.push(".new");
    let temporary = PathBuf::from(temporary);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)
        .map_err(at(&temporary))?;
    file.write_all(bytes).map_err(at(&temporary))?;
    file.sync_all().map_err(at(&temporary))?;
    std::fs::rename(&temporary, path).map_err(at(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn round_trip_per_algorithm_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let ecc = AkStore::new(&state, EkAlgorithm::Ecc);
        let rsa = AkStore::new(&state, EkAlgorithm::Rsa);
        assert_eq!(ecc.load().unwrap(), None);
        let key = StoredAk {
            public: vec![0, 2, 1, 2],
            private: vec![0, 1, 9],
        };
        ecc.save(&key).unwrap();
        assert_eq!(ecc.load().unwrap(), Some(key.clone()));
        assert_eq!(rsa.load().unwrap(), None);
        let mode = std::fs::metadata(state.join("ak-ecc.priv"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);

        ecc.set_aside().unwrap();
        assert_eq!(ecc.load().unwrap(), None);
        assert!(state.join("ak-ecc.pub.rejected").exists());
    }

    #[test]
    fn half_a_key_is_no_key() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ak-ecc.pub"), [0, 0]).unwrap();
        assert_eq!(
            AkStore::new(dir.path(), EkAlgorithm::Ecc).load().unwrap(),
            None
        );
    }
}
