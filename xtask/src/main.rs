//! `cargo xtask`: project automation for Enigm OS system services.
//!
//! `cargo xtask <command>` is an alias (see `.cargo/config.toml`) for running this binary.
//! Every command that needs system packages first runs [`deps::install`], so a fresh
//! Debian 12 machine with only the Rust toolchain can run `cargo xtask demo` or
//! `cargo xtask test` directly (as root, or as a user with sudo).

mod deps;
mod steps;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use steps::Cmd;

/// Project automation for Enigm OS system services.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Install the Debian packages the project needs and create the daemons' system users.
    InstallDeps,
    /// install-deps, then fmt check, clippy, build, and the whole test suite.
    ///
    /// Arguments after `--` are appended to `cargo test --workspace`, e.g.
    /// `cargo xtask test -- posture` or `cargo xtask test -- -- --nocapture`.
    Test {
        /// Extra arguments for `cargo test --workspace`.
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// install-deps, build, then run the daemon on a private bus and print its posture.
    Demo,
    /// install-deps, then the criterion benchmarks, the backend round-trip benchmark, the
    /// relay benchmark (with mosquitto as its peer), the image verification and dm-verity
    /// benchmark, the delta-size benchmark, the Active Defense benchmark (with MVT from PyPI as
    /// its peer), the end-to-end benchmark and the Privacy Mode benchmark (release).
    ///
    /// Arguments after `--` are appended to `cargo bench -p enigm-tscd --bench posture`.
    Bench {
        /// Extra arguments for `cargo bench`.
        #[arg(last = true)]
        args: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // The whole cause chain, without a backtrace: the causes name what failed.
            eprintln!("xtask: error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("xtask:   caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> Result<()> {
    let root = workspace_root()?;
    match command {
        Command::InstallDeps => deps::install(&root),
        Command::Test { args } => test(&root, &args),
        Command::Demo => demo(&root),
        Command::Bench { args } => bench(&root, &args),
    }
}

/// The workspace root: the parent of this crate's manifest directory.
fn workspace_root() -> Result<PathBuf> {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .context("xtask's manifest directory has no parent")
}

fn test(root: &Path, extra: &[String]) -> Result<()> {
    deps::install(root)?;
    steps::run(
        "fmt",
        &steps::cargo(root).args(["fmt", "--all", "--", "--check"]),
    )?;
    steps::run(
        "clippy",
        &steps::cargo(root).args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    steps::run("build", &build_bins(root))?;
    steps::run(
        "test",
        &steps::cargo(root)
            .args(["test", "--workspace"])
            .args(extra)
            // Tests that need an external tool refuse to skip when it is missing.
            .env("ENIGM_REQUIRE_ALL_TOOLS", "1"),
    )?;
    println!("xtask: all test steps passed");
    Ok(())
}

fn demo(root: &Path) -> Result<()> {
    deps::install(root)?;
    steps::run("build", &build_bins(root))?;
    steps::run(
        "demo",
        &steps::cargo(root).args(["run", "--quiet", "-p", "enigm-e2e", "--bin", "enigm-demo"]),
    )
}

fn bench(root: &Path, extra: &[String]) -> Result<()> {
    deps::install(root)?;
    steps::run(
        "bench (criterion)",
        &steps::cargo(root)
            .args(["bench", "-p", "enigm-tscd", "--bench", "posture"])
            .args(extra),
    )?;
    steps::run(
        "bench (attestation backend round trips)",
        &steps::cargo(root).args(["bench", "-p", "enigm-backend", "--bench", "roundtrip"]),
    )?;
    steps::run(
        "bench (relay messages: SQLite and PostgreSQL, mosquitto QoS 1 as the peer)",
        &steps::cargo(root).args(["bench", "-p", "enigm-backend", "--bench", "relay"]),
    )?;
    steps::run(
        "bench (image verification and dm-verity)",
        &steps::cargo(root).args(["bench", "-p", "enigm-verity", "--bench", "throughput"]),
    )?;
    steps::run(
        "bench (delta update size)",
        &steps::cargo(root).args(["bench", "-p", "enigm-delta", "--bench", "delta_size"]),
    )?;
    steps::run(
        "bench (Active Defense: IOC matching and full scan, MVT as the peer)",
        &steps::cargo(root).args(["bench", "-p", "enigm-defense-scan", "--bench", "defense"]),
    )?;
    steps::run(
        "build (release)",
        &steps::cargo(root).args(["build", "--release", "--workspace", "--bins"]),
    )?;
    steps::run(
        "bench (end to end)",
        &steps::cargo(root).args([
            "run",
            "--release",
            "--quiet",
            "-p",
            "enigm-e2e",
            "--bin",
            "enigm-bench",
        ]),
    )?;
    steps::run(
        "bench (Privacy Mode: Enable to rules active, idle memory; root)",
        &steps::cargo(root).args([
            "run",
            "--release",
            "--quiet",
            "-p",
            "enigm-e2e",
            "--bin",
            "enigm-privacy-bench",
        ]),
    )
}

fn build_bins(root: &Path) -> Cmd {
    steps::cargo(root).args(["build", "--workspace", "--bins"])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Command {
        Cli::try_parse_from(std::iter::once("xtask").chain(args.iter().copied()))
            .unwrap()
            .command
    }

    #[test]
    fn arguments_after_double_dash_pass_through_verbatim() {
        match parse(&["test", "--", "posture", "--", "--nocapture"]) {
            Command::Test { args } => assert_eq!(args, ["posture", "--", "--nocapture"]),
            other => panic!("parsed as {other:?}"),
        }
        match parse(&["bench", "--", "--", "--quick"]) {
            Command::Bench { args } => assert_eq!(args, ["--", "--quick"]),
            other => panic!("parsed as {other:?}"),
        }
        match parse(&["test"]) {
            Command::Test { args } => assert!(args.is_empty()),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn extra_arguments_need_the_double_dash() {
        assert!(Cli::try_parse_from(["xtask", "test", "posture"]).is_err());
        assert!(Cli::try_parse_from(["xtask", "demo", "--", "x"]).is_err());
        assert!(matches!(parse(&["install-deps"]), Command::InstallDeps));
    }

    #[test]
    fn workspace_root_holds_the_workspace_manifest() {
        let root = workspace_root().unwrap();
        let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
        assert!(manifest.contains("[workspace]"));
        assert!(root.join("xtask/Cargo.toml").is_file());
    }
}
