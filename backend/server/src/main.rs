//! `enigm-backend`: loads its configuration, starts the listeners, tells the service manager
//! it is ready, and runs until SIGTERM or SIGINT (then STOPPING and a clean shutdown).

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use enigm_runtime::notify::Notifier;
use enigm_runtime::shutdown::stop_signal;

/// The Enigm companion backend.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Root the configuration (`/etc/enigm/backend.toml`) and every configured path are
    /// resolved under.
    #[arg(long, default_value = "/")]
    config_dir: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    enigm_runtime::logging::init("enigm-backend");
    let args = Args::parse();
    // Installed first, so a stop request during start-up is not lost.
    let stop = stop_signal().context("installing the SIGTERM/SIGINT handlers")?;
    let notifier = Notifier::from_env().context("connecting to the service manager")?;
    let config = enigm_backend::Config::load(&args.config_dir, std::env::vars())
        .context("loading the configuration")?;
    let mut running = enigm_backend::start(&args.config_dir, config)
        .await
        .context("starting the backend")?;
    println!(
        "TLS certificate SHA-256 fingerprint: {}",
        running.fingerprint
    );
    println!(
        "gRPC on {}, HTTP on {}",
        running.grpc_addr, running.http_addr
    );
    if let Err(err) = notifier.ready(&format!("serving gRPC on {}", running.grpc_addr)) {
        tracing::warn!(error = %err, "sd_notify READY failed");
    }
    let outcome = tokio::select! {
        signal = stop => {
            tracing::info!(?signal, "stopping");
            Ok(())
        }
        _ = running.wait() => Err(anyhow::anyhow!("a listener stopped")),
    };
    if let Err(err) = notifier.stopping() {
        tracing::warn!(error = %err, "sd_notify STOPPING failed");
    }
    running.shutdown().await;
    outcome
}
