#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Our HPKE layer against pyhpke (PyPI, `tests/fixtures/hpke/pyhpke_peer.py`), both ways:
//! pyhpke opens what we seal and we open what pyhpke seals, with the relay's `info`, for
//! every envelope size; a wrong `info` fails on both sides.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use enigm_e2e::require_python_module;
use enigm_envelope::envelope::INFO;
use enigm_envelope::hpke::{generate_keypair, open, seal};
use enigm_envelope::pad::BUCKETS;

/// Runs the peer with `args`; the last one (the data, hex) goes to its standard input.
fn peer(args: &[String]) -> Result<Vec<u8>, String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/hpke/pyhpke_peer.py");
    let (data, args) = args.split_last().unwrap();
    let mut child = Command::new("python3")
        .arg(script)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(data.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(hex::decode(String::from_utf8_lossy(&out.stdout).trim()).unwrap())
}

#[test]
fn pyhpke_and_we_open_each_others_messages() {
    require_python_module("pyhpke", "pyhpke==0.6.5").unwrap();
    let (secret, public) = generate_keypair();
    for size in BUCKETS {
        let mut plaintext = vec![0u8; size];
        openssl::rand::rand_bytes(&mut plaintext).unwrap();
        let aad = b"queue 42";

        let ours = seal(&public, INFO, aad, &plaintext).unwrap();
        let opened = peer(&[
            "open".into(),
            hex::encode(secret),
            hex::encode(INFO),
            hex::encode(aad),
            hex::encode(&ours),
        ])
        .unwrap();
        assert_eq!(opened, plaintext, "pyhpke opening ours ({size} bytes)");

        let theirs = peer(&[
            "seal".into(),
            hex::encode(public),
            hex::encode(INFO),
            hex::encode(aad),
            hex::encode(&plaintext),
        ])
        .unwrap();
        assert_eq!(theirs.len(), ours.len());
        assert_eq!(open(&secret, INFO, aad, &theirs).unwrap(), plaintext);
        assert!(open(&secret, b"other info", aad, &theirs).is_err());
    }
    let ours = seal(&public, INFO, b"", b"x").unwrap();
    assert!(
        peer(&[
            "open".into(),
            hex::encode(secret),
            hex::encode(b"other info"),
            String::new(),
            hex::encode(&ours),
        ])
        .is_err()
    );
}
