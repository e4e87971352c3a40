//! enigm-tscd end to end: a private dbus-daemon with the shipped bus policy, the real daemon
//! binary dropping to its real system user, and enigmctl.

use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Result;
use enigm_e2e::{Daemon, PrivateBus, enigmctl, tscd_command, tscd_fixture, uid_of};
use enigm_tscd::client::TrustSecurityCenterProxy;
use enigm_tscd::service::BUS_NAME;
use futures_util::StreamExt;

const START: Duration = Duration::from_secs(10);

/// A bus, a fixture copy and the daemon serving it.
struct Setup {
    daemon: Daemon,
    root: tempfile::TempDir,
    bus: PrivateBus,
}

async fn start(fixture: &str, configure: impl FnOnce(&mut Command)) -> Result<Setup> {
    let bus = PrivateBus::start("")?;
    let root = tscd_fixture(fixture)?;
    let mut command = tscd_command(&bus, root.path())?;
    command.env("ENIGM_TSCD__REFRESH__DEBOUNCE_MS", "20");
    configure(&mut command);
    let daemon = Daemon::spawn(command)?;
    if let Err(err) = bus.wait_for_name(BUS_NAME, START).await {
        anyhow::bail!("{err}; daemon stderr:\n{}", daemon.stderr());
    }
    Ok(Setup { daemon, root, bus })
}

fn json_posture(output: &std::process::Output) -> Result<serde_json::Value> {
    anyhow::ensure!(
        output.status.success(),
        "enigmctl failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(serde_json::from_slice(&output.stdout)?)
}

#[tokio::test]
async fn enigmctl_reads_the_posture_of_each_fixture() -> Result<()> {
    for (fixture, level, failing) in [
        ("hardened", 4, None),
        ("debian-default", 0, Some("boot.secure-boot")),
        ("android-unlocked", 0, Some("boot.verified-boot")),
    ] {
        let setup = start(fixture, |_| {}).await?;
        let posture = json_posture(&enigmctl(&setup.bus)?.args(["posture", "--json"]).output()?)?;
        assert_eq!(posture["level"], level, "{fixture}");
        assert_eq!(
            posture["checks"].as_array().map(Vec::len),
            Some(42),
            "{fixture}"
        );

        let human = enigmctl(&setup.bus)?.args(["posture"]).output()?;
        let text = String::from_utf8_lossy(&human.stdout);
        assert!(human.status.success());
        assert!(
            text.contains(&format!("level {level} of 4")),
            "{fixture}: {text}"
        );
        if let Some(id) = failing {
            let first_fail = text.find("FAIL").expect("a FAIL line");
            assert!(text[first_fail..].contains(id), "{fixture}: {text}");
            assert!(text.contains("why: ") && text.contains("fix: "), "{text}");
        }

        let gate = enigmctl(&setup.bus)?
            .args(["posture", "--min-level", "3"])
            .output()?;
        assert_eq!(
            gate.status.code(),
            Some(if level >= 3 { 0 } else { 3 }),
            "{fixture}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_fixture_change_signals_posture_changed_within_a_second() -> Result<()> {
    let setup = start("hardened", |_| {}).await?;
    let connection = setup.bus.connect().await?;
    let proxy = TrustSecurityCenterProxy::new(&connection).await?;
    assert_eq!(proxy.level().await?, 4);
    let mut changes = proxy.receive_posture_changed().await?;

    let started = Instant::now();
    std::fs::write(setup.root.path().join("sys/fs/selinux/enforce"), "0\n")?;
    // SELinux permissive fails level 1: wait for the signal that says so.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    loop {
        let signal = tokio::time::timeout_at(deadline, changes.next())
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "no PostureChanged to level 0 within 1 s; stderr:\n{}",
                    setup.daemon.stderr()
                )
            })?
            .expect("signal stream open");
        if *signal.args()?.level() == 0 {
            break;
        }
    }
    eprintln!("PostureChanged after {:?}", started.elapsed());

    let posture = proxy.get_posture().await?;
    let selinux = posture
        .checks
        .iter()
        .find(|c| c.id == "kernel.selinux-enforcing")
        .expect("check");
    assert_eq!(
        (selinux.result.as_str(), selinux.observed.as_str()),
        ("fail", "permissive")
    );
    assert_eq!(proxy.level().await?, 0);
    Ok(())
}

#[tokio::test]
async fn another_uid_may_read_but_not_refresh() -> Result<()> {
    let setup = start("hardened", |_| {}).await?;
    let nobody = uid_of("nobody").expect("nobody exists");

    let read = enigmctl(&setup.bus)?
        .args(["posture", "--json"])
        .uid(nobody)
        .output()?;
    assert_eq!(json_posture(&read)?["level"], 4);

    let refused = enigmctl(&setup.bus)?
        .args(["posture", "--refresh"])
        .uid(nobody)
        .output()?;
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("access denied") && stderr.contains(&format!("uid {nobody}")),
        "{stderr}"
    );

    let allowed = enigmctl(&setup.bus)?
        .args(["posture", "--refresh", "--json"])
        .output()?;
    assert_eq!(json_posture(&allowed)?["level"], 4);

    let log = setup.daemon.stderr();
    assert!(
        log.contains("refused a D-Bus call") && log.contains("Refresh"),
        "{log}"
    );
    Ok(())
}

#[tokio::test]
async fn the_daemon_runs_unprivileged_under_seccomp() -> Result<()> {
    let setup = start("hardened", |command| {
        command.arg("--seccomp-probe");
    })
    .await?;
    assert_eq!(setup.daemon.status_field("Seccomp")?, "2");
    let expected_uid = uid_of("enigm-tscd").expect("system user");
    let uids = setup.daemon.status_field("Uid")?;
    assert!(
        uids.split_whitespace()
            .all(|uid| uid == expected_uid.to_string()),
        "{uids}"
    );
    assert_eq!(setup.daemon.status_field("CapEff")?, "0000000000000000");
    assert_eq!(setup.daemon.status_field("CapPrm")?, "0000000000000000");
    assert_eq!(setup.daemon.status_field("NoNewPrivs")?, "1");
    let log = setup.daemon.stderr();
    assert!(
        log.contains("seccomp-probe: sysinfo refused: EPERM"),
        "{log}"
    );
    // And it still serves under the filter.
    let posture = json_posture(
        &enigmctl(&setup.bus)?
            .args(["posture", "--refresh", "--json"])
            .output()?,
    )?;
    assert_eq!(posture["level"], 4);
    Ok(())
}

#[tokio::test]
async fn malformed_config_exits_non_zero_naming_the_key() -> Result<()> {
    let bus = PrivateBus::start("")?;
    type Case<'a> = (&'a str, Option<(&'a str, &'a str)>, &'a [&'a str]);
    let cases: [Case; 4] = [
        (
            "[posture]\nmax_patch_age_dayz = 3\n",
            None,
            &["posture.max_patch_age_dayz", "tscd.toml"],
        ),
        (
            "[refresh]\ninterval_secs = \"often\"\n",
            None,
            &["refresh.interval_secs", "tscd.toml"],
        ),
        ("[authorization\n", None, &["tscd.toml", "line 1"]),
        (
            "",
            Some(("ENIGM_TSCD__POSTURE__DATA_PATH", "relative/path")),
            &["posture.data_path", "ENIGM_TSCD__POSTURE__DATA_PATH"],
        ),
    ];
    for (config, env, needles) in cases {
        let root = tscd_fixture("hardened")?;
        std::fs::create_dir_all(root.path().join("etc/enigm"))?;
        std::fs::write(root.path().join("etc/enigm/tscd.toml"), config)?;
        let mut command = tscd_command(&bus, root.path())?;
        if let Some((name, value)) = env {
            command.env(name, value);
        }
        let mut daemon = Daemon::spawn(command)?;
        let status = daemon.wait_exit(Duration::from_secs(10))?;
        let stderr = daemon.stderr();
        assert!(!status.success(), "{config:?} was accepted");
        for needle in needles {
            assert!(
                stderr.contains(needle),
                "{config:?}: stderr should name {needle:?}:\n{stderr}"
            );
        }
    }
    Ok(())
}

#[tokio::test]
async fn sd_notify_ready_then_stopping_on_sigterm() -> Result<()> {
    let socket_dir = tempfile::tempdir()?;
    std::fs::set_permissions(
        socket_dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )?;
    let socket_path = socket_dir.path().join("notify");
    let listener = UnixDatagram::bind(&socket_path)?;
    std::fs::set_permissions(
        &socket_path,
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )?;
    listener.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut setup = start("hardened", |command| {
        command.env("NOTIFY_SOCKET", &socket_path);
    })
    .await?;
    let mut buf = [0u8; 512];
    let n = listener.recv(&mut buf)?;
    let ready = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(ready.starts_with("READY=1\n"), "{ready}");
    assert!(
        ready.contains(&format!("MAINPID={}", setup.daemon.pid())),
        "{ready}"
    );

    let status = setup.daemon.terminate(Duration::from_secs(5))?;
    let n = listener.recv(&mut buf)?;
    assert_eq!(&buf[..n], b"STOPPING=1\n");
    assert!(status.success(), "clean exit on SIGTERM: {status}");
    let connection = setup.bus.connect().await?;
    let names = zbus::fdo::DBusProxy::new(&connection).await?;
    assert!(
        !names.name_has_owner(BUS_NAME.try_into()?).await?,
        "name released"
    );
    Ok(())
}

/// A stand-in for enigm-defensed that reports a failing signal.
struct FakeDefense;

#[zbus::interface(name = "org.enigm.PostureSignal1")]
impl FakeDefense {
    fn get_signal(&self) -> (String, String) {
        ("fail".into(), "3 indicators of compromise (Pegasus)".into())
    }
}

#[tokio::test]
async fn signals_from_other_daemons_raise_the_runtime_issue() -> Result<()> {
    // The peer daemon does not exist yet: a test fake owns its name under a test policy.
    let bus = PrivateBus::start(
        r#"<policy user="root"><allow own="org.enigm.ActiveDefense1"/></policy>
  <policy context="default"><allow send_destination="org.enigm.ActiveDefense1" send_interface="org.enigm.PostureSignal1"/></policy>"#,
    )?;
    let root = tscd_fixture("hardened")?;
    let _daemon = Daemon::spawn(tscd_command(&bus, root.path())?)?;
    bus.wait_for_name(BUS_NAME, START).await?;
    let connection = bus.connect().await?;
    let proxy = TrustSecurityCenterProxy::new(&connection).await?;

    let before = proxy.refresh().await?;
    let defense = before
        .checks
        .iter()
        .find(|c| c.id == "signal.active-defense")
        .expect("check");
    assert_eq!(
        (defense.result.as_str(), defense.observed.as_str()),
        ("unavailable", "enigm-defensed is not running")
    );
    assert!(!before.runtime_issue);

    let _fake = zbus::connection::Builder::address(bus.address())
        .serve_at("/org/enigm/ActiveDefense1", FakeDefense)
        .name("org.enigm.ActiveDefense1")
        .build()
        .await?;
    let after = proxy.refresh().await?;
    let defense = after
        .checks
        .iter()
        .find(|c| c.id == "signal.active-defense")
        .expect("check");
    assert_eq!(defense.result, "fail");
    assert!(defense.observed.contains("Pegasus"));
    assert!(after.runtime_issue);
    assert_eq!(after.level, 4, "runtime issues do not lower the level");
    assert!(proxy.runtime_issue().await?);
    Ok(())
}

#[tokio::test]
async fn started_as_its_own_user_like_systemd_user_does() -> Result<()> {
    let uid = uid_of("enigm-tscd").expect("system user");
    let bus = PrivateBus::start("")?;
    let root = tscd_fixture("hardened")?;
    let mut command = tscd_command(&bus, root.path())?;
    command.uid(uid).gid(
        nix::unistd::User::from_uid(uid.into())?
            .expect("user")
            .gid
            .as_raw(),
    );
    let daemon = Daemon::spawn(command)?;
    if let Err(err) = bus.wait_for_name(BUS_NAME, START).await {
        anyhow::bail!("{err}; daemon stderr:\n{}", daemon.stderr());
    }
    assert_eq!(daemon.status_field("Seccomp")?, "2");
    let posture = json_posture(&enigmctl(&bus)?.args(["posture", "--json"]).output()?)?;
    assert_eq!(posture["level"], 4);
    Ok(())
}

#[tokio::test]
async fn enigmctl_watch_prints_each_change() -> Result<()> {
    use std::io::{BufRead, BufReader};
    let setup = start("hardened", |_| {}).await?;
    let mut watch = enigmctl(&setup.bus)?
        .args(["posture", "--json", "--watch"])
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let stdout = watch.stdout.take().expect("stdout");
    let (lines_tx, lines_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let level =
        |line: &str| serde_json::from_str::<serde_json::Value>(line).map(|v| v["level"].clone());
    let first = lines_rx.recv_timeout(Duration::from_secs(10))?;
    assert_eq!(level(&first)?, 4);

    std::fs::write(
        setup.root.path().join("proc/sys/kernel/kptr_restrict"),
        "0\n",
    )?;
    let second = lines_rx.recv_timeout(Duration::from_secs(5))?;
    assert_eq!(level(&second)?, 1, "kptr_restrict=0 fails level 2");
    watch.kill()?;
    watch.wait()?;
    Ok(())
}

#[tokio::test]
async fn a_privileges_section_without_user_still_drops_to_the_system_user() -> Result<()> {
    let bus = PrivateBus::start("")?;
    let root = tscd_fixture("hardened")?;
    std::fs::create_dir_all(root.path().join("etc/enigm"))?;
    std::fs::write(
        root.path().join("etc/enigm/tscd.toml"),
        "[privileges]\ngroup = \"enigm-tscd\"\n",
    )?;
    let daemon = Daemon::spawn(tscd_command(&bus, root.path())?)?;
    if let Err(err) = bus.wait_for_name(BUS_NAME, START).await {
        anyhow::bail!("{err}; daemon stderr:\n{}", daemon.stderr());
    }
    let expected = uid_of("enigm-tscd").expect("system user").to_string();
    let uids = daemon.status_field("Uid")?;
    assert!(uids.split_whitespace().all(|uid| uid == expected), "{uids}");
    Ok(())
}
