//! `enigmctl enroll` and `enigmctl attest`: the device side of the companion backend.
//!
//! Enrollment: `CreateAccount` (with `--create-account`) → evidence from `enigm-attestd` for an
//! all-zero nonce (only its EK and AK public areas are used) → `EnrollDevice` → the backend's
//! MakeCredential challenge answered by `enigm-attestd`'s `ActivateCredential` → the backend's
//! `ActivateCredential`. The device handle is kept in `<state-dir>/device.json`.
//!
//! Attestation: `GetChallenge` → the posture from `enigm-tscd` → evidence from `enigm-attestd`
//! for the challenge's nonce and the posture digest → `SubmitEvidence` → the signed result's
//! claims, shown readable or as JSON.
//!
//! # Posture digest
//!
//! The digest bound into the quote is SHA-256 over `serde_json::to_vec(&Posture)`: the
//! `enigm_tscd::model::Posture` struct exactly as `GetPosture` returned it, serialized by
//! serde_json (fields in declaration order, no whitespace). When `enigm-tscd` is not on the bus
//! the device reports level 0 with a runtime issue and the digest of an empty report, SHA-256
//! of the empty byte string; the output says so (`posture.source = "unavailable"`).
//!
//! The backend is pinned: `--pin-cert` gives its certificate (PEM), or `--fingerprint` its
//! SHA-256 fingerprint (as `openssl x509 -noout -fingerprint -sha256` prints it; colons and
//! case do not matter). With a fingerprint the certificate is fetched once, checked against
//! it, and then used as the only trust anchor of the gRPC channel.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::grpc::proto::device_api_client::DeviceApiClient;
use crate::grpc::proto::{
    ActivateCredentialRequest, CreateAccountRequest, DeviceState, EnrollDeviceRequest,
    GetChallengeRequest, SubmitEvidenceRequest, SubmitEvidenceResponse, Tier,
};
use anyhow::{Context, Result, anyhow, bail};
use base64::Engine as _;
use clap::Args;
use enigm_attestd::client::AttestationProxy;
use enigm_backend_tokens::Claims;
use enigm_evidence::v1::Evidence;
use enigm_tscd::client::TrustSecurityCenterProxy;
use prost::Message;
use serde::{Deserialize, Serialize};
use tonic::transport::Channel;

use crate::grpc::ChannelError;
use crate::time::format_utc;

/// The state file under `--state-dir`.
const STATE_FILE: &str = "device.json";
/// The nonce of the enrollment evidence (its quote is not used).
const ENROLL_NONCE: [u8; 32] = [0; 32];

/// How to reach and trust the backend.
#[derive(Args, Debug)]
pub struct BackendArgs {
    /// The backend's gRPC address: https://HOST:PORT.
    #[arg(long, value_name = "URL")]
    pub(crate) backend: String,
    /// The backend's TLS certificate (PEM), the only one trusted.
    #[arg(long, value_name = "CERT.pem", required_unless_present = "fingerprint")]
    pin_cert: Option<PathBuf>,
    /// The SHA-256 fingerprint of the backend's TLS certificate, the only one trusted.
    #[arg(long, value_name = "SHA256", conflicts_with = "pin_cert")]
    fingerprint: Option<String>,
    /// Where the device handle is kept.
    #[arg(long, default_value = "/var/lib/enigm/ctl")]
    pub(crate) state_dir: PathBuf,
}

#[derive(Args, Debug)]
pub struct EnrollArgs {
    #[command(flatten)]
    backend: BackendArgs,
    /// The account's username.
    #[arg(long)]
    username: String,
    /// A file whose first line is the password (otherwise it is read from standard input).
    #[arg(long, value_name = "F")]
    password_file: Option<PathBuf>,
    /// Create the account first (its recovery phrase is printed once).
    #[arg(long)]
    create_account: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
pub struct AttestArgs {
    #[command(flatten)]
    backend: BackendArgs,
    /// The device handle (default: the one saved by `enigmctl enroll`).
    #[arg(long, value_name = "H")]
    handle: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// What `enroll` keeps between runs.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct SavedState {
    pub(crate) backend: String,
    pub(crate) handle: String,
    /// The account's username (absent in files of older versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) username: Option<String>,
}

fn state_path(dir: &Path) -> PathBuf {
    dir.join(STATE_FILE)
}

fn save_state(dir: &Path, state: &SavedState) -> Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the state directory {}", dir.display()))?;
    let path = state_path(dir);
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(state)?)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

pub(crate) fn load_state(dir: &Path) -> Result<SavedState> {
    let path = state_path(dir);
    let bytes = std::fs::read(&path).with_context(|| {
        format!(
            "no saved device handle in {} (run `enigmctl enroll` or pass --handle)",
            path.display()
        )
    })?;
    serde_json::from_slice(&bytes).with_context(|| format!("{} is not valid", path.display()))
}

/// `https://HOST:PORT` → (host, port); brackets around an IPv6 host are removed.
fn parse_backend(url: &str) -> Result<(String, u16)> {
    let rest = url
        .strip_prefix("https://")
        .ok_or_else(|| anyhow!("--backend must be https://HOST:PORT, not {url:?}"))?;
    let rest = rest.trim_end_matches('/');
    let (host, port) = rest
        .rsplit_once(':')
        .ok_or_else(|| anyhow!("--backend needs a port: https://HOST:PORT"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host.contains('/') {
        bail!("--backend must be https://HOST:PORT, not {url:?}");
    }
    let port = port
        .parse()
        .map_err(|_| anyhow!("--backend: {port:?} is not a port"))?;
    Ok((host.to_owned(), port))
}

fn normalize_fingerprint(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_ascii_hexdigit())
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

/// Fetches the certificate the backend presents and checks it against `expected`.
fn fetch_certificate(addr: SocketAddr, host: &str, expected: &str) -> Result<Vec<u8>> {
    use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
    let expected = normalize_fingerprint(expected);
    if expected.len() != 64 {
        bail!("--fingerprint must be a SHA-256 fingerprint (64 hex digits)");
    }
    let mut builder = SslConnector::builder(SslMethod::tls_client())?;
    // Trust is decided by the fingerprint below, then by the pinned channel.
    builder.set_verify(SslVerifyMode::NONE);
    builder.set_alpn_protos(b"\x02h2")?;
    let connector = builder.build();
    let tcp = std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(10))
        .map_err(|e| anyhow!("backend unreachable at {addr}: {e}"))?;
    let stream = connector
        .configure()?
        .verify_hostname(false)
        .connect(host, tcp)
        .map_err(|e| anyhow!("TLS handshake with the backend at {addr} failed: {e}"))?;
    let cert = stream
        .ssl()
        .peer_certificate()
        .ok_or_else(|| anyhow!("the backend at {addr} presented no certificate"))?;
    let pem = cert.to_pem()?;
    let actual = crate::grpc::fingerprint(&pem)?;
    if normalize_fingerprint(&actual) != expected {
        bail!(
            "certificate mismatch: the backend at {addr} presented a certificate with fingerprint \
             {actual}, not the pinned one"
        );
    }
    Ok(pem)
}

pub(crate) async fn connect(args: &BackendArgs) -> Result<DeviceApiClient<Channel>> {
    let (host, port) = parse_backend(&args.backend)?;
    let addr = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|e| anyhow!("backend unreachable: cannot resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| anyhow!("backend unreachable: {host} has no address"))?;
    let cert_pem = match (&args.pin_cert, &args.fingerprint) {
        (Some(path), _) => std::fs::read(path)
            .with_context(|| format!("cannot read the pinned certificate {}", path.display()))?,
        (None, Some(fingerprint)) => {
            let host = host.clone();
            let fingerprint = fingerprint.clone();
            tokio::task::spawn_blocking(move || fetch_certificate(addr, &host, &fingerprint))
                .await??
        }
        (None, None) => bail!("give --pin-cert or --fingerprint"),
    };
    let channel = crate::grpc::channel(addr, &cert_pem, &host)
        .await
        .map_err(|err| match err {
            ChannelError::Certificate(_) => anyhow!(err),
            ChannelError::Connect(_) => {
                let chain = format!("{err:?}");
                if chain.contains("certificate verify failed") {
                    anyhow!(
                        "certificate mismatch: the backend at {addr} does not present the \
                         pinned certificate (or it is not valid for {host})"
                    )
                } else {
                    anyhow!("backend unreachable at {addr}: {err}")
                }
            }
        })?;
    Ok(DeviceApiClient::new(channel))
}

/// A backend error in the owner's words.
pub(crate) fn backend_error(call: &str, status: tonic::Status) -> anyhow::Error {
    use tonic::Code;
    let message = status.message();
    match status.code() {
        Code::PermissionDenied | Code::Unauthenticated => {
            anyhow!("access denied by the backend ({call}): {message}")
        }
        Code::Unavailable => anyhow!("backend unreachable ({call}): {message}"),
        Code::NotFound => anyhow!("the backend does not know this ({call}): {message}"),
        code => anyhow!("the backend refused {call} ({code:?}): {message}"),
    }
}

/// A bus error from `enigm-attestd` in the owner's words.
pub(crate) fn attestd_error(call: &str, err: zbus::Error) -> anyhow::Error {
    match bus_error_kind(&err) {
        Some(BusErrorKind::NoOwner) => {
            anyhow!("enigm-attestd is not running (no owner for org.enigm.Attestation1 on the bus)")
        }
        Some(BusErrorKind::AccessDenied) => {
            anyhow!("access denied by enigm-attestd ({call}): {err}")
        }
        None => anyhow!("enigm-attestd {call} failed: {err}"),
    }
}

enum BusErrorKind {
    NoOwner,
    AccessDenied,
}

fn bus_error_kind(err: &zbus::Error) -> Option<BusErrorKind> {
    use zbus::fdo::Error as Fdo;
    match err {
        zbus::Error::FDO(fdo) => match fdo.as_ref() {
            Fdo::AccessDenied(_) => Some(BusErrorKind::AccessDenied),
            Fdo::ServiceUnknown(_) | Fdo::NameHasNoOwner(_) => Some(BusErrorKind::NoOwner),
            _ => None,
        },
        zbus::Error::MethodError(name, _, _) => match name.as_str() {
            "org.freedesktop.DBus.Error.AccessDenied" => Some(BusErrorKind::AccessDenied),
            "org.freedesktop.DBus.Error.ServiceUnknown"
            | "org.freedesktop.DBus.Error.NameHasNoOwner" => Some(BusErrorKind::NoOwner),
            _ => None,
        },
        _ => None,
    }
}

fn read_password(file: Option<&Path>) -> Result<String> {
    let text = match file {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the password file {}", path.display()))?,
        None => {
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .context("cannot read the password from standard input")?;
            line
        }
    };
    let password = text.lines().next().unwrap_or_default().to_owned();
    if password.is_empty() {
        bail!("the password is empty");
    }
    Ok(password)
}

fn state_name(state: DeviceState) -> &'static str {
    match state {
        DeviceState::Unspecified => "unknown",
        DeviceState::Pending => "pending",
        DeviceState::Trusted => "trusted",
        DeviceState::Suspended => "suspended",
        DeviceState::Revoked => "revoked",
        DeviceState::Retired => "retired",
    }
}

fn tier_name(tier: Tier) -> &'static str {
    match tier {
        Tier::Unspecified => "unknown",
        Tier::Affirming => "affirming",
        Tier::Warning => "warning",
        Tier::Contraindicated => "contraindicated",
    }
}

pub async fn enroll(connection: &zbus::Connection, args: &EnrollArgs) -> Result<ExitCode> {
    let password = read_password(args.password_file.as_deref())?;
    // Fail before enrolling, not after, when the handle could not be kept.
    let state_dir = &args.backend.state_dir;
    std::fs::create_dir_all(state_dir)
        .with_context(|| format!("cannot create the state directory {}", state_dir.display()))?;
    let attestd = AttestationProxy::new(connection)
        .await
        .context("cannot reach enigm-attestd")?;
    let mut api = connect(&args.backend).await?;
    let mut recovery_phrase = None;
    if args.create_account {
        let created = api
            .create_account(CreateAccountRequest {
                username: args.username.clone(),
                password: password.clone(),
            })
            .await
            .map_err(|s| backend_error("CreateAccount", s))?
            .into_inner();
        recovery_phrase = Some(created.recovery_phrase);
    }
    let evidence = attestd
        .get_evidence(&ENROLL_NONCE, &[0u8; 32])
        .await
        .map_err(|e| attestd_error("GetEvidence", e))?;
    let evidence = Evidence::decode(evidence.as_slice())
        .context("enigm-attestd returned evidence that does not decode")?;
    let enrolled = api
        .enroll_device(EnrollDeviceRequest {
            username: args.username.clone(),
            password,
            evidence: Some(evidence),
        })
        .await
        .map_err(|s| backend_error("EnrollDevice", s))?
        .into_inner();
    let credential = enrolled
        .credential
        .as_ref()
        .ok_or_else(|| anyhow!("the backend sent no credential challenge"))?;
    let secret = attestd
        .activate_credential(&credential.credential_blob, &credential.encrypted_secret)
        .await
        .map_err(|e| attestd_error("ActivateCredential", e))?;
    api.activate_credential(ActivateCredentialRequest {
        handle: enrolled.handle.clone(),
        secret,
    })
    .await
    .map_err(|s| backend_error("ActivateCredential", s))?;
    save_state(
        &args.backend.state_dir,
        &SavedState {
            backend: args.backend.backend.clone(),
            handle: enrolled.handle.clone(),
            username: Some(args.username.clone()),
        },
    )?;
    let state = state_name(enrolled.state());
    if args.json {
        let value = serde_json::json!({
            "handle": enrolled.handle,
            "state": state,
            "account_created": args.create_account,
            "recovery_phrase": recovery_phrase,
            "state_file": state_path(&args.backend.state_dir),
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        if let Some(phrase) = &recovery_phrase {
            println!("Account {} created.", args.username);
            println!("Recovery phrase (shown once, write it down): {phrase}");
        }
        println!("Device enrolled: handle {}", enrolled.handle);
        println!("State: {state}");
        if enrolled.state() == DeviceState::Pending {
            println!("  an already-trusted device of the account must approve this one");
        }
        println!("Saved to {}", state_path(&args.backend.state_dir).display());
    }
    Ok(ExitCode::SUCCESS)
}

/// The posture reported with the evidence.
struct ReportedPosture {
    level: u8,
    runtime_issue: bool,
    digest: [u8; 32],
    /// Whether it came from `enigm-tscd`.
    from_tscd: bool,
    unavailable_reason: Option<String>,
}

async fn posture(connection: &zbus::Connection) -> Result<ReportedPosture> {
    let fallback = |reason: String| ReportedPosture {
        level: 0,
        runtime_issue: true,
        digest: openssl::sha::sha256(b""),
        from_tscd: false,
        unavailable_reason: Some(reason),
    };
    let proxy = match TrustSecurityCenterProxy::new(connection).await {
        Ok(proxy) => proxy,
        Err(err) => return Ok(fallback(err.to_string())),
    };
    match proxy.get_posture().await {
        Ok(posture) => {
            let json = serde_json::to_vec(&posture).context("serializing the posture")?;
            Ok(ReportedPosture {
                level: posture.level,
                runtime_issue: posture.runtime_issue,
                digest: openssl::sha::sha256(&json),
                from_tscd: true,
                unavailable_reason: None,
            })
        }
        Err(err) => match bus_error_kind(&err) {
            Some(BusErrorKind::NoOwner) => Ok(fallback("enigm-tscd is not running".into())),
            Some(BusErrorKind::AccessDenied) => {
                Ok(fallback(format!("access denied by enigm-tscd: {err}")))
            }
            None => Err(anyhow!("enigm-tscd GetPosture failed: {err}")),
        },
    }
}

/// The claims of a result token, read without checking its signature (the device cannot;
/// relying parties do).
fn token_claims(token: &str) -> Result<Claims> {
    let payload = token
        .split('.')
        .nth(1)
        .ok_or_else(|| anyhow!("the result token is not in compact form"))?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .context("the result token's claims are not base64url")?;
    serde_json::from_slice(&bytes).context("the result token's claims are not the expected JSON")
}

/// One attestation of device `handle`: challenge, posture, evidence, signed result.
async fn attest_once(
    connection: &zbus::Connection,
    attestd: &AttestationProxy<'_>,
    api: &mut DeviceApiClient<Channel>,
    handle: &str,
) -> Result<(SubmitEvidenceResponse, ReportedPosture)> {
    let challenge = api
        .get_challenge(GetChallengeRequest {
            handle: handle.to_owned(),
        })
        .await
        .map_err(|s| backend_error("GetChallenge", s))?
        .into_inner();
    let posture = posture(connection).await?;
    let evidence = attestd
        .get_evidence(&challenge.nonce, &posture.digest)
        .await
        .map_err(|e| attestd_error("GetEvidence", e))?;
    let evidence = Evidence::decode(evidence.as_slice())
        .context("enigm-attestd returned evidence that does not decode")?;
    let result = api
        .submit_evidence(SubmitEvidenceRequest {
            handle: handle.to_owned(),
            nonce: challenge.nonce,
            evidence: Some(evidence),
            posture_level: u32::from(posture.level),
            runtime_issue: posture.runtime_issue,
        })
        .await
        .map_err(|s| backend_error("SubmitEvidence", s))?
        .into_inner();
    Ok((result, posture))
}

/// A fresh attestation result token of device `handle` (for the relay, which wants a
/// current one with every call).
pub(crate) async fn fresh_token(
    connection: &zbus::Connection,
    attestd: &AttestationProxy<'_>,
    api: &mut DeviceApiClient<Channel>,
    handle: &str,
) -> Result<String> {
    let (result, _) = attest_once(connection, attestd, api, handle).await?;
    Ok(result.token)
}

pub async fn attest(connection: &zbus::Connection, args: &AttestArgs) -> Result<ExitCode> {
    let handle = match &args.handle {
        Some(handle) => handle.clone(),
        None => load_state(&args.backend.state_dir)?.handle,
    };
    let attestd = AttestationProxy::new(connection)
        .await
        .context("cannot reach enigm-attestd")?;
    let mut api = connect(&args.backend).await?;
    let (result, posture) = attest_once(connection, &attestd, &mut api, &handle).await?;
    let claims = token_claims(&result.token)?;
    let tier = tier_name(result.tier());
    let state = state_name(result.state());
    if args.json {
        let value = serde_json::json!({
            "handle": claims.sub,
            "tier": tier,
            "state": state,
            "issued_at": claims.iat,
            "expires_at": claims.exp,
            "epoch": claims.epoch,
            "token_id": claims.jti,
            "posture": {
                "level": claims.posture.level,
                "runtime_issue": claims.posture.runtime_issue,
                "source": if posture.from_tscd { "enigm-tscd" } else { "unavailable" },
                "unavailable_reason": posture.unavailable_reason,
                "digest": hex::encode(posture.digest),
            },
            "claims": result.claims.iter().map(|c| serde_json::json!({
                "name": c.name,
                "tier": tier_name(c.tier()),
                "reason": c.reason,
            })).collect::<Vec<_>>(),
            "token": result.token,
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        println!("Attestation result for device {}", claims.sub);
        println!("  tier:    {}", tier.to_uppercase());
        println!("  state:   {state}");
        println!(
            "  issued:  {}  expires: {}",
            format_utc(claims.iat),
            format_utc(claims.exp)
        );
        println!(
            "  posture: level {}{}",
            claims.posture.level,
            if claims.posture.runtime_issue {
                " (runtime issue)"
            } else {
                ""
            }
        );
        if let Some(reason) = &posture.unavailable_reason {
            println!(
                "  note:    posture not available ({reason}); reported level 0 with a runtime \
                 issue and the digest of an empty report"
            );
        }
        println!("  claims:");
        for claim in &result.claims {
            println!(
                "    {:<16} {:<15} {}",
                claim.name,
                tier_name(claim.tier()),
                claim.reason
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests
mod tests {
    use super::*;

    #[test]
    fn backend_urls() {
        assert_eq!(
            parse_backend("https://localhost:8443").unwrap(),
            ("localhost".into(), 8443)
        );
        assert_eq!(
            parse_backend("https://[::1]:9/").unwrap(),
            ("::1".into(), 9)
        );
        assert!(parse_backend("http://localhost:8443").is_err());
        assert!(parse_backend("https://localhost").is_err());
        assert!(parse_backend("https://:80").is_err());
    }

    #[test]
    fn fingerprints_compare_without_colons_or_case() {
        assert_eq!(normalize_fingerprint("ab:CD:0f"), "ABCD0F");
    }

    #[test]
    fn token_claims_are_read_from_the_payload() {
        let keyring = enigm_backend_tokens::KeyRing::with_signing_key(
            enigm_backend_tokens::SigningKey::generate(enigm_backend_tokens::Alg::EdDsa).unwrap(),
        )
        .unwrap();
        let claims = Claims::issue(
            "h1",
            enigm_backend_tokens::Tier::Warning,
            enigm_backend_tokens::PostureSummary {
                level: 2,
                runtime_issue: false,
            },
            0,
            1_000,
            300,
        )
        .unwrap();
        let token = enigm_backend_tokens::sign(&claims, &keyring).unwrap();
        assert_eq!(token_claims(&token).unwrap(), claims);
        assert!(token_claims("no-dots").is_err());
    }
}
