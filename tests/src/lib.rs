//! End-to-end test harness: a private `dbus-daemon` with the project's bus policy, the real
//! daemon binaries, and `enigmctl`.
//!
//! Tests and the demo use the same pieces: [`PrivateBus`] starts a system-type bus on a socket
//! in a temporary directory, [`Daemon`] runs a built binary against it and stops it on drop,
//! [`binary`] builds the workspace's binaries once per test process. Tools a test needs are
//! installed when missing ([`require_tool`]); nothing is silently skipped.

pub mod messaging;
pub mod netns;
pub mod relay_demo;
pub mod update;
pub mod update_demo;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The directory cargo puts binaries in for the current profile (`target/debug`).
fn binary_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    // target/<profile>/deps/<test> or target/<profile>/<bin>
    let mut dir = exe
        .parent()
        .context("test binary has no directory")?
        .to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    Ok(dir)
}

/// Path of a workspace binary, building all binaries (once per process) in the profile the
/// caller was built with.
pub fn binary(name: &str) -> Result<PathBuf> {
    static BUILT: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    let dir = binary_dir()?;
    let built = BUILT.get_or_init(|| {
        let release = dir.ends_with("release");
        let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cargo
            .current_dir(workspace_root())
            .args(["build", "--quiet", "--workspace", "--bins"]);
        if release {
            cargo.arg("--release");
        }
        match cargo.status() {
            Ok(status) if status.success() => Ok(()),
            Ok(status) => Err(format!("cargo build --bins failed: {status}")),
            Err(err) => Err(format!("cannot run cargo: {err}")),
        }
    });
    if let Err(err) = built {
        bail!("{err}");
    }
    let path = dir.join(name);
    if !path.exists() {
        bail!("{} was not built", path.display());
    }
    Ok(path)
}

/// Makes sure `tool` is on the PATH, installing Debian `package` if it is not. Fails (never
/// skips) when it cannot.
pub fn require_tool(tool: &str, package: &str) -> Result<()> {
    if which(tool) {
        return Ok(());
    }
    eprintln!("harness: {tool} missing; installing Debian package {package}");
    let update = Command::new("apt-get").arg("update").status();
    let install = Command::new("apt-get")
        .args(["install", "-y", "--no-install-recommends", package])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status();
    match (update, install) {
        (Ok(_), Ok(status)) if status.success() && which(tool) => Ok(()),
        _ => bail!(
            "{tool} is required and could not be installed (apt-get install {package}); run `cargo xtask install-deps` as root"
        ),
    }
}

/// Makes sure Python can import `module`, installing `pip_spec` from PyPI if it cannot. Fails
/// (never skips) when it cannot.
pub fn require_python_module(module: &str, pip_spec: &str) -> Result<()> {
    let importable = || {
        Command::new("python3")
            .args(["-c", &format!("import {module}")])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if importable() {
        return Ok(());
    }
    eprintln!("harness: Python module {module} missing; pip install {pip_spec}");
    let installed = Command::new("python3")
        .args(["-m", "pip", "install", "--quiet", pip_spec])
        .status();
    match installed {
        Ok(status) if status.success() && importable() => Ok(()),
        _ => bail!(
            "Python module {module} is required and could not be installed (pip install {pip_spec})"
        ),
    }
}

fn which(tool: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()))
        .unwrap_or(false)
}

/// Creates the daemons' system users from the `*.sysusers.conf` files in `daemons/*/dist/`
/// (as `cargo xtask install-deps` does) when any is missing; once per process.
pub fn ensure_system_users() -> Result<()> {
    static DONE: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    let done = DONE.get_or_init(|| create_system_users().map_err(|err| format!("{err:#}")));
    done.clone().map_err(|err| anyhow::anyhow!(err))
}

fn create_system_users() -> Result<()> {
    let files = dist_files(|name| name.ends_with(".sysusers.conf"))?;
    let mut declared = Vec::new();
    for file in &files {
        for line in std::fs::read_to_string(file)?.lines() {
            if let Some(rest) = line.strip_prefix("u ") {
                declared.extend(rest.split_whitespace().next().map(str::to_owned));
            }
        }
    }
    if declared.iter().all(|user| uid_of(user).is_some()) {
        return Ok(());
    }
    require_tool("systemd-sysusers", "systemd")?;
    let status = Command::new("systemd-sysusers").args(&files).status()?;
    if !status.success() {
        bail!("systemd-sysusers failed ({status}); are you root?");
    }
    match declared.iter().find(|user| uid_of(user).is_none()) {
        Some(user) => bail!("user {user} still missing after systemd-sysusers"),
        None => Ok(()),
    }
}

/// The uid of a user in the passwd database.
pub fn uid_of(user: &str) -> Option<u32> {
    nix::unistd::User::from_name(user)
        .ok()
        .flatten()
        .map(|u| u.uid.as_raw())
}

/// A private system-type `dbus-daemon` with the project's bus policy files.
pub struct PrivateBus {
    child: Child,
    address: String,
    _dir: tempfile::TempDir,
}

impl PrivateBus {
    /// Starts a bus whose policy is the system bus defaults plus every
    /// `daemons/*/dist/*.conf` policy file and `extra_policy` (XML `<policy>` elements).
    pub fn start(extra_policy: &str) -> Result<Self> {
        require_tool("dbus-daemon", "dbus-daemon")?;
        // The policy files name the daemons' users; dbus-daemon resolves them when it starts.
        ensure_system_users()?;
        let dir = tempfile::Builder::new().prefix("enigm-bus").tempdir()?;
        // The daemons drop privileges: let them reach the socket.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )?;
        let socket = dir.path().join("system_bus_socket");
        let includes: String = policy_files()?
            .iter()
            .map(|file| format!("  <include>{}</include>\n", file.display()))
            .collect();
        let config = format!(
            r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
  </policy>
{extra_policy}
{includes}</busconfig>
"#,
            socket = socket.display()
        );
        let config_path = dir.path().join("bus.conf");
        std::fs::write(&config_path, config)?;
        // Its stderr goes to a file: it warns about fd limits it may not raise in a container.
        let log_path = dir.path().join("dbus-daemon.log");
        let mut child = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", config_path.display()))
            .args(["--nofork", "--print-address=1"])
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log_path)?)
            .spawn()
            .context("starting dbus-daemon")?;
        let stdout = child.stdout.take().context("dbus-daemon stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let address = line.trim().to_owned();
        if address.is_empty() {
            let _ = child.kill();
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            bail!("dbus-daemon printed no address:\n{log}");
        }
        Ok(Self {
            child,
            address,
            _dir: dir,
        })
    }

    /// The bus address, for `DBUS_SYSTEM_BUS_ADDRESS`.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// A client connection to the bus.
    pub async fn connect(&self) -> Result<zbus::Connection> {
        Ok(zbus::connection::Builder::address(self.address.as_str())
            .build()
            .await?)
    }

    /// Waits until `name` has an owner.
    pub async fn wait_for_name(&self, name: &str, timeout: Duration) -> Result<()> {
        let connection = self.connect().await?;
        let proxy = zbus::fdo::DBusProxy::new(&connection).await?;
        let deadline = Instant::now() + timeout;
        loop {
            if proxy.name_has_owner(name.try_into()?).await? {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{name} did not appear on the bus within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for PrivateBus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The bus policy files shipped in `daemons/*/dist/`.
pub fn policy_files() -> Result<Vec<PathBuf>> {
    dist_files(|name| name.starts_with("org.enigm.") && name.ends_with(".conf"))
}

/// Files in `daemons/*/dist/` whose name matches, sorted.
fn dist_files(matches: impl Fn(&str) -> bool) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(workspace_root().join("daemons"))? {
        let Ok(entries) = std::fs::read_dir(entry?.path().join("dist")) else {
            continue;
        };
        for file in entries.flatten() {
            if matches(&file.file_name().to_string_lossy()) {
                files.push(file.path());
            }
        }
    }
    files.sort();
    Ok(files)
}

/// A running daemon; stopped with SIGTERM (then SIGKILL) when dropped.
pub struct Daemon {
    child: Option<Child>,
    stderr_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Daemon {
    /// Starts `command` with its stderr captured to a file.
    pub fn spawn(mut command: Command) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let stderr_path = dir.path().join("stderr");
        let stderr = std::fs::File::create(&stderr_path)?;
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        let child = command.spawn().context("starting daemon")?;
        Ok(Self {
            child: Some(child),
            stderr_path,
            _dir: dir,
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// What the daemon wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Sends SIGTERM and waits up to `timeout` for the exit status.
    pub fn terminate(&mut self, timeout: Duration) -> Result<std::process::ExitStatus> {
        let mut child = self.child.take().context("already stopped")?;
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!("daemon did not exit within {timeout:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits up to `timeout` for the daemon to exit on its own.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<std::process::ExitStatus> {
        let child = self.child.as_mut().context("already stopped")?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait()? {
                self.child = None;
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!("daemon still running after {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// A field of `/proc/PID/status` (e.g. `Seccomp`, `Uid`, `CapEff`, `VmRSS`).
    pub fn status_field(&self, field: &str) -> Result<String> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        status
            .lines()
            .find_map(|line| {
                line.strip_prefix(&format!("{field}:"))
                    .map(|v| v.trim().to_owned())
            })
            .with_context(|| format!("no {field} in /proc/{}/status", self.pid()))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.terminate(Duration::from_secs(3));
        }
    }
}

/// Copies a directory tree (fixtures into a scratch directory tests may modify).
pub fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// Today's date (UTC) as `YYYY-MM-DD`, for fixtures whose patch level must be current.
pub fn today() -> String {
    let output = Command::new("date").args(["-u", "+%Y-%m-%d"]).output();
    output
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// A command for `enigmctl` against `bus`.
pub fn enigmctl(bus: &PrivateBus) -> Result<Command> {
    let mut command = Command::new(binary("enigmctl")?);
    command.env("DBUS_SYSTEM_BUS_ADDRESS", bus.address());
    Ok(command)
}

/// A command that runs `enigm-tscd` on `bus` with `sysroot`, as the real system user.
pub fn tscd_command(bus: &PrivateBus, sysroot: &Path) -> Result<Command> {
    ensure_system_users()?;
    let mut command = Command::new(binary("enigm-tscd")?);
    command
        .arg("--sysroot")
        .arg(sysroot)
        .env("DBUS_SYSTEM_BUS_ADDRESS", bus.address())
        .env("ENIGM_LOG_STDERR", "1")
        .env_remove("NOTIFY_SOCKET");
    Ok(command)
}

/// A scratch copy of a `daemons/tscd/fixtures/` tree with its patch level set to today.
pub fn tscd_fixture(name: &str) -> Result<tempfile::TempDir> {
    let dir = tempfile::Builder::new().prefix("enigm-fixture").tempdir()?;
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )?;
    copy_tree(
        &workspace_root().join("daemons/tscd/fixtures").join(name),
        dir.path(),
    )?;
    let os_release = dir.path().join("etc/os-release");
    if let Ok(text) = std::fs::read_to_string(&os_release) {
        let today = today();
        let text: String = text
            .lines()
            .map(|line| {
                if line.starts_with("ENIGM_SECURITY_PATCH=") {
                    format!("ENIGM_SECURITY_PATCH={today}\n")
                } else {
                    format!("{line}\n")
                }
            })
            .collect();
        std::fs::write(&os_release, text)?;
    }
    Ok(dir)
}

/// Path of a binary of one workspace package, building only that package's binary (once per
/// binary per process), so a test does not depend on every crate of the workspace building.
pub fn package_binary(package: &str, name: &str) -> Result<PathBuf> {
    use std::collections::BTreeMap;
    use std::sync::Mutex;
    static BUILT: OnceLock<Mutex<BTreeMap<String, std::result::Result<(), String>>>> =
        OnceLock::new();
    let dir = binary_dir()?;
    let built = BUILT.get_or_init(Default::default);
    let mut built = built
        .lock()
        .map_err(|_| anyhow::anyhow!("binary build lock poisoned"))?;
    let outcome = built
        .entry(format!("{package}/{name}"))
        .or_insert_with(|| {
            let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
            cargo
                .current_dir(workspace_root())
                .args(["build", "--quiet", "-p", package, "--bin", name]);
            if dir.ends_with("release") {
                cargo.arg("--release");
            }
            match cargo.status() {
                Ok(status) if status.success() => Ok(()),
                Ok(status) => Err(format!(
                    "cargo build -p {package} --bin {name} failed: {status}"
                )),
                Err(err) => Err(format!("cannot run cargo: {err}")),
            }
        })
        .clone();
    if let Err(err) = outcome {
        bail!("{err}");
    }
    let path = dir.join(name);
    if !path.exists() {
        bail!("{} was not built", path.display());
    }
    Ok(path)
}

/// A software TPM 2.0 (`swtpm socket --tpm2`) on free loopback TCP ports, with its state in a
/// temporary directory; killed when dropped. The TCTI for it is [`Swtpm::tcti`].
pub struct Swtpm {
    child: Option<Child>,
    port: u16,
    state: tempfile::TempDir,
    log: PathBuf,
}

impl Swtpm {
    /// A manufactured-fresh TPM with no EK certificates.
    pub fn start() -> Result<Self> {
        require_tool("swtpm", "swtpm")?;
        let state = tempfile::Builder::new().prefix("enigm-swtpm").tempdir()?;
        Self::run(state)
    }

    /// A TPM manufactured by `swtpm_setup` with EK certificates from a throw-away local CA
    /// (RSA 2048 at NV index 0x01c00002; swtpm 0.7 certifies its ECC EK on P-384, at
    /// 0x01c00016, so the P-256 index 0x01c0000a stays empty). Returns the TPM and the CA
    /// directory (`issuercert.pem`, `swtpm-localca-rootca-cert.pem`).
    pub fn start_with_ek_certificates() -> Result<(Self, PathBuf)> {
        require_tool("swtpm", "swtpm")?;
        require_tool("swtpm_setup", "swtpm-tools")?;
        let state = tempfile::Builder::new().prefix("enigm-swtpm").tempdir()?;
        let ca = state.path().join("ca");
        let tpm_state = state.path().join("tpm");
        std::fs::create_dir_all(&ca)?;
        std::fs::create_dir_all(&tpm_state)?;
        let localca = state.path().join("swtpm-localca.conf");
        std::fs::write(
            &localca,
            format!(
                "statedir = {ca}\nsigningkey = {ca}/signkey.pem\nissuercert = {ca}/issuercert.pem\ncertserial = {ca}/certserial\n",
                ca = ca.display()
            ),
        )?;
        let options = state.path().join("swtpm-localca.options");
        std::fs::write(
            &options,
            "--platform-manufacturer Enigm\n--platform-version 2.1\n--platform-model swtpm\n",
        )?;
        let setup = state.path().join("swtpm_setup.conf");
        std::fs::write(
            &setup,
            format!(
                "create_certs_tool = swtpm_localca\ncreate_certs_tool_config = {}\ncreate_certs_tool_options = {}\nactive_pcr_banks = sha256\n",
                localca.display(),
                options.display()
            ),
        )?;
        let output = Command::new("swtpm_setup")
            .arg("--tpm2")
            .arg("--tpmstate")
            .arg(&tpm_state)
            .arg("--create-ek-cert")
            .arg("--config")
            .arg(&setup)
            .output()
            .context("running swtpm_setup")?;
        if !output.status.success() {
            bail!(
                "swtpm_setup failed ({}):\n{}{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let tpm = Self::run(state)?;
        Ok((tpm, ca))
    }

    fn tpm_state(state: &Path) -> PathBuf {
        let manufactured = state.join("tpm");
        if manufactured.is_dir() {
            manufactured
        } else {
            state.to_path_buf()
        }
    }

    fn run(state: tempfile::TempDir) -> Result<Self> {
        let log = state.path().join("swtpm.log");
        let mut tpm = Self {
            child: None,
            port: 0,
            state,
            log,
        };
        tpm.restart()?;
        Ok(tpm)
    }

    /// Starts again (after [`Swtpm::stop`]) with the same state, on the same ports so the
    /// TCTI stays valid (the first start picks free ports).
    pub fn restart(&mut self) -> Result<()> {
        self.stop();
        let fixed = (self.port != 0).then_some(self.port);
        let mut last = String::new();
        for _ in 0..10 {
            let port = match fixed {
                Some(port) => port,
                None => free_port_pair()?,
            };
            let mut child = Command::new("swtpm")
                .args(["socket", "--tpm2"])
                .arg("--server")
                .arg(format!("type=tcp,port={port},bindaddr=127.0.0.1"))
                .arg("--ctrl")
                .arg(format!("type=tcp,port={},bindaddr=127.0.0.1", port + 1))
                .arg("--tpmstate")
                .arg(format!(
                    "dir={}",
                    Self::tpm_state(self.state.path()).display()
                ))
                .args(["--flags", "not-need-init,startup-clear"])
                .arg("--log")
                .arg(format!("file={},level=1", self.log.display()))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(
                    self.state.path().join("swtpm.stderr"),
                )?)
                .spawn()
                .context("starting swtpm")?;
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if let Some(status) = child.try_wait()? {
                    // A port taken in between (or still held after a restart): try again.
                    std::thread::sleep(Duration::from_millis(200));
                    last = format!(
                        "swtpm exited ({status}): {}",
                        std::fs::read_to_string(self.state.path().join("swtpm.stderr"))
                            .unwrap_or_default()
                    );
                    break;
                }
                // The control channel takes any number of connections; the data channel
                // serves one client at a time, so it is left for the daemon.
                if std::net::TcpStream::connect(("127.0.0.1", port + 1)).is_ok() {
                    self.child = Some(child);
                    self.port = port;
                    return Ok(());
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    bail!("swtpm did not listen on 127.0.0.1:{} within 10 s", port + 1);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        bail!("could not start swtpm: {last}")
    }

    /// Kills the TPM (its state stays for [`Swtpm::restart`]).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The TCTI string for it: `swtpm:host=127.0.0.1,port=P`.
    pub fn tcti(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.port)
    }
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A free loopback port `P` whose neighbour `P + 1` is free too (swtpm's data and control
/// channels).
fn free_port_pair() -> Result<u16> {
    for _ in 0..50 {
        let first = std::net::TcpListener::bind(("127.0.0.1", 0))?;
        let port = first.local_addr()?.port();
        if port < u16::MAX && std::net::TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no pair of free loopback ports")
}

/// A command that runs `enigm-attestd` on `bus` with `sysroot` and the TPM at `tcti`, as the
/// real system user, keeping its attestation key in `<sysroot>/var/lib/enigm/attestd` (created
/// owned by `enigm-attestd`, mode 0700, as systemd's `StateDirectory=` does).
pub fn attestd_command(bus: &PrivateBus, sysroot: &Path, tcti: &str) -> Result<Command> {
    ensure_system_users()?;
    let state = sysroot.join("var/lib/enigm/attestd");
    std::fs::create_dir_all(&state)?;
    let user =
        nix::unistd::User::from_name("enigm-attestd")?.context("system user enigm-attestd")?;
    nix::unistd::chown(&state, Some(user.uid), Some(user.gid))?;
    std::fs::set_permissions(&state, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
    let mut command = Command::new(package_binary("enigm-attestd", "enigm-attestd")?);
    command
        .arg("--sysroot")
        .arg(sysroot)
        .env("DBUS_SYSTEM_BUS_ADDRESS", bus.address())
        .env("ENIGM_LOG_STDERR", "1")
        .env("ENIGM_ATTESTD__TPM__TCTI", tcti)
        .env("ENIGM_ATTESTD__TPM__STATE_DIR", &state)
        .env_remove("CREDENTIALS_DIRECTORY")
        .env_remove("NOTIFY_SOCKET");
    Ok(command)
}

/// A command for `enigmctl` against `bus`, building only the `enigm-ctl` package.
pub fn enigmctl_package(bus: &PrivateBus) -> Result<Command> {
    let mut command = Command::new(package_binary("enigm-ctl", "enigmctl")?);
    command.env("DBUS_SYSTEM_BUS_ADDRESS", bus.address());
    Ok(command)
}

/// A command that runs `enigm-tscd` on `bus` with `sysroot` as the real system user, building
/// only the `enigm-tscd` package.
pub fn tscd_package_command(bus: &PrivateBus, sysroot: &Path) -> Result<Command> {
    ensure_system_users()?;
    let mut command = Command::new(package_binary("enigm-tscd", "enigm-tscd")?);
    command
        .arg("--sysroot")
        .arg(sysroot)
        .env("DBUS_SYSTEM_BUS_ADDRESS", bus.address())
        .env("ENIGM_LOG_STDERR", "1")
        .env_remove("NOTIFY_SOCKET");
    Ok(command)
}

/// A free loopback TCP port (bound and released; another process may take it in between).
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind(("127.0.0.1", 0))?
        .local_addr()?
        .port())
}

/// Writes an `enigm-backend` configuration under `root` (`etc/enigm/backend.toml`) for a
/// device without a firmware event log: the gRPC and HTTP listeners on `grpc` and `http`
/// (`127.0.0.1:0` picks ephemeral ports), the policy file `etc/enigm/backend-policy.toml` with
/// `require_event_log = false` and no PCR reference values, and cheap argon2 parameters (a
/// test and demo configuration, not a production one). Every generated file (TLS certificate
/// `var/lib/enigm/backend-tls.crt`, keys, the SQLite database) lands under `root` too.
pub fn write_backend_config(root: &Path, grpc: &str, http: &str) -> Result<()> {
    let etc = root.join("etc/enigm");
    std::fs::create_dir_all(&etc)?;
    std::fs::write(
        etc.join("backend-policy.toml"),
        "[tpm]\nrequire_event_log = false\n",
    )?;
    std::fs::write(
        etc.join("backend.toml"),
        format!(
            "policy_file = \"/etc/enigm/backend-policy.toml\"\n\
             token_lifetime_minutes = 5\n\
             [listen]\ngrpc = \"{grpc}\"\nhttp = \"{http}\"\n\
             [argon2]\nm_kib = 1024\nt = 1\np = 1\n"
        ),
    )?;
    Ok(())
}

/// The TLS certificate an `enigm-backend` configured by [`write_backend_config`] under `root`
/// generates on first start.
pub fn backend_certificate(root: &Path) -> PathBuf {
    root.join("var/lib/enigm/backend-tls.crt")
}

/// A command that runs the `enigm-backend` binary with `--config-dir root`, building only the
/// `enigm-backend` package.
pub fn backend_command(root: &Path) -> Result<Command> {
    let mut command = Command::new(package_binary("enigm-backend", "enigm-backend")?);
    command.arg("--config-dir").arg(root);
    Ok(command)
}

/// Waits until something accepts TCP connections on `addr`.
pub fn wait_for_port(addr: std::net::SocketAddr, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("nothing listens on {addr} after {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
