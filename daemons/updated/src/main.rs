//! `enigm-updated`: the update daemon.
//!
//! Start-up order (see `enigm_runtime`): arguments → logging → config → privileged resources
//! (the disk, opened before the privilege drop) → privilege drop → seccomp → engine → confirm
//! a slot written before the reboot → D-Bus name → READY → serve until SIGTERM/SIGINT.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Parser;
use enigm_installer::{FileRollbackStore, RollbackStore, TpmRollbackStore};
use enigm_runtime::args::DaemonArgs;
use enigm_runtime::authz::{CallerPolicy, passwd_lookup};
use enigm_runtime::lockdown::lock_down;
use enigm_runtime::sysroot::Sysroot;
use enigm_runtime::{config, logging, notify, shutdown};
use enigm_slots::GptBootControl;
use enigm_tuf::transport::TlsConfig;
use enigm_update_engine::{Engine, EngineConfig};
use enigm_updated::config::{
    DAEMON, RollbackLocation, SYSTEM_USER, TPM_DEVICE, UpdatedConfig, parse_slot,
    rollback_location, slot_from_cmdline,
};
use enigm_updated::health::confirm_after_boot;
use enigm_updated::schedule::check_on_schedule;
use enigm_updated::service::{BUS_NAME, OBJECT_PATH, PostureSignal, Update};

/// The compiled system-call allow-list (`seccomp.json`).
const SECCOMP_PROGRAM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/seccomp.bpf"));

#[derive(Parser, Debug)]
#[command(
    name = "enigm-updated",
    version,
    about = "Verified A/B updates over D-Bus"
)]
struct Args {
    #[command(flatten)]
    daemon: DaemonArgs,
}

fn main() -> std::process::ExitCode {
    enigm_runtime::exit_status("enigm-updated", run())
}

fn run() -> Result<()> {
    let args = Args::parse();
    logging::init("enigm-updated");
    let sysroot = Sysroot::new(&args.daemon.sysroot);
    let config = config::load::<UpdatedConfig>(DAEMON, &sysroot, std::env::vars())?.config;
    let missing = config.update.missing();
    if !missing.is_empty() {
        bail!("configuration incomplete: set {}", missing.join(", "));
    }
    let policy = CallerPolicy::resolve(&config.authorization, passwd_lookup)?;
    let notifier = notify::Notifier::from_env()?;
    let update = &config.update;

    let running = match update.running_slot.as_str() {
        "auto" => {
            let cmdline = std::fs::read_to_string(sysroot.path("/proc/cmdline"))
                .context("reading /proc/cmdline for enigm.slot=")?;
            slot_from_cmdline(&cmdline).context("no enigm.slot=a|b on the kernel command line")?
        }
        other => parse_slot(other)
            .with_context(|| format!("update.running_slot: {other:?} is not a, b or auto"))?,
    };
    let keys_path = sysroot.path(&update.image_keys_file);
    let image_keys: BTreeMap<String, serde_json::Value> = serde_json::from_slice(
        &std::fs::read(&keys_path).with_context(|| format!("reading {}", keys_path.display()))?,
    )
    .with_context(|| format!("{}: not a JSON object of keys", keys_path.display()))?;

    // The disk is opened while the daemon may still be root; the descriptor stays usable.
    let disk_path = Path::new(&update.disk);
    let control = GptBootControl::open(disk_path)
        .with_context(|| format!("opening the disk {}", disk_path.display()))?;

    // The TPM device node is opened while the daemon may still be root, like the disk.
    let state_dir = PathBuf::from(&update.state_dir);
    let tpm_present = sysroot.path(TPM_DEVICE).exists();
    let rollback: Box<dyn RollbackStore + Send> =
        match rollback_location(&update.rollback_store, tpm_present) {
            RollbackLocation::Tpm(tcti) => Box::new(
                TpmRollbackStore::open(&tcti)
                    .with_context(|| format!("update.rollback_store: the TPM at {tcti}"))?,
            ),
            RollbackLocation::File => {
                Box::new(FileRollbackStore::new(state_dir.join("rollback-index")))
            }
        };

    lock_down(
        &config.privileges,
        SYSTEM_USER,
        &[],
        SECCOMP_PROGRAM,
        args.daemon.seccomp_probe,
    )?;

    let engine = Engine::new(
        EngineConfig {
            metadata_url: update.metadata_url.clone(),
            targets_url: update.targets_url.clone(),
            state_dir: state_dir.clone(),
            hardware: update.hardware.clone(),
            image_keys,
            image_threshold: update.image_threshold,
            tries: update.tries,
            tls: TlsConfig {
                ca_file: (!update.tls_ca_file.is_empty())
                    .then(|| sysroot.path(&update.tls_ca_file)),
            },
        },
        control,
        running,
        rollback,
    );
    tracing::info!(%running, hardware = %update.hardware, "update engine ready");
    let health = Health {
        names: update.health_bus_names.clone(),
        timeout: Duration::from_secs(update.health_timeout_secs),
        check_every: Duration::from_secs(update.check_interval_secs),
    };

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(
        Arc::new(Mutex::new(engine)),
        policy,
        health,
        notifier,
    ))
}

/// The health check of a newly booted slot, and the check schedule.
struct Health {
    names: Vec<String>,
    timeout: Duration,
    check_every: Duration,
}

async fn serve(
    engine: enigm_updated::service::SharedEngine,
    policy: CallerPolicy,
    health: Health,
    notifier: notify::Notifier,
) -> Result<()> {
    let stop = shutdown::stop_signal().context("installing signal handlers")?;
    let connection = zbus::connection::Builder::system()
        .serve_at(OBJECT_PATH, Update::new(engine.clone(), policy))
        .serve_at(OBJECT_PATH, PostureSignal::new(engine.clone()))
        .build()
        .await
        .context("connecting to the system bus")?;
    connection
        .request_name(BUS_NAME)
        .await
        .with_context(|| format!("acquiring the bus name {BUS_NAME}"))?;
    notifier.ready(&format!("serving {BUS_NAME}"))?;
    tracing::info!(name = BUS_NAME, "ready");
    // A slot written before the reboot: once its services are up, confirm it (or record that
    // it is unhealthy or fell back).
    tokio::spawn(confirm_after_boot(
        engine,
        connection.clone(),
        health.names,
        health.timeout,
    ));
    if !health.check_every.is_zero() {
        tokio::spawn(check_on_schedule(connection.clone(), health.check_every));
    }
    let signal = stop.await;
    tracing::info!(?signal, "stopping");
    notifier.stopping()?;
    connection.release_name(BUS_NAME).await.ok();
    Ok(())
}
