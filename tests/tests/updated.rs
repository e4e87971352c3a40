//! `enigm-updated` on a private system bus, unprivileged under seccomp: a repository served
//! over HTTP offers v2; `Check` finds it, `Download` fetches it with `Progress` signals,
//! `Apply` writes slot B; the boot simulator boots B. A caller outside the change allow-list
//! gets AccessDenied; steps out of order get `OutOfOrder`; an incomplete configuration is
//! refused at start with the missing keys named; `enigmctl update` reads the state as any uid
//! and is refused a download; after the reboot into B the restarted daemon checks the slot
//! against its manifest, marks it good and raises the rollback index, and its posture signal
//! for enigm-tscd reads `pass`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

use enigm_e2e::update::{
    UpdatedSetup, chown_tree, generate_keys, publish_release, release_options, serve_directory,
    updated_command,
};
use enigm_e2e::{Daemon, PrivateBus, Swtpm, enigmctl_package, ensure_system_users, require_tool};
use enigm_image::build::build;
use enigm_image::keys;
use enigm_installer::{RollbackStore, TpmRollbackStore};
use enigm_slots::simulator::boot;
use enigm_slots::{BootControl, GptBootControl, Slot};
use futures_util::StreamExt;

const NAME: &str = "org.enigm.Update1";
const PATH: &str = "/org/enigm/Update1";

/// (state, version, detail) from a method call, or the D-Bus error name.
async fn call(proxy: &zbus::Proxy<'_>, method: &str) -> Result<(String, String, String), String> {
    match proxy.call_method(method, &()).await {
        Ok(reply) => Ok(reply.body().deserialize().unwrap()),
        Err(zbus::Error::MethodError(name, _, _)) => Err(name.to_string()),
        Err(other) => Err(other.to_string()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_download_apply_over_the_bus() {
    require_tool("mkfs.erofs", "erofs-utils").unwrap();
    require_tool("dbus-send", "dbus").unwrap();
    ensure_system_users().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let key_dir = d.join("keys");
    generate_keys(&key_dir).unwrap();
    let v1 = build(&release_options(d, &key_dir, "1", 1, true, 400000).unwrap()).unwrap();
    let v2 = build(&release_options(d, &key_dir, "2", 2, false, 400000).unwrap()).unwrap();
    let repo_dir = d.join("repo");
    publish_release(&repo_dir, &key_dir, &v2).unwrap();
    let url = serve_directory(repo_dir.clone()).unwrap();

    // The device's sysroot: image keys in /etc, state (trusted root) for the daemon's user.
    let sysroot = d.join("sysroot");
    std::fs::create_dir_all(sysroot.join("etc/enigm")).unwrap();
    let image_keys = keys::public_map(&key_dir, keys::IMAGE).unwrap();
    std::fs::write(
        sysroot.join("etc/enigm/image-keys.json"),
        serde_json::to_vec(&image_keys).unwrap(),
    )
    .unwrap();
    let state = d.join("state");
    std::fs::create_dir_all(state.join("tuf")).unwrap();
    std::fs::copy(
        repo_dir.join("metadata/1.root.json"),
        state.join("tuf/root.json"),
    )
    .unwrap();
    let user = nix::unistd::User::from_name("enigm-updated")
        .unwrap()
        .unwrap();
    chown_tree(&state, &user).unwrap();
    let disk = v1.disk.clone().unwrap();

    // The rollback index lives in a TPM NV index (swtpm stands in for the device's TPM).
    let tpm = Swtpm::start().unwrap();
    // The health check waits for this name: a service of the new system that must come up.
    const SERVICE: &str = "org.enigm.HealthProbe1";
    let bus = PrivateBus::start(&format!(
        r#"<policy user="root"><allow own="{SERVICE}"/></policy>"#
    ))
    .unwrap();
    let bus_address = bus.address().to_owned();
    let setup = UpdatedSetup {
        sysroot: &sysroot,
        bus: &bus_address,
        url: &url,
        state: &state,
        disk: &disk,
    };
    let command = |complete: bool, slot: &str| {
        let mut c = updated_command(&setup, slot).unwrap();
        c.env("ENIGM_LOG_STDERR", "1")
            .env("ENIGM_UPDATED__UPDATE__ROLLBACK_STORE", tpm.tcti())
            .env(
                "ENIGM_UPDATED__UPDATE__HEALTH_BUS_NAMES",
                format!("[\"{SERVICE}\"]"),
            )
            .env("ENIGM_UPDATED__UPDATE__HEALTH_TIMEOUT_SECS", "2");
        if !complete {
            c.env_remove("ENIGM_UPDATED__UPDATE__METADATA_URL");
        }
        c
    };
    // Incomplete configuration: refused at start, the key named.
    let mut incomplete = Daemon::spawn(command(false, "a")).unwrap();
    let status = incomplete.wait_exit(Duration::from_secs(10)).unwrap();
    assert!(!status.success());
    assert!(
        incomplete.stderr().contains("update.metadata_url"),
        "{}",
        incomplete.stderr()
    );

    let daemon = Daemon::spawn(command(true, "a")).unwrap();
    bus.wait_for_name(NAME, Duration::from_secs(10))
        .await
        .unwrap_or_else(|e| panic!("{e}: {}", daemon.stderr()));
    let connection = bus.connect().await.unwrap();
    let proxy = zbus::Proxy::new(&connection, NAME, PATH, NAME)
        .await
        .unwrap();

    assert_eq!(call(&proxy, "GetStatus").await.unwrap().0, "idle");
    assert_eq!(
        call(&proxy, "Apply").await.unwrap_err(),
        "org.enigm.Update1.Error.OutOfOrder"
    );
    let (state_name, version, _) = call(&proxy, "Check")
        .await
        .unwrap_or_else(|e| panic!("{e}: {}", daemon.stderr()));
    assert_eq!(
        (state_name.as_str(), version.as_str()),
        ("available", "2.0")
    );

    // Another uid may check but not download.
    let denied = Command::new("dbus-send")
        .uid(65534)
        .args([
            &format!("--bus={}", bus.address()),
            "--print-reply",
            "--dest=org.enigm.Update1",
            PATH,
            "org.enigm.Update1.Download",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&denied.stderr);
    assert!(text.contains("AccessDenied"), "{text}");

    let mut progress = proxy.receive_signal("Progress").await.unwrap();
    let (state_name, _, _) = call(&proxy, "Download")
        .await
        .unwrap_or_else(|e| panic!("{e}: {}", daemon.stderr()));
    assert_eq!(state_name, "downloaded");
    let mut last = (String::new(), 0u64, 0u64);
    while let Ok(Some(signal)) =
        tokio::time::timeout(Duration::from_millis(500), progress.next()).await
    {
        last = signal.body().deserialize().unwrap();
    }
    assert_eq!(last.0, "download");
    assert_eq!((last.1, last.2), (v2.signed.root_size, v2.signed.root_size));

    let (state_name, version, slot) = call(&proxy, "Apply")
        .await
        .unwrap_or_else(|e| panic!("{e}: {}", daemon.stderr()));
    assert_eq!(
        (state_name.as_str(), version.as_str(), slot.as_str()),
        ("applied", "2.0", "B")
    );
    // enigmctl reads the same state, as any uid.
    let out = enigmctl_package(&bus)
        .unwrap()
        .uid(65534)
        .args(["update", "status", "--json"])
        .output()
        .unwrap();
    let status: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(status["state"], "applied");
    assert_eq!(status["detail"], "B");
    let out = enigmctl_package(&bus)
        .unwrap()
        .uid(65534)
        .args(["update", "download"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("AccessDenied"));
    drop(daemon);
    let mut control = GptBootControl::open(&disk).unwrap();
    assert_eq!(boot(&mut control).unwrap(), Slot::B);
    assert!(!control.slots().unwrap().b.successful);

    // After the reboot into B the service the health check waits for does not come up: the
    // slot stays unconfirmed and the posture signal says why.
    let daemon = Daemon::spawn(command(true, "b")).unwrap();
    bus.wait_for_name(NAME, Duration::from_secs(10))
        .await
        .unwrap_or_else(|e| panic!("{e}: {}", daemon.stderr()));
    let signal = zbus::Proxy::new(&connection, NAME, PATH, "org.enigm.PostureSignal1")
        .await
        .unwrap();
    let (result, observed) = signal_until(&signal, "fail").await;
    assert!(
        observed.contains("failed its health check") && observed.contains(SERVICE),
        "{result}: {observed}: {}",
        daemon.stderr()
    );
    drop(daemon);
    let mut control = GptBootControl::open(&disk).unwrap();
    assert!(!control.slots().unwrap().b.successful);

    // The next boot of B (a try left): the service is up; the daemon checks the slot against
    // its manifest and marks it good, raising the rollback index; enigm-tscd's signal reads
    // pass.
    assert_eq!(boot(&mut control).unwrap(), Slot::B);
    connection.request_name(SERVICE).await.unwrap();
    let daemon = Daemon::spawn(command(true, "b")).unwrap();
    bus.wait_for_name(NAME, Duration::from_secs(10))
        .await
        .unwrap_or_else(|e| panic!("{e}: {}", daemon.stderr()));
    let (result, observed) = signal_until(&signal, "pass").await;
    assert_eq!(result, "pass", "{observed}: {}", daemon.stderr());
    assert!(observed.contains("slot B confirmed"), "{observed}");
    let mut control = GptBootControl::open(&disk).unwrap();
    assert!(control.slots().unwrap().b.successful);
    assert_eq!(boot(&mut control).unwrap(), Slot::B);
    drop(daemon);
    let mut rollback = TpmRollbackStore::open(&tpm.tcti()).unwrap();
    assert_eq!(rollback.get().unwrap(), 2, "raised in the TPM");
    assert!(
        !state.join("rollback-index").exists(),
        "no file store in use"
    );
    drop(rollback);

    // Scheduled checks: with a one-second interval the daemon checks on its own.
    let mut scheduled = command(true, "b");
    scheduled.env("ENIGM_UPDATED__UPDATE__CHECK_INTERVAL_SECS", "1");
    let daemon = Daemon::spawn(scheduled).unwrap();
    bus.wait_for_name(NAME, Duration::from_secs(10))
        .await
        .unwrap_or_else(|e| panic!("{e}: {}", daemon.stderr()));
    let mut status = String::new();
    for _ in 0..40 {
        status = call(&proxy, "GetStatus").await.unwrap().0;
        if status == "up-to-date" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(status, "up-to-date", "{}", daemon.stderr());
}

/// The posture signal, read until its result is `wanted` (at most 20 s).
async fn signal_until(signal: &zbus::Proxy<'_>, wanted: &str) -> (String, String) {
    let mut last = (String::new(), String::new());
    for _ in 0..80 {
        last = signal
            .call_method("GetSignal", &())
            .await
            .unwrap()
            .body()
            .deserialize()
            .unwrap();
        if last.0 == wanted && !last.1.contains("awaiting") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    last
}
