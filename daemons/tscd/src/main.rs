//! `enigm-tscd`: the Trust Security Center daemon.
//!
//! Start-up order (see `enigm_runtime`): arguments → logging → config → privilege drop →
//! seccomp → first evaluation → D-Bus name → READY → serve until SIGTERM/SIGINT.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use enigm_runtime::args::DaemonArgs;
use enigm_runtime::authz::{CallerPolicy, passwd_lookup};
use enigm_runtime::lockdown::lock_down;
use enigm_runtime::sysroot::Sysroot;
use enigm_runtime::{config, logging, notify, shutdown};
use enigm_tscd::config::{DAEMON, SYSTEM_USER, TscdConfig};
use enigm_tscd::engine::{self, Trigger};
use enigm_tscd::evaluate::Evaluator;
use enigm_tscd::service::{BUS_NAME, OBJECT_PATH, TrustSecurityCenter};
use enigm_tscd::watch::{Watcher, watch_dirs};
use tokio::sync::{RwLock, mpsc};

/// The compiled system-call allow-list (`seccomp.json`).
const SECCOMP_PROGRAM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/seccomp.bpf"));

#[derive(Parser, Debug)]
#[command(
    name = "enigm-tscd",
    version,
    about = "Trust Security Center: device security posture over D-Bus"
)]
struct Args {
    #[command(flatten)]
    daemon: DaemonArgs,
    /// Evaluate once, print the posture as JSON and exit (no bus, no privilege change).
    #[arg(long)]
    once: bool,
}

fn main() -> std::process::ExitCode {
    enigm_runtime::exit_status("enigm-tscd", run())
}

fn run() -> Result<()> {
    let args = Args::parse();
    logging::init("enigm-tscd");
    let sysroot = Sysroot::new(&args.daemon.sysroot);
    let loaded = config::load::<TscdConfig>(DAEMON, &sysroot, std::env::vars())?;
    let config = loaded.config;
    let evaluator = Evaluator::new(sysroot, config.posture.clone());
    if args.once {
        let posture = evaluator.evaluate(&Default::default(), engine::now_unix());
        println!("{}", serde_json_string(&posture)?);
        return Ok(());
    }
    let policy = CallerPolicy::resolve(&config.authorization, passwd_lookup)?;
    let notifier = notify::Notifier::from_env()?;

    // Drop to the daemon's user with no capabilities, then lock the syscall surface: from here
    // on nothing runs with more than it needs.
    lock_down(
        &config.privileges,
        SYSTEM_USER,
        &[],
        SECCOMP_PROGRAM,
        args.daemon.seccomp_probe,
    )?;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(
        evaluator,
        policy,
        notifier,
        config.refresh.interval_secs.get(),
        config.refresh.debounce_ms,
    ))
}

async fn serve(
    evaluator: Evaluator,
    policy: CallerPolicy,
    notifier: notify::Notifier,
    interval_secs: u64,
    debounce_ms: u64,
) -> Result<()> {
    let stop = shutdown::stop_signal().context("installing signal handlers")?;
    let first = evaluator.evaluate(&Default::default(), engine::now_unix());
    let posture = Arc::new(RwLock::new(first));
    let (trigger_tx, trigger_rx) = mpsc::channel::<Trigger>(16);
    let service = TrustSecurityCenter::new(posture.clone(), policy, trigger_tx.clone());
    let connection = zbus::connection::Builder::system()
        .serve_at(OBJECT_PATH, service)
        .build()
        .await
        .context("connecting to the system bus")?;
    // Read the other daemons' signals before taking the name, so the first posture anyone sees
    // is complete.
    *posture.write().await = engine::evaluate_now(&evaluator, Some(&connection)).await;
    connection
        .request_name(BUS_NAME)
        .await
        .with_context(|| format!("acquiring the bus name {BUS_NAME}"))?;

    let watcher =
        Watcher::new(&watch_dirs(&evaluator.watch_paths())).context("starting inotify")?;
    tracing::info!(directories = watcher.watched(), "watching check inputs");
    watcher
        .spawn(trigger_tx)
        .context("starting the file-watching thread")?;
    let engine = engine::run(
        evaluator,
        connection.clone(),
        posture,
        trigger_rx,
        Duration::from_secs(interval_secs),
        Duration::from_millis(debounce_ms),
    );

    notifier.ready(&format!("serving {BUS_NAME}"))?;
    tracing::info!(name = BUS_NAME, "ready");
    tokio::select! {
        signal = stop => tracing::info!(?signal, "stopping"),
        result = engine => result.context("evaluation engine failed")?,
    }
    notifier.stopping()?;
    connection.release_name(BUS_NAME).await.ok();
    Ok(())
}

fn serde_json_string(posture: &enigm_tscd::model::Posture) -> Result<String> {
    Ok(serde_json::to_string_pretty(posture)?)
}
