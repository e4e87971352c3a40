//! `enigmctl message` end to end: two devices of two accounts, each a software TPM (swtpm)
//! served by its own `enigm-attestd` on its own private bus, and the backend in-process on
//! loopback. Each device enrolls, sets up its message keys (bound by its TPM's AK through
//! `enigm-attestd`), alice sends, bob receives once (JSON), a second setup keeps keys and
//! mailbox, and `receive --follow --cover` prints a message pushed while it waits.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use enigm_e2e::messaging::{BackendAccess, MessagingDevice};
use enigm_e2e::{enigmctl_package, write_backend_config};
use serde_json::Value;

async fn run(mut command: Command) -> Output {
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

fn ok(output: &Output) -> String {
    assert!(
        output.status.success(),
        "enigmctl failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_devices_exchange_messages_with_enigmctl() {
    let backend_root = tempfile::tempdir().unwrap();
    write_backend_config(backend_root.path(), "127.0.0.1:0", "127.0.0.1:0").unwrap();
    let config = enigm_backend::Config::load(backend_root.path(), []).unwrap();
    let running = enigm_backend::start(backend_root.path(), config)
        .await
        .unwrap();
    let cert = backend_root.path().join("backend.crt");
    std::fs::write(&cert, &running.cert_pem).unwrap();
    let backend = BackendAccess {
        url: format!("https://localhost:{}", running.grpc_addr.port()),
        cert,
    };

    let alice = MessagingDevice::start("alice", enigmctl_package)
        .await
        .unwrap();
    let bob = MessagingDevice::start("bob", enigmctl_package)
        .await
        .unwrap();
    for device in [&alice, &bob] {
        device.enroll(&backend).unwrap();
    }
    // Before setup: a clear error.
    let early = run(alice
        .command(&["message", "send", "--to", "bob", "--text", "x"], &backend)
        .unwrap())
    .await;
    assert!(!early.status.success());
    assert!(
        String::from_utf8_lossy(&early.stderr).contains("enigmctl message setup"),
        "{}",
        String::from_utf8_lossy(&early.stderr)
    );

    let mut first_setup = Vec::new();
    for device in [&alice, &bob] {
        let out = ok(&run(device
            .command(&["message", "setup", "--json"], &backend)
            .unwrap())
        .await);
        let json: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(json["keys"], "new");
        let key_file = PathBuf::from(json["key_file"].as_str().unwrap());
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&key_file).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        first_setup.push(json);
    }
    // Again: keys and mailbox kept.
    let again: Value = serde_json::from_str(&ok(&run(alice
        .command(&["message", "setup", "--json"], &backend)
        .unwrap())
    .await))
    .unwrap();
    assert_eq!(
        (again["keys"].as_str(), again["mailbox"].as_str()),
        (Some("kept"), Some("kept"))
    );

    let text = "Hello Bob, this is Alice \u{1F44B}";
    let sent: Value = serde_json::from_str(&ok(&run(alice
        .command(
            &[
                "message", "send", "--to", "bob", "--text", text, "--ttl", "600", "--json",
            ],
            &backend,
        )
        .unwrap())
    .await))
    .unwrap();
    assert_eq!(sent["recipient_devices"].as_array().unwrap().len(), 1);
    assert_eq!(sent["account_id"], first_setup[1]["account_id"]);

    let received: Value = serde_json::from_str(&ok(&run(bob
        .command(&["message", "receive", "--json"], &backend)
        .unwrap())
    .await))
    .unwrap();
    let messages = received["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1, "{received}");
    assert_eq!(messages[0]["text"], text);
    assert_eq!(messages[0]["from_account"], first_setup[0]["account_id"]);
    assert_eq!(messages[0]["from_device"], first_setup[0]["handle"]);
    assert_eq!(messages[0]["message_id"], sent["message_id"]);
    // Acknowledged: gone.
    let human = ok(&run(bob.command(&["message", "receive"], &backend).unwrap()).await);
    assert!(human.contains("No messages."), "{human}");

    // Bob answers by account id while alice follows (with cover traffic).
    let mut follower = alice
        .command(
            &[
                "message",
                "receive",
                "--follow",
                "--cover",
                "--cover-mean",
                "0.5",
                "--json",
            ],
            &backend,
        )
        .unwrap();
    let mut child = follower
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        line
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    let alice_account = first_setup[0]["account_id"].as_str().unwrap();
    ok(&run(bob
        .command(
            &[
                "message",
                "send",
                "--to",
                alice_account,
                "--text",
                "pushed to alice",
            ],
            &backend,
        )
        .unwrap())
    .await);
    let line = tokio::time::timeout(Duration::from_secs(30), line)
        .await
        .expect("a pushed message within 30 s")
        .unwrap();
    child.kill().unwrap();
    let output = child.wait_with_output().unwrap();
    let message: Value = serde_json::from_str(&line)
        .unwrap_or_else(|e| panic!("{e}: {line:?}\n{}", String::from_utf8_lossy(&output.stderr)));
    assert_eq!(message["text"], "pushed to alice");
    assert_eq!(message["from_device"], first_setup[1]["handle"]);

    for device in [alice, bob] {
        device.stop().unwrap();
    }
    running.shutdown().await;
}
