//! The one place the scanners touch the file system: every read, listing, stat and link read
//! goes through [`ScanFs`], which resolves the system path under the [`Sysroot`] and refuses
//! anything inside the content boundary — the configured user-content locations (home media
//! and documents, message stores) — before any system call on it, whatever path a scanner or
//! an indicator asks for. Paths that go through symbolic links are resolved first and checked
//! again, so a link from a system directory into user content is not followed either.
//!
//! An optional [`AccessLog`] sees every host path right before it is opened, listed or
//! stat'ed: tests use it to prove nothing under the boundary is touched.

use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use enigm_runtime::sysroot::Sysroot;

/// What a file-system access was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// A file opened for reading.
    Open,
    /// A directory listed.
    List,
    /// Metadata read (stat / lstat) or a link read.
    Stat,
}

/// Sees every host path right before the scanner opens, lists or stats it.
pub trait AccessLog: Send + Sync {
    /// Called before the access.
    fn record(&self, host_path: &Path, access: Access);
}

/// The user-content locations that are never opened or listed, as system paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentBoundary {
    roots: Vec<PathBuf>,
}

impl ContentBoundary {
    /// A boundary over these system paths (normalized; `..` is dropped).
    pub fn new<P: AsRef<Path>>(roots: impl IntoIterator<Item = P>) -> Self {
        Self {
            roots: roots.into_iter().map(|p| normalize(p.as_ref())).collect(),
        }
    }

    /// Whether a system path is inside (or is) one of the locations.
    pub fn covers(&self, system_path: &Path) -> bool {
        let path = normalize(system_path);
        self.roots.iter().any(|root| path.starts_with(root))
    }

    /// The locations.
    pub fn roots(&self) -> &[PathBuf] {
        &self.roots
    }
}

/// `/a/./b/../c` → `/a/b/c` (only normal components kept, as [`Sysroot::path`] does).
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for component in path.components() {
        if let Component::Normal(part) = component {
            out.push(part);
        }
    }
    out
}

/// Why an access did not happen.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// The path is inside the content boundary (or resolves into it, or out of the root).
    #[error("{0} is outside what the scanner may read")]
    Refused(PathBuf),
    /// The file is larger than the caller's limit.
    #[error("{0} is larger than the read limit")]
    TooLarge(PathBuf),
    /// The system call failed.
    #[error("{path}: {error}")]
    Io {
        /// The system path.
        path: PathBuf,
        /// The error.
        #[source]
        error: io::Error,
    },
}

impl FsError {
    /// Whether the path does not exist (an absent signal, not a failure).
    pub fn is_not_found(&self) -> bool {
        matches!(self, FsError::Io { error, .. } if error.kind() == io::ErrorKind::NotFound)
    }

    /// Whether the error leaves the scan complete: the path is absent, or the content
    /// boundary refused it by design.
    pub fn is_expected(&self) -> bool {
        self.is_not_found() || matches!(self, FsError::Refused(_))
    }
}

/// A directory entry, as listed (links not followed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// The entry's name.
    pub name: String,
    /// Its system path.
    pub path: PathBuf,
    /// Its type, from the directory listing.
    pub kind: EntryKind,
}

/// File type without following links.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link (never followed by walks).
    Symlink,
    /// Anything else (device, socket, fifo).
    Other,
}

/// Boundary-checked, sysroot-relative file access.
#[derive(Clone)]
pub struct ScanFs {
    sysroot: Sysroot,
    real_root: PathBuf,
    boundary: ContentBoundary,
    log: Option<Arc<dyn AccessLog>>,
    /// The last parent directory resolved (host path → real host path): walks read many
    /// files of one directory in a row.
    last_parent: Arc<Mutex<Option<(PathBuf, PathBuf)>>>,
}

impl std::fmt::Debug for ScanFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScanFs")
            .field("root", &self.sysroot.root())
            .field("boundary", &self.boundary)
            .finish_non_exhaustive()
    }
}

impl ScanFs {
    /// Access under `sysroot`, never inside `boundary`.
    pub fn new(sysroot: Sysroot, boundary: ContentBoundary) -> Self {
        let real_root =
            std::fs::canonicalize(sysroot.root()).unwrap_or_else(|_| sysroot.root().to_owned());
        Self {
            sysroot,
            real_root,
            boundary,
            log: None,
            last_parent: Arc::new(Mutex::new(None)),
        }
    }

    /// Adds an access log.
    pub fn with_access_log(mut self, log: Arc<dyn AccessLog>) -> Self {
        self.log = Some(log);
        self
    }

    /// The content boundary.
    pub fn boundary(&self) -> &ContentBoundary {
        &self.boundary
    }

    /// Whether a system path may be touched (before resolving links).
    pub fn allowed(&self, system_path: &Path) -> bool {
        !self.boundary.covers(system_path)
    }

    fn record(&self, host: &Path, access: Access) {
        if let Some(log) = &self.log {
            log.record(host, access);
        }
    }

    /// The host path for a system path, after the boundary checks: the requested path, then
    /// its parent directory with links resolved (the last component itself is not followed).
    fn host_path(&self, system_path: &Path) -> Result<PathBuf, FsError> {
        let refused = || FsError::Refused(system_path.to_owned());
        if self.boundary.covers(system_path) {
            return Err(refused());
        }
        let host = self.sysroot.path(system_path);
        let (Some(parent), Some(name)) = (host.parent(), host.file_name()) else {
            return Ok(host);
        };
        if parent.as_os_str().is_empty() || host == self.sysroot.root() {
            return Ok(host);
        }
        match self.real_parent(parent) {
            Ok(real_parent) => {
                let Ok(inside) = real_parent.strip_prefix(&self.real_root) else {
                    return Err(refused());
                };
                let resolved = Path::new("/").join(inside).join(name);
                if self.boundary.covers(&resolved) {
                    return Err(refused());
                }
                Ok(real_parent.join(name))
            }
            // A missing parent: the path does not exist; let the access report it.
            Err(_) => Ok(host),
        }
    }

    /// A directory's real path, from the one-entry cache when it is the last one resolved.
    fn real_parent(&self, parent: &Path) -> io::Result<PathBuf> {
        if let Ok(cache) = self.last_parent.lock()
            && let Some((host, real)) = cache.as_ref()
            && host == parent
        {
            return Ok(real.clone());
        }
        let real = std::fs::canonicalize(parent)?;
        if let Ok(mut cache) = self.last_parent.lock() {
            *cache = Some((parent.to_owned(), real.clone()));
        }
        Ok(real)
    }

    /// Like [`ScanFs::host_path`], also resolving the last component when it is a link.
    fn host_path_followed(&self, system_path: &Path) -> Result<PathBuf, FsError> {
        let host = self.host_path(system_path)?;
        self.record(&host, Access::Stat);
        let is_link = std::fs::symlink_metadata(&host)
            .map(|m| m.file_type().is_symlink())
            .unwrap_or(false);
        if !is_link {
            return Ok(host);
        }
        let real = std::fs::canonicalize(&host).map_err(|error| FsError::Io {
            path: system_path.to_owned(),
            error,
        })?;
        let inside = real
            .strip_prefix(&self.real_root)
            .map_err(|_| FsError::Refused(system_path.to_owned()))?;
        if self.boundary.covers(&Path::new("/").join(inside)) {
            return Err(FsError::Refused(system_path.to_owned()));
        }
        Ok(real)
    }

    fn io(system_path: &Path) -> impl FnOnce(io::Error) -> FsError + '_ {
        move |error| FsError::Io {
            path: system_path.to_owned(),
            error,
        }
    }

    /// Opens a file for reading (links resolved and checked; the final open does not follow
    /// a link, so a swap between check and open fails instead of escaping).
    pub fn open(&self, system_path: &Path) -> Result<File, FsError> {
        let open = |host: &Path| {
            self.record(host, Access::Open);
            std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
                .open(host)
        };
        // Most files are not links: open the checked path directly; only when the final
        // component is a link (ELOOP under O_NOFOLLOW) resolve it, check it and open that.
        let host = self.host_path(system_path)?;
        match open(&host) {
            Err(error) if error.raw_os_error() == Some(libc::ELOOP) => {
                let real = self.host_path_followed(system_path)?;
                open(&real).map_err(Self::io(system_path))
            }
            other => other.map_err(Self::io(system_path)),
        }
    }

    /// Reads a whole file of at most `limit` bytes.
    pub fn read(&self, system_path: &Path, limit: u64) -> Result<Vec<u8>, FsError> {
        let file = self.open(system_path)?;
        let mut bytes = Vec::new();
        file.take(limit + 1)
            .read_to_end(&mut bytes)
            .map_err(Self::io(system_path))?;
        if bytes.len() as u64 > limit {
            return Err(FsError::TooLarge(system_path.to_owned()));
        }
        Ok(bytes)
    }

    /// Reads at most `limit` bytes of the start of a file (longer files are cut, not refused).
    pub fn read_prefix(&self, system_path: &Path, limit: u64) -> Result<Vec<u8>, FsError> {
        let file = self.open(system_path)?;
        let mut bytes = Vec::new();
        file.take(limit)
            .read_to_end(&mut bytes)
            .map_err(Self::io(system_path))?;
        Ok(bytes)
    }

    /// Reads a text file of at most `limit` bytes (invalid UTF-8 replaced).
    pub fn read_text(&self, system_path: &Path, limit: u64) -> Result<String, FsError> {
        Ok(String::from_utf8_lossy(&self.read(system_path, limit)?).into_owned())
    }

    /// Reads a text file, `None` when absent.
    pub fn read_text_opt(&self, system_path: &Path, limit: u64) -> Result<Option<String>, FsError> {
        match self.read_text(system_path, limit) {
            Ok(text) => Ok(Some(text)),
            Err(error) if error.is_not_found() => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Lists a directory (entries inside the boundary are left out), sorted by name.
    pub fn list(&self, system_path: &Path) -> Result<Vec<DirEntry>, FsError> {
        let host = self.host_path_followed(system_path)?;
        self.record(&host, Access::List);
        let mut entries = Vec::new();
        for entry in std::fs::read_dir(&host).map_err(Self::io(system_path))? {
            let entry = entry.map_err(Self::io(system_path))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = normalize(system_path).join(&name);
            if self.boundary.covers(&path) {
                continue;
            }
            let kind = match entry.file_type() {
                Ok(t) if t.is_symlink() => EntryKind::Symlink,
                Ok(t) if t.is_dir() => EntryKind::Dir,
                Ok(t) if t.is_file() => EntryKind::File,
                _ => EntryKind::Other,
            };
            entries.push(DirEntry { name, path, kind });
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    /// Lists a directory, `None` when absent.
    pub fn list_opt(&self, system_path: &Path) -> Result<Option<Vec<DirEntry>>, FsError> {
        match self.list(system_path) {
            Ok(entries) => Ok(Some(entries)),
            Err(error) if error.is_not_found() => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Metadata without following a final link.
    pub fn symlink_metadata(&self, system_path: &Path) -> Result<Metadata, FsError> {
        let host = self.host_path(system_path)?;
        self.record(&host, Access::Stat);
        std::fs::symlink_metadata(&host).map_err(Self::io(system_path))
    }

    /// A link's target, as text (`/proc/<pid>/exe`); the target is not touched.
    pub fn read_link(&self, system_path: &Path) -> Result<String, FsError> {
        let host = self.host_path(system_path)?;
        self.record(&host, Access::Stat);
        std::fs::read_link(&host)
            .map(|target| target.to_string_lossy().into_owned())
            .map_err(Self::io(system_path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_boundary_covers_its_locations_and_below() {
        let boundary = ContentBoundary::new(["/home", "/data/media/", "/data/./data/x"]);
        let cases = [
            ("/home", true),
            ("/home/alice/Pictures/a.jpg", true),
            ("/homework", false),
            ("/data/media/0/DCIM", true),
            ("/data/mediax", false),
            ("/data/data/x/db", true),
            ("/../home/bob", true),
            ("home/bob", true),
            ("/etc/passwd", false),
        ];
        for (path, expected) in cases {
            assert_eq!(boundary.covers(Path::new(path)), expected, "{path}");
        }
    }

    #[test]
    fn reads_inside_or_through_links_into_the_boundary_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("home/alice")).unwrap();
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("home/alice/secret.txt"), "content").unwrap();
        std::fs::write(root.join("etc/ok"), "fine").unwrap();
        std::os::unix::fs::symlink(root.join("home/alice/secret.txt"), root.join("etc/link"))
            .unwrap();
        std::os::unix::fs::symlink(root.join("home/alice"), root.join("etc/dirlink")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("etc/escape")).unwrap();
        let fs = ScanFs::new(Sysroot::new(root), ContentBoundary::new(["/home"]));

        assert_eq!(fs.read_text(Path::new("/etc/ok"), 100).unwrap(), "fine");
        for path in [
            "/home/alice/secret.txt",
            "/etc/link",
            "/etc/dirlink/secret.txt",
            "/etc/escape",
        ] {
            assert!(
                matches!(fs.read(Path::new(path), 100), Err(FsError::Refused(_))),
                "{path}"
            );
        }
        assert!(matches!(
            fs.list(Path::new("/home")),
            Err(FsError::Refused(_))
        ));
        assert!(matches!(
            fs.list(Path::new("/etc/dirlink")),
            Err(FsError::Refused(_))
        ));
        let names: Vec<String> = fs
            .list(Path::new("/"))
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(names, ["etc"]);
        assert!(matches!(
            fs.read(Path::new("/etc/ok"), 2),
            Err(FsError::TooLarge(_))
        ));
        assert!(
            fs.read_text_opt(Path::new("/etc/none"), 2)
                .unwrap()
                .is_none()
        );
    }
}
