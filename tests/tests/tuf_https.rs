#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Updates over HTTPS from a TLS server we did not write: Python's `http.server` behind its
//! `ssl` module (OpenSSL) serves a repository published by `enigm-image`, with a certificate from a throw-away CA made by the
//! `openssl` command line. The TUF client refreshes and downloads through it and the payload
//! downloads resumably, trusting that CA (a pinned CA file, or the trust store as
//! `SSL_CERT_FILE` sets it); without the CA, or under another host name, TLS is refused.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use enigm_e2e::update::{generate_keys, publish_release, release_options, unix_now};
use enigm_e2e::{binary, free_port, require_tool};
use enigm_image::build::build;
use enigm_tuf::download::download_resumable;
use enigm_tuf::fetch::UrlFetcher;
use enigm_tuf::transport::TlsConfig;
use enigm_tuf::{Config, Updater};

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `ca.pem` and `server.pem`/`server.key` for `localhost`, signed by it.
fn certificates(dir: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509", "-days", "1", "-subj", "/CN=Enigm test CA"];
    ca.extend(ec);
    ca.extend(["-keyout", "ca.key", "-out", "ca.pem"]);
    openssl(dir, &ca);
    let mut csr = vec!["req", "-subj", "/CN=localhost"];
    csr.extend(ec);
    csr.extend([
        "-addext",
        "subjectAltName=DNS:localhost",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    openssl(dir, &csr);
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-days",
            "1",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-copy_extensions",
            "copy",
            "-out",
            "server.pem",
        ],
    );
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Python's HTTP server over TLS serving `root` on `port`, once it accepts connections.
fn serve(root: &Path, certs: &Path, port: u16) -> Server {
    const SERVER: &str = r#"
import functools, http.server, ssl, sys
port, root, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=root)
server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
"#;
    let server = Server(
        Command::new("python3")
            .args(["-c", SERVER, &port.to_string()])
            .arg(root)
            .arg(certs.join("server.pem"))
            .arg(certs.join("server.key"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return server;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the TLS server did not start");
}

#[test]
fn refresh_and_download_over_https_and_refuse_unknown_or_misnamed_servers() {
    require_tool("openssl", "openssl").unwrap();
    require_tool("mkfs.erofs", "erofs-utils").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let keys = d.join("keys");
    generate_keys(&keys).unwrap();
    let v1 = build(&release_options(d, &keys, "1", 1, false, 300_000).unwrap()).unwrap();
    let repo = d.join("repo");
    publish_release(&repo, &keys, &v1).unwrap();
    certificates(d);
    let port = free_port().unwrap();
    let _server = serve(&repo, d, port);
    let base = format!("https://localhost:{port}");
    let pinned = TlsConfig {
        ca_file: Some(d.join("ca.pem")),
    };

    // The pinned CA: refresh, the manifest through TUF, the payload resumably.
    let trusted = d.join("trusted");
    std::fs::create_dir_all(&trusted).unwrap();
    std::fs::copy(repo.join("metadata/1.root.json"), trusted.join("root.json")).unwrap();
    let mut updater = Updater::new(
        &trusted,
        &format!("{base}/metadata"),
        UrlFetcher::new(pinned.clone()),
        unix_now(),
        Config::default(),
    )
    .unwrap();
    updater.refresh().unwrap();
    let out = d.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let manifest = updater
        .download("test-phone/manifest.json", &format!("{base}/targets"), &out)
        .unwrap();
    assert_eq!(
        std::fs::read(manifest).unwrap(),
        std::fs::read(&v1.manifest).unwrap()
    );
    let info = updater.target_info("test-phone/root.erofs").unwrap();
    let sha = info.hashes["sha256"].clone();
    let payload = out.join("root.erofs");
    download_resumable(
        &format!("{base}/targets/test-phone/{sha}.root.erofs"),
        &payload,
        info.length,
        &sha,
        &pinned,
        &mut |_, _| {},
    )
    .unwrap();
    assert_eq!(
        std::fs::read(&payload).unwrap(),
        std::fs::read(&v1.image).unwrap()
    );

    // The tuf-conformance client trusting the CA through SSL_CERT_FILE (the trust store).
    let client = binary("enigm-tuf-client").unwrap();
    let metadata = d.join("client-metadata");
    let run = |ca: Option<&Path>, url: &str, args: &[&str]| {
        let mut cmd = Command::new(&client);
        cmd.arg("--metadata-dir").arg(&metadata);
        if let Some(ca) = ca {
            cmd.env("SSL_CERT_FILE", ca);
        } else {
            cmd.env("SSL_CERT_FILE", "/nonexistent");
        }
        cmd.args(["--metadata-url", url])
            .args(args)
            .output()
            .unwrap()
    };
    let init = Command::new(&client)
        .arg("--metadata-dir")
        .arg(&metadata)
        .arg("init")
        .arg(repo.join("metadata/1.root.json"))
        .status()
        .unwrap();
    assert!(init.success());
    let ca = d.join("ca.pem");
    let ok = run(Some(&ca), &format!("{base}/metadata"), &["refresh"]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );

    // Refused: a CA the client does not trust; a name the certificate does not carry.
    let unknown = run(None, &format!("{base}/metadata"), &["refresh"]);
    assert_eq!(unknown.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert!(stderr.contains("certificate verify failed"), "{stderr}");
    let misnamed = run(
        Some(&ca),
        &format!("https://127.0.0.1:{port}/metadata"),
        &["refresh"],
    );
    assert_eq!(misnamed.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&misnamed.stderr);
    assert!(stderr.contains("certificate verify failed"), "{stderr}");
    let mut no_ca = Updater::new(
        &trusted,
        &format!("{base}/metadata"),
        UrlFetcher::new(TlsConfig {
            ca_file: Some(d.join("server.pem")),
        }),
        unix_now(),
        Config::default(),
    )
    .unwrap();
    assert!(no_ca.refresh().is_err(), "a leaf is not a CA");
}
