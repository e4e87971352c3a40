//! enigm-defensed on a private bus: the start-up scan of a fixture device finds the planted
//! Pegasus process; `Findings` and `GetStatus` are open to any uid while `Scan` is refused to
//! an unauthorized one (AccessDenied); a new artefact changes the findings (`FindingsChanged`);
//! findings are persisted; `PostureSignal1` fails and so does enigm-tscd's
//! `signal.active-defense` check; a feed whose signature does not verify stops the daemon at
//! start.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use enigm_e2e::{
    Daemon, PrivateBus, enigmctl_package, ensure_system_users, package_binary, require_tool,
    tscd_fixture, tscd_package_command,
};
use enigm_tscd::client::TrustSecurityCenterProxy;
use futures_util::StreamExt;

const NAME: &str = "org.enigm.ActiveDefense1";
const PATH: &str = "/org/enigm/ActiveDefense1";
const STIX: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/testdata/stix2");

fn write(root: &Path, path: &str, contents: &str) {
    let full = root.join(path);
    std::fs::create_dir_all(full.parent().unwrap()).unwrap();
    std::fs::write(full, contents).unwrap();
}

fn sysroot(root: &Path) {
    let iocs = root.join("etc/enigm/defense/iocs");
    std::fs::create_dir_all(&iocs).unwrap();
    for entry in std::fs::read_dir(STIX).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "stix2") {
            std::fs::copy(&path, iocs.join(path.file_name().unwrap())).unwrap();
        }
    }
    write(root, "proc/1/comm", "systemd\n");
    write(root, "proc/4242/comm", "fservernetd\n");
    write(root, "proc/mounts", "/dev/dm-0 / erofs ro 0 0\n");
    write(root, "proc/sys/kernel/tainted", "0\n");
}

fn command(bus: &PrivateBus, root: &Path, state: &Path) -> Command {
    let mut c = Command::new(package_binary("enigm-defensed", "enigm-defensed").unwrap());
    c.arg("--sysroot")
        .arg(root)
        .env("DBUS_SYSTEM_BUS_ADDRESS", bus.address())
        .env("ENIGM_LOG_STDERR", "1")
        .env("ENIGM_DEFENSED__DEFENSE__STATE_DIR", state)
        .env("ENIGM_DEFENSED__DEFENSE__SCAN_INTERVAL_SECS", "0")
        .env_remove("NOTIFY_SOCKET");
    c
}

fn dbus_send_as(uid: u32, bus: &PrivateBus, method: &str) -> String {
    let out = Command::new("dbus-send")
        .uid(uid)
        .args([
            &format!("--bus={}", bus.address()),
            "--print-reply",
            &format!("--dest={NAME}"),
            PATH,
            &format!("{NAME}.{method}"),
        ])
        .output()
        .unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scans_findings_authorization_and_posture_over_the_bus() {
    require_tool("dbus-send", "dbus").unwrap();
    ensure_system_users().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let root = d.join("root");
    sysroot(&root);
    let state = d.join("state");
    std::fs::create_dir_all(&state).unwrap();
    let user = nix::unistd::User::from_name("enigm-defensed")
        .unwrap()
        .unwrap();
    nix::unistd::chown(&state, Some(user.uid), Some(user.gid)).unwrap();

    let bus = PrivateBus::start("").unwrap();
    let daemon = Daemon::spawn(command(&bus, &root, &state)).unwrap();
    bus.wait_for_name(NAME, Duration::from_secs(20))
        .await
        .unwrap_or_else(|e| panic!("{e}: {}", daemon.stderr()));
    let connection = bus.connect().await.unwrap();
    let proxy = zbus::Proxy::new(&connection, NAME, PATH, NAME)
        .await
        .unwrap();

    // The start-up scan finds the planted process.
    let mut status: (u32, String, bool, u64) = (0, String::new(), false, 0);
    for _ in 0..100 {
        if let Ok(reply) = proxy.call_method("GetStatus", &()).await {
            status = reply.body().deserialize().unwrap();
            if status.3 > 0 {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        (status.0, status.1.as_str(), status.2),
        (1, "critical", true),
        "{}",
        daemon.stderr()
    );
    let findings: String = proxy
        .call_method("Findings", &())
        .await
        .unwrap()
        .body()
        .deserialize()
        .unwrap();
    let findings: serde_json::Value = serde_json::from_str(&findings).unwrap();
    assert_eq!(findings[0]["indicator"]["collections"][0], "Pegasus");
    assert_eq!(findings[0]["evidence"][0]["subject"], "fservernetd");
    let persisted: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state.join("findings.json")).unwrap()).unwrap();
    assert_eq!(persisted["findings"][0]["id"], findings[0]["id"]);

    // enigmctl reads the same, as any uid (exit status 2: there are findings).
    let out = enigmctl_package(&bus)
        .unwrap()
        .uid(65534)
        .args(["defense", "findings", "--json"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed[0]["id"], findings[0]["id"]);
    let out = enigmctl_package(&bus)
        .unwrap()
        .uid(65534)
        .args(["defense", "daemon-scan"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("AccessDenied"));

    // Any uid may read; only root (the default `change` list) may start a scan.
    assert!(dbus_send_as(65534, &bus, "Findings").contains("fservernetd"));
    let denied = dbus_send_as(65534, &bus, "Scan");
    assert!(denied.contains("AccessDenied"), "{denied}");

    // A DNS query to Pegasus infrastructure appears: the next scan changes the findings.
    write(
        &root,
        "var/log/dnsmasq.log",
        "query[A] x.weather4free.com from 10.0.0.2\n",
    );
    let mut changes = proxy.receive_signal("FindingsChanged").await.unwrap();
    let (count, highest, complete): (u32, String, bool) = proxy
        .call_method("Scan", &())
        .await
        .unwrap_or_else(|e| panic!("{e}: {}", daemon.stderr()))
        .body()
        .deserialize()
        .unwrap();
    assert_eq!((count, highest.as_str(), complete), (2, "critical", true));
    let signal = tokio::time::timeout(Duration::from_secs(5), changes.next())
        .await
        .unwrap()
        .unwrap();
    let (count, highest): (u32, String) = signal.body().deserialize().unwrap();
    assert_eq!((count, highest.as_str()), (2, "critical"));

    // enigm-tscd's reading fails on a critical finding.
    let posture = zbus::Proxy::new(&connection, NAME, PATH, "org.enigm.PostureSignal1")
        .await
        .unwrap();
    let (result, observed): (String, String) = posture
        .call_method("GetSignal", &())
        .await
        .unwrap()
        .body()
        .deserialize()
        .unwrap();
    assert_eq!(result, "fail", "{observed}");

    // enigm-tscd takes that reading: its signal.active-defense check fails.
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
        .find(|c| c.id == "signal.active-defense")
        .unwrap();
    assert_eq!(check.result, "fail", "{}", check.observed);
    assert!(check.observed.contains("critical"), "{}", check.observed);
    drop(daemon);

    // A feed that does not verify stops the daemon before it serves anything.
    write(
        &root,
        "var/lib/enigm/defensed/feed/iocs.feed",
        "{\"enigm_ioc_feed\":1}",
    );
    std::fs::write(
        root.join("var/lib/enigm/defensed/feed/iocs.feed.sig"),
        [0u8; 64],
    )
    .unwrap();
    let key = openssl::pkey::PKey::generate_ed25519().unwrap();
    write(
        &root,
        "etc/enigm/defense/feed-key.pem",
        &String::from_utf8(key.public_key_to_pem().unwrap()).unwrap(),
    );
    let mut refused = Daemon::spawn(command(&bus, &root, &state)).unwrap();
    let status = refused.wait_exit(Duration::from_secs(20)).unwrap();
    assert!(!status.success());
    assert!(
        refused.stderr().contains("signature does not verify"),
        "{}",
        refused.stderr()
    );
}
