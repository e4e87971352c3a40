//! `enigmctl`: the device owner's command-line client for the Enigm OS daemons.
//!
//! It talks to the daemons over the system bus (`DBUS_SYSTEM_BUS_ADDRESS`, or `--bus-address`)
//! and prints a readable report, or JSON with `--json` for scripts. `enroll`, `attest` and
//! `message` also talk to the companion backend over gRPC with a pinned TLS certificate
//! ([`backend`], [`message`]).

mod backend;
mod defense;
mod grpc;
mod message;
mod posture;
mod privacy;
mod time;
mod update;

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "enigmctl",
    version,
    about = "Control and inspect Enigm OS system services"
)]
struct Cli {
    /// D-Bus address to use instead of the system bus.
    #[arg(long, global = true, env = "ENIGM_BUS_ADDRESS")]
    bus_address: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Show the Trust Security Center posture: level, failing checks first, with why and fix.
    Posture(posture::PostureArgs),
    /// Enroll this device with the companion backend (through enigm-attestd's TPM keys).
    Enroll(backend::EnrollArgs),
    /// Attest to the companion backend and show the signed result's claims.
    Attest(backend::AttestArgs),
    /// Verified A/B updates through enigm-updated: check, download, apply, status.
    Update(update::UpdateArgs),
    /// Privacy Mode through enigm-privacyd: on [PROFILE], off, status.
    Privacy(privacy::PrivacyArgs),
    /// End-to-end-encrypted messages through the backend's relay: setup, send, receive, cover.
    Message(message::MessageArgs),
    /// Active Defense: scan this device, an image or a dump for spyware indicators (offline).
    Defense(defense::DefenseArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("enigmctl: cannot start: {err}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("enigmctl: {err:#}");
            ExitCode::from(1)
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode> {
    let command = match cli.command {
        // Offline scans and feed signing need no bus.
        Command::Defense(args) if args.offline() => return defense::run_offline(&args),
        command => command,
    };
    let connection = connect(cli.bus_address.as_deref()).await?;
    match command {
        Command::Posture(args) => posture::run(&connection, &args).await,
        Command::Enroll(args) => backend::enroll(&connection, &args).await,
        Command::Attest(args) => backend::attest(&connection, &args).await,
        Command::Update(args) => update::run(&connection, &args).await,
        Command::Privacy(args) => privacy::run(&connection, &args).await,
        Command::Defense(args) => defense::run_bus(&connection, &args).await,
        Command::Message(args) => message::run(&connection, &args).await,
    }
}

async fn connect(address: Option<&str>) -> Result<zbus::Connection> {
    let builder = match address {
        Some(address) => zbus::connection::Builder::address(address),
        None => zbus::connection::Builder::system(),
    };
    builder
        .build()
        .await
        .context("cannot connect to the system bus")
}
