//! Logging: `tracing` to journald when its socket exists, else to stderr.
//!
//! Callers log with fields and never put secrets, content, keys or raw device identifiers in
//! them. The filter comes from `ENIGM_LOG` (e.g. `info`, `enigm_tscd=debug`), default `info`.

use std::io::IsTerminal;
use std::path::Path;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::prelude::*;

/// The journald native-protocol socket.
pub const JOURNALD_SOCKET: &str = "/run/systemd/journal/socket";

/// Where log records go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogTarget {
    /// systemd-journald's native protocol.
    Journald,
    /// Human-readable lines on stderr.
    Stderr,
}

/// Picks journald when its socket exists and `ENIGM_LOG_STDERR` is not set.
pub fn choose_target(journald_socket: &Path, force_stderr: bool) -> LogTarget {
    if !force_stderr && journald_socket.exists() {
        LogTarget::Journald
    } else {
        LogTarget::Stderr
    }
}

/// Installs the global subscriber for a daemon named `identifier`; returns where logs go.
pub fn init(identifier: &str) -> LogTarget {
    let filter = EnvFilter::try_from_env("ENIGM_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let force_stderr = std::env::var_os("ENIGM_LOG_STDERR").is_some();
    if choose_target(Path::new(JOURNALD_SOCKET), force_stderr) == LogTarget::Journald
        && let Ok(layer) = tracing_journald::layer()
    {
        let layer = layer.with_syslog_identifier(identifier.to_owned());
        let _ = tracing_subscriber::registry()
            .with(filter)
            .with(layer)
            .try_init();
        return LogTarget::Journald;
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
    LogTarget::Stderr
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journald_only_when_its_socket_exists_and_not_forced_off() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("socket");
        assert_eq!(choose_target(&socket, false), LogTarget::Stderr);
        std::fs::write(&socket, "").unwrap();
        assert_eq!(choose_target(&socket, false), LogTarget::Journald);
        assert_eq!(choose_target(&socket, true), LogTarget::Stderr);
    }
}
