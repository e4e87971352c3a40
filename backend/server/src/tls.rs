//! TLS for every listener (OpenSSL): a self-signed ECDSA P-256 certificate generated on first
//! start when none exists, its SHA-256 fingerprint for devices to pin, the acceptor, and the
//! stream type tonic serves over.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};

use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::PKey;
use openssl::ssl::{
    AlpnError, Ssl, SslAcceptor, SslFiletype, SslMethod, SslVersion, select_next_proto,
};
use openssl::x509::extension::{
    BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
};
use openssl::x509::{X509, X509NameBuilder};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_openssl::SslStream;

use crate::files::write_private;

/// TLS setup errors.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// OpenSSL failed.
    #[error("TLS {what}: {source}")]
    Ssl {
        /// What was being done.
        what: &'static str,
        /// OpenSSL's error.
        source: openssl::error::ErrorStack,
    },
    /// A file could not be read or written.
    #[error("TLS file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: io::Error,
    },
}

fn ssl(what: &'static str) -> impl FnOnce(openssl::error::ErrorStack) -> TlsError {
    move |source| TlsError::Ssl { what, source }
}

/// Makes a self-signed ECDSA P-256 certificate for `names` (plus localhost, 127.0.0.1, ::1):
/// (certificate PEM, private key PEM).
pub fn self_signed(names: &[String]) -> Result<(Vec<u8>, Vec<u8>), TlsError> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).map_err(ssl("P-256"))?;
    let key =
        PKey::from_ec_key(EcKey::generate(&group).map_err(ssl("key"))?).map_err(ssl("key"))?;
    let mut name = X509NameBuilder::new().map_err(ssl("name"))?;
    name.append_entry_by_nid(Nid::COMMONNAME, "enigm-backend")
        .map_err(ssl("name"))?;
    let name = name.build();
    let mut builder = X509::builder().map_err(ssl("certificate"))?;
    builder.set_version(2).map_err(ssl("version"))?;
    let mut serial = BigNum::new().map_err(ssl("serial"))?;
    serial
        .rand(127, MsbOption::MAYBE_ZERO, false)
        .map_err(ssl("serial"))?;
    let serial = serial.to_asn1_integer().map_err(ssl("serial"))?;
    builder.set_serial_number(&serial).map_err(ssl("serial"))?;
    builder.set_subject_name(&name).map_err(ssl("subject"))?;
    builder.set_issuer_name(&name).map_err(ssl("issuer"))?;
    builder.set_pubkey(&key).map_err(ssl("public key"))?;
    let not_before = Asn1Time::days_from_now(0).map_err(ssl("validity"))?;
    let not_after = Asn1Time::days_from_now(825).map_err(ssl("validity"))?;
    builder
        .set_not_before(&not_before)
        .map_err(ssl("validity"))?;
    builder.set_not_after(&not_after).map_err(ssl("validity"))?;
    builder
        .append_extension(
            BasicConstraints::new()
                .critical()
                .build()
                .map_err(ssl("ext"))?,
        )
        .map_err(ssl("ext"))?;
    builder
        .append_extension(
            KeyUsage::new()
                .critical()
                .digital_signature()
                .key_cert_sign()
                .build()
                .map_err(ssl("ext"))?,
        )
        .map_err(ssl("ext"))?;
    builder
        .append_extension(
            ExtendedKeyUsage::new()
                .server_auth()
                .build()
                .map_err(ssl("ext"))?,
        )
        .map_err(ssl("ext"))?;
    let mut san = SubjectAlternativeName::new();
    san.dns("localhost").ip("127.0.0.1").ip("::1");
    for extra in names {
        if extra.parse::<IpAddr>().is_ok() {
            san.ip(extra);
        } else {
            san.dns(extra);
        }
    }
    let san = san
        .build(&builder.x509v3_context(None, None))
        .map_err(ssl("subjectAltName"))?;
    builder.append_extension(san).map_err(ssl("ext"))?;
    builder
        .sign(&key, MessageDigest::sha256())
        .map_err(ssl("signing"))?;
    let cert = builder.build();
    Ok((
        cert.to_pem().map_err(ssl("PEM"))?,
        key.private_key_to_pem_pkcs8().map_err(ssl("PEM"))?,
    ))
}

/// Generates a self-signed certificate at `cert`/`key` unless both exist; returns whether it
/// generated one.
pub fn ensure_certificate(cert: &Path, key: &Path, names: &[String]) -> Result<bool, TlsError> {
    if cert.exists() && key.exists() {
        return Ok(false);
    }
    let (cert_pem, key_pem) = self_signed(names)?;
    let io_err = |path: &Path| {
        let path = path.display().to_string();
        move |source| TlsError::Io { path, source }
    };
    write_private(key, &key_pem).map_err(io_err(key))?;
    crate::files::write_public(cert, &cert_pem).map_err(io_err(cert))?;
    Ok(true)
}

/// The SHA-256 fingerprint of a PEM certificate, as `openssl x509 -fingerprint -sha256`
/// prints it (upper-case hex pairs joined by colons).
pub fn fingerprint(cert_pem: &[u8]) -> Result<String, TlsError> {
    enigm_backend_client::fingerprint(cert_pem).map_err(ssl("fingerprint"))
}

/// A TLS acceptor for `cert`/`key` offering `alpn` (wire format, e.g. `b"\x02h2"`).
pub fn acceptor(cert: &Path, key: &Path, alpn: &'static [u8]) -> Result<SslAcceptor, TlsError> {
    let mut builder =
        SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server()).map_err(ssl("acceptor"))?;
    builder
        .set_min_proto_version(Some(SslVersion::TLS1_2))
        .map_err(ssl("protocol version"))?;
    builder
        .set_private_key_file(key, SslFiletype::PEM)
        .map_err(ssl("loading the private key"))?;
    builder
        .set_certificate_chain_file(cert)
        .map_err(ssl("loading the certificate"))?;
    builder
        .check_private_key()
        .map_err(ssl("key/certificate"))?;
    builder.set_alpn_select_callback(move |_, client| {
        select_next_proto(alpn, client).ok_or(AlpnError::NOACK)
    });
    Ok(builder.build())
}

/// Runs the server side of a handshake on `tcp`.
pub async fn accept(acceptor: &SslAcceptor, tcp: TcpStream) -> io::Result<SslStream<TcpStream>> {
    let ssl = Ssl::new(acceptor.context()).map_err(io::Error::other)?;
    let mut stream = SslStream::new(ssl, tcp).map_err(io::Error::other)?;
    Pin::new(&mut stream)
        .accept()
        .await
        .map_err(io::Error::other)?;
    Ok(stream)
}

/// A server-side TLS connection tonic serves over.
#[derive(Debug)]
pub struct TlsIo {
    stream: SslStream<TcpStream>,
    remote: Option<SocketAddr>,
}

impl TlsIo {
    /// Wraps an accepted stream.
    pub fn new(stream: SslStream<TcpStream>) -> Self {
        let remote = stream.get_ref().peer_addr().ok();
        Self { stream, remote }
    }

    /// The peer's address, when known.
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.remote
    }
}

/// What a request learns about its connection.
#[derive(Debug, Clone)]
pub struct TlsConnectInfo {
    /// The peer's address.
    pub remote_addr: Option<SocketAddr>,
}

impl tonic::transport::server::Connected for TlsIo {
    type ConnectInfo = TlsConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        TlsConnectInfo {
            remote_addr: self.remote,
        }
    }
}

impl AsyncRead for TlsIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
