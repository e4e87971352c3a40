//! `enigm-defensed`: the Active Defense daemon.
//!
//! Start-up order (see `enigm_runtime`): arguments → logging → config → indicators (the
//! image's bundles, and the signed feed only if its signature verifies) → privilege drop
//! (keeping only the capabilities to read other processes' `/proc` entries and files it does
//! not own) → seccomp → D-Bus name → READY → a first scan, then one every
//! `defense.scan_interval_secs`, until SIGTERM/SIGINT.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use caps::Capability;
use clap::Parser;
use enigm_defensed::config::{DAEMON, DefensedConfig, SYSTEM_USER};
use enigm_defensed::engine::Engine;
use enigm_defensed::service::{ActiveDefense, BUS_NAME, OBJECT_PATH, PostureSignal};
use enigm_runtime::args::DaemonArgs;
use enigm_runtime::authz::{CallerPolicy, passwd_lookup};
use enigm_runtime::lockdown::lock_down;
use enigm_runtime::sysroot::Sysroot;
use enigm_runtime::{config, logging, notify, shutdown};

/// The compiled system-call allow-list (`seccomp.json`).
const SECCOMP_PROGRAM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/seccomp.bpf"));

/// Reading `/proc/<pid>/exe` and `environ` of other users' processes, and system files the
/// daemon's user does not own; nothing else is kept.
const KEEP: &[Capability] = &[Capability::CAP_DAC_READ_SEARCH, Capability::CAP_SYS_PTRACE];

#[derive(Parser, Debug)]
#[command(
    name = "enigm-defensed",
    version,
    about = "Active Defense scans over D-Bus"
)]
struct Args {
    #[command(flatten)]
    daemon: DaemonArgs,
}

fn main() -> std::process::ExitCode {
    enigm_runtime::exit_status("enigm-defensed", run())
}

fn run() -> Result<()> {
    let args = Args::parse();
    logging::init("enigm-defensed");
    let sysroot = Sysroot::new(&args.daemon.sysroot);
    let config = config::load::<DefensedConfig>(DAEMON, &sysroot, std::env::vars())?.config;
    let policy = CallerPolicy::resolve(&config.authorization, passwd_lookup)?;
    let notifier = notify::Notifier::from_env()?;
    let interval = config.defense.scan_interval_secs;
    let engine = Engine::load(sysroot, config.clone()).context("starting the engine")?;

    lock_down(
        &config.privileges,
        SYSTEM_USER,
        KEEP,
        SECCOMP_PROGRAM,
        args.daemon.seccomp_probe,
    )?;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(
        Arc::new(Mutex::new(engine)),
        policy,
        notifier,
        interval,
    ))
}

async fn serve(
    engine: enigm_defensed::service::SharedEngine,
    policy: CallerPolicy,
    notifier: notify::Notifier,
    interval: u64,
) -> Result<()> {
    let stop = shutdown::stop_signal().context("installing signal handlers")?;
    let service = ActiveDefense::new(engine.clone(), policy);
    let connection = zbus::connection::Builder::system()
        .serve_at(OBJECT_PATH, service.clone())
        .serve_at(OBJECT_PATH, PostureSignal::new(engine))
        .build()
        .await
        .context("connecting to the system bus")?;
    connection
        .request_name(BUS_NAME)
        .await
        .with_context(|| format!("acquiring the bus name {BUS_NAME}"))?;
    notifier.ready(&format!("serving {BUS_NAME}"))?;
    tracing::info!(name = BUS_NAME, "ready");

    let emitter = zbus::object_server::SignalEmitter::new(&connection, OBJECT_PATH)
        .context("signal emitter")?
        .into_owned();
    let schedule = tokio::spawn(async move {
        loop {
            if let Err(err) = service.run_scan(&emitter).await {
                tracing::warn!(error = %err, "scheduled scan failed");
            }
            if interval == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_secs(interval)).await;
        }
    });
    let signal = stop.await;
    schedule.abort();
    tracing::info!(?signal, "stopping");
    notifier.stopping()?;
    connection.release_name(BUS_NAME).await.ok();
    Ok(())
}
