//! The relay against the real `enigm-backend` binary, run as a child process on a temporary
//! config root (SQLite file under the root, or a private PostgreSQL server started by the
//! storage harness), with verbose logs captured to files:
//!
//! - durability: the process is SIGKILLed during a sustained send and restarted on the same
//!   root; every acknowledged send is delivered exactly once per recipient device;
//! - no plaintext server-side: a marker in the message bodies appears nowhere in the database
//!   (SQLite file, WAL and SHM, or a `pg_dump`) nor in the server's logs, which hold no
//!   capability, queue, message id or envelope bytes either;
//! - expiry: a message past its TTL is never delivered and is gone after one purge cycle;
//! - bad input: oversized, malformed, wrong-capability and unattested requests each get a
//!   clear gRPC status and change nothing.
//!
//! Devices are software TPMs (`common/soft_device.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers: a failed setup step should stop the test

#[path = "common/raw_call.rs"]
mod raw_call;
#[path = "common/soft_device.rs"]
mod soft_device;
use raw_call::raw_call;
#[path = "../../storage/tests/common/mod.rs"]
mod storage_harness;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use enigm_backend::proto::device_api_client::DeviceApiClient;
use enigm_backend::proto::{
    AckMessageRequest, ActivateCredentialRequest, CreateAccountRequest, CreateMailboxRequest,
    CreateMailboxResponse, DeviceState, EnrollDeviceRequest, FetchMessagesRequest,
    GetChallengeRequest, RelayedMessage, SendMessageRequest, SubmitEvidenceRequest,
};
use enigm_envelope::envelope::{Message as Plain, open, seal};
use enigm_envelope::keys::{DeviceId, DeviceKeys};
use enigm_envelope::pad::WIRE_SIZES;
use soft_device::SoftDevice;
use storage_harness::{Kind, TestDb};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::transport::Channel;
use tonic::{Code, Status};

const PASSWORD: &str = "correct horse battery staple";

/// The server's log filter: everything at debug (sqlx statements, tonic, h2), the project's
/// own crates at trace.
const VERBOSE_LOG: &str = "debug,enigm_backend=trace,enigm_backend_storage=trace,\
                           enigm_runtime=trace,enigm_backend_tokens=trace";

// ----- the backend process ------------------------------------------------------------------

/// Writes the config under `root`: loopback ephemeral ports, cheap argon2, generous rate
/// limits, the PostgreSQL URL when given, and `top` (extra top-level keys).
fn write_config(root: &Path, database_url: Option<&str>, top: &str) {
    let etc = root.join("etc/enigm");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::write(
        etc.join("backend-policy.toml"),
        format!(
            "[tpm]\nrequire_event_log = false\n[tpm.pcrs]\n\"7\" = [\"{}\"]\n",
            "07".repeat(32)
        ),
    )
    .unwrap();
    let database = database_url
        .map(|url| format!("database_url = \"{url}\"\n"))
        .unwrap_or_default();
    std::fs::write(
        etc.join("backend.toml"),
        format!(
            "challenge_ttl_secs = 60\n\
             policy_file = \"/etc/enigm/backend-policy.toml\"\n\
             token_lifetime_minutes = 10\n\
             {database}{top}\
             [listen]\ngrpc = \"127.0.0.1:0\"\nhttp = \"127.0.0.1:0\"\n\
             [argon2]\nm_kib = 64\nt = 1\np = 1\n\
             [rate_limit]\nper_minute = 600000\nburst = 100000\n\
             [relay_rate_limit]\nper_minute = 6000000\nburst = 1000000\n"
        ),
    )
    .unwrap();
}

/// A config root and the backend processes run on it, one after the other.
struct Node {
    root: PathBuf,
    runs: usize,
}

/// One running `enigm-backend` process.
struct Backend {
    child: Child,
    grpc: SocketAddr,
    http: SocketAddr,
    cert_pem: Vec<u8>,
}

impl Node {
    fn new(root: &Path) -> Self {
        std::fs::create_dir_all(root.join("logs")).unwrap();
        Self {
            root: root.to_owned(),
            runs: 0,
        }
    }

    /// Starts the binary on the root, its stdout and stderr going to files under `logs/`, and
    /// waits until it says where it listens.
    async fn start(&mut self) -> Backend {
        let run = self.runs;
        self.runs += 1;
        let stdout_path = self.root.join(format!("logs/run{run}.stdout"));
        let stderr_path = self.root.join(format!("logs/run{run}.stderr"));
        let child = Command::new(env!("CARGO_BIN_EXE_enigm-backend"))
            .arg("--config-dir")
            .arg(&self.root)
            .env("ENIGM_LOG", VERBOSE_LOG)
            .env("ENIGM_LOG_STDERR", "1")
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout_path).unwrap())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .spawn()
            .unwrap();
        let mut backend = Backend {
            child,
            grpc: SocketAddr::from(([127, 0, 0, 1], 0)),
            http: SocketAddr::from(([127, 0, 0, 1], 0)),
            cert_pem: Vec::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = std::fs::read_to_string(&stdout_path).unwrap_or_default();
            if let Some(addrs) = out.lines().find_map(|l| l.strip_prefix("gRPC on ")) {
                let (grpc, http) = addrs.split_once(", HTTP on ").unwrap();
                backend.grpc = grpc.trim().parse().unwrap();
                backend.http = http.trim().parse().unwrap();
                break;
            }
            if let Some(status) = backend.child.try_wait().unwrap() {
                panic!(
                    "enigm-backend exited ({status}) before listening:\n{}",
                    std::fs::read_to_string(&stderr_path).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "enigm-backend did not start in time:\n{}",
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        backend.cert_pem = std::fs::read(self.root.join("var/lib/enigm/backend-tls.crt")).unwrap();
        backend
    }

    /// Everything every run wrote to stdout and stderr.
    fn logs(&self) -> Vec<u8> {
        let mut all = Vec::new();
        for run in 0..self.runs {
            for stream in ["stdout", "stderr"] {
                let path = self.root.join(format!("logs/run{run}.{stream}"));
                all.extend(std::fs::read(path).unwrap());
            }
        }
        all
    }

    /// The SQLite database file with its WAL and SHM files, as present now.
    fn sqlite_files(&self) -> Vec<u8> {
        let base = self.root.join("var/lib/enigm/backend.db");
        let mut out = std::fs::read(&base).unwrap();
        for suffix in ["-wal", "-shm"] {
            if let Ok(bytes) = std::fs::read(format!("{}{suffix}", base.display())) {
                out.extend(bytes);
            }
        }
        out
    }

    /// What the database holds: the SQLite files, or a `pg_dump` when `pg` is given.
    fn database(&self, pg: Option<&TestDb>) -> Vec<u8> {
        match pg {
            Some(db) => db.dump().unwrap(),
            None => self.sqlite_files(),
        }
    }

    /// The store the backend uses, opened directly (after the backend stopped).
    async fn open_store(&self) -> enigm_backend_storage::Store {
        let config = enigm_backend::Config::load(&self.root, []).unwrap();
        let keys = enigm_backend_storage::ServerKeys::load(
            &self.root.join("var/lib/enigm/backend-keys.toml"),
        )
        .unwrap();
        enigm_backend_storage::Store::open(&config.resolved_database_url(&self.root), keys)
            .await
            .unwrap()
    }
}

impl Backend {
    async fn channel(&self) -> Channel {
        enigm_backend::client::channel(self.grpc, &self.cert_pem, "localhost")
            .await
            .unwrap()
    }

    async fn api(&self) -> DeviceApiClient<Channel> {
        DeviceApiClient::new(self.channel().await)
    }

    /// SIGKILL, then reap it.
    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM; it must exit cleanly.
    async fn stop(mut self) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap());
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "no exit after SIGTERM");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert!(status.success(), "enigm-backend exited with {status}");
    }

    /// `GET path` on the HTTP listener (TLS, the pinned certificate).
    async fn https_get(&self, path: &str) -> String {
        let connector = enigm_backend::client::pinned_connector(
            &self.cert_pem,
            enigm_backend::client::ALPN_HTTP1,
        )
        .unwrap();
        let mut stream = enigm_backend::client::connect_tls(&connector, self.http, "localhost")
            .await
            .unwrap();
        stream
            .write_all(
                format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await
            .unwrap();
        let mut out = String::new();
        stream.read_to_string(&mut out).await.unwrap();
        out
    }

    /// The relay counter for `event` (stored, delivered, acknowledged, expired).
    async fn relay_counter(&self, event: &str) -> u64 {
        let metrics = self.https_get("/metrics").await;
        let prefix = format!("enigm_backend_relay_messages_total{{event=\"{event}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .unwrap_or_else(|| panic!("no {prefix} in {metrics}"))
            .parse()
            .unwrap()
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ----- devices and the relay's calls -----------------------------------------------------------

/// A trusted (or pending) device: its handle, a current token, and its message keys.
struct Party {
    handle: String,
    token: String,
    keys: Arc<DeviceKeys>,
}

async fn create_account(api: &mut DeviceApiClient<Channel>, username: &str) {
    api.create_account(CreateAccountRequest {
        username: username.into(),
        password: PASSWORD.into(),
    })
    .await
    .unwrap();
}

/// Enrolls and activates a new software device into `username`'s account, attests it, and
/// gives it message keys; returns it with its state.
async fn device(api: &mut DeviceApiClient<Channel>, username: &str) -> (Party, DeviceState) {
    let mut soft = SoftDevice::new().unwrap();
    let enrolled = api
        .enroll_device(EnrollDeviceRequest {
            username: username.into(),
            password: PASSWORD.into(),
            evidence: Some(soft.enrollment_evidence()),
        })
        .await
        .unwrap()
        .into_inner();
    let state = enrolled.state();
    let secret = soft
        .activate(&enrolled.credential.unwrap())
        .unwrap()
        .expect("credential made for this AK under this EK");
    api.activate_credential(ActivateCredentialRequest {
        handle: enrolled.handle.clone(),
        secret,
    })
    .await
    .unwrap();
    let nonce = api
        .get_challenge(GetChallengeRequest {
            handle: enrolled.handle.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .nonce;
    let token = api
        .submit_evidence(SubmitEvidenceRequest {
            handle: enrolled.handle.clone(),
            nonce: nonce.clone(),
            evidence: Some(soft.quote(&nonce).unwrap()),
            posture_level: 3,
            runtime_issue: false,
        })
        .await
        .unwrap()
        .into_inner()
        .token;
    let keys = DeviceKeys::generate(DeviceId {
        account: username.into(),
        device: enrolled.handle.clone(),
    })
    .unwrap();
    (
        Party {
            handle: enrolled.handle,
            token,
            keys: Arc::new(keys),
        },
        state,
    )
}

/// A new account with one (trusted) device.
async fn account(api: &mut DeviceApiClient<Channel>, username: &str) -> Party {
    create_account(api, username).await;
    let (party, state) = device(api, username).await;
    assert_eq!(state, DeviceState::Trusted);
    party
}

async fn mailbox(api: &mut DeviceApiClient<Channel>, owner: &Party) -> CreateMailboxResponse {
    api.create_mailbox(CreateMailboxRequest {
        caller_handle: owner.handle.clone(),
        caller_token: owner.token.clone(),
    })
    .await
    .unwrap()
    .into_inner()
}

/// An envelope from `from` to `to` with `body`.
fn envelope(from: &Party, to: &Party, id: &str, body: &[u8]) -> Vec<u8> {
    seal(
        &from.keys,
        &to.keys.public().unwrap(),
        Plain {
            id,
            sent_at: 0,
            cover: false,
            body,
        },
    )
    .unwrap()
}

fn send_request(
    from: &Party,
    mailbox: &CreateMailboxResponse,
    message_id: &str,
    envelope: Vec<u8>,
    ttl_secs: u64,
) -> SendMessageRequest {
    SendMessageRequest {
        caller_handle: from.handle.clone(),
        caller_token: from.token.clone(),
        queue: mailbox.queue.clone(),
        send_capability: mailbox.send_capability.clone(),
        message_id: message_id.into(),
        envelope,
        ttl_secs,
    }
}

fn fetch_request(owner: &Party, mailbox: &CreateMailboxResponse) -> FetchMessagesRequest {
    FetchMessagesRequest {
        caller_handle: owner.handle.clone(),
        caller_token: owner.token.clone(),
        queue: mailbox.queue.clone(),
        receive_capability: mailbox.receive_capability.clone(),
        limit: 0,
    }
}

fn ack_request(owner: &Party, mailbox: &CreateMailboxResponse, id: &str) -> AckMessageRequest {
    AckMessageRequest {
        caller_handle: owner.handle.clone(),
        caller_token: owner.token.clone(),
        queue: mailbox.queue.clone(),
        receive_capability: mailbox.receive_capability.clone(),
        message_id: id.into(),
    }
}

async fn fetch(
    api: &mut DeviceApiClient<Channel>,
    owner: &Party,
    mailbox: &CreateMailboxResponse,
) -> Vec<RelayedMessage> {
    api.fetch_messages(fetch_request(owner, mailbox))
        .await
        .unwrap()
        .into_inner()
        .messages
}

/// Fetches and acknowledges until the queue is empty; everything delivered, in order.
async fn drain(
    api: &mut DeviceApiClient<Channel>,
    owner: &Party,
    mailbox: &CreateMailboxResponse,
) -> Vec<RelayedMessage> {
    let mut all = Vec::new();
    loop {
        let batch = fetch(api, owner, mailbox).await;
        if batch.is_empty() {
            return all;
        }
        for message in &batch {
            let acked = api
                .ack_message(ack_request(owner, mailbox, &message.message_id))
                .await
                .unwrap()
                .into_inner();
            assert!(
                acked.deleted,
                "{} was there to acknowledge",
                message.message_id
            );
        }
        all.extend(batch);
    }
}

/// Opens a delivered envelope as `to`, from `from`: its id and body.
fn open_from(to: &Party, from: &Party, envelope: &[u8]) -> (String, Vec<u8>) {
    let sender = from.keys.public().unwrap();
    let opened = open(&to.keys, envelope, |d| {
        (*d == sender.id).then(|| sender.clone())
    })
    .unwrap();
    (opened.id, opened.body)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

fn code<T: std::fmt::Debug>(result: Result<T, Status>) -> Code {
    result.unwrap_err().code()
}

/// A fresh PostgreSQL database for `kind` (the storage harness: started here, never
/// skipped: it fails with the reason when the server cannot be started).
fn database(kind: Kind) -> Option<TestDb> {
    (kind == Kind::Postgres).then(|| TestDb::new(Kind::Postgres).unwrap())
}

// ----- durability ------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_sends_survive_sigkill_exactly_once_on_sqlite() {
    durability(Kind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_sends_survive_sigkill_exactly_once_on_postgres() {
    durability(Kind::Postgres).await;
}

/// How a send ended: acknowledged (OK) or not, with the envelope that was sent.
#[derive(Default)]
struct Outcomes {
    acked: BTreeMap<u32, Vec<u8>>,
    failed: BTreeMap<u32, (Vec<u8>, Instant, String)>,
}

fn message_id(n: u32) -> String {
    format!("dur-{n:06}")
}

fn body(n: u32) -> Vec<u8> {
    format!("durability message number {n}").into_bytes()
}

/// One recipient device's mailbox, for the senders.
struct Target {
    to: Arc<Party>,
    mailbox: Arc<CreateMailboxResponse>,
}

/// Alice's client sends numbered messages (`next` onwards) to each target in turn from
/// `SENDERS` concurrent tasks (so the backend commits them in groups); each task stops at its
/// first failure. Once the first target has `kill_after` more acknowledged sends, the backend
/// is SIGKILLed. Every failure must come after the kill, and every sender must have been
/// interrupted by it.
async fn send_until_killed(
    backend: Backend,
    alice: &Arc<Party>,
    targets: &Arc<[Target; 2]>,
    next: &Arc<AtomicU32>,
    outcomes: &Arc<[Mutex<Outcomes>; 2]>,
    kill_after: usize,
) {
    const SENDERS: usize = 4;
    const MAX_MESSAGES: u32 = 900; // under the queue limit of 1000
    let started = Instant::now();
    let failed_before: usize = outcomes
        .iter()
        .map(|o| o.lock().unwrap().failed.len())
        .sum();
    let goal = outcomes[0].lock().unwrap().acked.len() + kill_after;
    let channel = backend.channel().await;
    let mut tasks = Vec::new();
    for _ in 0..SENDERS {
        let mut api = DeviceApiClient::new(channel.clone());
        let (alice, targets) = (alice.clone(), targets.clone());
        let (next, outcomes) = (next.clone(), outcomes.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::SeqCst);
                if n >= MAX_MESSAGES {
                    return;
                }
                for (target, outcomes) in targets.iter().zip(outcomes.iter()) {
                    let sealed = envelope(&alice, &target.to, &message_id(n), &body(n));
                    let request =
                        send_request(&alice, &target.mailbox, &message_id(n), sealed.clone(), 600);
                    let result = api.send_message(request).await;
                    let mut outcomes = outcomes.lock().unwrap();
                    match result {
                        Ok(_) => {
                            outcomes.acked.insert(n, sealed);
                        }
                        Err(status) => {
                            outcomes
                                .failed
                                .insert(n, (sealed, Instant::now(), status.to_string()));
                            return;
                        }
                    }
                }
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while outcomes[0].lock().unwrap().acked.len() < goal {
        assert!(Instant::now() < deadline, "sends too slow");
        let failure = outcomes[0]
            .lock()
            .unwrap()
            .failed
            .values()
            .last()
            .map(|f| f.2.clone());
        assert!(
            tasks.iter().any(|t| !t.is_finished()),
            "every sender stopped before the kill: {failure:?}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let killed_at = Instant::now();
    backend.kill();
    for task in tasks {
        task.await.unwrap();
    }
    let mut failed_now = 0;
    for out in outcomes.iter() {
        let out = out.lock().unwrap();
        failed_now += out.failed.len();
        for (n, (_, at, status)) in &out.failed {
            assert!(
                *at < started || *at >= killed_at,
                "send {n} failed before the kill: {status}"
            );
        }
    }
    assert_eq!(
        failed_now - failed_before,
        SENDERS,
        "the kill interrupted every sender (each stops at its first failure)"
    );
}

/// Alice sends numbered messages to Bob's and Carol's devices, and the backend is SIGKILLed
/// during the sustained send, twice (once after 150 acknowledged sends to Bob, restarted on
/// the same root, once after 100 more). After the last restart: Bob fetches everything, and
/// gets every acknowledged message exactly once (failed ones may or may not be there,
/// nothing else is); Carol's client first retries its failed sends (same message ids), then
/// gets every message it sent exactly once.
async fn durability(kind: Kind) {
    let pg = database(kind);
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), pg.as_ref().map(TestDb::url), "");
    let mut node = Node::new(dir.path());
    let backend = node.start().await;
    let mut api = backend.api().await;
    let alice = Arc::new(account(&mut api, "alice").await);
    let bob = Arc::new(account(&mut api, "bob").await);
    let carol = Arc::new(account(&mut api, "carol").await);
    let to_bob = Arc::new(mailbox(&mut api, &bob).await);
    let to_carol = Arc::new(mailbox(&mut api, &carol).await);
    drop(api);
    let targets = Arc::new([
        Target {
            to: bob.clone(),
            mailbox: to_bob.clone(),
        },
        Target {
            to: carol.clone(),
            mailbox: to_carol.clone(),
        },
    ]);
    let next = Arc::new(AtomicU32::new(0));
    let outcomes = Arc::new([
        Mutex::new(Outcomes::default()),
        Mutex::new(Outcomes::default()),
    ]);
    send_until_killed(backend, &alice, &targets, &next, &outcomes, 150).await;
    let backend = node.start().await;
    send_until_killed(backend, &alice, &targets, &next, &outcomes, 100).await;
    let [bob_out, carol_out] = Arc::try_unwrap(outcomes)
        .ok()
        .unwrap()
        .map(|m| m.into_inner().unwrap());
    assert!(bob_out.acked.len() >= 250);

    let backend = node.start().await;
    let mut api = backend.api().await;

    // Bob: every acknowledged message once; failed ones maybe; nothing that was not sent.
    let delivered = drain(&mut api, &bob, &to_bob).await;
    let mut seen = BTreeSet::new();
    for message in &delivered {
        let n: u32 = message.message_id["dur-".len()..].parse().unwrap();
        assert!(seen.insert(n), "{} delivered twice", message.message_id);
        let sent = bob_out
            .acked
            .get(&n)
            .or_else(|| bob_out.failed.get(&n).map(|f| &f.0))
            .unwrap_or_else(|| panic!("{} was never sent", message.message_id));
        assert_eq!(&message.envelope, sent, "{} as sent", message.message_id);
        assert_eq!(
            open_from(&bob, &alice, &message.envelope),
            (message_id(n), body(n))
        );
    }
    let lost: Vec<_> = bob_out.acked.keys().filter(|n| !seen.contains(n)).collect();
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
    let failed_but_stored = bob_out.failed.keys().filter(|n| seen.contains(n)).count();

    // Carol's client retries what failed (the same message ids): then everything it sent is
    // there exactly once, whether or not the failed attempt had been stored.
    for (n, (sealed, _, _)) in &carol_out.failed {
        api.send_message(send_request(
            &alice,
            &to_carol,
            &message_id(*n),
            sealed.clone(),
            600,
        ))
        .await
        .unwrap();
    }
    let delivered_to_carol = drain(&mut api, &carol, &to_carol).await;
    let mut ids: Vec<_> = delivered_to_carol
        .iter()
        .map(|m| m.message_id.clone())
        .collect();
    let expected: Vec<_> = carol_out
        .acked
        .keys()
        .chain(carol_out.failed.keys())
        .copied()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .map(message_id)
        .collect();
    ids.sort();
    assert_eq!(ids, expected, "every message sent to Carol, once");
    for message in &delivered_to_carol {
        let n: u32 = message.message_id["dur-".len()..].parse().unwrap();
        assert_eq!(
            open_from(&carol, &alice, &message.envelope),
            (message_id(n), body(n))
        );
    }
    eprintln!(
        "{kind:?}: killed twice; {} acknowledged sends to Bob ({} failed, {} of them stored \
         anyway), {} to Carol ({} failed, retried)",
        bob_out.acked.len(),
        bob_out.failed.len(),
        failed_but_stored,
        carol_out.acked.len(),
        carol_out.failed.len()
    );
    drop(api);
    backend.stop().await;
}

// ----- no plaintext server-side ----------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_plaintext_or_relay_secrets_in_database_or_logs_on_sqlite() {
    no_plaintext(Kind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_plaintext_or_relay_secrets_in_database_or_logs_on_postgres() {
    no_plaintext(Kind::Postgres).await;
}

/// What must not appear somewhere, by name, in raw bytes and as lower-case hex.
fn forbidden(items: &[(&str, &[u8])], haystack: &[u8], place: &str) {
    for (name, needle) in items {
        assert!(!contains(haystack, needle), "{name} found in {place}");
        let hexed = hex::encode(needle);
        assert!(
            !contains(haystack, hexed.as_bytes()),
            "{name} (hex) found in {place}"
        );
    }
}

/// Alice sends Bob messages whose bodies carry a marker (in three envelope sizes), plus a few
/// refused requests; with the messages stored, then after they are fetched and acknowledged,
/// neither the marker nor a whole body is in the database, and the capabilities are not
/// either (only their digests); the server's verbose logs hold none of the marker, bodies,
/// capabilities, queue id, message ids or envelope bytes.
async fn no_plaintext(kind: Kind) {
    const MARKER: &[u8] = b"PLAINTEXT-MARKER-e1f7c93a5b";
    let pg = database(kind);
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), pg.as_ref().map(TestDb::url), "");
    let mut node = Node::new(dir.path());
    let backend = node.start().await;
    let mut api = backend.api().await;
    let alice = account(&mut api, "alice").await;
    let bob = account(&mut api, "bob").await;
    let to_bob = mailbox(&mut api, &bob).await;

    let mut sent = Vec::new();
    for (i, padding) in [40usize, 2000, 40, 10_000].into_iter().enumerate() {
        let mut text = format!("message {i} for bob: ").into_bytes();
        text.extend_from_slice(MARKER);
        text.resize(text.len() + padding, b'.');
        text.extend_from_slice(MARKER);
        let id = format!("msgid-4d2b8f-{i:03}");
        let sealed = envelope(&alice, &bob, &id, &text);
        api.send_message(send_request(&alice, &to_bob, &id, sealed.clone(), 3600))
            .await
            .unwrap();
        sent.push((id, text, sealed));
    }
    assert_eq!(
        sent.iter().map(|m| m.2.len()).collect::<Vec<_>>(),
        [WIRE_SIZES[0], WIRE_SIZES[1], WIRE_SIZES[0], WIRE_SIZES[2]],
        "three envelope sizes"
    );
    // Refused requests, so the error paths log too.
    let mut wrong = send_request(&alice, &to_bob, "msgid-4d2b8f-bad", vec![7; 100], 3600);
    assert_eq!(
        code(api.send_message(wrong.clone()).await),
        Code::InvalidArgument
    );
    wrong.envelope.clone_from(&sent[0].2);
    wrong.send_capability.clone_from(&to_bob.receive_capability);
    assert_eq!(code(api.send_message(wrong).await), Code::PermissionDenied);
    let mut bad_fetch = fetch_request(&bob, &to_bob);
    bad_fetch
        .receive_capability
        .clone_from(&to_bob.send_capability);
    assert_eq!(
        code(api.fetch_messages(bad_fetch).await),
        Code::PermissionDenied
    );

    let mut secrets: Vec<(String, Vec<u8>)> = vec![
        ("the marker".into(), MARKER.to_vec()),
        (
            "the send capability".into(),
            to_bob.send_capability.clone().into_bytes(),
        ),
        (
            "the receive capability".into(),
            to_bob.receive_capability.clone().into_bytes(),
        ),
    ];
    for (id, text, _) in &sent {
        secrets.push((format!("the body of {id}"), text.clone()));
    }
    let check = |items: &[(String, Vec<u8>)], haystack: &[u8], place: &str| {
        let refs: Vec<(&str, &[u8])> = items
            .iter()
            .map(|(n, b)| (n.as_str(), b.as_slice()))
            .collect();
        forbidden(&refs, haystack, place);
    };

    // Stored now: the ciphertext is in the database (so the scan sees message rows), the
    // plaintext and the capabilities are not.
    let stored = node.database(pg.as_ref());
    for (id, _, sealed) in &sent {
        let slice = &sealed[100..164];
        let present = match kind {
            Kind::Sqlite => contains(&stored, slice),
            Kind::Postgres => contains(&stored, hex::encode(slice).as_bytes()),
        };
        assert!(present, "the envelope of {id} is stored as sent");
    }
    check(&secrets, &stored, "the database (messages queued)");

    // Bob gets them, and the plaintext did carry the marker.
    let delivered = drain(&mut api, &bob, &to_bob).await;
    assert_eq!(delivered.len(), sent.len());
    for ((id, text, _), message) in sent.iter().zip(&delivered) {
        assert_eq!(&message.message_id, id);
        let (opened_id, opened_body) = open_from(&bob, &alice, &message.envelope);
        assert_eq!((&opened_id, &opened_body), (id, text));
        assert!(contains(&opened_body, MARKER));
    }
    check(
        &secrets,
        &node.database(pg.as_ref()),
        "the database (messages acknowledged)",
    );
    drop(api);
    backend.stop().await;
    if kind == Kind::Sqlite {
        check(
            &secrets,
            &node.sqlite_files(),
            "the database (after shutdown)",
        );
    }

    // The logs: verbose (debug lines, the relay's statements among them), yet none of it.
    let logs = node.logs();
    assert!(contains(&logs, b"DEBUG"), "debug logging was on");
    assert!(
        contains(&logs, b"mailbox_messages"),
        "the relay's queries were logged"
    );
    let mut in_logs = secrets.clone();
    in_logs.push(("the queue id".into(), to_bob.queue.clone().into_bytes()));
    for (who, party) in [("Alice", &alice), ("Bob", &bob)] {
        // A result token's signature part: a bearer credential.
        let signature = party.token.rsplit('.').next().unwrap();
        in_logs.push((format!("{who}'s token"), signature.as_bytes().to_vec()));
    }
    for (id, _, sealed) in &sent {
        in_logs.push((format!("the message id {id}"), id.clone().into_bytes()));
        in_logs.push((format!("envelope bytes of {id}"), sealed[100..132].to_vec()));
    }
    in_logs.push(("a message id".into(), b"msgid-4d2b8f".to_vec()));
    check(&in_logs, &logs, "the server's logs");
}

// ----- expiry ----------------------------------------------------------------------------------

/// On SQLite also the purged envelope's bytes are gone from the file itself (a DELETE
/// leaves a row's bytes in the page's free space unless `PRAGMA secure_delete` is on, as the
/// storage crate's writer sets it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_message_is_never_delivered_and_purged_on_sqlite() {
    expiry(Kind::Sqlite, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_message_is_never_delivered_and_purged_on_postgres() {
    expiry(Kind::Postgres, false).await;
}

/// A message with a 1-second TTL, next to one with an hour: after 1.5 s the fetch returns
/// only the long one; within one purge cycle (1 s) the short one is purged (the counter
/// says so, and the store no longer holds it even when asked as of before its expiry).
/// With `no_remnant_in_sqlite_file`, also none of its bytes are left in the SQLite file.
async fn expiry(kind: Kind, no_remnant_in_sqlite_file: bool) {
    let pg = database(kind);
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        pg.as_ref().map(TestDb::url),
        "purge_interval_secs = 1\n",
    );
    let mut node = Node::new(dir.path());
    let backend = node.start().await;
    let mut api = backend.api().await;
    let alice = account(&mut api, "alice").await;
    let bob = account(&mut api, "bob").await;
    let to_bob = mailbox(&mut api, &bob).await;
    let short = envelope(&alice, &bob, "short", b"gone in a second");
    let long = envelope(&alice, &bob, "long", b"here for an hour");
    api.send_message(send_request(&alice, &to_bob, "short", short.clone(), 1))
        .await
        .unwrap();
    let expires = Instant::now() + Duration::from_secs(1);
    api.send_message(send_request(&alice, &to_bob, "long", long.clone(), 3600))
        .await
        .unwrap();
    tokio::time::sleep_until((expires + Duration::from_millis(500)).into()).await;
    let fetched = fetch(&mut api, &bob, &to_bob).await;
    assert_eq!(
        fetched
            .iter()
            .map(|m| m.message_id.as_str())
            .collect::<Vec<_>>(),
        ["long"],
        "the expired message is not delivered"
    );
    // One purge cycle (1 s) after its expiry, plus slack for a loaded machine.
    let deadline = expires + Duration::from_millis(3500);
    loop {
        if backend.relay_counter("expired").await == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "not purged within a purge cycle");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !api.ack_message(ack_request(&bob, &to_bob, "short"))
            .await
            .unwrap()
            .into_inner()
            .deleted,
        "nothing left to acknowledge"
    );
    assert_eq!(fetch(&mut api, &bob, &to_bob).await.len(), 1);
    if let Some(pg) = &pg {
        let dump = pg.dump().unwrap();
        assert!(!contains(&dump, hex::encode(&short[..64]).as_bytes()));
        assert!(contains(&dump, hex::encode(&long[..64]).as_bytes()));
    }
    drop(api);
    backend.stop().await;

    // The store itself, asked for everything not expired at the Unix epoch: only the long
    // one is left.
    let store = node.open_store().await;
    let rows = store
        .fetch_messages(
            &to_bob.queue,
            &to_bob.receive_capability,
            SystemTime::UNIX_EPOCH,
            100,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        rows.iter()
            .map(|m| m.message_id.as_str())
            .collect::<Vec<_>>(),
        ["long"]
    );
    assert_eq!(rows[0].envelope, long);
    store.close().await;
    if no_remnant_in_sqlite_file {
        let files = node.sqlite_files();
        assert!(
            contains(&files, &long[..64]),
            "the scan sees stored envelopes"
        );
        assert!(
            !contains(&files, &short[..64]),
            "the purged envelope's bytes are still in the SQLite file"
        );
    }
}

// ----- bad input -------------------------------------------------------------------------------

fn expect_status<T: std::fmt::Debug>(
    what: &str,
    result: Result<T, Status>,
    expected: Code,
    mentions: &str,
) {
    let status = result.expect_err(what);
    assert_eq!(status.code(), expected, "{what}: {status:?}");
    assert!(
        status
            .message()
            .to_lowercase()
            .contains(&mentions.to_lowercase()),
        "{what}: the message says {mentions:?}: {status:?}"
    );
}

/// Every kind of bad relay request against the process, each with its status and a message
/// that names the problem; afterwards the one good message is still queued as sent, the
/// other mailbox is empty, and the counters show nothing else was stored or acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_relay_requests_get_clear_statuses_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), None, "");
    let mut node = Node::new(dir.path());
    let backend = node.start().await;
    let channel = backend.channel().await;
    let mut api = DeviceApiClient::new(channel.clone());
    let alice = account(&mut api, "alice").await;
    let bob = account(&mut api, "bob").await;
    let (bob_new, state) = device(&mut api, "bob").await;
    assert_eq!(
        state,
        DeviceState::Pending,
        "Bob's second device is pending"
    );
    let inbox = mailbox(&mut api, &bob).await;
    let other = mailbox(&mut api, &bob).await;

    let kept = envelope(&alice, &bob, "kept", b"the one good message");
    api.send_message(send_request(&alice, &inbox, "kept", kept.clone(), 3600))
        .await
        .unwrap();
    let good = send_request(
        &alice,
        &inbox,
        "bad",
        envelope(&alice, &bob, "bad", b"never stored"),
        3600,
    );
    let with = |f: &dyn Fn(&mut SendMessageRequest)| {
        let mut request = good.clone();
        f(&mut request);
        request
    };
    let long = |n: usize| "a".repeat(n);
    let max_wire = WIRE_SIZES[WIRE_SIZES.len() - 1];
    let sends: Vec<(&str, SendMessageRequest, Code, &str)> = vec![
        // Oversized: over the 256 KiB request limit, and over the largest envelope size.
        (
            "300 KiB request",
            with(&|r| r.envelope = vec![1; 300 * 1024]),
            Code::OutOfRange,
            "too large",
        ),
        (
            "envelope one byte over the largest size",
            with(&|r| r.envelope = vec![1; max_wire + 1]),
            Code::InvalidArgument,
            "envelope",
        ),
        // Malformed: not an envelope size, missing fields, ids too long, bad TTLs.
        (
            "1000-byte envelope",
            with(&|r| r.envelope = vec![1; 1000]),
            Code::InvalidArgument,
            "envelope",
        ),
        (
            "envelope one byte short",
            with(&|r| r.envelope.truncate(r.envelope.len() - 1)),
            Code::InvalidArgument,
            "envelope",
        ),
        (
            "no envelope",
            with(&|r| r.envelope.clear()),
            Code::InvalidArgument,
            "envelope",
        ),
        (
            "no message id",
            with(&|r| r.message_id.clear()),
            Code::InvalidArgument,
            "message_id",
        ),
        (
            "65-character message id",
            with(&|r| r.message_id = long(65)),
            Code::InvalidArgument,
            "message_id",
        ),
        (
            "no queue",
            with(&|r| r.queue.clear()),
            Code::InvalidArgument,
            "queue",
        ),
        (
            "65-character queue",
            with(&|r| r.queue = long(65)),
            Code::InvalidArgument,
            "queue",
        ),
        (
            "no send capability",
            with(&|r| r.send_capability.clear()),
            Code::InvalidArgument,
            "send_capability",
        ),
        (
            "129-character send capability",
            with(&|r| r.send_capability = long(129)),
            Code::InvalidArgument,
            "send_capability",
        ),
        (
            "no TTL",
            with(&|r| r.ttl_secs = 0),
            Code::InvalidArgument,
            "ttl_secs",
        ),
        (
            "TTL over 30 days",
            with(&|r| r.ttl_secs = 30 * 86_400 + 1),
            Code::InvalidArgument,
            "ttl_secs",
        ),
        // Wrong capability: the receive capability, another mailbox's, an unknown queue.
        (
            "the receive capability",
            with(&|r| r.send_capability.clone_from(&inbox.receive_capability)),
            Code::PermissionDenied,
            "capability",
        ),
        (
            "another mailbox's send capability",
            with(&|r| r.send_capability.clone_from(&other.send_capability)),
            Code::PermissionDenied,
            "capability",
        ),
        (
            "an unknown queue",
            with(&|r| r.queue = "AAAAAAAAAAAAAAAAAAAAAA".into()),
            Code::PermissionDenied,
            "capability",
        ),
        // Unattested: no token, no handle, a garbage token, another device's token, and a
        // pending device with its own current token.
        (
            "no token",
            with(&|r| r.caller_token.clear()),
            Code::Unauthenticated,
            "caller_token",
        ),
        (
            "a token over the length limit",
            with(&|r| r.caller_token = long(enigm_backend_tokens::MAX_TOKEN_LEN + 1)),
            Code::Unauthenticated,
            "caller_token",
        ),
        (
            "no handle",
            with(&|r| r.caller_handle.clear()),
            Code::Unauthenticated,
            "caller_handle",
        ),
        (
            "a garbage token",
            with(&|r| r.caller_token = "not.a.token".into()),
            Code::Unauthenticated,
            "caller_token",
        ),
        (
            "Bob's token with Alice's handle",
            with(&|r| r.caller_token.clone_from(&bob.token)),
            Code::Unauthenticated,
            "caller_token",
        ),
        (
            "a pending device",
            with(&|r| {
                r.caller_handle.clone_from(&bob_new.handle);
                r.caller_token.clone_from(&bob_new.token);
            }),
            Code::PermissionDenied,
            "pending",
        ),
    ];
    for (what, request, expected, mentions) in sends {
        expect_status(what, api.send_message(request).await, expected, mentions);
    }
    // A body that is not protobuf, and one whose envelope field has the wrong wire type.
    for (what, body) in [
        ("truncated protobuf", vec![0x0a, 0x7f, 0x01]),
        // Field 6 (envelope, bytes) with wire type 0 (varint).
        ("envelope as a varint", vec![0x30, 0x01]),
    ] {
        let status = raw_call(
            channel.clone(),
            "/enigm.backend.v1.DeviceApi/SendMessage",
            body,
        )
        .await
        .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{what}: {status:?}");
    }

    let fetch_with = |f: &dyn Fn(&mut FetchMessagesRequest)| {
        let mut request = fetch_request(&bob, &inbox);
        f(&mut request);
        request
    };
    let fetches: Vec<(&str, FetchMessagesRequest, Code, &str)> = vec![
        (
            "fetch with the send capability",
            fetch_with(&|r| r.receive_capability.clone_from(&inbox.send_capability)),
            Code::PermissionDenied,
            "capability",
        ),
        (
            "fetch with another mailbox's receive capability",
            fetch_with(&|r| r.receive_capability.clone_from(&other.receive_capability)),
            Code::PermissionDenied,
            "capability",
        ),
        (
            "fetch with a 65-character queue",
            fetch_with(&|r| r.queue = long(65)),
            Code::InvalidArgument,
            "queue",
        ),
        (
            "fetch without a receive capability",
            fetch_with(&|r| r.receive_capability.clear()),
            Code::InvalidArgument,
            "receive_capability",
        ),
        (
            "fetch without a token",
            fetch_with(&|r| r.caller_token.clear()),
            Code::Unauthenticated,
            "caller_token",
        ),
        (
            "fetch with Alice's token",
            fetch_with(&|r| r.caller_token.clone_from(&alice.token)),
            Code::Unauthenticated,
            "caller_token",
        ),
        (
            "fetch by the pending device",
            fetch_with(&|r| {
                r.caller_handle.clone_from(&bob_new.handle);
                r.caller_token.clone_from(&bob_new.token);
            }),
            Code::PermissionDenied,
            "pending",
        ),
    ];
    for (what, request, expected, mentions) in fetches {
        expect_status(what, api.fetch_messages(request).await, expected, mentions);
    }

    let ack_with = |f: &dyn Fn(&mut AckMessageRequest)| {
        let mut request = ack_request(&bob, &inbox, "kept");
        f(&mut request);
        request
    };
    let acks: Vec<(&str, AckMessageRequest, Code, &str)> = vec![
        (
            "ack with the send capability",
            ack_with(&|r| r.receive_capability.clone_from(&inbox.send_capability)),
            Code::PermissionDenied,
            "capability",
        ),
        (
            "ack with another mailbox's receive capability",
            ack_with(&|r| r.receive_capability.clone_from(&other.receive_capability)),
            Code::PermissionDenied,
            "capability",
        ),
        (
            "ack without a message id",
            ack_with(&|r| r.message_id.clear()),
            Code::InvalidArgument,
            "message_id",
        ),
        (
            "ack of a 65-character message id",
            ack_with(&|r| r.message_id = long(65)),
            Code::InvalidArgument,
            "message_id",
        ),
        (
            "ack without a token",
            ack_with(&|r| r.caller_token.clear()),
            Code::Unauthenticated,
            "caller_token",
        ),
        (
            "ack with Alice's token",
            ack_with(&|r| r.caller_token.clone_from(&alice.token)),
            Code::Unauthenticated,
            "caller_token",
        ),
        (
            "ack by the pending device",
            ack_with(&|r| {
                r.caller_handle.clone_from(&bob_new.handle);
                r.caller_token.clone_from(&bob_new.token);
            }),
            Code::PermissionDenied,
            "pending",
        ),
    ];
    for (what, request, expected, mentions) in acks {
        expect_status(what, api.ack_message(request).await, expected, mentions);
    }
    expect_status(
        "mailbox without a token",
        api.create_mailbox(CreateMailboxRequest {
            caller_handle: bob.handle.clone(),
            caller_token: String::new(),
        })
        .await,
        Code::Unauthenticated,
        "token",
    );
    expect_status(
        "mailbox for the pending device",
        api.create_mailbox(CreateMailboxRequest {
            caller_handle: bob_new.handle.clone(),
            caller_token: bob_new.token.clone(),
        })
        .await,
        Code::PermissionDenied,
        "pending",
    );

    // Nothing changed: the good message is queued as sent, the other mailbox is empty, one
    // message stored and none acknowledged.
    let queued = fetch(&mut api, &bob, &inbox).await;
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].message_id, "kept");
    assert_eq!(queued[0].envelope, kept);
    assert!(fetch(&mut api, &bob, &other).await.is_empty());
    assert_eq!(backend.relay_counter("stored").await, 1);
    assert_eq!(backend.relay_counter("acknowledged").await, 0);
    // The well-formed acknowledgement the bad ones were made from works.
    assert!(
        api.ack_message(ack_request(&bob, &inbox, "kept"))
            .await
            .unwrap()
            .into_inner()
            .deleted
    );
    assert!(fetch(&mut api, &bob, &inbox).await.is_empty());
    drop((api, channel));
    backend.stop().await;
}
