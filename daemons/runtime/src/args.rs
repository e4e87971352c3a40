//! The command-line options every daemon has, flattened into its own `clap` parser:
//! `--sysroot DIR` (also `ENIGM_SYSROOT`) and the hidden `--seccomp-probe` test hook.

use std::path::PathBuf;

/// Options shared by every daemon.
#[derive(clap::Args, Debug, Clone)]
pub struct DaemonArgs {
    /// Root directory that system paths (/etc, /proc, /sys) are read under.
    #[arg(long, env = "ENIGM_SYSROOT", default_value = "/")]
    pub sysroot: PathBuf,
    /// Test hook: after the seccomp filter is applied, try a system call outside the policy
    /// and report on stderr whether it was refused.
    #[arg(long, hide = true)]
    pub seccomp_probe: bool,
}
