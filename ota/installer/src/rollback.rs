//! The device's rollback index: the lowest image index it may install. Kept in a TPM NV
//! index when the device has a TPM ([`crate::TpmRollbackStore`]), else in a file only the
//! updater may write.

use std::io::Write;
use std::path::PathBuf;

use crate::InstallError;

/// Where the rollback index lives.
pub trait RollbackStore {
    /// The current index (0 when never set).
    fn get(&mut self) -> Result<u64, InstallError>;
    /// Raises the index to `index`; never lowers it.
    fn raise(&mut self, index: u64) -> Result<(), InstallError>;
}

/// The index in a file (decimal), replaced atomically.
#[derive(Debug, Clone)]
pub struct FileRollbackStore {
    path: PathBuf,
}

impl FileRollbackStore {
    /// The store at `path`.
    pub fn new(path: PathBuf) -> Self {
        Self { path }
    }
}

impl RollbackStore for FileRollbackStore {
    fn get(&mut self) -> Result<u64, InstallError> {
        match std::fs::read_to_string(&self.path) {
            Ok(text) => text.trim().parse().map_err(|_| {
                InstallError::Rollback(format!("{} does not hold a number", self.path.display()))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(InstallError::Rollback(format!(
                "{}: {e}",
                self.path.display()
            ))),
        }
    }

    fn raise(&mut self, index: u64) -> Result<(), InstallError> {
        if index <= self.get()? {
            return Ok(());
        }
        let fail =
            |e: std::io::Error| InstallError::Rollback(format!("{}: {e}", self.path.display()));
        let tmp = self.path.with_extension("tmp");
        let mut file = std::fs::File::create(&tmp).map_err(fail)?;
        writeln!(file, "{index}").map_err(fail)?;
        file.sync_all().map_err(fail)?;
        std::fs::rename(&tmp, &self.path).map_err(fail)
    }
}
