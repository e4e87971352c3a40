//! Resumable payload downloads against a small HTTP server that misbehaves on purpose: a
//! connection cut mid-body resumes with a Range request; a server that ignores Range is read
//! from the start; more bytes than expected and wrong bytes are refused and the partial file
//! discarded.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use enigm_tuf::TufError;
use enigm_tuf::download::download_resumable;
use enigm_tuf::transport::TlsConfig;

#[derive(Clone, Copy, Debug)]
enum Behaviour {
    /// Honour Range; send everything.
    Honest,
    /// Honour Range; close after this many body bytes.
    CutAfter(usize),
    /// Ignore Range: always 200 with the whole file.
    IgnoreRange,
    /// Send the file and then more.
    Endless,
    /// Send other bytes of the same length.
    Corrupt,
}

/// Serves `payload` at any path, one behaviour per connection (the last one repeats);
/// records each request's Range header.
fn serve(payload: Vec<u8>, plan: Vec<Behaviour>) -> (String, Arc<Mutex<Vec<Option<String>>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/payload.bin", listener.local_addr().unwrap());
    let ranges = Arc::new(Mutex::new(Vec::new()));
    let seen = ranges.clone();
    std::thread::spawn(move || {
        for (i, stream) in listener.incoming().enumerate() {
            let Ok(mut stream) = stream else { continue };
            let behaviour = plan[i.min(plan.len() - 1)];
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut range = None;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.strip_prefix("Range: bytes=") {
                    range = v.trim().trim_end_matches('-').parse::<usize>().ok();
                }
            }
            seen.lock().unwrap().push(range.map(|r| r.to_string()));
            let start = match behaviour {
                Behaviour::IgnoreRange => 0,
                _ => range.unwrap_or(0),
            };
            let mut body = match behaviour {
                Behaviour::Corrupt => vec![b'X'; payload.len()],
                _ => payload.clone(),
            }[start..]
                .to_vec();
            if let Behaviour::Endless = behaviour {
                body.extend(vec![0u8; 100_000]);
            }
            let head = if start > 0 {
                format!(
                    "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {start}-{}/{}\r\nContent-Length: {}\r\n\r\n",
                    payload.len() - 1,
                    payload.len(),
                    body.len()
                )
            } else {
                format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len())
            };
            let _ = stream.write_all(head.as_bytes());
            let send = match behaviour {
                Behaviour::CutAfter(n) => &body[..n.min(body.len())],
                _ => &body[..],
            };
            let _ = stream.write_all(send);
        }
    });
    (url, ranges)
}

fn payload() -> (Vec<u8>, String) {
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 31 % 251) as u8).collect();
    let sha = hex::encode(openssl::sha::sha256(&data));
    (data, sha)
}

#[test]
fn a_cut_connection_resumes_where_it_stopped() {
    let (data, sha) = payload();
    let (url, ranges) = serve(
        data.clone(),
        vec![
            Behaviour::CutAfter(100_000),
            Behaviour::CutAfter(50_000),
            Behaviour::Honest,
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("payload.bin");
    let mut last = (0, 0);
    for attempt in 0..2 {
        let err = download_resumable(
            &url,
            &dest,
            data.len() as u64,
            &sha,
            &TlsConfig::default(),
            &mut |a, b| last = (a, b),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("connection"),
            "attempt {attempt}: {err}"
        );
        assert!(!dest.exists());
    }
    download_resumable(
        &url,
        &dest,
        data.len() as u64,
        &sha,
        &TlsConfig::default(),
        &mut |a, b| last = (a, b),
    )
    .unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), data);
    assert_eq!(last, (data.len() as u64, data.len() as u64));
    assert_eq!(
        *ranges.lock().unwrap(),
        [None, Some("100000".to_owned()), Some("150000".to_owned())]
    );
    assert!(!dir.path().join("payload.bin.partial").exists());
}

#[test]
fn a_server_ignoring_range_is_read_from_the_start() {
    let (data, sha) = payload();
    let (url, _) = serve(
        data.clone(),
        vec![Behaviour::CutAfter(70_000), Behaviour::IgnoreRange],
    );
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("p");
    assert!(
        download_resumable(
            &url,
            &dest,
            data.len() as u64,
            &sha,
            &TlsConfig::default(),
            &mut |_, _| {}
        )
        .is_err()
    );
    download_resumable(
        &url,
        &dest,
        data.len() as u64,
        &sha,
        &TlsConfig::default(),
        &mut |_, _| {},
    )
    .unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), data);
}

#[test]
fn endless_or_wrong_data_is_refused_and_discarded() {
    let (data, sha) = payload();
    let dir = tempfile::tempdir().unwrap();
    let (url, _) = serve(data.clone(), vec![Behaviour::Endless]);
    let dest = dir.path().join("endless");
    let err = download_resumable(
        &url,
        &dest,
        data.len() as u64,
        &sha,
        &TlsConfig::default(),
        &mut |_, _| {},
    )
    .unwrap_err();
    assert!(matches!(err, TufError::TooLong { .. }), "{err}");
    assert!(!dest.exists() && !dir.path().join("endless.partial").exists());

    let (url, _) = serve(data.clone(), vec![Behaviour::Corrupt]);
    let dest = dir.path().join("corrupt");
    let err = download_resumable(
        &url,
        &dest,
        data.len() as u64,
        &sha,
        &TlsConfig::default(),
        &mut |_, _| {},
    )
    .unwrap_err();
    assert!(err.to_string().contains("sha256 hash differs"), "{err}");
    assert!(!dest.exists() && !dir.path().join("corrupt.partial").exists());
}
