//! A root directory that every system path a daemon reads is resolved under.
//!
//! In production the sysroot is `/`; tests point it at a fixture tree that mimics `/proc`,
//! `/sys` and `/etc` of the device they describe.

use std::io;
use std::path::{Component, Path, PathBuf};

/// The directory that absolute system paths are resolved under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sysroot {
    root: PathBuf,
}

impl Default for Sysroot {
    fn default() -> Self {
        Self::new("/")
    }
}

impl Sysroot {
    /// A sysroot at `root` (`/` on a real device).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The root directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Resolves a system path such as `/proc/sys/kernel/kptr_restrict` under the root.
    ///
    /// Only normal components are kept, so `..` cannot climb out of the root.
    pub fn path(&self, system_path: impl AsRef<Path>) -> PathBuf {
        let mut out = self.root.clone();
        for component in system_path.as_ref().components() {
            if let Component::Normal(part) = component {
                out.push(part);
            }
        }
        out
    }

    /// Reads a whole file as UTF-8 text.
    pub fn read_to_string(&self, system_path: impl AsRef<Path>) -> io::Result<String> {
        std::fs::read_to_string(self.path(system_path))
    }

    /// Reads a whole file as bytes.
    pub fn read(&self, system_path: impl AsRef<Path>) -> io::Result<Vec<u8>> {
        std::fs::read(self.path(system_path))
    }

    /// Reads a one-line value (sysctl, sysfs attribute) with surrounding white space removed.
    /// `Ok(None)` when the file does not exist.
    pub fn read_value(&self, system_path: impl AsRef<Path>) -> io::Result<Option<String>> {
        match self.read_to_string(system_path) {
            Ok(text) => Ok(Some(text.trim().to_owned())),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// Whether the path exists under the root.
    pub fn exists(&self, system_path: impl AsRef<Path>) -> bool {
        self.path(system_path).exists()
    }

    /// Names of the entries of a directory, sorted; `Ok(None)` when it does not exist.
    pub fn list_dir(&self, system_path: impl AsRef<Path>) -> io::Result<Option<Vec<String>>> {
        let entries = match std::fs::read_dir(self.path(system_path)) {
            Ok(entries) => entries,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(err),
        };
        let mut names = Vec::new();
        for entry in entries {
            names.push(entry?.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(Some(names))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_under_the_root_and_cannot_escape() {
        let root = Sysroot::new("/fixtures/hardened");
        let cases = [
            (
                "/proc/sys/kernel/kptr_restrict",
                "/fixtures/hardened/proc/sys/kernel/kptr_restrict",
            ),
            (
                "etc/enigm/tscd.toml",
                "/fixtures/hardened/etc/enigm/tscd.toml",
            ),
            ("/../../etc/shadow", "/fixtures/hardened/etc/shadow"),
            ("/sys/./fs/../fs", "/fixtures/hardened/sys/fs/fs"),
        ];
        for (input, expected) in cases {
            assert_eq!(root.path(input), PathBuf::from(expected), "{input}");
        }
    }

    #[test]
    fn read_value_trims_and_reports_absence() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("proc/sys/kernel")).unwrap();
        std::fs::write(dir.path().join("proc/sys/kernel/kptr_restrict"), "2\n").unwrap();
        let root = Sysroot::new(dir.path());
        assert_eq!(
            root.read_value("/proc/sys/kernel/kptr_restrict")
                .unwrap()
                .as_deref(),
            Some("2")
        );
        assert_eq!(root.read_value("/proc/sys/kernel/absent").unwrap(), None);
        assert_eq!(
            root.list_dir("/proc/sys").unwrap(),
            Some(vec!["kernel".to_owned()])
        );
        assert_eq!(root.list_dir("/nope").unwrap(), None);
    }
}
