//! Large downloads (update payloads) over `http://` or `https://` that survive dropped
//! connections: the
//! bytes so far are kept in `DEST.partial`; the next attempt asks for the rest with an HTTP
//! `Range` request (or starts over when the server ignores it), hashing as it streams; the
//! file becomes `DEST` only when its length and SHA-256 are the expected ones. Never more than
//! the expected length is accepted.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use openssl::sha::Sha256;

use crate::error::TufError;
use crate::transport::{self, Stream, TlsConfig};

const CHUNK: usize = 1 << 16;

fn partial_path(dest: &Path) -> PathBuf {
    let mut name = dest.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> TufError + 'a {
    move |source| TufError::Io {
        op,
        path: path.display().to_string(),
        source,
    }
}

fn fetch_err(url: &str, detail: impl std::fmt::Display) -> TufError {
    TufError::Fetch {
        url: url.to_owned(),
        detail: detail.to_string(),
    }
}

/// The response head: status and the headers we use.
struct Head {
    status: u16,
    content_length: Option<u64>,
    content_range_start: Option<u64>,
}

fn request(url: &str, from: u64, tls: &TlsConfig) -> Result<(Head, BufReader<Stream>), TufError> {
    let target = transport::parse(url)
        .ok_or_else(|| fetch_err(url, "only http:// and https:// URLs are supported here"))?;
    let mut stream = transport::connect(&target, tls).map_err(|e| fetch_err(url, e))?;
    let range = if from > 0 {
        format!("Range: bytes={from}-\r\n")
    } else {
        String::new()
    };
    write!(
        stream,
        "GET {} HTTP/1.1\r\nHost: {}\r\n{range}Connection: close\r\nAccept-Encoding: identity\r\n\r\n",
        target.path, target.authority
    )
    .map_err(|e| fetch_err(url, e))?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).map_err(|e| fetch_err(url, e))?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| fetch_err(url, format!("bad status line {line:?}")))?;
    let mut head = Head {
        status,
        content_length: None,
        content_range_start: None,
    };
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).map_err(|e| fetch_err(url, e))? == 0 {
            return Err(fetch_err(url, "connection closed in the headers"));
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            head.content_length = value.parse().ok();
        } else if name.eq_ignore_ascii_case("content-range") {
            // bytes START-END/TOTAL
            head.content_range_start = value
                .strip_prefix("bytes ")
                .and_then(|r| r.split('-').next())
                .and_then(|s| s.parse().ok());
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            && !value.eq_ignore_ascii_case("identity")
        {
            return Err(fetch_err(
                url,
                format!("transfer encoding {value} is not supported for payloads"),
            ));
        }
    }
    Ok((head, reader))
}

/// Downloads `url` to `dest`, resuming `DEST.partial` when present, reporting progress as
/// (bytes so far, `length`); TLS servers are checked with `tls`. One attempt: a dropped connection returns an error and keeps the
/// partial file for the next attempt; wrong bytes delete it.
pub fn download_resumable(
    url: &str,
    dest: &Path,
    length: u64,
    sha256_hex: &str,
    tls: &TlsConfig,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<(), TufError> {
    let partial = partial_path(dest);
    let mut have = std::fs::metadata(&partial).map_or(0, |m| m.len());
    if have > length {
        std::fs::remove_file(&partial).map_err(io("removing", &partial))?;
        have = 0;
    }
    let (head, mut body) = request(url, have, tls)?;
    let mut hasher = Sha256::new();
    let mut file = match (head.status, have) {
        (206, h) if head.content_range_start == Some(h) && h > 0 => {
            // Resume: hash what is already there.
            let mut existing = std::fs::File::open(&partial).map_err(io("reading", &partial))?;
            let mut buf = vec![0u8; CHUNK];
            loop {
                let n = existing.read(&mut buf).map_err(io("reading", &partial))?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
            }
            std::fs::OpenOptions::new()
                .append(true)
                .open(&partial)
                .map_err(io("opening", &partial))?
        }
        (200, _) => {
            // From the start (first attempt, or a server that ignores Range).
            have = 0;
            std::fs::File::create(&partial).map_err(io("creating", &partial))?
        }
        (404, _) => return Err(fetch_err(url, "not found")),
        (status, _) => {
            return Err(fetch_err(
                url,
                format!("HTTP {status} for a download from byte {have}"),
            ));
        }
    };
    if head.content_length.is_some_and(|l| have + l > length) {
        drop(file);
        let _ = std::fs::remove_file(&partial);
        return Err(TufError::TooLong {
            what: url.to_owned(),
            limit: length,
        });
    }
    progress(have, length);
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match body.read(&mut buf) {
            Ok(n) => n,
            Err(e) => {
                file.sync_all().map_err(io("syncing", &partial))?;
                return Err(fetch_err(
                    url,
                    format!("connection lost after {have} bytes: {e}"),
                ));
            }
        };
        if n == 0 {
            break;
        }
        if have + n as u64 > length {
            drop(file);
            let _ = std::fs::remove_file(&partial);
            return Err(TufError::TooLong {
                what: url.to_owned(),
                limit: length,
            });
        }
        file.write_all(&buf[..n]).map_err(io("writing", &partial))?;
        hasher.update(&buf[..n]);
        have += n as u64;
        progress(have, length);
    }
    file.sync_all().map_err(io("syncing", &partial))?;
    if have < length {
        return Err(fetch_err(
            url,
            format!("connection closed after {have} of {length} bytes"),
        ));
    }
    if hex::encode(hasher.finish()) != sha256_hex {
        let _ = std::fs::remove_file(&partial);
        return Err(TufError::Mismatch {
            what: url.to_owned(),
            detail: "sha256 hash differs (partial download discarded)".into(),
        });
    }
    std::fs::rename(&partial, dest).map_err(io("renaming", &partial))
}
