//! Issue 8's relay benchmark: messages per second and delivery latency of the relay, next to
//! mosquitto (the Debian package) with QoS 1 and persistence, measured in the same run.
//!
//! The relay: the real server started in-process as `roundtrip.rs` starts it (TLS, tonic,
//! rate limits, storage, push streams), once on SQLite (WAL) and once on a PostgreSQL started
//! here with durable settings (`fsync`, `synchronous_commit` and `full_page_writes` on — unlike
//! the storage test harness, which turns them off for speed). Two software devices of two
//! accounts are enrolled and attested; the receiver creates a mailbox, opens `StreamMessages`
//! and acknowledges each message with `AckMessage` as it arrives; the sender's workers call
//! `SendMessage` with HPKE-sealed envelopes of the smallest bucket (1,072 bytes on the wire;
//! sealed before timing). A `SendMessage` answer means the message is committed durably.
//!
//! mosquitto: the Debian binary on a free loopback port with a temporary config (persistence on,
//! autosave every second, `set_tcp_nodelay`), once over plain TCP and once over TLS (the relay
//! only speaks TLS). A hand-written MQTT 3.1.1 client (below: CONNECT, SUBSCRIBE, PUBLISH and
//! PUBACK are all this needs) publishes 1,072-byte payloads at QoS 1 from one connection, and a
//! QoS 1 subscriber (persistent session) acknowledges each delivery with PUBACK. mosquitto's
//! persistence is a periodic snapshot of its in-memory store, not a write per message: a PUBACK
//! does not mean the message is on disk. The relay's answer does.
//!
//! Both sides run the same closed loop: `ENIGM_BENCH_IN_FLIGHT` workers (default 16), each
//! sending one message, waiting for its acknowledgement (the `SendMessage` answer / PUBACK) and
//! for its arrival at the receiver, then sending the next. Throughput = messages both
//! acknowledged and delivered per second; delivery latency = from the start of the send to the
//! arrival on the receiver's stream / socket. The load generator, the servers and the
//! databases share the machine's cores.
//!
//! `cargo bench -p enigm-backend --bench relay` (`cargo xtask bench` runs it).
//! Environment: `ENIGM_BENCH_SECS` (measured seconds per engine, default 10),
//! `ENIGM_BENCH_IN_FLIGHT` (messages in flight, default 16), `ENIGM_BENCH_ENGINES`
//! (`mosquitto,mosquitto-tls,sqlite,postgres` by default).

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use enigm_backend::proto::device_api_client::DeviceApiClient;
use enigm_backend::proto::{
    AckMessageRequest, ActivateCredentialRequest, CreateAccountRequest, CreateMailboxRequest,
    DeviceState, EnrollDeviceRequest, FetchMessagesRequest, GetChallengeRequest,
    SendMessageRequest, SubmitEvidenceRequest,
};
use enigm_backend::{Config, Running};
use enigm_envelope::envelope::{Message, seal};
use enigm_envelope::keys::{DeviceId, DeviceKeys, PublicDeviceKeys};
use enigm_envelope::pad::WIRE_SIZES;
use tempfile::TempDir;
use tokio::sync::{Semaphore, mpsc};
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
const WARMUP: Duration = Duration::from_secs(2);
/// A message not delivered within this long counts as an error.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// The size of every message on the wire: the relay's smallest envelope bucket.
const PAYLOAD: usize = WIRE_SIZES[0];
/// Distinct sealed envelopes, used round-robin.
const ENVELOPES: usize = 64;
/// Acknowledgements the relay receiver has in flight at most.
const ACKS_IN_FLIGHT: usize = 32;
/// Issue 8's goal: the relay's throughput at least mosquitto's.
const GOAL: f64 = 1.0;
const TOPIC: &str = "enigm/bench";

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
            eprintln!("relay bench failed: {err:#}");
            ExitCode::FAILURE
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Settings {
    secs: u64,
    in_flight: usize,
}

/// One engine's figures.
struct Outcome {
    engine: String,
    rate: f64,
    p50: Duration,
    p99: Duration,
    send_p50: Duration,
    errors: u64,
}

fn run() -> Result<()> {
    // `cargo bench` passes `--bench` (and any filter); settings come from the environment.
    if cfg!(debug_assertions) {
        eprintln!("warning: debug build; `cargo bench` builds with the bench (release) profile");
    }
    let settings = Settings {
        secs: env_or("ENIGM_BENCH_SECS", 10)?,
        in_flight: usize::try_from(env_or("ENIGM_BENCH_IN_FLIGHT", 16)?)?,
    };
    if settings.in_flight == 0 || settings.in_flight > 1000 {
        bail!("ENIGM_BENCH_IN_FLIGHT: 1 to 1000");
    }
    let engines = std::env::var("ENIGM_BENCH_ENGINES")
        .unwrap_or_else(|_| "mosquitto,mosquitto-tls,sqlite,postgres".into());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    println!(
        "\nrelay vs mosquitto: {PAYLOAD}-byte messages, {} in flight (each: send, durable/QoS 1 \
         acknowledgement, arrival at the receiver), {} s per engine after {} s warm-up, {cpus} CPUs",
        settings.in_flight,
        settings.secs,
        WARMUP.as_secs()
    );
    let mut results = Vec::new();
    for engine in engines.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let result = match engine {
            "mosquitto" | "mosquitto-tls" => {
                let tls = engine == "mosquitto-tls";
                let broker = Mosquitto::start(tls).context("starting mosquitto")?;
                let label = if tls {
                    "mosquitto TLS"
                } else {
                    "mosquitto TCP"
                };
                let r = runtime.block_on(mqtt_engine(label, &broker, settings));
                let log = broker.stop();
                r.with_context(|| format!("mosquitto log:\n{log}"))?
            }
            "sqlite" => runtime.block_on(relay_engine("relay SQLite", None, settings))?,
            "postgres" => {
                let server = pg::Postgres::start_durable().context("starting PostgreSQL")?;
                eprintln!(
                    "PostgreSQL: fsync, synchronous_commit, wal_sync_method = {}",
                    server.query_value(
                        "SELECT current_setting('fsync') || ' ' || \
                         current_setting('synchronous_commit') || ' ' || \
                         current_setting('wal_sync_method')"
                    )?
                );
                let url = server.url().to_owned();
                let r = runtime.block_on(relay_engine("relay PostgreSQL", Some(&url), settings));
                drop(server);
                r?
            }
            other => bail!("unknown engine {other:?} (mosquitto, mosquitto-tls, sqlite, postgres)"),
        };
        results.push(result);
    }
    let reference = |name: &str| results.iter().find(|r| r.engine == name).map(|r| r.rate);
    let (tcp, tls) = (reference("mosquitto TCP"), reference("mosquitto TLS"));
    let ratio = |rate: f64, of: Option<f64>| {
        of.map_or_else(|| "—".to_owned(), |of| format!("{:.2}×", rate / of))
    };
    println!(
        "\n{:<17} {:>10} {:>9} {:>9} {:>12} {:>7}  {:>9} {:>9}",
        "engine", "msg/s", "p50 ms", "p99 ms", "ack p50 ms", "errors", "× mosq TCP", "× mosq TLS"
    );
    for r in &results {
        let verdict = match (r.engine.starts_with("relay"), tcp) {
            (true, Some(tcp)) if r.rate >= GOAL * tcp => "goal met (≥ 1.0× mosquitto TCP)",
            (true, Some(_)) => "UNDER GOAL (≥ 1.0× mosquitto TCP)",
            _ => "",
        };
        println!(
            "{:<17} {:>10.0} {:>9.2} {:>9.2} {:>12.2} {:>7}  {:>9} {:>9}  {verdict}",
            r.engine,
            r.rate,
            ms(r.p50),
            ms(r.p99),
            ms(r.send_p50),
            r.errors,
            ratio(r.rate, tcp),
            ratio(r.rate, tls),
        );
    }
    println!(
        "(relay: acknowledged = committed and fsynced; mosquitto: acknowledged = in memory, \
         its store snapshotted to disk every second)"
    );
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

// ----- the closed loop, shared by both sides --------------------------------------------------

/// Where the receiver reports arrivals: per worker, (sequence number, arrival time).
type Arrivals = mpsc::UnboundedSender<(u64, Instant)>;

/// One arrival channel per worker.
fn arrival_channels(n: usize) -> (Vec<Arrivals>, Vec<mpsc::UnboundedReceiver<(u64, Instant)>>) {
    (0..n).map(|_| mpsc::unbounded_channel()).unzip()
}

/// Runs `in_flight` workers; worker `w` sends its messages `1, 2, …` with `send(w, seq)`
/// (which returns once the message is acknowledged) and waits for each to arrive on
/// `arrivals[w]` before sending the next. Measures after the warm-up.
async fn drive<S, F>(
    engine: &str,
    settings: Settings,
    send: S,
    arrivals: Vec<mpsc::UnboundedReceiver<(u64, Instant)>>,
) -> Result<Outcome>
where
    S: Fn(usize, u64) -> F + Clone + Send + 'static,
    F: Future<Output = Result<()>> + Send + 'static,
{
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::with_capacity(arrivals.len());
    for (w, mut arrived) in arrivals.into_iter().enumerate() {
        let (measuring, stop, send) = (measuring.clone(), stop.clone(), send.clone());
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(1 << 14);
            let mut acks = Vec::with_capacity(1 << 14);
            let mut errors = 0u64;
            let mut first_error = None;
            let mut seq = 0u64;
            while !stop.load(Ordering::Relaxed) {
                seq += 1;
                let started = Instant::now();
                if let Err(err) = send(w, seq).await {
                    errors += u64::from(measuring.load(Ordering::Relaxed));
                    first_error.get_or_insert(err);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
                let acked = started.elapsed();
                let at = loop {
                    match tokio::time::timeout(DELIVERY_TIMEOUT, arrived.recv()).await {
                        Ok(Some((s, at))) if s == seq => break Some(at),
                        // An earlier message's late (or repeated) delivery.
                        Ok(Some(_)) => {}
                        Ok(None) | Err(_) => break None,
                    }
                };
                let counted = measuring.load(Ordering::Relaxed) && !stop.load(Ordering::Relaxed);
                match at {
                    Some(at) if counted => {
                        latencies.push(at.saturating_duration_since(started));
                        acks.push(acked);
                    }
                    Some(_) => {}
                    None => {
                        errors += u64::from(counted);
                        first_error.get_or_insert(anyhow!(
                            "message {w}-{seq} acknowledged but not delivered within {} s",
                            DELIVERY_TIMEOUT.as_secs()
                        ));
                    }
                }
            }
            (latencies, acks, errors, first_error)
        }));
    }
    tokio::time::sleep(WARMUP).await;
    measuring.store(true, Ordering::Relaxed);
    let window = Instant::now();
    tokio::time::sleep(Duration::from_secs(settings.secs)).await;
    stop.store(true, Ordering::Relaxed);
    let elapsed = window.elapsed();

    let (mut latencies, mut acks, mut errors) = (Vec::new(), Vec::new(), 0);
    for worker in workers {
        let (l, a, e, first) = worker.await?;
        latencies.extend(l);
        acks.extend(a);
        errors += e;
        if let Some(err) = first {
            eprintln!("{engine}: a message failed: {err:#}");
        }
    }
    if latencies.is_empty() {
        bail!("{engine}: no message completed");
    }
    latencies.sort_unstable();
    acks.sort_unstable();
    let pick = |v: &[Duration], q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)];
    eprintln!(
        "{engine}: {} messages in {:.2} s",
        latencies.len(),
        elapsed.as_secs_f64()
    );
    Ok(Outcome {
        engine: engine.to_owned(),
        rate: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50: pick(&latencies, 0.50),
        p99: pick(&latencies, 0.99),
        send_p50: pick(&acks, 0.50),
        errors,
    })
}

/// `(worker, seq)` from a message id `"<worker>-<seq>"`.
fn parse_id(id: &str) -> Option<(usize, u64)> {
    let (w, seq) = id.split_once('-')?;
    Some((w.parse().ok()?, seq.parse().ok()?))
}

// ----- the relay ------------------------------------------------------------------------------

async fn client(running: &Running) -> Result<DeviceApiClient<Channel>> {
    let channel =
        enigm_backend::client::channel(running.grpc_addr, &running.cert_pem, "localhost").await?;
    Ok(DeviceApiClient::new(channel))
}

/// A new account with one software device, enrolled (trusted: its account's first device),
/// activated and attested: (handle, result token).
async fn attested_device(
    api: &mut DeviceApiClient<Channel>,
    username: &str,
) -> Result<(String, String)> {
    let mut device = tokio::task::spawn_blocking(Device::new).await??;
    api.create_account(CreateAccountRequest {
        username: username.into(),
        password: PASSWORD.into(),
    })
    .await?;
    let enrolled = api
        .enroll_device(EnrollDeviceRequest {
            username: username.into(),
            password: PASSWORD.into(),
            evidence: Some(device.enrollment_evidence()),
        })
        .await?
        .into_inner();
    if enrolled.state() != DeviceState::Trusted {
        bail!("{username}'s device enrolled as {:?}", enrolled.state());
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
    let nonce = api
        .get_challenge(GetChallengeRequest {
            handle: enrolled.handle.clone(),
        })
        .await?
        .into_inner()
        .nonce;
    let evidence = device.quote(&nonce)?;
    let token = api
        .submit_evidence(SubmitEvidenceRequest {
            handle: enrolled.handle.clone(),
            nonce,
            evidence: Some(evidence),
            posture_level: 3,
            runtime_issue: false,
        })
        .await?
        .into_inner()
        .token;
    if token.is_empty() {
        bail!("{username}: no result token");
    }
    Ok((enrolled.handle, token))
}

/// `ENVELOPES` sealed envelopes from `sender` to `recipient`, each with the largest body that
/// still fits the smallest bucket; returns them and that body size.
fn seal_envelopes(
    sender: &DeviceKeys,
    recipient: &PublicDeviceKeys,
) -> Result<(Vec<Vec<u8>>, usize)> {
    let sealed = |i: usize, len: usize| {
        let body: Vec<u8> = (0..len).map(|j| (i * 31 + j) as u8).collect();
        seal(
            sender,
            recipient,
            Message {
                id: &format!("{i:032x}"),
                sent_at: 1_800_000_000,
                cover: false,
                body: &body,
            },
        )
    };
    let mut body = 0;
    while sealed(0, body + 1)?.len() == PAYLOAD {
        body += 1;
    }
    let envelopes = (0..ENVELOPES)
        .map(|i| sealed(i, body))
        .collect::<Result<Vec<_>, _>>()?;
    if envelopes.iter().any(|e| e.len() != PAYLOAD) {
        bail!("an envelope is not {PAYLOAD} bytes");
    }
    Ok((envelopes, body))
}

/// Counts the receiver's acknowledgements and keeps the first failure.
#[derive(Default)]
struct AckCount {
    done: AtomicU64,
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
    /// How long each successful `AckMessage` took.
    latencies: Mutex<Vec<Duration>>,
}

async fn relay_engine(
    engine: &str,
    database_url: Option<&str>,
    settings: Settings,
) -> Result<Outcome> {
    let dir = tempfile::tempdir()?;
    write_config(dir.path(), database_url, 10)?;
    let config = Config::load(dir.path(), [])?;
    let running = enigm_backend::start(dir.path(), config).await?;

    let mut api = client(&running).await?;
    let (alice, alice_token) = attested_device(&mut api, "alice").await?;
    let (bob, bob_token) = attested_device(&mut api, "bob").await?;
    let mailbox = api
        .create_mailbox(CreateMailboxRequest {
            caller_handle: bob.clone(),
            caller_token: bob_token.clone(),
        })
        .await?
        .into_inner();
    let id = |account: &str| DeviceId {
        account: account.into(),
        device: "phone".into(),
    };
    let (envelopes, body) = tokio::task::spawn_blocking(move || {
        let alice_keys = DeviceKeys::generate(id("alice"))?;
        let bob_keys = DeviceKeys::generate(id("bob"))?;
        seal_envelopes(&alice_keys, &bob_keys.public()?)
    })
    .await??;
    let envelopes = Arc::new(envelopes);
    eprintln!(
        "{engine}: {} envelopes of {PAYLOAD} bytes sealed (HPKE, {body}-byte bodies)",
        envelopes.len()
    );

    // The receiver: one push stream; each message reported to its worker and acknowledged.
    let (report, arrivals) = arrival_channels(settings.in_flight);
    let receiver = client(&running).await?;
    let request = FetchMessagesRequest {
        caller_handle: bob.clone(),
        caller_token: bob_token.clone(),
        queue: mailbox.queue.clone(),
        receive_capability: mailbox.receive_capability.clone(),
        limit: 0,
    };
    let mut stream = receiver
        .clone()
        .stream_messages(request)
        .await?
        .into_inner();
    let acks = Arc::new(AckCount::default());
    let ack_slots = Arc::new(Semaphore::new(ACKS_IN_FLIGHT));
    let receiving = {
        let (acks, ack_slots, mailbox) = (acks.clone(), ack_slots.clone(), mailbox.clone());
        tokio::spawn(async move {
            while let Some(message) = stream.message().await? {
                let at = Instant::now();
                if let Some((w, seq)) = parse_id(&message.message_id)
                    && let Some(report) = report.get(w)
                {
                    let _ = report.send((seq, at));
                }
                let slot = ack_slots.clone().acquire_owned().await?;
                let (mut api, acks) = (receiver.clone(), acks.clone());
                let ack = AckMessageRequest {
                    caller_handle: bob.clone(),
                    caller_token: bob_token.clone(),
                    queue: mailbox.queue.clone(),
                    receive_capability: mailbox.receive_capability.clone(),
                    message_id: message.message_id,
                };
                tokio::spawn(async move {
                    let started = Instant::now();
                    match api.ack_message(ack).await {
                        Ok(r) if r.get_ref().deleted => {
                            acks.done.fetch_add(1, Ordering::Relaxed);
                            if let Ok(mut l) = acks.latencies.lock() {
                                l.push(started.elapsed());
                            }
                        }
                        outcome => {
                            acks.failed.fetch_add(1, Ordering::Relaxed);
                            if let Ok(mut first) = acks.first_error.lock() {
                                first.get_or_insert(format!("{outcome:?}"));
                            }
                        }
                    }
                    drop(slot);
                });
            }
            anyhow::Ok(())
        })
    };

    let sender = client(&running).await?;
    let send = move |w: usize, seq: u64| {
        let mut api = sender.clone();
        let request = SendMessageRequest {
            caller_handle: alice.clone(),
            caller_token: alice_token.clone(),
            queue: mailbox.queue.clone(),
            send_capability: mailbox.send_capability.clone(),
            message_id: format!("{w}-{seq}"),
            envelope: envelopes[(w + seq as usize) % envelopes.len()].clone(),
            ttl_secs: 3600,
        };
        async move {
            api.send_message(request).await?;
            Ok(())
        }
    };
    let outcome = drive(engine, settings, send, arrivals).await;

    // Let the last acknowledgements finish before the server stops.
    let _ = tokio::time::timeout(
        Duration::from_secs(10),
        ack_slots.acquire_many(ACKS_IN_FLIGHT as u32),
    )
    .await;
    receiving.abort();
    if let Ok(Err(err)) = receiving.await {
        eprintln!("{engine}: the push stream ended: {err:#}");
    }
    running.shutdown().await;
    let failed = acks.failed.load(Ordering::Relaxed);
    let ack_p50 = acks.latencies.lock().ok().and_then(|mut l| {
        l.sort_unstable();
        l.get(l.len() / 2).copied()
    });
    eprintln!(
        "{engine}: {} acknowledged (deleted) by the receiver (AckMessage p50 {:.2} ms), \
         {failed} acknowledgements failed",
        acks.done.load(Ordering::Relaxed),
        ms(ack_p50.unwrap_or_default())
    );
    if let Ok(first) = acks.first_error.lock()
        && let Some(first) = first.as_ref()
    {
        eprintln!("{engine}: first failed acknowledgement: {first}");
    }
    outcome
}

// ----- helpers ---------------------------------------------------------------------------------

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("binding a free port")?;
    Ok(l.local_addr()?.port())
}

// ----- mosquitto ------------------------------------------------------------------------------

/// The Debian package's broker on a free loopback port, with persistence in a temporary
/// directory; killed on [`Mosquitto::stop`] or drop.
struct Mosquitto {
    child: Child,
    dir: TempDir,
    addr: SocketAddr,
    /// With TLS: the broker's self-signed certificate (PEM), the client's only trust anchor.
    cert_pem: Option<Vec<u8>>,
}

impl Mosquitto {
    fn start(tls: bool) -> Result<Self> {
        let binary = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
            .into_iter()
            .find(|p| Path::new(p).is_file())
            .context(
                "no mosquitto binary: install the mosquitto package (cargo xtask install-deps)",
            )?;
        let version = Command::new(binary).arg("-h").output()?;
        let version = String::from_utf8_lossy(&version.stdout);
        eprintln!("{}", version.lines().next().unwrap_or("mosquitto"));
        let dir = tempfile::Builder::new()
            .prefix("enigm-bench-mosquitto-")
            .tempdir()?;
        let port = free_port()?;
        let mut config = format!(
            "listener {port} 127.0.0.1\n\
             allow_anonymous true\n\
             persistence true\n\
             persistence_location {}/\n\
             persistence_file mosquitto.db\n\
             # The in-memory store is written out every second (the default is 1,800 s);\n\
             # never after a count of changes.\n\
             autosave_interval 1\n\
             autosave_on_changes false\n\
             set_tcp_nodelay true\n\
             max_inflight_messages 20\n\
             max_queued_messages 1000\n\
             log_dest stderr\n\
             log_type error\n\
             log_type warning\n",
            dir.path().display()
        );
        let mut cert_pem = None;
        if tls {
            let (cert, key) = enigm_backend::tls::self_signed(&[])?;
            std::fs::write(dir.path().join("cert.pem"), &cert)?;
            std::fs::write(dir.path().join("key.pem"), &key)?;
            config.push_str(&format!(
                "certfile {0}/cert.pem\nkeyfile {0}/key.pem\n",
                dir.path().display()
            ));
            cert_pem = Some(cert);
        }
        std::fs::write(dir.path().join("mosquitto.conf"), config)?;
        // As root, mosquitto drops to the `mosquitto` user, which must own its directory.
        if nix::unistd::geteuid().is_root()
            && let Some(user) = nix::unistd::User::from_name("mosquitto")?
        {
            for entry in std::iter::once(dir.path().to_owned()).chain(
                std::fs::read_dir(dir.path())?
                    .filter_map(|e| e.ok())
                    .map(|e| e.path()),
            ) {
                std::os::unix::fs::chown(&entry, Some(user.uid.as_raw()), Some(user.gid.as_raw()))?;
            }
        }
        let log = std::fs::File::create(dir.path().join("mosquitto.log"))?;
        let child = Command::new(binary)
            .arg("-c")
            .arg(dir.path().join("mosquitto.conf"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("spawning mosquitto")?;
        let mut broker = Self {
            child,
            dir,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            cert_pem,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(broker.addr).is_err() {
            if let Some(status) = broker.child.try_wait()? {
                bail!("mosquitto exited ({status}):\n{}", broker.log());
            }
            if Instant::now() > deadline {
                bail!("mosquitto not listening after 10 s:\n{}", broker.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(broker)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
    }

    /// Stops the broker; returns its log.
    fn stop(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.log()
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The bit of MQTT 3.1.1 (OASIS standard, 2014) the benchmark needs: CONNECT/CONNACK,
/// SUBSCRIBE/SUBACK, PUBLISH and PUBACK at QoS 1.
mod mqtt {
    use anyhow::{Result, bail};
    use tokio::io::{AsyncRead, AsyncReadExt};

    /// A control packet: the fixed header's first byte and the rest after the length.
    fn frame(first: u8, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(body.len() + 5);
        out.push(first);
        let mut n = body.len();
        loop {
            let mut byte = (n % 128) as u8;
            n /= 128;
            if n > 0 {
                byte |= 0x80;
            }
            out.push(byte);
            if n == 0 {
                break;
            }
        }
        out.extend_from_slice(body);
        out
    }

    fn string(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&(s.len() as u16).to_be_bytes());
        out.extend_from_slice(s.as_bytes());
    }

    /// CONNECT, protocol level 4, no clean session (the session, and its queued QoS 1
    /// messages, are kept by the broker), keep-alive off.
    pub fn connect(client_id: &str) -> Vec<u8> {
        let mut body = Vec::new();
        string(&mut body, "MQTT");
        body.extend_from_slice(&[4, 0x00, 0, 0]);
        string(&mut body, client_id);
        frame(0x10, &body)
    }

    /// SUBSCRIBE to `topic` at QoS 1.
    pub fn subscribe(packet_id: u16, topic: &str) -> Vec<u8> {
        let mut body = packet_id.to_be_bytes().to_vec();
        string(&mut body, topic);
        body.push(1);
        frame(0x82, &body)
    }

    /// PUBLISH at QoS 1.
    pub fn publish(packet_id: u16, topic: &str, payload: &[u8]) -> Vec<u8> {
        let mut body = Vec::with_capacity(payload.len() + topic.len() + 4);
        string(&mut body, topic);
        body.extend_from_slice(&packet_id.to_be_bytes());
        body.extend_from_slice(payload);
        frame(0x32, &body)
    }

    /// PUBACK.
    pub fn puback(packet_id: u16) -> [u8; 4] {
        let [hi, lo] = packet_id.to_be_bytes();
        [0x40, 2, hi, lo]
    }

    /// The next packet: (first byte, body); `None` at the end of the stream.
    pub async fn read(r: &mut (impl AsyncRead + Unpin)) -> Result<Option<(u8, Vec<u8>)>> {
        let first = match r.read_u8().await {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let (mut len, mut shift) = (0usize, 0);
        loop {
            let b = r.read_u8().await?;
            len |= usize::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                break;
            }
            shift += 7;
            if shift > 21 {
                bail!("malformed remaining length");
            }
        }
        let mut body = vec![0; len];
        r.read_exact(&mut body).await?;
        Ok(Some((first, body)))
    }

    /// A PUBLISH's packet id (0 at QoS 0) and payload.
    pub fn parse_publish(first: u8, body: &[u8]) -> Result<(u16, &[u8])> {
        let qos = (first >> 1) & 3;
        let topic_len = match body {
            [hi, lo, ..] => usize::from(u16::from_be_bytes([*hi, *lo])),
            _ => bail!("short PUBLISH"),
        };
        let rest = body.get(2 + topic_len..).unwrap_or_default();
        if qos == 0 {
            return Ok((0, rest));
        }
        match rest {
            [hi, lo, payload @ ..] => Ok((u16::from_be_bytes([*hi, *lo]), payload)),
            _ => bail!("short PUBLISH"),
        }
    }

    /// The packet id of a two-byte acknowledgement body (PUBACK, SUBACK's first two bytes).
    pub fn packet_id(body: &[u8]) -> Result<u16> {
        match body {
            [hi, lo, ..] => Ok(u16::from_be_bytes([*hi, *lo])),
            _ => bail!("short acknowledgement"),
        }
    }
}

trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> Io for T {}

type Reader = tokio::io::BufReader<tokio::io::ReadHalf<Box<dyn Io>>>;
type Writer = tokio::io::WriteHalf<Box<dyn Io>>;

/// An MQTT connection to the broker (TLS when it has a certificate), CONNACK checked.
async fn mqtt_connect(broker: &Mosquitto, client_id: &str) -> Result<(Reader, Writer)> {
    use tokio::io::AsyncWriteExt;
    let io: Box<dyn Io> = match &broker.cert_pem {
        Some(cert) => {
            let connector =
                enigm_backend::client::pinned_connector(cert, enigm_backend::client::ALPN_HTTP1)?;
            Box::new(
                enigm_backend::client::connect_tls(&connector, broker.addr, "localhost").await?,
            )
        }
        None => {
            let tcp = tokio::net::TcpStream::connect(broker.addr).await?;
            tcp.set_nodelay(true)?;
            Box::new(tcp)
        }
    };
    let (reader, mut writer) = tokio::io::split(io);
    let mut reader = tokio::io::BufReader::with_capacity(64 * 1024, reader);
    writer.write_all(&mqtt::connect(client_id)).await?;
    match mqtt::read(&mut reader).await? {
        Some((0x20, body)) if body.get(1) == Some(&0) => Ok((reader, writer)),
        other => bail!("{client_id}: no CONNACK accepting the connection: {other:?}"),
    }
}

async fn mqtt_engine(engine: &str, broker: &Mosquitto, settings: Settings) -> Result<Outcome> {
    use tokio::io::AsyncWriteExt;

    // The subscriber: QoS 1, each delivery reported to its worker and acknowledged.
    let (report, arrivals) = arrival_channels(settings.in_flight);
    let (mut sub_reader, mut sub_writer) = mqtt_connect(broker, "enigm-bench-sub").await?;
    sub_writer.write_all(&mqtt::subscribe(1, TOPIC)).await?;
    match mqtt::read(&mut sub_reader).await? {
        Some((0x90, body)) if body.get(2) == Some(&1) => {}
        other => bail!("no SUBACK granting QoS 1: {other:?}"),
    }
    let subscribing = tokio::spawn(async move {
        while let Some((first, body)) = mqtt::read(&mut sub_reader).await? {
            let at = Instant::now();
            if first >> 4 != 3 {
                continue;
            }
            let (packet_id, payload) = mqtt::parse_publish(first, &body)?;
            if let [w0, w1, w2, w3, s0, s1, s2, s3, s4, s5, s6, s7, ..] = *payload {
                let w = u32::from_be_bytes([w0, w1, w2, w3]) as usize;
                let seq = u64::from_be_bytes([s0, s1, s2, s3, s4, s5, s6, s7]);
                if let Some(report) = report.get(w) {
                    let _ = report.send((seq, at));
                }
            }
            if packet_id != 0 {
                sub_writer.write_all(&mqtt::puback(packet_id)).await?;
            }
        }
        anyhow::Ok(())
    });

    // The publisher: one connection; worker w uses packet id w + 1 (one message in flight
    // each), its PUBACK routed back by that id.
    let (mut pub_reader, pub_writer) = mqtt_connect(broker, "enigm-bench-pub").await?;
    let pub_writer = Arc::new(tokio::sync::Mutex::new(pub_writer));
    let (puback_tx, puback_rx): (Vec<_>, Vec<_>) = (0..settings.in_flight)
        .map(|_| mpsc::unbounded_channel::<()>())
        .unzip();
    let puback_rx: Arc<Vec<tokio::sync::Mutex<mpsc::UnboundedReceiver<()>>>> =
        Arc::new(puback_rx.into_iter().map(tokio::sync::Mutex::new).collect());
    let acknowledging = tokio::spawn(async move {
        while let Some((first, body)) = mqtt::read(&mut pub_reader).await? {
            if first == 0x40 {
                let id = usize::from(mqtt::packet_id(&body)?);
                if let Some(tx) = id.checked_sub(1).and_then(|w| puback_tx.get(w)) {
                    let _ = tx.send(());
                }
            }
        }
        anyhow::Ok(())
    });
    let filler: Arc<Vec<u8>> = Arc::new((0..PAYLOAD).map(|i| (i * 7) as u8).collect());
    let send = move |w: usize, seq: u64| {
        let (writer, pubacks, filler) = (pub_writer.clone(), puback_rx.clone(), filler.clone());
        async move {
            let mut payload = filler.to_vec();
            payload[..4].copy_from_slice(&(w as u32).to_be_bytes());
            payload[4..12].copy_from_slice(&seq.to_be_bytes());
            let packet = mqtt::publish(u16::try_from(w + 1)?, TOPIC, &payload);
            let mut puback = pubacks
                .get(w)
                .context("no PUBACK channel for this worker")?
                .lock()
                .await;
            writer.lock().await.write_all(&packet).await?;
            puback
                .recv()
                .await
                .context("the publisher's connection closed")?;
            Ok(())
        }
    };
    let outcome = drive(engine, settings, send, arrivals).await;
    subscribing.abort();
    acknowledging.abort();
    outcome
}
