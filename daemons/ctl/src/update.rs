//! `enigmctl update check|download|apply|status`: `enigm-updated` over `org.enigm.Update1`,
//! with a progress bar on a terminal for downloads and applies (from its `Progress` signals),
//! or JSON with `--json`.

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use futures_util::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};

const NAME: &str = "org.enigm.Update1";
const PATH: &str = "/org/enigm/Update1";

/// `enigmctl update`.
#[derive(Args, Debug)]
pub struct UpdateArgs {
    #[command(subcommand)]
    action: Action,
    /// Print JSON instead of text (and no progress bar).
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand, Debug, Clone, Copy)]
enum Action {
    /// Look for a newer image (refreshes the signed update metadata).
    Check,
    /// Download the available image.
    Download,
    /// Install the downloaded image into the other slot; it boots next.
    Apply,
    /// Show where the update stands.
    Status,
}

impl Action {
    fn method(self) -> &'static str {
        match self {
            Action::Check => "Check",
            Action::Download => "Download",
            Action::Apply => "Apply",
            Action::Status => "GetStatus",
        }
    }
}

fn bar() -> ProgressBar {
    let bar = ProgressBar::new(0);
    if let Ok(style) = ProgressStyle::with_template(
        "{msg:>9} [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// Runs `enigmctl update ...`.
pub async fn run(connection: &zbus::Connection, args: &UpdateArgs) -> Result<ExitCode> {
    let proxy = zbus::Proxy::new(connection, NAME, PATH, NAME)
        .await
        .context("connecting to enigm-updated")?;
    let show_progress = !args.json && matches!(args.action, Action::Download | Action::Apply);
    let watcher = if show_progress {
        let mut signals = proxy.receive_signal("Progress").await?;
        let bar = bar();
        Some(tokio::spawn(async move {
            while let Some(signal) = signals.next().await {
                if let Ok((step, done, total)) = signal.body().deserialize::<(String, u64, u64)>() {
                    bar.set_message(step);
                    bar.set_length(total);
                    bar.set_position(done);
                    if done >= total {
                        bar.finish();
                    }
                }
            }
        }))
    } else {
        None
    };
    let reply = proxy.call_method(args.action.method(), &()).await;
    if let Some(watcher) = watcher {
        watcher.abort();
    }
    let (state, version, detail): (String, String, String) = match reply {
        Ok(message) => message.body().deserialize()?,
        Err(zbus::Error::MethodError(name, message, _)) => {
            let message = message.unwrap_or_default();
            if args.json {
                println!(
                    "{}",
                    serde_json::json!({"error": name.as_str(), "message": message})
                );
            } else {
                eprintln!("enigmctl: {}: {message} ({name})", args.action.method());
            }
            return Ok(ExitCode::from(1));
        }
        Err(other) => return Err(other).context("calling enigm-updated"),
    };
    if args.json {
        println!(
            "{}",
            serde_json::json!({"state": state, "version": version, "detail": detail})
        );
    } else {
        let text = match state.as_str() {
            "available" => format!("update available: {version}"),
            "up-to-date" => "up to date".into(),
            "downloaded" => format!("downloaded {version}; apply it with `enigmctl update apply`"),
            "applied" => {
                format!("{version} installed into slot {detail}; it runs after the next reboot")
            }
            "failed" => format!("failed: {detail}"),
            other => other.to_owned(),
        };
        println!("{text}");
    }
    Ok(if state == "failed" {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
