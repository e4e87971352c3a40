//! `enigm-backend`: loads its configuration, starts the listeners and runs until SIGTERM or
//! Ctrl-C.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;

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
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
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
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
        _ = running.wait() => anyhow::bail!("a listener stopped"),
    }
    running.shutdown().await;
    Ok(())
}
