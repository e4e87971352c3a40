//! A gRPC channel to the backend that trusts exactly one pinned certificate (the backend's
//! self-signed one), over OpenSSL — for devices, tools and tests.

use std::net::SocketAddr;

use hyper_util::rt::TokioIo;
use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
use openssl::x509::X509;
use openssl::x509::store::X509StoreBuilder;
use tokio::net::TcpStream;
use tokio_openssl::SslStream;
use tonic::transport::{Channel, Endpoint};

/// Why a channel could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The pinned certificate or the TLS context.
    #[error("TLS setup: {0}")]
    Tls(#[from] openssl::error::ErrorStack),
    /// Connecting.
    #[error("connect: {0}")]
    Connect(#[from] tonic::transport::Error),
}

/// A TLS connector whose only trust anchor is `cert_pem`.
pub fn pinned_connector(cert_pem: &[u8], alpn: &[u8]) -> Result<SslConnector, ClientError> {
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

/// A gRPC channel to `addr` trusting only `cert_pem`, checking it is valid for
/// `server_name`.
pub async fn channel(
    addr: SocketAddr,
    cert_pem: &[u8],
    server_name: &str,
) -> Result<Channel, ClientError> {
    let connector = pinned_connector(cert_pem, b"\x02h2")?;
    let name = server_name.to_owned();
    let endpoint = Endpoint::from_shared(format!("http://{name}:{}", addr.port()))?;
    let channel = endpoint
        .connect_with_connector(tower::service_fn(move |_uri| {
            let connector = connector.clone();
            let name = name.clone();
            async move { connect_tls(&connector, addr, &name).await.map(TokioIo::new) }
        }))
        .await?;
    Ok(channel)
}
