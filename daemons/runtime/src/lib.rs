//! Shared runtime for Enigm OS daemons.
//!
//! Every daemon follows the same start-up order (see `docs/architecture.md`):
//! parse arguments → [`logging`] → [`config`] (sysroot-aware) → open privileged resources →
//! [`privileges`] drop → [`seccomp`] filter → build the service → serve on D-Bus with
//! [`authz`] checks on every method → [`notify`] READY → run until [`shutdown`].
//!
//! Reads of system state go through a [`sysroot::Sysroot`], so tests run daemons against
//! fixture trees instead of the host's `/`.

pub mod authz;
pub mod config;
pub mod logging;
pub mod notify;
pub mod privileges;
pub mod seccomp;
pub mod shutdown;
pub mod sysroot;
