//! `enigm-tuf-client`: the TUF client command line the tuf-conformance suite drives.
//!
//! ```text
//! enigm-tuf-client --metadata-dir D init ROOT
//! enigm-tuf-client --metadata-dir D --metadata-url U refresh
//! enigm-tuf-client --metadata-dir D --metadata-url U --target-name P \
//!     --target-base-url T --target-dir O download
//! ```
//!
//! Exit 0 on success, 1 on any failure (with the reason on stderr).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use enigm_tuf::client::write_atomic;
use enigm_tuf::fetch::UrlFetcher;
use enigm_tuf::metadata::{Envelope, Root};
use enigm_tuf::{Config, Updater};

#[derive(Parser)]
#[command(
    name = "enigm-tuf-client",
    about = "TUF client (tuf-conformance command line)"
)]
struct Cli {
    /// Directory of trusted metadata.
    #[arg(long)]
    metadata_dir: PathBuf,
    /// Base URL of the repository's metadata.
    #[arg(long)]
    metadata_url: Option<String>,
    /// Target to download (download; repeatable: processed in order by one updater, stopping
    /// at the first failure).
    #[arg(long)]
    target_name: Vec<String>,
    /// Base URL of the targets (download).
    #[arg(long)]
    target_base_url: Option<String>,
    /// Where to write the target (download).
    #[arg(long)]
    target_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Trust ROOT (a root.json) as the initial root.
    Init {
        /// The root metadata file.
        root: PathBuf,
    },
    /// Refresh the top-level metadata.
    Refresh,
    /// Refresh, then download the target.
    Download,
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A client on `dir`'s trusted metadata, refreshed from `url`.
fn refreshed(dir: &std::path::Path, url: Option<String>) -> Result<Updater<UrlFetcher>> {
    let url = url.context("--metadata-url is required")?;
    let mut updater = Updater::new(dir, &url, UrlFetcher::default(), now(), Config::default())?;
    updater.refresh()?;
    Ok(updater)
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Init { root } => {
            let bytes =
                std::fs::read(&root).with_context(|| format!("reading {}", root.display()))?;
            let env = Envelope::parse(&bytes, "root")?;
            Root::parse(&env.signed)?;
            std::fs::create_dir_all(&cli.metadata_dir)
                .with_context(|| format!("creating {}", cli.metadata_dir.display()))?;
            write_atomic(&cli.metadata_dir.join("root.json"), &bytes)?;
            Ok(())
        }
        Command::Refresh => {
            refreshed(&cli.metadata_dir, cli.metadata_url)?;
            Ok(())
        }
        Command::Download => {
            let (false, Some(base), Some(dir)) = (
                cli.target_name.is_empty(),
                cli.target_base_url,
                cli.target_dir,
            ) else {
                bail!("download needs --target-name, --target-base-url and --target-dir");
            };
            let mut updater = refreshed(&cli.metadata_dir, cli.metadata_url)?;
            for name in &cli.target_name {
                updater
                    .download(name, &base, &dir)
                    .with_context(|| format!("downloading {name}"))?;
            }
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("enigm-tuf-client: {err:#}");
            ExitCode::FAILURE
        }
    }
}
