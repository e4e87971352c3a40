//! `cargo xtask demo`: the device stack on this machine.
//!
//! Starts a private system-type dbus-daemon with the project's bus policy, runs `enigm-tscd`
//! on this machine's real `/` (dropping to its system user under its seccomp filter), and
//! prints the posture with `enigmctl posture`; then enrolls the demo device with a local
//! companion backend: a software TPM (swtpm) served by `enigm-attestd`, the `enigm-backend`
//! binary on loopback with a temporary config root (self-signed certificate generated on first
//! start and pinned by its fingerprint), `enigmctl enroll` and `enigmctl attest`, printing the
//! attestation result; then a verified A/B update on a disk image (`enigm_e2e::update_demo`):
//! built and published with a delta by `enigm-image`, checked, downloaded and applied by
//! `enigm-updated` through `enigmctl update`, booted and marked good; and a message between
//! two devices of two accounts through the backend's relay (`enigm_e2e::relay_demo`): keys
//! bound to each device's TPM, sent with `enigmctl message send`, only ciphertext in the
//! backend's database, read with `enigmctl message receive`. Everything it started is
//! stopped at the end.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use enigm_e2e::{
    Daemon, PrivateBus, Swtpm, attestd_command, backend_certificate, backend_command, enigmctl,
    free_port, tscd_command, wait_for_port, write_backend_config,
};
use enigm_tscd::service::BUS_NAME;

fn main() -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("demo: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(demo()) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("demo failed: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn step(text: &str) {
    println!("\n==> {text}");
}

async fn demo() -> Result<ExitCode> {
    step("starting a private system bus with the Enigm bus policy");
    let bus = PrivateBus::start("")?;
    println!("    {}", bus.address());

    step("starting enigm-tscd on this machine's / (as user enigm-tscd, seccomp on)");
    let command = tscd_command(&bus, Path::new("/"))?;
    let started = Instant::now();
    let mut daemon = Daemon::spawn(command)?;
    if let Err(err) = bus.wait_for_name(BUS_NAME, Duration::from_secs(10)).await {
        eprintln!("{}", daemon.stderr());
        return Err(err);
    }
    println!(
        "    {BUS_NAME} on the bus after {} ms; pid {}, Seccomp: {}, Uid: {}",
        started.elapsed().as_millis(),
        daemon.pid(),
        daemon.status_field("Seccomp")?,
        daemon
            .status_field("Uid")?
            .split_whitespace()
            .next()
            .unwrap_or("?"),
    );

    step("enigmctl posture --all");
    let status = enigmctl(&bus)?
        .args(["posture", "--all"])
        .status()
        .context("running enigmctl")?;
    if !status.success() {
        anyhow::bail!("enigmctl posture failed: {status}");
    }

    step("enigmctl posture --json --min-level 1  (exit code 3 means below level 1)");
    let output = enigmctl(&bus)?
        .args(["posture", "--json", "--min-level", "1"])
        .output()?;
    let json: serde_json::Value =
        serde_json::from_slice(&output.stdout).context("enigmctl --json output")?;
    println!(
        "    level {} · runtime issue {} · {} checks · exit code {}",
        json["level"],
        json["runtime_issue"],
        json["checks"].as_array().map(Vec::len).unwrap_or(0),
        output.status.code().unwrap_or(-1)
    );

    let attested = attestation(&bus).await;
    let updated = enigm_e2e::update_demo::run(&bus, step).await;

    step("stopping enigm-tscd with SIGTERM");
    let status = daemon.terminate(Duration::from_secs(5))?;
    println!("    exited: {status}");
    attested?;
    updated.context("the update demo")?;
    println!("\ndemo complete");
    Ok(ExitCode::SUCCESS)
}

/// Enrolls the demo device (swtpm) with a local backend and attests; stops what it started.
async fn attestation(bus: &PrivateBus) -> Result<()> {
    step("starting a software TPM (swtpm) and enigm-attestd on it");
    let tpm = Swtpm::start()?;
    let device_root = tempfile::Builder::new()
        .prefix("enigm-demo-device")
        .tempdir()?;
    std::fs::set_permissions(
        device_root.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )?;
    let mut attestd = Daemon::spawn(attestd_command(bus, device_root.path(), &tpm.tcti())?)?;
    if let Err(err) = bus
        .wait_for_name(enigm_attestd::service::BUS_NAME, Duration::from_secs(20))
        .await
    {
        eprintln!("{}", attestd.stderr());
        return Err(err);
    }
    println!(
        "    {} on the bus; pid {}, TPM at {}",
        enigm_attestd::service::BUS_NAME,
        attestd.pid(),
        tpm.tcti()
    );

    step("starting enigm-backend on loopback (temporary config root, self-signed TLS)");
    let backend_root = tempfile::Builder::new()
        .prefix("enigm-demo-backend")
        .tempdir()?;
    let grpc = format!("127.0.0.1:{}", free_port()?);
    let http = format!("127.0.0.1:{}", free_port()?);
    write_backend_config(backend_root.path(), &grpc, &http)?;
    let mut backend = Daemon::spawn(backend_command(backend_root.path())?)?;
    if let Err(err) = wait_for_port(grpc.parse()?, Duration::from_secs(60)) {
        eprintln!("{}", backend.stderr());
        return Err(err);
    }
    let cert_path = backend_certificate(backend_root.path());
    let cert = std::fs::read(&cert_path).context("reading the backend's certificate")?;
    let fingerprint = openssl::x509::X509::from_pem(&cert)?
        .digest(openssl::hash::MessageDigest::sha256())?
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":");
    println!("    gRPC on {grpc}, HTTP on {http}; pid {}", backend.pid());
    println!("    certificate {}", cert_path.display());
    println!("    SHA-256 fingerprint {fingerprint}");

    let mut result = enroll_and_attest(bus, &grpc, &fingerprint, &cert_path, device_root.path());
    if result.is_ok() {
        let access = enigm_e2e::messaging::BackendAccess {
            url: format!(
                "https://localhost:{}",
                grpc.rsplit(':').next().unwrap_or("")
            ),
            cert: cert_path.clone(),
        };
        let database_dir = backend_root.path().join("var/lib/enigm");
        result = enigm_e2e::relay_demo::run(&access, &database_dir, step)
            .await
            .context("the messaging demo");
    }

    step("stopping enigm-backend, enigm-attestd and swtpm");
    println!(
        "    enigm-backend exited: {}",
        backend.terminate(Duration::from_secs(10))?
    );
    println!(
        "    enigm-attestd exited: {}",
        attestd.terminate(Duration::from_secs(5))?
    );
    drop(tpm);
    result
}

fn enroll_and_attest(
    bus: &PrivateBus,
    grpc: &str,
    fingerprint: &str,
    cert_path: &Path,
    scratch: &Path,
) -> Result<()> {
    let backend = format!(
        "https://localhost:{}",
        grpc.rsplit(':').next().unwrap_or("")
    );
    let state_dir = scratch.join("ctl-state");
    let password = scratch.join("password");
    std::fs::write(&password, "demo password, not a real one\n")?;

    step(&format!(
        "enigmctl enroll --backend {backend} --fingerprint … --username demo --create-account"
    ));
    let status = enigmctl(bus)?
        .args([
            "enroll",
            "--backend",
            &backend,
            "--fingerprint",
            fingerprint,
        ])
        .args(["--username", "demo", "--create-account"])
        .arg("--password-file")
        .arg(&password)
        .arg("--state-dir")
        .arg(&state_dir)
        .status()
        .context("running enigmctl enroll")?;
    if !status.success() {
        anyhow::bail!("enigmctl enroll failed: {status}");
    }

    step(&format!(
        "enigmctl attest --backend {backend} --pin-cert {}",
        cert_path.display()
    ));
    let status = enigmctl(bus)?
        .args(["attest", "--backend", &backend, "--pin-cert"])
        .arg(cert_path)
        .arg("--state-dir")
        .arg(&state_dir)
        .status()
        .context("running enigmctl attest")?;
    if !status.success() {
        anyhow::bail!("enigmctl attest failed: {status}");
    }

    step("enigmctl attest --json  (summary)");
    let output = enigmctl(bus)?
        .args(["attest", "--json", "--backend", &backend, "--pin-cert"])
        .arg(cert_path)
        .arg("--state-dir")
        .arg(&state_dir)
        .output()
        .context("running enigmctl attest --json")?;
    if !output.status.success() {
        anyhow::bail!(
            "enigmctl attest --json failed: {}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let json: serde_json::Value =
        serde_json::from_slice(&output.stdout).context("enigmctl attest --json output")?;
    println!(
        "    device {} · tier {} · state {} · posture level {} ({}) · expires at {} · token {} bytes",
        json["handle"].as_str().unwrap_or("?"),
        json["tier"].as_str().unwrap_or("?"),
        json["state"].as_str().unwrap_or("?"),
        json["posture"]["level"],
        json["posture"]["source"].as_str().unwrap_or("?"),
        json["expires_at"],
        json["token"].as_str().map(str::len).unwrap_or(0),
    );
    Ok(())
}
