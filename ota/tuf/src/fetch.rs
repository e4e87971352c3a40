//! Fetching metadata and targets with a hard length cap: `http://` and `https://` (HTTP/1.1,
//! no redirects; TLS as [`crate::transport`] sets it up) and `file://` URLs, behind the
//! [`Fetcher`] trait so the update logic can be tested with any transport.

use std::io::{BufRead, BufReader, Read, Write};

use crate::transport::{self, TlsConfig};

/// Why a fetch failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// The file does not exist (HTTP 404, or no such file).
    NotFound,
    /// More than the cap.
    TooLong,
    /// Anything else.
    Other(String),
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::NotFound => f.write_str("not found"),
            FetchError::TooLong => f.write_str("longer than allowed"),
            FetchError::Other(e) => f.write_str(e),
        }
    }
}

/// Fetches a URL's whole body, refusing more than `max_len` bytes.
pub trait Fetcher {
    /// The body of `url`.
    fn fetch(&mut self, url: &str, max_len: u64) -> Result<Vec<u8>, FetchError>;
}

/// `http://`, `https://` and `file://` fetching.
#[derive(Debug, Default, Clone)]
pub struct UrlFetcher {
    /// How TLS servers are checked.
    pub tls: TlsConfig,
}

impl UrlFetcher {
    /// A fetcher checking TLS servers with `tls`.
    pub fn new(tls: TlsConfig) -> Self {
        Self { tls }
    }
}

fn read_capped(mut reader: impl Read, max_len: u64) -> Result<Vec<u8>, FetchError> {
    let mut body = Vec::new();
    reader
        .by_ref()
        .take(max_len.saturating_add(1))
        .read_to_end(&mut body)
        .map_err(|e| FetchError::Other(e.to_string()))?;
    if body.len() as u64 > max_len {
        return Err(FetchError::TooLong);
    }
    Ok(body)
}

fn http_get(url: &str, max_len: u64, tls: &TlsConfig) -> Result<Vec<u8>, FetchError> {
    let other = |e: &dyn std::fmt::Display| FetchError::Other(e.to_string());
    let target = transport::parse(url).ok_or_else(|| other(&"not an http(s) URL"))?;
    let mut stream = transport::connect(&target, tls).map_err(|e| other(&e))?;
    write!(
        stream,
        "GET {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nAccept-Encoding: identity\r\n\r\n",
        target.path, target.authority
    )
    .map_err(|e| other(&e))?;
    let mut reader = BufReader::new(stream);
    let mut status = String::new();
    reader.read_line(&mut status).map_err(|e| other(&e))?;
    let code: u16 = status
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| other(&format!("bad status line {status:?}")))?;
    let mut length = None;
    let mut chunked = false;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).map_err(|e| other(&e))? == 0 {
            return Err(other(&"connection closed in the headers"));
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = Some(value.parse::<u64>().map_err(|e| other(&e))?);
            } else if name.eq_ignore_ascii_case("transfer-encoding")
                && value.eq_ignore_ascii_case("chunked")
            {
                chunked = true;
            }
        }
    }
    match code {
        200 => {}
        404 | 403 => return Err(FetchError::NotFound),
        other_code => return Err(other(&format!("HTTP {other_code}"))),
    }
    if length.is_some_and(|l| l > max_len) {
        return Err(FetchError::TooLong);
    }
    if chunked {
        let mut body = Vec::new();
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).map_err(|e| other(&e))?;
            let size = u64::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|e| other(&e))?;
            if size == 0 {
                break;
            }
            if body.len() as u64 + size > max_len {
                return Err(FetchError::TooLong);
            }
            let mut chunk = read_capped((&mut reader).take(size), size)?;
            body.append(&mut chunk);
            let mut crlf = String::new();
            reader.read_line(&mut crlf).map_err(|e| other(&e))?;
        }
        return Ok(body);
    }
    match length {
        Some(l) => read_capped(reader.take(l), max_len),
        None => read_capped(reader, max_len),
    }
}

impl Fetcher for UrlFetcher {
    fn fetch(&mut self, url: &str, max_len: u64) -> Result<Vec<u8>, FetchError> {
        if let Some(path) = url.strip_prefix("file://") {
            return match std::fs::File::open(path) {
                Ok(file) => read_capped(file, max_len),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(FetchError::NotFound),
                Err(e) => Err(FetchError::Other(e.to_string())),
            };
        }
        if url.starts_with("http://") || url.starts_with("https://") {
            return http_get(url, max_len, &self.tls);
        }
        Err(FetchError::Other(format!(
            "unsupported URL scheme in {url}"
        )))
    }
}

/// Percent-encodes a role or target name for use as one URL path segment or file name
/// (everything but unreserved characters; `/` too).
pub fn encode_segment(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
