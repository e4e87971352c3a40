//! The device side of the companion backend, end to end: a private bus, a software TPM
//! (swtpm) served by the real `enigm-attestd`, the real `enigm-tscd` on a fixture tree, the
//! backend started in-process on loopback, and the real `enigmctl` binary enrolling the device
//! and attesting. The result token must verify offline (enigm-backend-tokens) against the
//! server's public key, name the enrolled device, and carry the posture enigm-tscd reported;
//! every attestation gets a fresh token. Refusals: a wrong password, a wrong pinned fingerprint
//! or certificate, an unknown handle, a missing attester, an unreachable backend; and the
//! posture fallback when enigm-tscd is not running.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

use std::process::{Command, Output};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Result, bail};
use enigm_backend::{Config, Running};
use enigm_e2e::{
    Daemon, PrivateBus, Swtpm, attestd_command, enigmctl_package, tscd_fixture,
    tscd_package_command, write_backend_config,
};
use serde_json::Value;

const PASSWORD: &str = "correct horse battery staple";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Runs a command off the runtime's threads (the backend serves on them meanwhile).
async fn run(mut command: Command) -> Output {
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

fn json(output: &Output) -> Value {
    assert!(
        output.status.success(),
        "enigmctl failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

async fn start_daemon(bus: &PrivateBus, command: Command, name: &str) -> Result<Daemon> {
    let daemon = Daemon::spawn(command)?;
    if let Err(err) = bus.wait_for_name(name, Duration::from_secs(20)).await {
        bail!("{err}; stderr:\n{}", daemon.stderr());
    }
    Ok(daemon)
}

struct Setup {
    _tpm: Swtpm,
    bus: PrivateBus,
    _device_root: tempfile::TempDir,
    _fixture: tempfile::TempDir,
    attestd: Option<Daemon>,
    tscd: Option<Daemon>,
    _backend_root: tempfile::TempDir,
    running: Option<Running>,
    work: tempfile::TempDir,
}

impl Setup {
    async fn start() -> Result<Self> {
        let tpm = Swtpm::start()?;
        let bus = PrivateBus::start("")?;
        let device_root = tempfile::Builder::new().prefix("enigm-device").tempdir()?;
        std::fs::set_permissions(
            device_root.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )?;
        let attestd = start_daemon(
            &bus,
            attestd_command(&bus, device_root.path(), &tpm.tcti())?,
            enigm_attestd::service::BUS_NAME,
        )
        .await?;
        let fixture = tscd_fixture("hardened")?;
        let tscd = start_daemon(
            &bus,
            tscd_package_command(&bus, fixture.path())?,
            enigm_tscd::service::BUS_NAME,
        )
        .await?;
        let backend_root = tempfile::Builder::new().prefix("enigm-backend").tempdir()?;
        write_backend_config(backend_root.path(), "127.0.0.1:0", "127.0.0.1:0")?;
        let config = Config::load(backend_root.path(), [])?;
        let running = enigm_backend::start(backend_root.path(), config).await?;
        let work = tempfile::tempdir()?;
        std::fs::write(work.path().join("password"), format!("{PASSWORD}\n"))?;
        std::fs::write(work.path().join("backend.crt"), &running.cert_pem)?;
        Ok(Self {
            _tpm: tpm,
            bus,
            _device_root: device_root,
            _fixture: fixture,
            attestd: Some(attestd),
            tscd: Some(tscd),
            _backend_root: backend_root,
            running: Some(running),
            work,
        })
    }

    fn running(&self) -> &Running {
        self.running.as_ref().unwrap()
    }

    fn url(&self) -> String {
        format!("https://localhost:{}", self.running().grpc_addr.port())
    }

    /// `enigmctl SUBCOMMAND --backend … --pin-cert … --state-dir …`.
    fn enigmctl(&self, subcommand: &str) -> Command {
        self.enigmctl_at(subcommand, &self.url())
    }

    fn enigmctl_at(&self, subcommand: &str, url: &str) -> Command {
        let mut command = enigmctl_package(&self.bus).unwrap();
        command
            .arg(subcommand)
            .arg("--backend")
            .arg(url)
            .arg("--state-dir")
            .arg(self.work.path().join("state"));
        command
    }

    fn pinned(&self, subcommand: &str) -> Command {
        let mut command = self.enigmctl(subcommand);
        command
            .arg("--pin-cert")
            .arg(self.work.path().join("backend.crt"));
        command
    }

    async fn enroll(&self, username: &str) -> Value {
        let mut command = self.pinned("enroll");
        command
            .args(["--create-account", "--json", "--username", username])
            .arg("--password-file")
            .arg(self.work.path().join("password"));
        json(&run(command).await)
    }

    fn verify(&self, token: &str, handle: &str) -> enigm_backend_tokens::Claims {
        let epochs = |d: &str| (d == handle).then_some(0u64);
        enigm_backend_tokens::verify(token, &self.running().verification_keys, now(), &epochs)
            .unwrap()
    }

    async fn shutdown(mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown().await;
        }
        for daemon in [self.tscd.take(), self.attestd.take()]
            .into_iter()
            .flatten()
        {
            let mut daemon = daemon;
            daemon.terminate(Duration::from_secs(5)).unwrap();
        }
    }
}

/// The posture enigm-tscd reports, as `enigmctl posture --json` prints it.
async fn tscd_level(setup: &Setup) -> u64 {
    let mut command = enigmctl_package(&setup.bus).unwrap();
    command.args(["posture", "--json"]);
    let output = run(command).await;
    let value: Value = serde_json::from_slice(&output.stdout).unwrap();
    value["level"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enroll_then_attest_gives_tokens_a_relying_party_verifies() {
    let setup = Setup::start().await.unwrap();

    let enrolled = setup.enroll("alice").await;
    let handle = enrolled["handle"].as_str().unwrap().to_owned();
    assert!(!handle.is_empty());
    assert_eq!(enrolled["state"], "trusted", "{enrolled}");
    assert!(
        enrolled["recovery_phrase"]
            .as_str()
            .is_some_and(|p| !p.is_empty())
    );
    let saved: Value = serde_json::from_slice(
        &std::fs::read(setup.work.path().join("state/device.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(saved["handle"], handle.as_str());

    // Attest with the saved handle.
    let mut command = setup.pinned("attest");
    command.arg("--json");
    let first = json(&run(command).await);
    let tier = first["tier"].as_str().unwrap();
    assert!(tier == "affirming" || tier == "warning", "{first}");
    assert_eq!(first["handle"], handle.as_str());
    assert_eq!(first["posture"]["source"], "enigm-tscd");
    assert_eq!(first["state"], "trusted");
    for claim in ["ak", "signature", "nonce", "pcr-digest"] {
        let found = first["claims"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == claim)
            .unwrap_or_else(|| panic!("claim {claim} in {first}"));
        assert_eq!(found["tier"], "affirming", "{found}");
    }
    let token = first["token"].as_str().unwrap();
    let claims = setup.verify(token, &handle);
    assert_eq!(claims.sub, handle);
    assert_eq!(claims.tier.as_str(), tier);
    assert_eq!(
        u64::from(claims.posture.level),
        tscd_level(&setup).await,
        "the token carries the level enigm-tscd reported"
    );
    assert_eq!(first["posture"]["level"], u64::from(claims.posture.level));
    assert_eq!(first["expires_at"], claims.exp);
    assert!(claims.exp > now() && claims.exp <= now() + 5 * 60 + 5);
    // A relying party whose check knows another device epoch refuses it.
    let later = |d: &str| (d == handle).then_some(claims.epoch + 1);
    assert!(
        enigm_backend_tokens::verify(token, &setup.running().verification_keys, now(), &later)
            .is_err()
    );

    // A second attestation, pinned by fingerprint and with an explicit handle: a fresh token.
    let mut command = setup.enigmctl("attest");
    command
        .arg("--fingerprint")
        .arg(&setup.running().fingerprint)
        .args(["--handle", &handle, "--json"]);
    let second = json(&run(command).await);
    let second_token = second["token"].as_str().unwrap();
    assert_ne!(second_token, token);
    let second_claims = setup.verify(second_token, &handle);
    assert_eq!(second_claims.sub, handle);
    assert_ne!(second_claims.jti, claims.jti);

    // Human output names the tier and the device.
    let output = run(setup.pinned("attest")).await;
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains(&handle), "{text}");
    assert!(text.contains(&tier.to_uppercase()), "{text}");

    setup.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_and_the_posture_fallback_are_explained() {
    let mut setup = Setup::start().await.unwrap();
    let enrolled = setup.enroll("bob").await;
    let handle = enrolled["handle"].as_str().unwrap().to_owned();

    // A wrong password: access denied, and no device handle is saved over the enrolled one.
    let wrong_password = setup.work.path().join("wrong-password");
    std::fs::write(&wrong_password, "not the password\n").unwrap();
    let mut command = setup.pinned("enroll");
    command
        .args(["--username", "bob", "--password-file"])
        .arg(&wrong_password);
    let output = run(command).await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("access denied by the backend"), "{stderr}");
    let saved: Value = serde_json::from_slice(
        &std::fs::read(setup.work.path().join("state/device.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(saved["handle"], handle.as_str());

    // A fingerprint that is not the backend's: refused before anything is sent.
    let mut command = setup.enigmctl("attest");
    command.arg("--fingerprint").arg("AB".repeat(32));
    let output = run(command).await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("certificate mismatch"), "{stderr}");

    // A pinned certificate that is not the backend's.
    let other = tempfile::tempdir().unwrap();
    write_backend_config(other.path(), "127.0.0.1:0", "127.0.0.1:0").unwrap();
    let other_running = enigm_backend::start(other.path(), Config::load(other.path(), []).unwrap())
        .await
        .unwrap();
    let wrong = setup.work.path().join("other.crt");
    std::fs::write(&wrong, &other_running.cert_pem).unwrap();
    other_running.shutdown().await;
    let mut command = setup.enigmctl("attest");
    command.arg("--pin-cert").arg(&wrong);
    let output = run(command).await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("certificate mismatch"), "{stderr}");

    // An unknown handle: the backend refuses.
    let mut command = setup.pinned("attest");
    command.args(["--handle", "not-a-device"]);
    let output = run(command).await;
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("GetChallenge"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    // Without enigm-tscd: level 0, a runtime issue, and the output says the posture was
    // unavailable (the digest of an empty report is bound into the quote).
    setup
        .tscd
        .take()
        .unwrap()
        .terminate(Duration::from_secs(5))
        .unwrap();
    let mut command = setup.pinned("attest");
    command.arg("--json");
    let result = json(&run(command).await);
    assert_eq!(result["posture"]["source"], "unavailable", "{result}");
    assert_eq!(result["posture"]["level"], 0);
    assert_eq!(result["posture"]["runtime_issue"], true);
    assert_eq!(
        result["posture"]["digest"],
        hex::encode(openssl::sha::sha256(b""))
    );
    let claims = setup.verify(result["token"].as_str().unwrap(), &handle);
    assert_eq!(claims.posture.level, 0);
    assert!(claims.posture.runtime_issue);
    let output = run(setup.pinned("attest")).await;
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("posture not available"),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );

    // Without enigm-attestd: a clear error.
    setup
        .attestd
        .take()
        .unwrap()
        .terminate(Duration::from_secs(5))
        .unwrap();
    let output = run(setup.pinned("attest")).await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("enigm-attestd is not running"), "{stderr}");

    // A backend that is gone: unreachable.
    let port = setup.running().grpc_addr.port();
    setup.running.take().unwrap().shutdown().await;
    let mut command = setup.enigmctl_at("attest", &format!("https://127.0.0.1:{port}"));
    command
        .arg("--pin-cert")
        .arg(setup.work.path().join("backend.crt"));
    let output = run(command).await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("backend unreachable"), "{stderr}");

    setup.shutdown().await;
}
