//! Shared runtime for Enigm OS daemons.
//!
//! Every daemon follows the same start-up order (see `docs/architecture.md`):
//! parse arguments → [`logging`] → [`config`] (sysroot-aware) → open privileged resources →
//! [`lockdown`] ([`privileges`] drop, then the [`seccomp`] filter) → build the service →
//! serve on D-Bus with [`authz`] checks on every method → [`notify`] READY → run until
//! [`shutdown`].
//!
//! Reads of system state go through a [`sysroot::Sysroot`], so tests run daemons against
//! fixture trees instead of the host's `/`.

pub mod args;
pub mod authz;
pub mod config;
pub mod lockdown;
pub mod logging;
pub mod notify;
pub mod privileges;
pub mod seccomp;
pub mod shutdown;
pub mod sysroot;

/// A daemon's exit: success, or the error (with its causes, `{:#}`) logged and printed on stderr
/// as `<daemon>: <error>` and a failure status.
pub fn exit_status<E: std::fmt::Display>(
    daemon: &str,
    result: Result<(), E>,
) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{err:#}");
            eprintln!("{daemon}: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
