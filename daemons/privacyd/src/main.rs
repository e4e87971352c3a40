//! `enigm-privacyd`: the Privacy Mode daemon.
//!
//! Start-up order (see `enigm_runtime`): arguments → logging → config and profiles (a bad
//! profile stops the daemon, named) → the persisted state (a corrupt one means lockdown:
//! fail closed) → privilege drop (keeping `CAP_NET_ADMIN` for nftables and
//! `CAP_DAC_OVERRIDE` for `/dev/rfkill` and the sysfs switches) → seccomp → reconcile the
//! kernel with the persisted state → D-Bus name → READY → serve until SIGTERM/SIGINT.
//!
//! `--apply-persisted` stops after the reconcile: the boot unit runs it before
//! `network-pre.target`, so a persisted lockdown is in force before any interface is up.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, bail};
use caps::Capability;
use clap::Parser;
use enigm_privacyd::config::{DAEMON, PrivacydConfig, SYSTEM_USER};
use enigm_privacyd::mode::{Backends, PrivacyMode};
use enigm_privacyd::nft::Nftables;
use enigm_privacyd::rfkill::Rfkill;
use enigm_privacyd::sensors::SysfsSensors;
use enigm_privacyd::service::{
    BUS_NAME, OBJECT_PATH, PostureSignal, PrivacyModeService, SharedMode, announce,
};
use enigm_privacyd::state::{self, Persisted, StateError};
use enigm_runtime::args::DaemonArgs;
use enigm_runtime::authz::{CallerPolicy, passwd_lookup};
use enigm_runtime::lockdown::lock_down;
use enigm_runtime::sysroot::Sysroot;
use enigm_runtime::{config, logging, notify, shutdown};

/// The compiled system-call allow-list (`seccomp.json`).
const SECCOMP_PROGRAM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/seccomp.bpf"));

/// The profile a corrupt state file falls back to.
const FAIL_CLOSED_PROFILE: &str = "lockdown";

#[derive(Parser, Debug)]
#[command(
    name = "enigm-privacyd",
    version,
    about = "Privacy Mode: network lockdown and radio, camera and microphone kill switches"
)]
struct Args {
    #[command(flatten)]
    daemon: DaemonArgs,
    /// Make the kernel match the persisted choice, then exit (the boot unit, before any
    /// network interface comes up).
    #[arg(long)]
    apply_persisted: bool,
}

fn main() -> std::process::ExitCode {
    enigm_runtime::exit_status("enigm-privacyd", run())
}

fn run() -> Result<()> {
    let args = Args::parse();
    logging::init("enigm-privacyd");
    let sysroot = Sysroot::new(&args.daemon.sysroot);
    let config = config::load::<PrivacydConfig>(DAEMON, &sysroot, std::env::vars())?.config;
    let profiles = config
        .profiles()
        .context("refusing to start with a malformed privacy profile")?;
    let policy = CallerPolicy::resolve(&config.authorization, passwd_lookup)?;
    let tor_uid = match config.privacy.tor_user.as_str() {
        "" => None,
        user => Some(
            passwd_lookup(user)
                .with_context(|| format!("privacy.tor_user: no user named `{user}`"))?,
        ),
    };
    let state_file = PathBuf::from(&config.privacy.state_file);
    let persisted = match state::load(&state_file) {
        Ok(state) => state.unwrap_or_default(),
        Err(err @ StateError::Corrupt { .. }) => {
            tracing::error!(error = %err, "the persisted state is unreadable: locking down");
            let Some(profile) = profiles.get(FAIL_CLOSED_PROFILE) else {
                bail!("{err}; and there is no `{FAIL_CLOSED_PROFILE}` profile to fall back to");
            };
            Persisted {
                enabled: true,
                profile: FAIL_CLOSED_PROFILE.into(),
                resolved: Some(profile.clone()),
                tor_uid,
                ..Persisted::default()
            }
        }
        Err(err) => return Err(err.into()),
    };
    let notifier = notify::Notifier::from_env()?;

    lock_down(
        &config.privileges,
        SYSTEM_USER,
        &[Capability::CAP_NET_ADMIN, Capability::CAP_DAC_OVERRIDE],
        SECCOMP_PROGRAM,
        args.daemon.seccomp_probe,
    )?;

    let backends = Backends {
        firewall: Box::new(Nftables::new()),
        radios: Box::new(Rfkill::new(sysroot.clone())),
        sensors: Box::new(SysfsSensors::new(sysroot.clone())),
    };
    let default_profile = config.privacy.default_profile.clone();
    let enforce_every = std::time::Duration::from_secs(config.privacy.enforce_interval_secs);
    let mut mode = PrivacyMode::new(backends, state_file, profiles, tor_uid, persisted);
    // Before serving: the kernel gets the persisted choice. A failure leaves in force what
    // was applied; the status then reads degraded.
    match mode.reconcile() {
        Ok(status) => {
            tracing::info!(state = status.state.name(), profile = %status.profile, "reconciled with the persisted state")
        }
        Err(err) if args.apply_persisted => {
            return Err(err).context("applying the persisted Privacy Mode");
        }
        Err(err) => tracing::error!(error = %err, "reconciling with the persisted state failed"),
    }
    if args.apply_persisted {
        return Ok(());
    }

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(
        Arc::new(Mutex::new(mode)),
        policy,
        default_profile,
        enforce_every,
        notifier,
    ))
}

async fn serve(
    mode: SharedMode,
    policy: CallerPolicy,
    default_profile: String,
    enforce_every: std::time::Duration,
    notifier: notify::Notifier,
) -> Result<()> {
    let stop = shutdown::stop_signal().context("installing signal handlers")?;
    let connection = zbus::connection::Builder::system()
        .serve_at(
            OBJECT_PATH,
            PrivacyModeService::new(mode.clone(), policy, default_profile),
        )
        .serve_at(OBJECT_PATH, PostureSignal::new(mode.clone()))
        .build()
        .await
        .context("connecting to the system bus")?;
    connection
        .request_name(BUS_NAME)
        .await
        .with_context(|| format!("acquiring the bus name {BUS_NAME}"))?;
    if !enforce_every.is_zero() {
        tokio::spawn(enforce(mode, connection.clone(), enforce_every));
    }
    notifier.ready(&format!("serving {BUS_NAME}"))?;
    tracing::info!(name = BUS_NAME, "ready");
    let signal = stop.await;
    // The mode stays as it is: stopping the daemon never lifts Privacy Mode.
    tracing::info!(?signal, "stopping; Privacy Mode stays as it is");
    notifier.stopping()?;
    connection.release_name(BUS_NAME).await.ok();
    Ok(())
}

/// Every `every`, while a profile is on: switches back whatever drifted, and announces it.
async fn enforce(mode: SharedMode, connection: zbus::Connection, every: std::time::Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let mode = mode.clone();
        let outcome = tokio::task::spawn_blocking(move || match mode.lock() {
            Ok(mut mode) => mode.enforce().map_err(|e| e.to_string()),
            Err(_) => Err("privacy state poisoned".to_owned()),
        })
        .await;
        match outcome {
            Ok(Ok(Some(status))) => {
                tracing::warn!(state = status.state.name(), "Privacy Mode applied again");
                if let Err(err) = announce(&connection, &status).await {
                    tracing::warn!(error = %err, "cannot announce the change");
                }
            }
            Ok(Ok(None)) => {}
            Ok(Err(err)) => tracing::error!(error = %err, "enforcing Privacy Mode failed"),
            Err(err) => tracing::error!(error = %err, "the enforcement task stopped"),
        }
    }
}
