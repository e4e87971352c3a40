//! `enigmctl privacy on [PROFILE] | off | status`: `enigm-privacyd` over
//! `org.enigm.PrivacyMode1`, as text or JSON with `--json`. The status is what the daemon
//! read back from the kernel, switch by switch.

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

const NAME: &str = "org.enigm.PrivacyMode1";
const PATH: &str = "/org/enigm/PrivacyMode1";

/// `enigmctl privacy`.
#[derive(Args, Debug)]
pub struct PrivacyArgs {
    #[command(subcommand)]
    action: Action,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand, Debug, Clone)]
enum Action {
    /// Turn Privacy Mode on with PROFILE (the daemon's default profile when omitted).
    On {
        /// A profile name: lockdown, travel, or one from the daemon's configuration.
        profile: Option<String>,
    },
    /// Turn Privacy Mode off.
    Off,
    /// Show the state of every switch, read back from the kernel.
    Status,
}

/// (name, wanted, observed, ok).
type Components = Vec<(String, String, String, bool)>;

/// Runs `enigmctl privacy ...`; exit 1 on an error, 2 when the mode is degraded.
pub async fn run(connection: &zbus::Connection, args: &PrivacyArgs) -> Result<ExitCode> {
    let proxy = zbus::Proxy::new(connection, NAME, PATH, NAME)
        .await
        .context("connecting to enigm-privacyd")?;
    let (method, reply) = match &args.action {
        Action::On { profile } => {
            let profile = profile.clone().unwrap_or_default();
            ("Enable", proxy.call_method("Enable", &(profile,)).await)
        }
        Action::Off => ("Disable", proxy.call_method("Disable", &()).await),
        Action::Status => ("Status", proxy.call_method("Status", &()).await),
    };
    if let Err(zbus::Error::MethodError(name, message, _)) = &reply {
        let message = message.clone().unwrap_or_default();
        if args.json {
            println!(
                "{}",
                serde_json::json!({"error": name.as_str(), "message": message})
            );
        } else {
            eprintln!("enigmctl: {method}: {message} ({name})");
        }
        return Ok(ExitCode::from(1));
    }
    reply.context("calling enigm-privacyd")?;
    // Every change is followed by a fresh read-back of the whole status.
    let (state, profile, components): (String, String, Components) = proxy
        .call_method("Status", &())
        .await
        .context("reading the Privacy Mode status")?
        .body()
        .deserialize()?;
    if args.json {
        let components: Vec<_> = components
            .iter()
            .map(|(name, wanted, observed, ok)| {
                serde_json::json!({"name": name, "wanted": wanted, "observed": observed, "ok": ok})
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({"state": state, "profile": profile, "components": components})
        );
    } else {
        match state.as_str() {
            "on" => println!("Privacy Mode on (profile {profile}), read back from the kernel"),
            "off" => println!("Privacy Mode off"),
            other => println!("Privacy Mode {other} (profile {profile})"),
        }
        for (name, wanted, observed, ok) in &components {
            let mark = if *ok { "ok  " } else { "FAIL" };
            println!("  {mark} {name:<11} wanted {wanted}; found {observed}");
        }
    }
    Ok(if state == "degraded" {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}
