//! Issue 4's backend benchmark: full attestation round trips per second — `GetChallenge` →
//! quote → `SubmitEvidence` (appraisal + signed result token) — against the real server
//! started in-process (the production code path: TLS, tonic, rate limits, storage, verifier,
//! token signing) on 127.0.0.1, first with SQLite (WAL) and then with a PostgreSQL started by
//! the storage test harness. Devices are software: `SoftwareAk` quotes in exactly the TPM's
//! wire format (a benchmark-only attester) and a software RSA EK that does ActivateCredential.
//!
//! `cargo bench -p enigm-backend --bench roundtrip` (`cargo xtask bench` runs it).
//! Environment: `ENIGM_BENCH_SECS` (measured seconds per engine, default 10),
//! `ENIGM_BENCH_DEVICES` (devices = concurrent clients, default 32),
//! `ENIGM_BENCH_ENGINES` (`sqlite,postgres` by default).

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use enigm_backend::proto::device_api_client::DeviceApiClient;
use enigm_backend::proto::{
    ActivateCredentialRequest, CreateAccountRequest, DeviceState, EnrollDeviceRequest,
    GetChallengeRequest, SubmitEvidenceRequest,
};
use enigm_backend::{Config, Running};
use tonic::transport::Channel;

#[path = "common/config.rs"]
mod config;
#[path = "../../storage/tests/common/mod.rs"]
mod pg;
#[path = "../tests/common/soft_device.rs"]
mod soft_device;
use config::write_config;
use soft_device::SoftDevice as Device;

const PASSWORD: &str = "correct horse battery staple";
/// Issue 4's goal, round trips per second.
const GOAL: f64 = 2_000.0;
/// Veraison's published appraisal rate, the peer figure the goal is set against.
const VERAISON: f64 = 400.0;
const WARMUP: Duration = Duration::from_secs(2);

fn env_or(name: &str, default: u64) -> Result<u64> {
    match std::env::var(name) {
        Ok(v) => v.parse().with_context(|| format!("{name}={v:?}")),
        Err(_) => Ok(default),
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("roundtrip bench failed: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    // `cargo bench` passes `--bench` (and any filter); this harness takes its settings from
    // the environment instead.
    if cfg!(debug_assertions) {
        eprintln!("warning: debug build; `cargo bench` builds with the bench (release) profile");
    }
    let secs = env_or("ENIGM_BENCH_SECS", 10)?;
    let devices = usize::try_from(env_or("ENIGM_BENCH_DEVICES", 32)?)?;
    let engines = std::env::var("ENIGM_BENCH_ENGINES").unwrap_or_else(|_| "sqlite,postgres".into());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    println!(
        "\nattestation round trips (GetChallenge + quote + SubmitEvidence: appraisal + token), \
         in-process server on loopback TLS, {devices} devices / {devices} clients in flight, \
         {secs} s per engine after {} s warm-up, {cpus} CPUs",
        WARMUP.as_secs()
    );
    let mut results = Vec::new();
    for engine in engines.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let result = match engine {
            "sqlite" => runtime.block_on(bench_engine("SQLite (WAL)", None, devices, secs))?,
            "postgres" => {
                let server = pg::Postgres::start().context("starting PostgreSQL")?;
                let url = server.url().to_owned();
                let r = runtime.block_on(bench_engine("PostgreSQL", Some(&url), devices, secs))?;
                drop(server);
                r
            }
            other => bail!("unknown engine {other:?} (sqlite, postgres)"),
        };
        results.push(result);
    }
    println!(
        "\n{:<14} {:>10} {:>9} {:>9} {:>9}  {:>8}  {:>11}",
        "engine", "rt/s", "p50 ms", "p99 ms", "errors", "of goal", "× Veraison"
    );
    for r in &results {
        println!(
            "{:<14} {:>10.0} {:>9.2} {:>9.2} {:>9}  {:>7.0}%  {:>10.1}×  (goal >= {GOAL:.0}/s) {}",
            r.engine,
            r.rate,
            ms(r.p50),
            ms(r.p99),
            r.errors,
            100.0 * r.rate / GOAL,
            r.rate / VERAISON,
            if r.rate >= GOAL { "ok" } else { "UNDER GOAL" }
        );
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

struct Outcome {
    engine: &'static str,
    rate: f64,
    p50: Duration,
    p99: Duration,
    errors: u64,
}

async fn client(running: &Running) -> Result<DeviceApiClient<Channel>> {
    let channel =
        enigm_backend::client::channel(running.grpc_addr, &running.cert_pem, "localhost").await?;
    Ok(DeviceApiClient::new(channel))
}

/// Creates an account for the device (so every device is its account's first, trusted one),
/// enrolls it and activates the credential; returns the handle.
async fn enroll(api: &mut DeviceApiClient<Channel>, i: usize, device: &Device) -> Result<String> {
    let username = format!("bench{i}");
    api.create_account(CreateAccountRequest {
        username: username.clone(),
        password: PASSWORD.into(),
    })
    .await?;
    let enrolled = api
        .enroll_device(EnrollDeviceRequest {
            username,
            password: PASSWORD.into(),
            evidence: Some(device.enrollment_evidence()),
        })
        .await?
        .into_inner();
    if enrolled.state() != DeviceState::Trusted {
        bail!("device {i} enrolled as {:?}", enrolled.state());
    }
    let credential = enrolled
        .credential
        .ok_or_else(|| anyhow!("no credential challenge"))?;
    let secret = device
        .activate(&credential)?
        .ok_or_else(|| anyhow!("credential not made for this device"))?;
    api.activate_credential(ActivateCredentialRequest {
        handle: enrolled.handle.clone(),
        secret,
    })
    .await?;
    Ok(enrolled.handle)
}

/// One round trip: challenge, quote, evidence; checks that a token came back.
async fn round_trip(
    api: &mut DeviceApiClient<Channel>,
    handle: &str,
    device: &mut Device,
) -> Result<()> {
    let nonce = api
        .get_challenge(GetChallengeRequest {
            handle: handle.into(),
        })
        .await?
        .into_inner()
        .nonce;
    let evidence = device.quote(&nonce)?;
    let result = api
        .submit_evidence(SubmitEvidenceRequest {
            handle: handle.into(),
            nonce,
            evidence: Some(evidence),
            posture_level: 3,
            runtime_issue: false,
        })
        .await?
        .into_inner();
    if result.token.is_empty() {
        bail!("no token in the result");
    }
    Ok(())
}

async fn bench_engine(
    engine: &'static str,
    database_url: Option<&str>,
    devices: usize,
    secs: u64,
) -> Result<Outcome> {
    let dir = tempfile::tempdir()?;
    write_config(dir.path(), database_url, 5)?;
    let config = Config::load(dir.path(), [])?;
    let running = enigm_backend::start(dir.path(), config).await?;

    let setup = Instant::now();
    let keys = tokio::task::spawn_blocking(move || {
        (0..devices)
            .map(|_| Device::new())
            .collect::<Result<Vec<_>>>()
    })
    .await??;
    let mut enrolled = Vec::with_capacity(devices);
    for (i, device) in keys.into_iter().enumerate() {
        let mut api = client(&running).await?;
        let handle = enroll(&mut api, i, &device)
            .await
            .with_context(|| format!("enrolling device {i}"))?;
        enrolled.push((api, handle, device));
    }
    eprintln!(
        "{engine}: {devices} devices enrolled and activated in {:.1} s",
        setup.elapsed().as_secs_f64()
    );

    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::with_capacity(devices);
    for (mut api, handle, mut device) in enrolled {
        let (measuring, stop) = (measuring.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(1 << 14);
            let mut errors = 0u64;
            let mut first_error = None;
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let outcome = round_trip(&mut api, &handle, &mut device).await;
                let counted = measuring.load(Ordering::Relaxed) && !stop.load(Ordering::Relaxed);
                match outcome {
                    Ok(()) if counted => latencies.push(started.elapsed()),
                    Ok(()) => {}
                    Err(err) => {
                        errors += u64::from(counted);
                        first_error.get_or_insert(err);
                    }
                }
            }
            (latencies, errors, first_error)
        }));
    }
    tokio::time::sleep(WARMUP).await;
    measuring.store(true, Ordering::Relaxed);
    let window = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let elapsed = window.elapsed();

    let mut latencies = Vec::new();
    let mut errors = 0;
    for worker in workers {
        let (l, e, first) = worker.await?;
        latencies.extend(l);
        errors += e;
        if let Some(err) = first {
            eprintln!("{engine}: a round trip failed: {err:#}");
        }
    }
    running.shutdown().await;
    if latencies.is_empty() {
        bail!("{engine}: no round trip completed");
    }
    latencies.sort_unstable();
    let pick = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    let outcome = Outcome {
        engine,
        rate: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50: pick(0.50),
        p99: pick(0.99),
        errors,
    };
    eprintln!(
        "{engine}: {} round trips in {:.2} s",
        latencies.len(),
        elapsed.as_secs_f64()
    );
    Ok(outcome)
}
