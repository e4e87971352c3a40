//! File-change triggers: inotify on the directories that hold the checks' input files.
//!
//! procfs and sysfs mostly do not emit inotify events; the engine's timer covers those. On
//! fixture trees, and for files such as the properties snapshot and os-release, a change is
//! seen at once. A dedicated thread blocks on the inotify descriptor and sends one
//! [`Trigger::FileChanged`] per burst of events (the engine debounces further).

use std::path::PathBuf;
use std::time::Duration;

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use tokio::sync::mpsc;

use crate::engine::Trigger;

/// The directories to watch for `paths`: each path itself if it is a directory, else its
/// parent; ones that do not exist are skipped.
pub fn watch_dirs(paths: &[PathBuf]) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = paths
        .iter()
        .filter_map(|path| {
            if path.is_dir() {
                Some(path.clone())
            } else {
                path.parent().map(PathBuf::from)
            }
        })
        .filter(|dir| dir.is_dir())
        .collect();
    dirs.sort();
    dirs.dedup();
    dirs
}

/// An inotify instance watching a set of directories.
pub struct Watcher {
    inotify: Inotify,
    watched: usize,
}

impl Watcher {
    /// Watches `dirs`; a directory that cannot be watched is logged and skipped.
    pub fn new(dirs: &[PathBuf]) -> nix::Result<Self> {
        let inotify = Inotify::init(InitFlags::IN_CLOEXEC)?;
        let mask = AddWatchFlags::IN_CLOSE_WRITE
            | AddWatchFlags::IN_MODIFY
            | AddWatchFlags::IN_MOVED_TO
            | AddWatchFlags::IN_CREATE
            | AddWatchFlags::IN_DELETE
            | AddWatchFlags::IN_ATTRIB;
        let mut watched = 0;
        for dir in dirs {
            match inotify.add_watch(dir.as_path(), mask) {
                Ok(_) => watched += 1,
                Err(errno) => tracing::debug!(dir = %dir.display(), %errno, "not watching"),
            }
        }
        Ok(Self { inotify, watched })
    }

    /// How many directories are watched.
    pub fn watched(&self) -> usize {
        self.watched
    }

    /// Starts the watching thread; it ends when the receiver is gone or inotify fails.
    pub fn spawn(self, triggers: mpsc::Sender<Trigger>) -> std::io::Result<()> {
        std::thread::Builder::new()
            .name("inotify".into())
            .stack_size(64 * 1024)
            .spawn(move || self.run(triggers))
            .map(|_| ())
    }

    fn run(self, triggers: mpsc::Sender<Trigger>) {
        loop {
            match self.inotify.read_events() {
                Ok(_) => {
                    // A full queue already holds a pending re-evaluation; nothing is lost.
                    if let Err(mpsc::error::TrySendError::Closed(_)) =
                        triggers.try_send(Trigger::FileChanged)
                    {
                        return;
                    }
                }
                Err(errno) => {
                    tracing::warn!(%errno, "file watching stopped; the timer still re-evaluates");
                    return;
                }
            }
        }
    }
}

/// Waits `debounce`, then drops any further file-change triggers already queued, so a burst
/// of writes costs one evaluation. Other triggers found while draining are returned.
pub async fn settle(triggers: &mut mpsc::Receiver<Trigger>, debounce: Duration) -> Vec<Trigger> {
    tokio::time::sleep(debounce).await;
    let mut others = Vec::new();
    while let Ok(trigger) = triggers.try_recv() {
        if !matches!(trigger, Trigger::FileChanged) {
            others.push(trigger);
        }
    }
    others
}
