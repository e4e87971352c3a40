//! Starting the backend: first-start material (keys, certificate), storage, the gRPC and
//! HTTP listeners (both TLS), and stopping them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::routing::get;
use enigm_backend_lifecycle::{Argon2Params, PasswordHasher};
use enigm_backend_storage::{KeyFile, ServerKeys, Store};
use enigm_backend_tokens::{Alg, KeyRing, SigningKey};
use enigm_runtime::sysroot::Sysroot;
use enigm_verifier::policy::Policy;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use openssl::ssl::SslAcceptor;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;

use crate::admin::AdminService;
use crate::config::{Config, InvalidConfig};
use crate::metrics::Metrics;
use crate::proto::admin_api_server::AdminApiServer;
use crate::proto::device_api_server::DeviceApiServer;
use crate::ratelimit::RateLimiter;
use crate::relay_hub::{self, RelayHub};
use crate::service::{DeviceService, Shared};
use crate::tls::{self, TlsError, TlsIo};

/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the backend could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] InvalidConfig),
    /// TLS material.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// A key file.
    #[error("key file {path}: {message}")]
    Key {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The policy file.
    #[error(transparent)]
    Policy(#[from] enigm_verifier::policy::PolicyError),
    /// The database.
    #[error(transparent)]
    Store(#[from] enigm_backend_storage::StoreError),
    /// A listener.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
    /// The admin key file.
    #[error(transparent)]
    AdminKey(#[from] crate::admin::AdminKeyError),
    /// Creating a directory.
    #[error("cannot create {path}: {source}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

fn key_err(path: &Path) -> impl FnOnce(String) -> StartError + '_ {
    move |message| StartError::Key {
        path: path.to_owned(),
        message,
    }
}

/// The storage key file: loaded, or generated (0600) on first start.
fn server_keys(path: &Path) -> Result<ServerKeys, StartError> {
    if !path.exists() {
        let file = KeyFile::generate("k1").map_err(|e| key_err(path)(e.to_string()))?;
        let text = file.to_toml().map_err(|e| key_err(path)(e.to_string()))?;
        crate::files::write_private(path, text.as_bytes())
            .map_err(|e| key_err(path)(e.to_string()))?;
        tracing::info!(path = %path.display(), "generated the storage key file");
    }
    ServerKeys::load(path).map_err(|e| key_err(path)(e.to_string()))
}

/// The token signing key: loaded, or generated (Ed25519, 0600) on first start.
fn signing_key(path: &Path) -> Result<SigningKey, StartError> {
    if !path.exists() {
        let key = SigningKey::generate(Alg::EdDsa).map_err(|e| key_err(path)(e.to_string()))?;
        let pem = key
            .private_key_pem()
            .map_err(|e| key_err(path)(e.to_string()))?;
        crate::files::write_private(path, &pem).map_err(|e| key_err(path)(e.to_string()))?;
        tracing::info!(path = %path.display(), "generated the token signing key");
    }
    SigningKey::from_pem_file(path).map_err(|e| key_err(path)(e.to_string()))
}

/// A running backend.
pub struct Running {
    /// The gRPC listener's address.
    pub grpc_addr: SocketAddr,
    /// The HTTP listener's address.
    pub http_addr: SocketAddr,
    /// The TLS certificate (PEM) both listeners present.
    pub cert_pem: Vec<u8>,
    /// Its SHA-256 fingerprint.
    pub fingerprint: String,
    /// The key ring results are signed with (relying parties get its verification part).
    pub verification_keys: KeyRing,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    /// Stops both listeners and waits (briefly) for them.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }

    /// Waits until a listener stops on its own (an error) — for the binary.
    pub async fn wait(&mut self) {
        if let Some(task) = self.tasks.first_mut() {
            let _ = task.await;
        }
    }
}

fn ensure_parent(path: &Path) -> Result<(), StartError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|source| StartError::Dir {
            path: parent.to_owned(),
            source,
        })?;
    }
    Ok(())
}

/// Starts the backend configured under `root` (`/` in production).
pub async fn start(root: &Path, config: Config) -> Result<Running, StartError> {
    config.validate()?;
    let sysroot = Sysroot::new(root);
    let key_file = sysroot.path(&config.key_file);
    let token_key = sysroot.path(&config.token_key);
    let cert = sysroot.path(&config.tls.cert);
    let tls_key = sysroot.path(&config.tls.key);
    let admin_key_file = sysroot.path(&config.admin_key_file);
    for path in [&key_file, &token_key, &cert, &tls_key, &admin_key_file] {
        ensure_parent(path)?;
    }
    if let Some(db) = config.sqlite_path(root) {
        ensure_parent(&db)?;
    }
    let keys = server_keys(&key_file)?;
    let admin_key = crate::admin::admin_key(&admin_key_file)?;
    let keyring = KeyRing::with_signing_key(signing_key(&token_key)?)
        .map_err(|e| key_err(&token_key)(e.to_string()))?;
    if tls::ensure_certificate(&cert, &tls_key, &config.tls.names)? {
        tracing::info!(path = %cert.display(), "generated a self-signed TLS certificate");
    }
    let cert_pem = std::fs::read(&cert).map_err(|source| TlsError::Io {
        path: cert.display().to_string(),
        source,
    })?;
    let fingerprint = tls::fingerprint(&cert_pem)?;
    tracing::info!(%fingerprint, "TLS certificate SHA-256 fingerprint (pin this on devices)");
    let policy = match &config.policy_file {
        Some(path) => Policy::load(&sysroot.path(path))?,
        None => Policy::default(),
    };
    let hasher = PasswordHasher::new(Argon2Params {
        m_kib: config.argon2.m_kib,
        t: config.argon2.t,
        p: config.argon2.p,
    })
    .map_err(|e| {
        StartError::Config(InvalidConfig::Range {
            key: "argon2",
            message: e.to_string(),
        })
    })?;
    let dummy_hash = hasher
        .hash_password("enigm-backend unknown-user placeholder")
        .map_err(|e| {
            StartError::Config(InvalidConfig::Range {
                key: "argon2",
                message: e.to_string(),
            })
        })?;
    let store = Store::open(&config.resolved_database_url(root), keys).await?;
    let metrics = Arc::new(Metrics::default());
    let verification_keys = keyring
        .verification_only()
        .map_err(|e| key_err(&token_key)(e.to_string()))?;
    let (shutdown, shutdown_rx) = watch::channel(false);
    let relay_hub = Arc::new(RelayHub::new(
        store.engine() == enigm_backend_storage::Engine::Sqlite,
        shutdown_rx.clone(),
    ));
    let notifications = relay_hub::listen(store.clone(), Arc::clone(&relay_hub)).await?;
    let shared = Arc::new(Shared {
        store,
        keyring,
        policy,
        hasher,
        challenge_ttl: Duration::from_secs(config.challenge_ttl_secs),
        token_ttl_secs: config.token_lifetime_minutes * 60,
        metrics: Arc::clone(&metrics),
        dummy_hash,
        limiter: RateLimiter::new(config.rate_limit),
        queue_limiter: RateLimiter::new(config.relay_rate_limit),
        relay_hub,
        token_cache: Default::default(),
    });

    let grpc_listener = TcpListener::bind(config.listen.grpc)
        .await
        .map_err(|source| StartError::Listen {
            addr: config.listen.grpc,
            source,
        })?;
    let http_listener = TcpListener::bind(config.listen.http)
        .await
        .map_err(|source| StartError::Listen {
            addr: config.listen.http,
            source,
        })?;
    let local = |l: &TcpListener, addr| {
        l.local_addr()
            .map_err(|source| StartError::Listen { addr, source })
    };
    let grpc_addr = local(&grpc_listener, config.listen.grpc)?;
    let http_addr = local(&http_listener, config.listen.http)?;
    let grpc_tls = Arc::new(tls::acceptor(&cert, &tls_key, b"\x02h2")?);
    let http_tls = Arc::new(tls::acceptor(&cert, &tls_key, b"\x08http/1.1")?);

    let grpc = grpc_task(
        Arc::clone(&shared),
        grpc_listener,
        grpc_tls,
        DeviceService::new(Arc::clone(&shared)),
        AdminService::new(Arc::clone(&shared), admin_key, config.admin_name.clone()),
        config.max_request_bytes,
        shutdown_rx.clone(),
    );
    let purge = purge_task(
        shared,
        config.retention,
        Duration::from_secs(config.purge_interval_secs),
        shutdown_rx.clone(),
    );
    let http = http_task(http_listener, http_tls, metrics, shutdown_rx);
    tracing::info!(%grpc_addr, %http_addr, "enigm-backend listening (TLS)");
    Ok(Running {
        grpc_addr,
        http_addr,
        cert_pem,
        fingerprint,
        verification_keys,
        shutdown,
        tasks: [grpc, http, purge]
            .into_iter()
            .chain(notifications)
            .collect(),
    })
}

/// Accepts TCP connections, runs TLS handshakes concurrently, and yields finished ones.
fn tls_incoming(
    listener: TcpListener,
    acceptor: Arc<SslAcceptor>,
    mut shutdown: watch::Receiver<bool>,
) -> ReceiverStream<std::io::Result<TlsIo>> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = tokio::select! {
                _ = shutdown.changed() => break,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(err) => {
                        tracing::warn!(error = %err, "accept failed");
                        continue;
                    }
                },
            };
            // Small gRPC frames must not wait for Nagle's algorithm (about 40 ms per call).
            if let Err(err) = tcp.set_nodelay(true) {
                tracing::debug!(error = %err, "TCP_NODELAY not set");
            }
            let acceptor = Arc::clone(&acceptor);
            let tx = tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls::accept(&acceptor, tcp)).await {
                    Ok(Ok(stream)) => {
                        let _ = tx.send(Ok(TlsIo::new(stream))).await;
                    }
                    Ok(Err(err)) => tracing::debug!(%peer, error = %err, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

fn grpc_task(
    shared: Arc<Shared>,
    listener: TcpListener,
    acceptor: Arc<SslAcceptor>,
    service: DeviceService,
    admin: AdminService,
    max_request_bytes: usize,
    shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let metrics = Arc::clone(&shared.metrics);
    // One connection record (the source IP address, sealed; purged after its retention) per
    // gRPC connection, written off the request path.
    let incoming = {
        use tokio_stream::StreamExt;
        tls_incoming(listener, acceptor, shutdown.clone()).map(move |conn| {
            if let Ok(io) = &conn
                && let Some(addr) = io.remote_addr()
            {
                let shared = Arc::clone(&shared);
                tokio::spawn(async move {
                    if let Err(err) = shared
                        .store
                        .record_connection(std::time::SystemTime::now(), &addr.ip().to_string())
                        .await
                    {
                        tracing::warn!(error = %err, "recording a connection failed");
                    }
                });
            }
            conn
        })
    };
    let server = DeviceApiServer::new(service).max_decoding_message_size(max_request_bytes);
    let admin = AdminApiServer::new(admin).max_decoding_message_size(max_request_bytes);
    let count_errors = tower::util::MapResponseLayer::new(
        move |response: tonic::codegen::http::Response<tonic::body::Body>| {
            if let Some(code) = response
                .headers()
                .get("grpc-status")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<i32>().ok())
            {
                metrics.error(code);
            }
            response
        },
    );
    let mut shutdown = shutdown;
    tokio::spawn(async move {
        let result = tonic::transport::Server::builder()
            .layer(count_errors)
            .add_service(server)
            .add_service(admin)
            .serve_with_incoming_shutdown(incoming, async move {
                let _ = shutdown.changed().await;
            })
            .await;
        if let Err(err) = result {
            tracing::error!(error = %err, "gRPC server stopped");
        }
    })
}

/// Every `interval`, deletes the records past `retention` (counted in the metrics) and the
/// relay's expired messages, and drops rate-limit buckets that are full again.
fn purge_task(
    shared: Arc<Shared>,
    retention: enigm_backend_storage::Retention,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                _ = ticks.tick() => {}
            }
            match shared
                .store
                .purge(std::time::SystemTime::now(), &retention)
                .await
            {
                Ok(counts) => shared.metrics.purged(&counts),
                Err(err) => {
                    shared.metrics.purge_failed();
                    tracing::error!(error = %err, "purge failed");
                }
            }
            match shared
                .store
                .purge_expired_messages(std::time::SystemTime::now())
                .await
            {
                Ok(0) => {}
                Ok(count) => {
                    shared.metrics.relay_expired(count);
                    tracing::debug!(count, "expired relay messages purged");
                }
                Err(err) => {
                    shared.metrics.purge_failed();
                    tracing::error!(error = %err, "purging relay messages failed");
                }
            }
            shared.limiter.prune(std::time::Instant::now());
        }
    })
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn metrics_text(
    State(metrics): State<Arc<Metrics>>,
) -> ([(axum::http::HeaderName, &'static str); 1], String) {
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        metrics.render(),
    )
}

/// The HTTP routes: `/healthz` and `/metrics`.
pub fn http_router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        .with_state(metrics)
}

fn http_task(
    listener: TcpListener,
    acceptor: Arc<SslAcceptor>,
    metrics: Arc<Metrics>,
    shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let router = http_router(metrics);
    let mut incoming = tls_incoming(listener, acceptor, shutdown);
    tokio::spawn(async move {
        use tokio_stream::StreamExt;
        while let Some(Ok(stream)) = incoming.next().await {
            let service = TowerToHyperService::new(router.clone());
            tokio::spawn(async move {
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                if let Err(err) = builder
                    .serve_connection(TokioIo::new(stream), service)
                    .await
                {
                    tracing::debug!(error = %err, "HTTP connection ended with an error");
                }
            });
        }
    })
}
