//! The connection under every HTTP request: `http://` over TCP, or `https://` over TLS
//! (OpenSSL; TLS 1.2 or newer, the server's certificate checked against the system's trust
//! store or a configured CA file, and its name against the URL's host).
//!
//! TUF metadata authenticates every byte on its own; TLS adds confidentiality (which images
//! a device fetches) and keeps a network attacker from even starting a freeze or
//! endless-data attempt.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::Duration;

use openssl::ssl::{SslConnector, SslMethod, SslStream, SslVersion};

const TIMEOUT: Duration = Duration::from_secs(30);

/// How TLS connections are checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsConfig {
    /// Trust only the CA certificates in this PEM file (default: the system's trust store).
    pub ca_file: Option<PathBuf>,
}

/// An open connection, plain or TLS.
#[derive(Debug)]
pub enum Stream {
    /// `http://`.
    Plain(TcpStream),
    /// `https://`.
    Tls(Box<SslStream<TcpStream>>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// The parts of an `http://` or `https://` URL a request needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Whether it is `https://`.
    pub tls: bool,
    /// `host[:port]` as written (the `Host` header).
    pub authority: String,
    /// The host name alone (what the certificate must name).
    pub host: String,
    /// `host:port` to connect to.
    pub address: String,
    /// The path and query (`/` when empty).
    pub path: String,
}

/// Splits `url`; `None` for other schemes.
pub fn parse(url: &str) -> Option<Target> {
    let (tls, rest) = if let Some(rest) = url.strip_prefix("https://") {
        (true, rest)
    } else {
        (false, url.strip_prefix("http://")?)
    };
    let (authority, path) = rest
        .find('/')
        .map_or((rest, "/"), |i| (&rest[..i], &rest[i..]));
    if authority.is_empty() {
        return None;
    }
    let (host, port) = match authority.strip_prefix('[') {
        Some(bracketed) => {
            let (host, after) = bracketed.split_once(']')?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':')?),
            };
            (host, port)
        }
        None => match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    let port: u16 = match port {
        Some(p) => p.parse().ok()?,
        None if tls => 443,
        None => 80,
    };
    if host.is_empty() {
        return None;
    }
    let address = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    Some(Target {
        tls,
        authority: authority.to_owned(),
        host: host.to_owned(),
        address,
        path: path.to_owned(),
    })
}

/// Connects to `target` (TLS checked by `tls`), with read and write timeouts.
pub fn connect(target: &Target, tls: &TlsConfig) -> Result<Stream, String> {
    let tcp = TcpStream::connect(&target.address).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    tcp.set_write_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    if !target.tls {
        return Ok(Stream::Plain(tcp));
    }
    let mut builder = SslConnector::builder(SslMethod::tls_client()).map_err(|e| e.to_string())?;
    builder
        .set_min_proto_version(Some(SslVersion::TLS1_2))
        .map_err(|e| e.to_string())?;
    if let Some(ca) = &tls.ca_file {
        // Only this CA: a fresh store without the system's roots.
        let pem = std::fs::read(ca).map_err(|e| format!("{}: {e}", ca.display()))?;
        let certs = openssl::x509::X509::stack_from_pem(&pem)
            .map_err(|e| format!("{}: {e}", ca.display()))?;
        let mut store = openssl::x509::store::X509StoreBuilder::new().map_err(|e| e.to_string())?;
        for cert in certs {
            store.add_cert(cert).map_err(|e| e.to_string())?;
        }
        builder
            .set_verify_cert_store(store.build())
            .map_err(|e| e.to_string())?;
    }
    let stream = builder
        .build()
        .connect(&target.host, tcp)
        .map_err(|e| format!("TLS with {}: {e}", target.host))?;
    Ok(Stream::Tls(Box::new(stream)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn urls() {
        let cases = [
            (
                "http://repo.example/m/1.root.json",
                Some((false, "repo.example", "repo.example:80", "/m/1.root.json")),
            ),
            (
                "https://repo.example",
                Some((true, "repo.example", "repo.example:443", "/")),
            ),
            (
                "https://127.0.0.1:8443/t",
                Some((true, "127.0.0.1", "127.0.0.1:8443", "/t")),
            ),
            (
                "https://[::1]:8443/t",
                Some((true, "::1", "[::1]:8443", "/t")),
            ),
            ("https://[::1]/t", Some((true, "::1", "[::1]:443", "/t"))),
            ("https://host:notaport/", None),
            ("https:///path", None),
            ("ftp://host/", None),
        ];
        for (url, expected) in cases {
            let got =
                parse(url).map(|t| (t.tls, t.host.clone(), t.address.clone(), t.path.clone()));
            let expected = expected.map(|(tls, host, address, path)| {
                (tls, host.to_owned(), address.to_owned(), path.to_owned())
            });
            assert_eq!(got, expected, "{url}");
        }
    }
}
