//! Running external commands: a printable command type, step headers, and loud failures.
//!
//! Every command xtask runs goes through [`Cmd`], so the exact command line can be printed in
//! the step header and in the error when it fails. [`run`] stops at the first failure with an
//! error naming the step, the command line and its exit status.

use std::ffi::OsStr;
use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{Context, Result, bail};

/// A command line with its environment and working directory; printable and re-usable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cmd {
    program: String,
    args: Vec<String>,
    envs: Vec<(String, String)>,
    dir: Option<PathBuf>,
}

impl Cmd {
    /// A command running `program` (looked up in `PATH`) with no arguments.
    pub fn new(program: impl Into<String>) -> Self {
        Self {
            program: program.into(),
            args: Vec::new(),
            envs: Vec::new(),
            dir: None,
        }
    }

    /// Appends arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets an environment variable for the command.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.envs.push((key.into(), value.into()));
        self
    }

    /// Runs the command in `dir`.
    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self
    }

    /// The same command run through `sudo`. The environment goes through `env` on the
    /// command line, because sudo resets the caller's environment.
    pub fn with_sudo(self) -> Self {
        let mut args = Vec::with_capacity(self.args.len() + self.envs.len() + 2);
        if !self.envs.is_empty() {
            args.push("env".to_owned());
            args.extend(self.envs.iter().map(|(k, v)| format!("{k}={v}")));
        }
        args.push(self.program);
        args.extend(self.args);
        Self {
            program: "sudo".to_owned(),
            args,
            envs: Vec::new(),
            dir: self.dir,
        }
    }

    fn to_command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args);
        cmd.envs(self.envs.iter().map(|(k, v)| (k, v)));
        if let Some(dir) = &self.dir {
            cmd.current_dir(dir);
        }
        cmd
    }

    /// Runs the command with inherited stdio; fails unless it exits with status 0.
    pub fn status(&self) -> Result<()> {
        let status = self
            .to_command()
            .status()
            .with_context(|| format!("cannot start `{self}`"))?;
        if !status.success() {
            bail!("`{self}` failed ({status})");
        }
        Ok(())
    }

    /// Runs the command and captures its output, whatever its exit status.
    pub fn output(&self) -> Result<Output> {
        self.to_command()
            .output()
            .with_context(|| format!("cannot start `{self}`"))
    }
}

impl fmt::Display for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (k, v) in &self.envs {
            write!(f, "{k}={} ", shell_quote(v))?;
        }
        f.write_str(&shell_quote(&self.program))?;
        for arg in &self.args {
            write!(f, " {}", shell_quote(arg))?;
        }
        Ok(())
    }
}

/// Quotes `s` for display so the printed command line can be pasted into a shell.
fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// `cargo` (the one running xtask, from `$CARGO`, else the one in `PATH`) in `root`.
pub fn cargo(root: &Path) -> Cmd {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    Cmd::new(cargo).current_dir(root)
}

/// Runs one named step: prints a header, runs `cmd`, fails with the step's name.
pub fn run(name: &str, cmd: &Cmd) -> Result<()> {
    println!("\n==> xtask: {name}: {cmd}");
    cmd.status()
        .with_context(|| format!("step `{name}` failed"))
}

/// The path of `program` in `PATH`, if an executable file by that name is there.
pub fn find_in_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Lossy text of captured output, trimmed, for error messages.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).trim().to_owned()
}

/// Whether the file name `name` ends with `suffix` (used to match `*.sysusers.conf`).
pub fn has_suffix(name: &OsStr, suffix: &str) -> bool {
    name.to_str()
        .is_some_and(|n| n.ends_with(suffix) && n.len() > suffix.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_quotes_only_when_needed() {
        let cmd = Cmd::new("dpkg-query")
            .args(["-W", "-f", "${Package}\t${Status}\n", "dbus"])
            .env("DEBIAN_FRONTEND", "noninteractive");
        assert_eq!(
            cmd.to_string(),
            "DEBIAN_FRONTEND=noninteractive dpkg-query -W -f '${Package}\t${Status}\n' dbus"
        );
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn sudo_passes_environment_through_env() {
        let cmd = Cmd::new("apt-get")
            .args(["install", "-y", "dbus"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .with_sudo();
        assert_eq!(cmd.program, "sudo");
        assert_eq!(
            cmd.to_string(),
            "sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y dbus"
        );
        let bare = Cmd::new("systemd-sysusers").args(["a.conf"]).with_sudo();
        assert_eq!(bare.to_string(), "sudo systemd-sysusers a.conf");
    }

    #[test]
    fn status_reports_failure_with_command_line() {
        assert!(Cmd::new("true").status().is_ok());
        let err = Cmd::new("false").status().unwrap_err().to_string();
        assert!(err.contains("`false` failed"), "{err}");
        let err = Cmd::new("/nonexistent/enigm-xtask-test")
            .status()
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot start"), "{err}");
    }

    #[test]
    fn run_names_the_failing_step() {
        let err = run("lint", &Cmd::new("sh").args(["-c", "exit 3"])).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.starts_with("step `lint` failed"), "{msg}");
        assert!(msg.contains("exit status: 3"), "{msg}");
    }

    #[test]
    fn finds_programs_in_path() {
        assert!(find_in_path("sh").is_some());
        assert!(find_in_path("enigm-no-such-program").is_none());
    }

    #[test]
    fn suffix_match_needs_a_stem() {
        assert!(has_suffix(
            OsStr::new("enigm-tscd.sysusers.conf"),
            ".sysusers.conf"
        ));
        assert!(!has_suffix(OsStr::new(".sysusers.conf"), ".sysusers.conf"));
        assert!(!has_suffix(
            OsStr::new("enigm-tscd.service"),
            ".sysusers.conf"
        ));
    }
}
