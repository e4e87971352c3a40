//! `enigmctl message`: end-to-end-encrypted messages between attested devices, through the
//! backend's relay (`enigm-relay-client`).
//!
//! - `setup`: creates the device's mailbox (or keeps the one it has), generates its message
//!   keys (or keeps them) and publishes them in the key directory, bound by a quote of
//!   `enigm-attestd`'s TPM attestation key; the keys and the mailbox's capabilities stay in
//!   `<state-dir>/message-keys.json` (mode 0600);
//! - `send --to USER|ACCOUNT`: one envelope to each trusted device of the recipient and to this
//!   device's other devices;
//! - `receive [--follow] [--cover]`: prints each message once (sender account and device, time,
//!   text), then acknowledges it; duplicates (also of earlier runs: `<state-dir>/message-seen.log`)
//!   and cover envelopes are dropped; `--follow` waits
//!   for new ones by server push, attesting again when the result token expires; `--cover`
//!   sends cover traffic meanwhile;
//! - `cover --count N`: sends N cover envelopes at random gaps.
//!
//! Every command attests first (challenge → posture → `enigm-attestd` evidence → result
//! token), as `enigmctl attest` does: the relay wants a current result token with every call.
//! The device handle, and the username `enigmctl enroll` used, come from `<state-dir>`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine as _;
use clap::{Args, Subcommand};
use enigm_attestd::client::AttestationProxy;
use enigm_evidence::v1::Evidence;
use enigm_relay_client::{
    BindError, CoverConfig, Flow, KeyBinder, KeyFile, KeyFileError, Received, Recipient,
    RelayClient, RelayError,
};
use prost::Message as _;

use crate::backend::{BackendArgs, attestd_error, connect, fresh_token, load_state};
use crate::time::format_utc;

/// The key file under `--state-dir`.
const KEY_FILE: &str = "message-keys.json";
/// The duplicate log under `--state-dir`: the message ids already shown.
const SEEN_LOG: &str = "message-seen.log";
/// How long a message waits for its recipient by default: 7 days.
const DEFAULT_TTL_SECS: u64 = 7 * 86_400;
/// The fetch interval when no push stream can be had.
const POLL: Duration = Duration::from_secs(5);

#[derive(Args, Debug)]
pub struct MessageArgs {
    #[command(subcommand)]
    command: MessageCommand,
}

#[derive(Subcommand, Debug)]
enum MessageCommand {
    /// Create the mailbox, generate (or keep) the message keys and publish them.
    Setup(SetupArgs),
    /// Send a message to every trusted device of an account (and your other devices).
    Send(SendArgs),
    /// Print and acknowledge the messages waiting for this device.
    Receive(ReceiveArgs),
    /// Send cover envelopes (dummies the server cannot tell from messages) to this device.
    Cover(CoverArgs),
}

#[derive(Args, Debug)]
struct SetupArgs {
    #[command(flatten)]
    backend: BackendArgs,
    /// The account's username (default: the one `enigmctl enroll` used).
    #[arg(long, conflicts_with = "account_id")]
    username: Option<String>,
    /// The account id, instead of a username.
    #[arg(long, value_name = "ID")]
    account_id: Option<String>,
    /// Generate new keys even when some are kept.
    #[arg(long)]
    new_keys: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
#[command(group = clap::ArgGroup::new("body").required(true).args(["text", "file"]))]
struct SendArgs {
    #[command(flatten)]
    backend: BackendArgs,
    /// The recipient: a username or an account id.
    #[arg(long, value_name = "USER|ACCOUNT")]
    to: String,
    /// How long it may wait for the recipient's devices, seconds (at most 30 days).
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_TTL_SECS)]
    ttl: u64,
    /// The message text.
    #[arg(long, value_name = "T")]
    text: Option<String>,
    /// A file whose contents are the message.
    #[arg(long, value_name = "F")]
    file: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct ReceiveArgs {
    #[command(flatten)]
    backend: BackendArgs,
    /// Keep waiting for new messages (server push) until interrupted.
    #[arg(long)]
    follow: bool,
    /// While following, send cover envelopes at random gaps.
    #[arg(long, requires = "follow")]
    cover: bool,
    /// The mean gap between cover envelopes, seconds.
    #[arg(long, value_name = "SECS", default_value_t = 30.0)]
    cover_mean: f64,
    /// The ttl of cover envelopes, seconds (use the same as real messages).
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_TTL_SECS)]
    cover_ttl: u64,
    /// Print JSON (with --follow: one object per line).
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct CoverArgs {
    #[command(flatten)]
    backend: BackendArgs,
    /// How many to send.
    #[arg(long, default_value_t = 1)]
    count: u32,
    /// The mean gap between them, seconds.
    #[arg(long, value_name = "SECS", default_value_t = 1.0)]
    mean: f64,
    /// Their ttl, seconds (use the same as real messages).
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_TTL_SECS)]
    ttl: u64,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// `enigm-attestd` as the key binder: evidence for the directory nonce with an all-zero
/// posture digest.
struct AttestdBinder<'a>(&'a AttestationProxy<'a>);

impl KeyBinder for AttestdBinder<'_> {
    async fn bind(&mut self, nonce: [u8; 32]) -> Result<Evidence, BindError> {
        let bytes = self
            .0
            .get_evidence(&nonce, &enigm_relay_client::bundle::BINDING_POSTURE)
            .await
            .map_err(|e| attestd_error("GetEvidence", e).into_boxed_dyn_error())?;
        Ok(Evidence::decode(bytes.as_slice())?)
    }
}

fn key_file_path(state_dir: &Path) -> PathBuf {
    state_dir.join(KEY_FILE)
}

/// A relay error in the owner's words.
fn relay_error(err: RelayError) -> anyhow::Error {
    match err {
        RelayError::Backend { call, status } => crate::backend::backend_error(call, status),
        RelayError::KeyFile(KeyFileError::Missing(path)) => anyhow!(
            "no message keys at {} (run `enigmctl message setup` first)",
            path.display()
        ),
        other => anyhow!(other),
    }
}

/// A connected, attested session.
struct Session<'a> {
    attestd: AttestationProxy<'a>,
    handle: String,
    username: Option<String>,
    token: String,
    api: enigm_backend_client::proto::device_api_client::DeviceApiClient<tonic::transport::Channel>,
}

async fn session<'a>(
    connection: &'a zbus::Connection,
    backend: &BackendArgs,
) -> Result<Session<'a>> {
    let state = load_state(&backend.state_dir)?;
    let attestd = AttestationProxy::new(connection)
        .await
        .context("cannot reach enigm-attestd")?;
    let mut api = connect(backend).await?;
    let token = fresh_token(connection, &attestd, &mut api, &state.handle).await?;
    Ok(Session {
        attestd,
        handle: state.handle,
        username: state.username,
        token,
        api,
    })
}

/// The session's relay client with the saved keys.
fn relay_client(session: &Session<'_>, backend: &BackendArgs) -> Result<RelayClient> {
    let file =
        KeyFile::load(&key_file_path(&backend.state_dir)).map_err(|e| relay_error(e.into()))?;
    RelayClient::with_key_file(session.api.clone(), &session.handle, &session.token, &file).map_err(
        |e| match e {
            RelayError::OtherDevice { .. } => {
                anyhow!("{e} (run `enigmctl message setup` again for this device)")
            }
            other => relay_error(other),
        },
    )
}

pub async fn run(connection: &zbus::Connection, args: &MessageArgs) -> Result<ExitCode> {
    match &args.command {
        MessageCommand::Setup(args) => setup(connection, args).await,
        MessageCommand::Send(args) => send(connection, args).await,
        MessageCommand::Receive(args) => receive(connection, args).await,
        MessageCommand::Cover(args) => cover(connection, args).await,
    }
}

async fn setup(connection: &zbus::Connection, args: &SetupArgs) -> Result<ExitCode> {
    let session = session(connection, &args.backend).await?;
    let path = key_file_path(&args.backend.state_dir);
    let previous = match KeyFile::load(&path) {
        Ok(file) if !args.new_keys => Some(file),
        Ok(_) | Err(KeyFileError::Missing(_)) => None,
        Err(e) => return Err(relay_error(e.into())),
    };
    let mut client = RelayClient::new(session.api.clone(), &session.handle, &session.token);
    let account_id = match (&args.account_id, &args.username, &session.username) {
        (Some(id), _, _) => id.clone(),
        (None, Some(name), _) | (None, None, Some(name)) => {
            client.account_id(name).await.map_err(relay_error)?
        }
        (None, None, None) => {
            bail!("which account? give --username or --account-id (the saved state names none)")
        }
    };
    let file = client
        .setup(
            &account_id,
            previous.as_ref(),
            &mut AttestdBinder(&session.attestd),
        )
        .await
        .map_err(relay_error)?;
    file.save(&path).map_err(|e| relay_error(e.into()))?;
    let kept_keys = previous.as_ref().is_some_and(|p| p.keys == file.keys);
    let kept_mailbox = previous.as_ref().is_some_and(|p| p.mailbox == file.mailbox);
    if args.json {
        let value = serde_json::json!({
            "handle": session.handle,
            "account_id": account_id,
            "keys": if kept_keys { "kept" } else { "new" },
            "mailbox": if kept_mailbox { "kept" } else { "new" },
            "published_at": file.published_at_unix,
            "key_file": path,
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        println!("Message keys published for device {}", session.handle);
        println!("  account:  {account_id}");
        println!("  keys:     {}", if kept_keys { "kept" } else { "new" });
        println!("  mailbox:  {}", if kept_mailbox { "kept" } else { "new" });
        println!("  saved to: {} (mode 0600)", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

async fn send(connection: &zbus::Connection, args: &SendArgs) -> Result<ExitCode> {
    let body = match (&args.text, &args.file) {
        (Some(text), _) => text.as_bytes().to_vec(),
        (None, Some(path)) => std::fs::read(path)
            .with_context(|| format!("cannot read the message file {}", path.display()))?,
        (None, None) => bail!("give --text or --file"),
    };
    if args.ttl == 0 || args.ttl > 30 * 86_400 {
        bail!("--ttl must be 1 to {} seconds (30 days)", 30 * 86_400);
    }
    let session = session(connection, &args.backend).await?;
    let mut client = relay_client(&session, &args.backend)?;
    // A username first; when there is no such user, an account id.
    let ttl = Duration::from_secs(args.ttl);
    let sent = match client
        .send(&Recipient::Username(args.to.clone()), &body, ttl)
        .await
    {
        Err(e) if e.code() == Some(tonic::Code::NotFound) => {
            client
                .send(&Recipient::AccountId(args.to.clone()), &body, ttl)
                .await
        }
        other => other,
    };
    let report = sent.map_err(|e| match e {
        RelayError::NoDevices(_) => anyhow!(
            "{} has no trusted device with published message keys (no such user or account, \
             or its devices have not run `enigmctl message setup`)",
            args.to
        ),
        other => relay_error(other),
    })?;
    let failed: Vec<_> = report
        .failed
        .iter()
        .map(|(handle, e)| serde_json::json!({"device": handle, "error": e.to_string()}))
        .collect();
    if args.json {
        let value = serde_json::json!({
            "message_id": report.message_id,
            "account_id": report.account_id,
            "recipient_devices": report.recipient_devices,
            "own_devices": report.own_devices,
            "failed": failed,
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        println!(
            "Sent message {} to account {}: {} device(s), and {} of your other device(s)",
            report.message_id,
            report.account_id,
            report.recipient_devices.len(),
            report.own_devices.len()
        );
        for (handle, e) in &report.failed {
            println!("  not sent to device {handle}: {e}");
        }
    }
    Ok(if report.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Text safe for a terminal: control characters other than newline and tab replaced.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                '\u{fffd}'
            } else {
                c
            }
        })
        .collect()
}

fn message_json(m: &Received, own_account: &str) -> serde_json::Value {
    let (text, base64) = match std::str::from_utf8(&m.body) {
        Ok(text) => (Some(text.to_owned()), None),
        Err(_) => (
            None,
            Some(base64::engine::general_purpose::STANDARD.encode(&m.body)),
        ),
    };
    serde_json::json!({
        "message_id": m.message_id,
        "from_account": m.from.account,
        "from_device": m.from.device,
        "from_own_account": m.from.account == own_account,
        "sent_at": m.sent_at,
        "text": text,
        "body_base64": base64,
    })
}

fn print_message(m: &Received, own_account: &str) {
    let who = if m.from.account == own_account {
        format!("your device {}", m.from.device)
    } else {
        format!("account {} device {}", m.from.account, m.from.device)
    };
    println!("From {who} at {}:", format_utc(m.sent_at));
    match std::str::from_utf8(&m.body) {
        Ok(text) => println!("  {}", printable(text).replace('\n', "\n  ")),
        Err(_) => println!("  ({} bytes, not text)", m.body.len()),
    }
}

async fn receive(connection: &zbus::Connection, args: &ReceiveArgs) -> Result<ExitCode> {
    let mut session = session(connection, &args.backend).await?;
    let mut client = relay_client(&session, &args.backend)?;
    client
        .keep_seen_in(&args.backend.state_dir.join(SEEN_LOG))
        .map_err(relay_error)?;
    let own_account = client
        .device_id()
        .map(|id| id.account.clone())
        .unwrap_or_default();
    if !args.follow {
        let mut messages = Vec::new();
        let stats = client
            .receive_pending(|m| {
                if !args.json {
                    print_message(&m, &own_account);
                }
                messages.push(m);
                Flow::Continue
            })
            .await
            .map_err(relay_error)?;
        if args.json {
            let value = serde_json::json!({
                "messages": messages.iter().map(|m| message_json(m, &own_account)).collect::<Vec<_>>(),
                "dropped": {
                    "duplicates": stats.duplicates,
                    "cover": stats.cover,
                    "refused": stats.refused,
                },
            });
            println!("{}", serde_json::to_string_pretty(&value)?);
        } else if messages.is_empty() {
            println!("No messages.");
        }
        if stats.refused > 0 && !args.json {
            eprintln!(
                "enigmctl: {} envelope(s) did not open or verify and were dropped",
                stats.refused
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let cover = if args.cover {
        if !(args.cover_mean.is_finite() && args.cover_mean > 0.0) {
            bail!("--cover-mean must be a positive number of seconds");
        }
        let traffic = client
            .cover(CoverConfig {
                mean_interval: Duration::from_secs_f64(args.cover_mean),
                ttl: Duration::from_secs(args.cover_ttl.clamp(1, 30 * 86_400)),
            })
            .map_err(relay_error)?;
        Some(tokio::spawn(traffic.run()))
    } else {
        None
    };
    let result = follow(connection, &mut session, &mut client, args, &own_account).await;
    if let Some(task) = cover {
        task.abort();
    }
    result
}

/// Prints messages as they arrive, attesting again whenever the token is refused.
async fn follow(
    connection: &zbus::Connection,
    session: &mut Session<'_>,
    client: &mut RelayClient,
    args: &ReceiveArgs,
    own_account: &str,
) -> Result<ExitCode> {
    let mut refreshed_without_progress = 0;
    loop {
        let mut printed = 0usize;
        let outcome = client
            .receive_follow(POLL, |m| {
                printed += 1;
                if args.json {
                    println!("{}", message_json(&m, own_account));
                } else {
                    print_message(&m, own_account);
                }
                Flow::Continue
            })
            .await;
        match outcome {
            Ok(_) => return Ok(ExitCode::SUCCESS),
            Err(e) if e.token_refused() && refreshed_without_progress < 2 => {
                refreshed_without_progress = if printed > 0 {
                    0
                } else {
                    refreshed_without_progress + 1
                };
                session.token = fresh_token(
                    connection,
                    &session.attestd,
                    &mut session.api,
                    &session.handle,
                )
                .await
                .context("the result token expired and a new attestation failed")?;
                client.set_token(&session.token);
            }
            Err(e) => return Err(relay_error(e)),
        }
    }
}

async fn cover(connection: &zbus::Connection, args: &CoverArgs) -> Result<ExitCode> {
    if !(args.mean.is_finite() && args.mean >= 0.0) {
        bail!("--mean must be a number of seconds");
    }
    let session = session(connection, &args.backend).await?;
    let client = relay_client(&session, &args.backend)?;
    let mean = Duration::from_secs_f64(args.mean);
    let mut traffic = client
        .cover(CoverConfig {
            mean_interval: mean,
            ttl: Duration::from_secs(args.ttl.clamp(1, 30 * 86_400)),
        })
        .map_err(relay_error)?;
    let mut sizes = Vec::new();
    for i in 0..args.count {
        if i > 0 {
            tokio::time::sleep(enigm_relay_client::cover::next_gap(mean).map_err(relay_error)?)
                .await;
        }
        sizes.push(traffic.send_one().await.map_err(relay_error)?);
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({ "sent": sizes.len(), "sizes": sizes })
            )?
        );
    } else {
        println!("Sent {} cover envelope(s) of sizes {sizes:?}", sizes.len());
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests
mod tests {
    use super::*;

    #[test]
    fn terminal_control_characters_are_replaced() {
        assert_eq!(printable("a\x1b[2Jb\nc\td"), "a\u{fffd}[2Jb\nc\td");
    }

    #[test]
    fn json_has_text_or_base64() {
        let m = |body: &[u8]| Received {
            from: enigm_envelope::keys::DeviceId {
                account: "acct".into(),
                device: "h".into(),
            },
            message_id: "m".into(),
            sent_at: 1,
            body: body.to_vec(),
        };
        let text = message_json(&m(b"hi"), "acct");
        assert_eq!(text["text"], "hi");
        assert_eq!(text["from_own_account"], true);
        assert!(text["body_base64"].is_null());
        let binary = message_json(&m(&[0xff, 0]), "other");
        assert!(binary["text"].is_null());
        assert_eq!(binary["body_base64"], "/wA=");
        assert_eq!(binary["from_own_account"], false);
    }
}
