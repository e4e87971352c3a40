//! A gRPC channel to the Enigm backend that trusts exactly one pinned certificate (the
//! backend's self-signed one, or whatever certificate its operator configured), over
//! OpenSSL — for devices (`enigmctl`), tools and tests. `TCP_NODELAY` is set, so small
//! requests are not held back by Nagle's algorithm.
//!
//! [`proto`] holds the client (no server) generated from `backend/proto/device.proto`.

use std::net::SocketAddr;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use openssl::hash::MessageDigest;
use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
use openssl::x509::X509;
use openssl::x509::store::X509StoreBuilder;
use tokio::net::TcpStream;
use tokio_openssl::SslStream;
use tonic::transport::{Channel, Endpoint};

/// Generated clients and messages of `enigm.backend.v1` (`backend/proto/device.proto`);
/// the evidence types are `enigm_evidence::v1`'s.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod proto {
    tonic::include_proto!("enigm.backend.v1");
}

/// ALPN for gRPC (HTTP/2).
pub const ALPN_H2: &[u8] = b"\x02h2";
/// ALPN for HTTP/1.1 (the backend's health and metrics listener).
pub const ALPN_HTTP1: &[u8] = b"\x08http/1.1";

/// Why a channel could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// The pinned certificate cannot be loaded, or the TLS context not built.
    #[error("the pinned certificate cannot be used: {0}")]
    Certificate(#[from] openssl::error::ErrorStack),
    /// Connecting (unreachable, or the TLS handshake failed).
    #[error("{0}")]
    Connect(#[from] tonic::transport::Error),
}

/// A certificate's SHA-256 fingerprint as `openssl x509 -fingerprint -sha256` prints it
/// (upper-case hex pairs joined by colons).
pub fn fingerprint(cert_pem: &[u8]) -> Result<String, openssl::error::ErrorStack> {
    let digest = X509::from_pem(cert_pem)?.digest(MessageDigest::sha256())?;
    Ok(digest
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":"))
}

/// A TLS connector whose only trust anchor is `cert_pem`, offering `alpn`.
pub fn pinned_connector(
    cert_pem: &[u8],
    alpn: &[u8],
) -> Result<SslConnector, openssl::error::ErrorStack> {
    let mut store = X509StoreBuilder::new()?;
    store.add_cert(X509::from_pem(cert_pem)?)?;
    let mut builder = SslConnector::builder(SslMethod::tls_client())?;
    builder.set_verify_cert_store(store.build())?;
    builder.set_verify(SslVerifyMode::PEER);
    builder.set_alpn_protos(alpn)?;
    Ok(builder.build())
}

/// Opens a TLS connection to `addr`, verifying the pinned certificate for `server_name`.
pub async fn connect_tls(
    connector: &SslConnector,
    addr: SocketAddr,
    server_name: &str,
) -> std::io::Result<SslStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let ssl = connector
        .configure()
        .map_err(std::io::Error::other)?
        .into_ssl(server_name)
        .map_err(std::io::Error::other)?;
    let mut stream = SslStream::new(ssl, tcp).map_err(std::io::Error::other)?;
    std::pin::Pin::new(&mut stream)
        .connect()
        .await
        .map_err(std::io::Error::other)?;
    Ok(stream)
}

/// A gRPC channel to `addr` trusting only `cert_pem`, which must be valid for `server_name`.
pub async fn channel(
    addr: SocketAddr,
    cert_pem: &[u8],
    server_name: &str,
) -> Result<Channel, ChannelError> {
    let connector = pinned_connector(cert_pem, ALPN_H2)?;
    let name = server_name.to_owned();
    let endpoint = Endpoint::from_shared(format!("http://localhost:{}", addr.port()))?
        .connect_timeout(Duration::from_secs(10));
    let channel = endpoint
        .connect_with_connector(tower::service_fn(move |_uri| {
            let connector = connector.clone();
            let name = name.clone();
            async move { connect_tls(&connector, addr, &name).await.map(TokioIo::new) }
        }))
        .await?;
    Ok(channel)
}
