//! `enigm-attestd`: the TPM attester daemon.
//!
//! Start-up order (see `enigm_runtime`): arguments → logging → config → privileged resources
//! (event log, TPM connection) → privilege drop → seccomp → TPM worker and first contact (EK,
//! AK) → D-Bus name → READY → serve until SIGTERM/SIGINT.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Parser;
use enigm_attestd::attester::Attester;
use enigm_attestd::config::{AttestdConfig, DAEMON, SYSTEM_USER};
use enigm_attestd::service::{Attestation, BUS_NAME, OBJECT_PATH, PostureSignal};
use enigm_attestd::tss::TssTpm;
use enigm_attestd::{eventlog, worker};
use enigm_runtime::args::DaemonArgs;
use enigm_runtime::authz::{CallerPolicy, passwd_lookup};
use enigm_runtime::lockdown::lock_down;
use enigm_runtime::sysroot::Sysroot;
use enigm_runtime::{config, logging, notify, shutdown};

/// The compiled system-call allow-list (`seccomp.json`).
const SECCOMP_PROGRAM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/seccomp.bpf"));

#[derive(Parser, Debug)]
#[command(
    name = "enigm-attestd",
    version,
    about = "TPM 2.0 attester: evidence and credential activation over D-Bus"
)]
struct Args {
    #[command(flatten)]
    daemon: DaemonArgs,
}

fn main() -> std::process::ExitCode {
    enigm_runtime::exit_status("enigm-attestd", run())
}

fn run() -> Result<()> {
    let args = Args::parse();
    logging::init("enigm-attestd");
    let sysroot = Sysroot::new(&args.daemon.sysroot);
    let config = config::load::<AttestdConfig>(DAEMON, &sysroot, std::env::vars())?.config;
    let policy = CallerPolicy::resolve(&config.authorization, passwd_lookup)?;
    let notifier = notify::Notifier::from_env()?;

    // Privileged resources, opened while the daemon may still be root: the event log
    // (securityfs is root-only) and the TPM device. A TPM that is not there yet is not fatal:
    // the status says so and every request tries again.
    let credentials = std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from);
    let event_log = eventlog::read(&sysroot, &config.tpm.event_log, credentials.as_deref())
        .with_context(|| format!("reading the event log {}", config.tpm.event_log))?;
    tracing::info!(bytes = event_log.len(), "event log read");
    let mut tpm = TssTpm::new(
        &config.tpm.tcti,
        config.tpm.ek_algorithm,
        Path::new(&config.tpm.state_dir),
    );
    if let Err(err) = tpm.connect() {
        tracing::warn!(error = %err, "TPM not reachable at start-up; will retry on demand");
    }

    lock_down(
        &config.privileges,
        SYSTEM_USER,
        &[],
        SECCOMP_PROGRAM,
        args.daemon.seccomp_probe,
    )?;

    let attester = Attester::new(
        tpm,
        config.tpm.pcrs.clone(),
        event_log,
        config.tpm.ek_algorithm.as_str(),
    );
    let worker = worker::spawn(attester).context("starting the TPM worker thread")?;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(worker, policy, notifier))
}

async fn serve(
    worker: worker::WorkerHandle,
    policy: CallerPolicy,
    notifier: notify::Notifier,
) -> Result<()> {
    let stop = shutdown::stop_signal().context("installing signal handlers")?;
    // First contact before taking the name: the EK is derived, the AK created or loaded, so the
    // first status anyone reads is true.
    let status = worker.refresh().await?;
    if status.ak_loaded {
        tracing::info!(ak_name = %status.ak_name, ek = %status.ek_algorithm, "attestation key ready");
    } else {
        tracing::warn!(error = %status.last_error, "no attestation key yet");
    }
    let connection = zbus::connection::Builder::system()
        .serve_at(OBJECT_PATH, Attestation::new(worker.clone(), policy))
        .serve_at(OBJECT_PATH, PostureSignal::new(worker))
        .build()
        .await
        .context("connecting to the system bus")?;
    connection
        .request_name(BUS_NAME)
        .await
        .with_context(|| format!("acquiring the bus name {BUS_NAME}"))?;

    notifier.ready(&format!("serving {BUS_NAME}"))?;
    tracing::info!(name = BUS_NAME, "ready");
    let signal = stop.await;
    tracing::info!(?signal, "stopping");
    notifier.stopping()?;
    connection.release_name(BUS_NAME).await.ok();
    Ok(())
}
