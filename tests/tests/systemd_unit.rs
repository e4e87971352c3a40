//! The systemd unit of enigm-tscd: its sandbox, rated by `systemd-analyze security`.
//!
//! The rating comes from systemd's own scoring (code we did not write), run offline on the
//! unit file in `daemons/tscd/dist/`. The unit is copied into an otherwise empty root
//! (`--root=`), so drop-ins installed on the host cannot change the result. When
//! `systemd-analyze` is missing the test installs it (package `systemd`) or fails; it never
//! skips, and under `ENIGM_REQUIRE_ALL_TOOLS` or `CI` it refuses to install and fails.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The highest overall exposure the unit may have (systemd's scale: 0.0 safe … 10.0 unsafe).
const MAX_EXPOSURE: f64 = 2.0;

const UNIT_NAME: &str = "enigm-tscd.service";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn unit_path() -> PathBuf {
    repo_root().join("daemons/tscd/dist").join(UNIT_NAME)
}

fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !matches!(v.trim(), "" | "0" | "false"))
}

fn in_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .find(|l| l.starts_with("Uid:"))
            .and_then(|l| l.split_whitespace().nth(2))
            == Some("0")
    })
}

/// Runs `apt-get <args>` as root (directly, or through non-interactive sudo).
fn apt_get(args: &[&str]) -> Result<()> {
    let mut cmd = if is_root() {
        Command::new("apt-get")
    } else if in_path("sudo") {
        let mut sudo = Command::new("sudo");
        sudo.args(["-n", "env", "DEBIAN_FRONTEND=noninteractive", "apt-get"]);
        sudo
    } else {
        bail!("not root and sudo is not installed");
    };
    let status = cmd
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .with_context(|| format!("cannot run apt-get {}", args.join(" ")))?;
    if !status.success() {
        bail!("apt-get {} failed ({status})", args.join(" "));
    }
    Ok(())
}

/// Makes sure `systemd-analyze` can run: installs package `systemd` when allowed, else
/// fails the test (an `Err` from a test fails it; it is never skipped).
fn require_systemd_analyze() -> Result<()> {
    if in_path("systemd-analyze") {
        return Ok(());
    }
    if env_flag("ENIGM_REQUIRE_ALL_TOOLS") || env_flag("CI") {
        bail!(
            "systemd-analyze is not installed (Debian package `systemd`) and \
             ENIGM_REQUIRE_ALL_TOOLS/CI forbid installing it from a test: run `cargo xtask install-deps`"
        );
    }
    eprintln!("systemd-analyze missing: installing Debian package `systemd`");
    apt_get(&["update"])
        .and_then(|()| apt_get(&["install", "-y", "--no-install-recommends", "systemd"]))
        .context(
            "systemd-analyze is not installed and installing package `systemd` failed; \
             run `cargo xtask install-deps` (as root or with sudo)",
        )?;
    if !in_path("systemd-analyze") {
        bail!("package `systemd` installed but systemd-analyze is still not in PATH");
    }
    Ok(())
}

/// The overall exposure from `systemd-analyze security` output, e.g.
/// `→ Overall exposure level for enigm-tscd.service: 0.2 SAFE 😀`.
fn overall_exposure(output: &str) -> Option<f64> {
    let line = output
        .lines()
        .find(|l| l.contains("Overall exposure level for"))?;
    let (_, rest) = line.rsplit_once(": ")?;
    rest.split_whitespace().next()?.parse().ok()
}

/// A temporary root holding only the unit, removed on drop.
struct UnitRoot(PathBuf);

impl UnitRoot {
    fn new(unit: &Path) -> Result<Self> {
        let root = std::env::temp_dir().join(format!("enigm-unit-root-{}", std::process::id()));
        let dir = root.join("etc/systemd/system");
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        std::fs::copy(unit, dir.join(UNIT_NAME))
            .with_context(|| format!("copy {}", unit.display()))?;
        Ok(Self(root))
    }
}

impl Drop for UnitRoot {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn exposure_parser_reads_the_summary_line() {
    let out = "✓ UMask=   Files created by service are accessible only by ...\n\n\
               → Overall exposure level for enigm-tscd.service: 0.2 SAFE 😀\n";
    assert_eq!(overall_exposure(out), Some(0.2));
    assert_eq!(
        overall_exposure("→ Overall exposure level for x.service: 9.6 UNSAFE 😨"),
        Some(9.6)
    );
    assert_eq!(overall_exposure("Unit enigm-tscd.service not found."), None);
}

#[test]
fn unit_sandbox_exposure_is_at_most_2() -> Result<()> {
    require_systemd_analyze()?;
    let root = UnitRoot::new(&unit_path())?;
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(format!("--root={}", root.0.display()))
        .arg(UNIT_NAME)
        .env("SYSTEMD_COLORS", "0")
        .output()
        .context("run systemd-analyze security")?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let exposure = overall_exposure(&text).unwrap_or_else(|| {
        panic!(
            "no overall exposure in systemd-analyze output ({}):\n{text}",
            out.status
        )
    });
    println!("{UNIT_NAME}: overall exposure {exposure} (limit {MAX_EXPOSURE:.1})");
    assert!(
        exposure <= MAX_EXPOSURE,
        "{UNIT_NAME} exposure {exposure} > {MAX_EXPOSURE:.1}:\n{text}"
    );
    Ok(())
}

/// `(section, key, value)` for every assignment in a unit file.
fn assignments(unit: &str) -> Vec<(String, String, String)> {
    let mut section = String::new();
    let mut out = Vec::new();
    for line in unit.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
        } else if let Some((key, value)) = line.split_once('=') {
            out.push((
                section.clone(),
                key.trim().to_owned(),
                value.trim().to_owned(),
            ));
        }
    }
    out
}

#[test]
fn unit_runs_as_its_own_user_without_capabilities() -> Result<()> {
    let unit = std::fs::read_to_string(unit_path()).context("read unit")?;
    let service: Vec<(String, String)> = assignments(&unit)
        .into_iter()
        .filter(|(section, _, _)| section == "Service")
        .map(|(_, k, v)| (k, v))
        .collect();
    let values = |key: &str| -> Vec<&str> {
        service
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    };

    assert_eq!(values("User"), ["enigm-tscd"]);
    assert_eq!(values("Group"), ["enigm-tscd"]);

    let bounding = values("CapabilityBoundingSet");
    assert!(!bounding.is_empty(), "CapabilityBoundingSet= is not set");
    for value in bounding.iter().chain(values("AmbientCapabilities").iter()) {
        assert!(
            !value.to_ascii_uppercase().contains("CAP_"),
            "unit grants capabilities: {value}"
        );
    }
    assert_eq!(values("NoNewPrivileges"), ["yes"]);
    assert_eq!(values("BusName"), ["org.enigm.TrustSecurityCenter1"]);
    assert_eq!(values("Type"), ["notify"]);

    // The posture checks read /proc/sys, /proc/modules and /proc/swaps: ProcSubset=pid
    // would hide them, and those checks could no longer see the kernel's state.
    assert!(
        values("ProcSubset").iter().all(|v| *v != "pid"),
        "ProcSubset=pid hides /proc/sys from the daemon"
    );
    // The daemon installs its own, narrower seccomp filter at start-up, so seccomp(2) must
    // survive the unit's filter (it is not in @system-service).
    assert!(
        values("SystemCallFilter")
            .iter()
            .any(|v| !v.starts_with('~') && v.split_whitespace().any(|s| s == "seccomp")),
        "SystemCallFilter= must allow seccomp(2)"
    );
    Ok(())
}
