//! `enigm-privacyd` on a private system bus, run inside the device namespace of a
//! `netns::Topology` (via `ip netns exec`), dropped to its own user under seccomp.
//!
//! A malformed profile stops it at start with the profile named. `Enable` turns the lockdown
//! on (read back from the kernel: `on`), another uid is refused the change but reads the
//! status, the posture signal for enigm-tscd passes; SIGKILL leaves the uplink blocked; a
//! restart reports `on` from the kernel; a table lost while the daemon was down (a reboot) is
//! re-applied at start, and by `--apply-persisted` (the boot unit) on its own; `Disable`
//! restores every path.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

use std::net::SocketAddr;
use std::time::Instant;

use enigm_e2e::netns::{
    Capture, Family, LEAK_PORT, Path as Route, ProbeResult, Sender, TUNNEL, Topology, leak_report,
    outside,
};
use enigm_e2e::{
    Daemon, PrivateBus, enigmctl_package, ensure_system_users, package_binary, require_tool,
    tscd_fixture, tscd_package_command,
};
use enigm_tscd::client::TrustSecurityCenterProxy;

const NAME: &str = "org.enigm.PrivacyMode1";
const PATH: &str = "/org/enigm/PrivacyMode1";

type Components = Vec<(String, String, String, bool)>;

fn blocked_uplink(results: &[ProbeResult]) -> Vec<ProbeResult> {
    results
        .iter()
        .filter(|r| r.reached != (r.path == Route::Tunnel))
        .copied()
        .collect()
}

fn unreached(results: &[ProbeResult]) -> Vec<ProbeResult> {
    results.iter().filter(|r| !r.reached).copied().collect()
}

struct Fixture {
    _dir: tempfile::TempDir,
    sysroot: std::path::PathBuf,
    state: std::path::PathBuf,
}

/// An empty sysroot (no radios or capture devices: the switches are tested on fixture trees
/// in daemons/privacyd/tests/switches.rs) and a state directory the daemon's user owns.
fn fixture() -> Fixture {
    ensure_system_users().unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let sysroot = dir.path().join("sysroot");
    std::fs::create_dir_all(sysroot.join("etc/enigm")).unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let user = nix::unistd::User::from_name("enigm-privacyd")
        .unwrap()
        .unwrap();
    nix::unistd::chown(&state, Some(user.uid), Some(user.gid)).unwrap();
    Fixture {
        _dir: dir,
        sysroot,
        state,
    }
}

fn command(netns: &str, bus: Option<&PrivateBus>, fixture: &Fixture) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", netns])
        .arg(package_binary("enigm-privacyd", "enigm-privacyd").unwrap())
        .arg("--sysroot")
        .arg(&fixture.sysroot)
        .env("ENIGM_LOG_STDERR", "1")
        .env(
            "ENIGM_PRIVACYD__PRIVACY__STATE_FILE",
            fixture.state.join("state.json"),
        )
        .env(
            "ENIGM_PRIVACYD__PRIVACY__TUNNELS",
            format!("[\"{TUNNEL}\"]"),
        )
        .env_remove("NOTIFY_SOCKET");
    if let Some(bus) = bus {
        c.env("DBUS_SYSTEM_BUS_ADDRESS", bus.address());
    }
    c
}

/// (state, profile) of `Enable(profile)` (with `Some`) or `Disable()`, or the error name.
async fn call(proxy: &zbus::Proxy<'_>, enable: Option<&str>) -> Result<(String, String), String> {
    let reply = match enable {
        Some(profile) => proxy.call_method("Enable", &(profile,)).await,
        None => proxy.call_method("Disable", &()).await,
    };
    match reply {
        Ok(reply) => Ok(reply.body().deserialize().unwrap()),
        Err(zbus::Error::MethodError(name, _, _)) => Err(name.to_string()),
        Err(other) => Err(other.to_string()),
    }
}

async fn status(proxy: &zbus::Proxy<'_>) -> (String, String, Components) {
    proxy
        .call_method("Status", &())
        .await
        .unwrap()
        .body()
        .deserialize()
        .unwrap()
}

fn nft(netns: &str, args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", netns, "nft"])
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn start(bus: &PrivateBus, netns: &str, fixture: &Fixture) -> Daemon {
    let daemon = Daemon::spawn(command(netns, Some(bus), fixture)).unwrap();
    bus.wait_for_name(NAME, Duration::from_secs(10))
        .await
        .unwrap_or_else(|e| panic!("{e}: {}", daemon.stderr()));
    daemon
}

#[test]
fn a_malformed_profile_is_refused_at_start_and_named() {
    let fixture = fixture();
    std::fs::write(
        fixture.sysroot.join("etc/enigm/privacyd.toml"),
        "[profiles.hotel]\nnetwork = \"tunnel-only\"\ntunnels = [\"wg 0\"]\n",
    )
    .unwrap();
    let mut c = Command::new(package_binary("enigm-privacyd", "enigm-privacyd").unwrap());
    c.arg("--sysroot")
        .arg(&fixture.sysroot)
        .env("ENIGM_LOG_STDERR", "1");
    let mut daemon = Daemon::spawn(c).unwrap();
    let status = daemon.wait_exit(Duration::from_secs(10)).unwrap();
    assert!(!status.success());
    assert!(
        daemon.stderr().contains("profile `hotel`"),
        "{}",
        daemon.stderr()
    );

    std::fs::write(
        fixture.sysroot.join("etc/enigm/privacyd.toml"),
        "[profiles.hotel]\nnetwork = \"sometimes\"\n",
    )
    .unwrap();
    let mut c = Command::new(package_binary("enigm-privacyd", "enigm-privacyd").unwrap());
    c.arg("--sysroot")
        .arg(&fixture.sysroot)
        .env("ENIGM_LOG_STDERR", "1");
    let mut daemon = Daemon::spawn(c).unwrap();
    assert!(!daemon.wait_exit(Duration::from_secs(10)).unwrap().success());
    assert!(
        daemon.stderr().contains("profiles.hotel"),
        "{}",
        daemon.stderr()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lockdown_survives_sigkill_and_restarts_and_disable_restores() {
    require_tool("dbus-send", "dbus").unwrap();
    require_tool("nft", "nftables").unwrap();
    let topology = Topology::create().unwrap();
    let fixture = fixture();
    let bus = PrivateBus::start("").unwrap();
    let daemon = start(&bus, &topology.device, &fixture).await;
    assert_eq!(
        daemon
            .status_field("Uid")
            .unwrap()
            .split_whitespace()
            .next(),
        Some(
            &*nix::unistd::User::from_name("enigm-privacyd")
                .unwrap()
                .unwrap()
                .uid
                .to_string()
        )
    );
    assert_eq!(daemon.status_field("Seccomp").unwrap(), "2");
    let connection = bus.connect().await.unwrap();
    let proxy = zbus::Proxy::new(&connection, NAME, PATH, NAME)
        .await
        .unwrap();
    assert_eq!(status(&proxy).await.0, "off");

    // Another uid reads the status but cannot change the mode.
    let denied = Command::new("dbus-send")
        .uid(65534)
        .args([
            &format!("--bus={}", bus.address()),
            "--print-reply",
            &format!("--dest={NAME}"),
            PATH,
            &format!("{NAME}.Enable"),
            "string:lockdown",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&denied.stderr);
    assert!(text.contains("AccessDenied"), "{text}");
    let read = Command::new("dbus-send")
        .uid(65534)
        .args([
            &format!("--bus={}", bus.address()),
            "--print-reply",
            &format!("--dest={NAME}"),
            PATH,
            &format!("{NAME}.Status"),
        ])
        .output()
        .unwrap();
    assert!(
        read.status.success(),
        "{}",
        String::from_utf8_lossy(&read.stderr)
    );
    assert!(
        nft(&topology.device, &["list", "tables"]).trim().is_empty(),
        "nothing changed"
    );

    assert_eq!(
        call(&proxy, Some("nope")).await.unwrap_err(),
        "org.enigm.PrivacyMode1.Error.UnknownProfile"
    );
    let (state, profile) = call(&proxy, Some("lockdown"))
        .await
        .unwrap_or_else(|e| panic!("{e}: {}", daemon.stderr()));
    assert_eq!((state.as_str(), profile.as_str()), ("on", "lockdown"));
    let (state, _, components) = status(&proxy).await;
    assert_eq!(state, "on", "{components:?}");
    assert!(components.iter().all(|c| c.3), "{components:?}");
    assert_eq!(blocked_uplink(&topology.probe_all().unwrap()), []);
    let signal = zbus::Proxy::new(&connection, NAME, PATH, "org.enigm.PostureSignal1")
        .await
        .unwrap();
    let (result, observed): (String, String) = signal
        .call_method("GetSignal", &())
        .await
        .unwrap()
        .body()
        .deserialize()
        .unwrap();
    assert_eq!(result, "pass", "{observed}");
    assert!(observed.contains("lockdown"), "{observed}");

    // SIGKILL: the table stays, the uplink stays blocked.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.pid() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let mut daemon = daemon;
    daemon.wait_exit(Duration::from_secs(5)).unwrap();
    assert_eq!(
        blocked_uplink(&topology.probe_all().unwrap()),
        [],
        "blocked with the daemon dead"
    );

    // Restart: the status comes from the kernel.
    let daemon = start(&bus, &topology.device, &fixture).await;
    assert_eq!(status(&proxy).await.0, "on");
    drop(daemon);

    // A reboot loses the table; the persisted choice brings it back at start...
    nft(
        &topology.device,
        &["delete", "table", "inet", "enigm_privacy"],
    );
    assert_eq!(
        unreached(&topology.probe_all().unwrap()),
        [],
        "open while the table is gone"
    );
    let daemon = start(&bus, &topology.device, &fixture).await;
    assert_eq!(status(&proxy).await.0, "on");
    assert_eq!(blocked_uplink(&topology.probe_all().unwrap()), []);
    // ...and a table someone changed reads degraded.
    nft(
        &topology.device,
        &[
            "insert",
            "rule",
            "inet",
            "enigm_privacy",
            "output",
            "accept",
        ],
    );
    let (state, _, components) = status(&proxy).await;
    assert_eq!(state, "degraded", "{components:?}");
    // enigm-tscd reads the true state: its signal.privacy-mode check fails.
    let fixture_root = tscd_fixture("hardened").unwrap();
    let _tscd = Daemon::spawn(tscd_package_command(&bus, fixture_root.path()).unwrap()).unwrap();
    bus.wait_for_name("org.enigm.TrustSecurityCenter1", Duration::from_secs(10))
        .await
        .unwrap();
    let tscd = TrustSecurityCenterProxy::new(&connection).await.unwrap();
    let posture = tscd.refresh().await.unwrap();
    let check = posture
        .checks
        .iter()
        .find(|c| c.id == "signal.privacy-mode")
        .unwrap();
    assert_eq!(check.result, "fail", "{}", check.observed);
    assert!(check.observed.contains("network"), "{}", check.observed);
    assert!(posture.runtime_issue);
    drop(daemon);

    // The boot unit's --apply-persisted: applies and exits, without a bus.
    nft(
        &topology.device,
        &["delete", "table", "inet", "enigm_privacy"],
    );
    let mut boot = command(&topology.device, None, &fixture);
    boot.arg("--apply-persisted");
    let mut boot = Daemon::spawn(boot).unwrap();
    let exit = boot.wait_exit(Duration::from_secs(10)).unwrap();
    assert!(exit.success(), "{}", boot.stderr());
    assert!(
        nft(
            &topology.device,
            &["list", "table", "inet", "enigm_privacy"]
        )
        .contains("policy drop")
    );
    assert_eq!(blocked_uplink(&topology.probe_all().unwrap()), []);

    // Disable removes exactly our table; everything flows again.
    let daemon = start(&bus, &topology.device, &fixture).await;
    nft(&topology.device, &["add", "table", "inet", "someone_else"]);
    // enigmctl: any uid reads the status; another uid cannot turn the mode off; root can.
    let out = enigmctl_package(&bus)
        .unwrap()
        .uid(65534)
        .args(["privacy", "status", "--json"])
        .output()
        .unwrap();
    let status_json: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(status_json["state"], "on");
    assert_eq!(status_json["profile"], "lockdown");
    assert_eq!(status_json["components"][0]["name"], "network");
    assert_eq!(status_json["components"][0]["ok"], true);
    let out = enigmctl_package(&bus)
        .unwrap()
        .uid(65534)
        .args(["privacy", "off"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("AccessDenied"));
    assert_eq!(status(&proxy).await.0, "on");
    let out = enigmctl_package(&bus)
        .unwrap()
        .args(["privacy", "off"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}: {}",
        String::from_utf8_lossy(&out.stderr),
        daemon.stderr()
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("Privacy Mode off"));
    let out = enigmctl_package(&bus)
        .unwrap()
        .args(["privacy", "on", "travel"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("profile travel"));
    let (state, _) = call(&proxy, None)
        .await
        .unwrap_or_else(|e| panic!("{e}: {}", daemon.stderr()));
    assert_eq!(state, "off");
    assert_eq!(unreached(&topology.probe_all().unwrap()), []);
    let tables = nft(&topology.device, &["list", "tables"]);
    assert_eq!(tables.trim(), "table inet someone_else");
    let persisted: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture.state.join("state.json")).unwrap()).unwrap();
    assert_eq!(persisted["enabled"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_packet_leaves_after_the_enable_call_returns_and_a_corrupt_state_locks_down() {
    let topology = Topology::create().unwrap();
    let fixture = fixture();
    let bus = PrivateBus::start("").unwrap();
    let daemon = start(&bus, &topology.device, &fixture).await;
    let connection = bus.connect().await.unwrap();
    let proxy = zbus::Proxy::new(&connection, NAME, PATH, NAME)
        .await
        .unwrap();
    for family in [Family::V4, Family::V6] {
        let capture = Capture::start(&topology.outside).unwrap();
        let target = SocketAddr::new(outside(family, Route::Uplink), LEAK_PORT);
        let sender = Sender::start(&topology.device, target, Duration::from_micros(200)).unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (state, _) = call(&proxy, Some("lockdown"))
            .await
            .unwrap_or_else(|e| panic!("{e}: {}", daemon.stderr()));
        let returned = Instant::now();
        assert_eq!(state, "on");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let sent = sender.finish().unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let seen = capture.finish().unwrap();
        let report = leak_report(&sent, &seen, returned);
        assert!(report.sent_after > 100, "{family:?}: {report:?}");
        assert!(report.captured > 100, "{family:?}: {report:?}");
        assert_eq!(report.arrived_after, 0, "{family:?}: {report:?}");
        assert_eq!(report.leaked, 0, "{family:?}: {report:?}");
        assert_eq!(call(&proxy, None).await.unwrap().0, "off");
    }
    drop(daemon);

    // A state file that does not parse means lockdown, not "off".
    std::fs::write(fixture.state.join("state.json"), b"{\"enabled\": fal").unwrap();
    let daemon = start(&bus, &topology.device, &fixture).await;
    let (state, profile, components) = status(&proxy).await;
    assert_eq!(
        (state.as_str(), profile.as_str()),
        ("on", "lockdown"),
        "{components:?}"
    );
    assert!(
        daemon.stderr().contains("unreadable"),
        "{}",
        daemon.stderr()
    );
    assert_eq!(blocked_uplink(&topology.probe_all().unwrap()), []);
    assert_eq!(call(&proxy, None).await.unwrap().0, "off");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_is_switched_back_while_on() {
    use futures_util::StreamExt;
    require_tool("nft", "nftables").unwrap();
    let topology = Topology::create().unwrap();
    let fixture = fixture();
    let bus = PrivateBus::start("").unwrap();
    let mut command = command(&topology.device, Some(&bus), &fixture);
    command.env("ENIGM_PRIVACYD__PRIVACY__ENFORCE_INTERVAL_SECS", "1");
    let daemon = Daemon::spawn(command).unwrap();
    bus.wait_for_name(NAME, Duration::from_secs(10))
        .await
        .unwrap_or_else(|e| panic!("{e}: {}", daemon.stderr()));
    let connection = bus.connect().await.unwrap();
    let proxy = zbus::Proxy::new(&connection, NAME, PATH, NAME)
        .await
        .unwrap();
    assert_eq!(call(&proxy, Some("lockdown")).await.unwrap().0, "on");
    let mut changes = proxy.receive_signal("StateChanged").await.unwrap();

    // Someone opens the firewall behind the daemon's back.
    nft(
        &topology.device,
        &[
            "insert",
            "rule",
            "inet",
            "enigm_privacy",
            "output",
            "accept",
        ],
    );
    let signal = tokio::time::timeout(Duration::from_secs(5), changes.next())
        .await
        .unwrap_or_else(|_| panic!("no StateChanged: {}", daemon.stderr()))
        .unwrap();
    let (state, profile): (String, String) = signal.body().deserialize().unwrap();
    assert_eq!((state.as_str(), profile.as_str()), ("on", "lockdown"));
    assert_eq!(status(&proxy).await.0, "on");
    assert!(daemon.stderr().contains("drifted"), "{}", daemon.stderr());
    assert_eq!(blocked_uplink(&topology.probe_all().unwrap()), []);
    assert_eq!(call(&proxy, None).await.unwrap().0, "off");
}
