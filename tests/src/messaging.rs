//! A messaging device for tests and the demo: its own private bus, a software TPM (swtpm)
//! served by its own `enigm-attestd`, and `enigmctl` commands pointed at a backend with the
//! device's own state directory.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::{Daemon, PrivateBus, Swtpm, attestd_command};

/// How `enigmctl` is found: the prebuilt binary ([`crate::enigmctl`]) or one built for the
/// test ([`crate::enigmctl_package`]).
pub type CtlCommand = fn(&PrivateBus) -> Result<Command>;

/// Where the devices reach the backend.
#[derive(Debug, Clone)]
pub struct BackendAccess {
    /// `https://localhost:PORT`.
    pub url: String,
    /// The backend's certificate, pinned by the devices.
    pub cert: PathBuf,
}

/// One device: its bus, TPM, attester and `enigmctl` state.
pub struct MessagingDevice {
    /// The account name it enrolls under.
    pub name: &'static str,
    bus: PrivateBus,
    attestd: Daemon,
    _tpm: Swtpm,
    root: tempfile::TempDir,
    ctl: CtlCommand,
}

impl MessagingDevice {
    /// A device with its own bus, swtpm and `enigm-attestd`.
    pub async fn start(name: &'static str, ctl: CtlCommand) -> Result<Self> {
        let bus = PrivateBus::start("")?;
        let tpm = Swtpm::start()?;
        let root = tempfile::Builder::new()
            .prefix(&format!("enigm-msg-{name}"))
            .tempdir()?;
        std::fs::set_permissions(
            root.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )?;
        let attestd = Daemon::spawn(attestd_command(&bus, root.path(), &tpm.tcti())?)?;
        if let Err(err) = bus
            .wait_for_name(enigm_attestd::service::BUS_NAME, Duration::from_secs(20))
            .await
        {
            eprintln!("{}", attestd.stderr());
            return Err(err);
        }
        Ok(Self {
            name,
            bus,
            attestd,
            _tpm: tpm,
            root,
            ctl,
        })
    }

    /// The device's scratch directory.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// `enigmctl ARGS --backend … --pin-cert … --state-dir …`.
    pub fn command(&self, args: &[&str], backend: &BackendAccess) -> Result<Command> {
        let mut command = (self.ctl)(&self.bus)?;
        command
            .args(args)
            .args(["--backend", &backend.url, "--pin-cert"])
            .arg(&backend.cert)
            .arg("--state-dir")
            .arg(self.root.path().join("ctl-state"));
        Ok(command)
    }

    /// Runs [`Self::command`], which must succeed; its output.
    pub fn run(&self, args: &[&str], backend: &BackendAccess) -> Result<Output> {
        let output = self
            .command(args, backend)?
            .output()
            .context("running enigmctl")?;
        if !output.status.success() {
            bail!(
                "{}: enigmctl {} failed: {}\n{}",
                self.name,
                args.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(output)
    }

    /// Creates the account named after the device and enrolls.
    pub fn enroll(&self, backend: &BackendAccess) -> Result<()> {
        let password = self.root.path().join("password");
        std::fs::write(&password, "demo password, not a real one\n")?;
        let password = password.to_string_lossy().into_owned();
        self.run(
            &[
                "enroll",
                "--username",
                self.name,
                "--create-account",
                "--password-file",
                &password,
            ],
            backend,
        )?;
        Ok(())
    }

    /// Stops its `enigm-attestd` (the TPM stops when the device is dropped).
    pub fn stop(mut self) -> Result<()> {
        self.attestd.terminate(Duration::from_secs(5))?;
        Ok(())
    }
}
