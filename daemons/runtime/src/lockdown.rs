//! The last start-up step before a daemon serves: drop to its system user (keeping only the
//! listed capabilities), then confine it to its compiled system-call allow-list. The order is
//! fixed here once for every daemon: the filter is applied to the unprivileged process.

use caps::Capability;

use crate::privileges::{self, Identity, PrivilegeConfig, PrivilegeError};
use crate::seccomp::{self, SeccompError};

/// Why the daemon could not lock itself down (it must not serve then).
#[derive(Debug, thiserror::Error)]
pub enum LockdownError {
    /// The privilege drop failed.
    #[error("dropping privileges: {0}")]
    Privileges(#[from] PrivilegeError),
    /// The seccomp filter could not be applied.
    #[error("applying the seccomp filter: {0}")]
    Seccomp(#[from] SeccompError),
}

/// Drops privileges to `system_user` (or what `config` names), keeping `keep`, then applies
/// the seccomp `program`; with `probe` (`--seccomp-probe`), reports whether a forbidden call
/// is refused.
pub fn lock_down(
    config: &PrivilegeConfig,
    system_user: &str,
    keep: &[Capability],
    program: &[u8],
    probe: bool,
) -> Result<Identity, LockdownError> {
    let identity = privileges::drop_privileges(config, system_user, keep)?;
    seccomp::apply(program)?;
    if probe {
        seccomp::probe();
    }
    Ok(identity)
}
