//! `cargo xtask demo`: the device stack on this machine.
//!
//! Starts a private system-type dbus-daemon with the project's bus policy, runs `enigm-tscd`
//! on this machine's real `/` (dropping to its system user under its seccomp filter), and
//! prints the posture with `enigmctl posture`, then stops everything cleanly.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use enigm_e2e::{Daemon, PrivateBus, enigmctl, tscd_command};
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

    step("stopping enigm-tscd with SIGTERM");
    let status = daemon.terminate(Duration::from_secs(5))?;
    println!("    exited: {status}");
    println!("\ndemo complete");
    Ok(ExitCode::SUCCESS)
}
