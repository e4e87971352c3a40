//! The relay client against the real backend, in-process on 127.0.0.1 with a temporary config
//! root and SQLite file. Devices are software TPMs (`SoftwareAk` quotes, as in the backend's
//! own tests) whose key binder quotes the directory nonce with an all-zero posture digest.
//!
//! Two accounts, four devices: alice has two trusted devices, bob one trusted and one pending.
//! Every trusted device gets each message exactly once (alice's other device included for her
//! own message); the pending device gets nothing and can neither publish nor look up;
//! duplicates (also across sessions, through the duplicate log), cover envelopes and forged
//! or impostor envelopes never reach the application; a revocation takes effect on the
//! device's next operation and deletes its queued messages; a suspension ends an open push
//! stream, and after reinstatement a second setup keeps the keys and makes a new mailbox. A
//! receiver following by push survives a backend restart (fetch fallback, then a new stream)
//! and an expired token (ignored test: over two minutes).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../../backend/server/tests/common/soft_device.rs"]
#[allow(dead_code)]
mod soft_device;

use std::path::Path;
use std::time::Duration;

use enigm_backend_client::proto::admin_api_client::AdminApiClient;
use enigm_backend_client::proto::device_api_client::DeviceApiClient;
use enigm_backend_client::proto::{
    ActivateCredentialRequest, AdminTransitionRequest, ApproveRequest, CreateAccountRequest,
    DeviceState, EnrollDeviceRequest, FetchMessagesRequest, GetChallengeRequest,
    SendMessageRequest, SubmitEvidenceRequest,
};
use enigm_envelope::envelope::{Message, seal};
use enigm_evidence::v1::Evidence;
use enigm_relay_client::{
    BindError, CoverConfig, Flow, KeyBinder, KeyFile, Received, Recipient, RelayClient, RelayError,
};
use soft_device::SoftDevice;
use tonic::Code;
use tonic::transport::Channel;

const PASSWORD: &str = "correct horse battery staple";
const TTL: Duration = Duration::from_secs(3600);

fn write_config(root: &Path, token_lifetime_minutes: u32) {
    write_config_at(root, token_lifetime_minutes, 0);
}

/// The config with the gRPC listener on `grpc_port` (0: any free port).
fn write_config_at(root: &Path, token_lifetime_minutes: u32, grpc_port: u16) {
    let etc = root.join("etc/enigm");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::write(
        etc.join("backend-policy.toml"),
        format!(
            "[tpm]\nrequire_event_log = false\n[tpm.pcrs]\n\"7\" = [\"{}\"]\n",
            "07".repeat(32)
        ),
    )
    .unwrap();
    std::fs::write(
        etc.join("backend.toml"),
        format!(
            "challenge_ttl_secs = 60\n\
         policy_file = \"/etc/enigm/backend-policy.toml\"\n\
         token_lifetime_minutes = {token_lifetime_minutes}\n\
         [listen]\ngrpc = \"127.0.0.1:{grpc_port}\"\nhttp = \"127.0.0.1:0\"\n\
         [tls]\nnames = [\"backend.test\"]\n\
         [argon2]\nm_kib = 64\nt = 1\np = 1\n\
         [rate_limit]\nper_minute = 60000\nburst = 10000\n"
        ),
    )
    .unwrap();
}

async fn channel(running: &enigm_backend::Running) -> Channel {
    enigm_backend_client::channel(running.grpc_addr, &running.cert_pem, "localhost")
        .await
        .unwrap()
}

/// The key binder of a software device: its AK quotes the nonce.
struct SoftBinder<'a>(&'a mut SoftDevice);

impl KeyBinder for SoftBinder<'_> {
    async fn bind(&mut self, nonce: [u8; 32]) -> Result<Evidence, BindError> {
        Ok(self.0.quote_with_posture(&nonce, vec![0; 32])?)
    }
}

/// A device: its software TPM, handle and current token.
struct Phone {
    tpm: SoftDevice,
    handle: String,
    token: String,
}

async fn create_account(api: &mut DeviceApiClient<Channel>, username: &str) -> String {
    api.create_account(CreateAccountRequest {
        username: username.into(),
        password: PASSWORD.into(),
    })
    .await
    .unwrap()
    .into_inner()
    .account_id
}

/// Enrolls a new software device in `username`'s account and attests it.
async fn enroll(api: &mut DeviceApiClient<Channel>, username: &str) -> (Phone, DeviceState) {
    let tpm = SoftDevice::new().unwrap();
    let enrolled = api
        .enroll_device(EnrollDeviceRequest {
            username: username.into(),
            password: PASSWORD.into(),
            evidence: Some(tpm.enrollment_evidence()),
        })
        .await
        .unwrap()
        .into_inner();
    let state = enrolled.state();
    let secret = tpm
        .activate(enrolled.credential.as_ref().unwrap())
        .unwrap()
        .unwrap();
    api.activate_credential(ActivateCredentialRequest {
        handle: enrolled.handle.clone(),
        secret,
    })
    .await
    .unwrap();
    let mut phone = Phone {
        tpm,
        handle: enrolled.handle,
        token: String::new(),
    };
    attest(api, &mut phone).await;
    (phone, state)
}

/// A fresh result token for `phone`.
async fn attest(api: &mut DeviceApiClient<Channel>, phone: &mut Phone) {
    let nonce = api
        .get_challenge(GetChallengeRequest {
            handle: phone.handle.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .nonce;
    phone.token = api
        .submit_evidence(SubmitEvidenceRequest {
            handle: phone.handle.clone(),
            nonce: nonce.clone(),
            evidence: Some(phone.tpm.quote(&nonce).unwrap()),
            posture_level: 3,
            runtime_issue: false,
        })
        .await
        .unwrap()
        .into_inner()
        .token;
}

/// Sets `phone` up in `account_id`; returns its session and key file.
async fn setup(
    api: &DeviceApiClient<Channel>,
    phone: &mut Phone,
    account_id: &str,
) -> (RelayClient, KeyFile) {
    let mut client = RelayClient::new(api.clone(), &phone.handle, &phone.token);
    let file = client
        .setup(account_id, None, &mut SoftBinder(&mut phone.tpm))
        .await
        .unwrap();
    (client, file)
}

/// Everything queued for `client` now, as (sender handle, body).
async fn inbox(client: &mut RelayClient) -> Vec<(String, String)> {
    let mut got = Vec::new();
    client
        .receive_pending(|m: Received| {
            got.push((m.from.device, String::from_utf8(m.body).unwrap()));
            Flow::Continue
        })
        .await
        .unwrap();
    got.sort();
    got
}

fn sorted(mut items: Vec<(String, String)>) -> Vec<(String, String)> {
    items.sort();
    items
}

fn code<T: std::fmt::Debug>(result: Result<T, RelayError>) -> Option<Code> {
    result.unwrap_err().code()
}

async fn queued_in(db: &Path, queue: &str) -> i64 {
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=ro", db.display()))
        .await
        .unwrap();
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM mailbox_messages WHERE queue_id = ?")
        .bind(queue)
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    count
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_trusted_device_gets_each_message_once() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), 5);
    let config = enigm_backend::Config::load(dir.path(), []).unwrap();
    let running = enigm_backend::start(dir.path(), config).await.unwrap();
    let admin_key = std::fs::read_to_string(dir.path().join("var/lib/enigm/backend-admin.key"))
        .unwrap()
        .trim()
        .to_owned();
    let mut api = DeviceApiClient::new(channel(&running).await);
    let mut admin = AdminApiClient::new(channel(&running).await);

    let alice_id = create_account(&mut api, "alice").await;
    let bob_id = create_account(&mut api, "bob").await;
    let (mut a1, _) = enroll(&mut api, "alice").await;
    let (mut a2, a2_state) = enroll(&mut api, "alice").await;
    let (mut b1, _) = enroll(&mut api, "bob").await;
    let (mut b2, b2_state) = enroll(&mut api, "bob").await;
    assert_eq!(
        (a2_state, b2_state),
        (DeviceState::Pending, DeviceState::Pending)
    );
    api.approve(ApproveRequest {
        approver_handle: a1.handle.clone(),
        approver_token: a1.token.clone(),
        pending_handle: a2.handle.clone(),
    })
    .await
    .unwrap();
    attest(&mut api, &mut a2).await;

    let (mut alice1, alice1_file) = setup(&api, &mut a1, &alice_id).await;
    let (mut alice2, a2_file) = setup(&api, &mut a2, &alice_id).await;
    let (mut bob1, bob1_file) = setup(&api, &mut b1, &bob_id).await;
    assert_eq!(alice1.account_id("bob").await.unwrap(), bob_id);

    // The pending device: no mailbox, no publication, no lookup.
    let mut bob2 = RelayClient::new(api.clone(), &b2.handle, &b2.token);
    assert_eq!(
        code(
            bob2.setup(&bob_id, None, &mut SoftBinder(&mut b2.tpm))
                .await
        ),
        Some(Code::PermissionDenied)
    );
    let b2_keys = enigm_envelope::keys::DeviceKeys::generate(enigm_envelope::keys::DeviceId {
        account: bob_id.clone(),
        device: b2.handle.clone(),
    })
    .unwrap();
    assert_eq!(
        code(
            bob2.publish(
                &b2_keys,
                &bob1_file.mailbox,
                enigm_relay_client::ids::now_unix(),
                &mut SoftBinder(&mut b2.tpm)
            )
            .await
        ),
        Some(Code::PermissionDenied)
    );
    assert_eq!(
        code(bob2.lookup(&Recipient::Username("alice".into())).await),
        Some(Code::PermissionDenied)
    );
    // The directory lists trusted devices only.
    let bob_devices = alice1
        .lookup(&Recipient::AccountId(bob_id.clone()))
        .await
        .unwrap();
    assert_eq!(
        bob_devices
            .devices
            .iter()
            .map(|d| d.handle())
            .collect::<Vec<_>>(),
        [b1.handle.as_str()]
    );
    assert!(bob_devices.refused.is_empty());

    // Alice writes to bob by username; bob answers by account id.
    let sent = alice1
        .send(&Recipient::Username("bob".into()), b"hello bob", TTL)
        .await
        .unwrap();
    assert_eq!(sent.account_id, bob_id);
    assert_eq!(sent.recipient_devices, [b1.handle.clone()]);
    assert_eq!(sent.own_devices, [a2.handle.clone()]);
    assert!(sent.failed.is_empty());
    let reply = bob1
        .send(&Recipient::AccountId(alice_id.clone()), b"hi alice", TTL)
        .await
        .unwrap();
    assert_eq!(
        sorted(
            reply
                .recipient_devices
                .iter()
                .map(|h| (h.clone(), String::new()))
                .collect()
        ),
        sorted(vec![
            (a1.handle.clone(), String::new()),
            (a2.handle.clone(), String::new())
        ])
    );
    assert!(
        reply.own_devices.is_empty(),
        "the pending device gets no copy"
    );

    let text = |handle: &str, body: &str| (handle.to_owned(), body.to_owned());
    assert_eq!(inbox(&mut bob1).await, [text(&a1.handle, "hello bob")]);
    assert_eq!(inbox(&mut alice1).await, [text(&b1.handle, "hi alice")]);
    assert_eq!(
        inbox(&mut alice2).await,
        sorted(vec![
            text(&a1.handle, "hello bob"),
            text(&b1.handle, "hi alice")
        ])
    );
    // Each exactly once: nothing more on a second look.
    for client in [&mut alice1, &mut alice2, &mut bob1] {
        assert!(inbox(client).await.is_empty());
    }

    // Duplicates, cover envelopes and forgeries are dropped (and acknowledged) before the
    // application sees anything.
    let alice1_keys = alice1_file.device_keys().unwrap();
    let bob1_public = bob_devices.devices[0].clone();
    let envelope = |id: &str, cover: bool, body: &[u8]| {
        seal(
            &alice1_keys,
            &bob1_public.keys,
            Message {
                id,
                sent_at: 1,
                cover,
                body,
            },
        )
        .unwrap()
    };
    let raw_send = |wire_id: &str, envelope: Vec<u8>| SendMessageRequest {
        caller_handle: a1.handle.clone(),
        caller_token: a1.token.clone(),
        queue: bob1_public.queue.clone(),
        send_capability: bob1_public.send_capability.clone(),
        message_id: wire_id.into(),
        envelope,
        ttl_secs: 600,
    };
    // A sender claiming an account the directory cannot look up (too long to be an id), and
    // one claiming a device alice does not have.
    let impostor = |account: String, device: &str| {
        let keys = enigm_envelope::keys::DeviceKeys::generate(enigm_envelope::keys::DeviceId {
            account,
            device: device.into(),
        })
        .unwrap();
        seal(
            &keys,
            &bob1_public.keys,
            Message {
                id: "m-impostor",
                sent_at: 1,
                cover: false,
                body: b"impostor",
            },
        )
        .unwrap()
    };
    let original = envelope("m-dup", false, b"once only");
    let mut forged = envelope("m-forged", false, b"forged");
    forged[100] ^= 1;
    for (wire_id, envelope) in [
        ("w1", original.clone()),
        ("w2", original),
        ("w3", envelope("m-cover", true, b"cover")),
        ("w4", forged),
        ("w5", impostor("z".repeat(200), "d")),
        ("w6", impostor(alice_id.clone(), "not-a-device")),
    ] {
        api.send_message(raw_send(wire_id, envelope)).await.unwrap();
    }
    let mut cover = bob1
        .cover(CoverConfig {
            mean_interval: Duration::from_millis(100),
            ttl: TTL,
        })
        .unwrap();
    for _ in 0..3 {
        let size = cover.send_one().await.unwrap();
        assert!(enigm_envelope::pad::WIRE_SIZES.contains(&size));
    }
    let mut got = Vec::new();
    let stats = bob1
        .receive_pending(|m| {
            got.push(String::from_utf8(m.body).unwrap());
            Flow::Continue
        })
        .await
        .unwrap();
    assert_eq!(got, ["once only"]);
    assert_eq!(
        (
            stats.delivered,
            stats.duplicates,
            stats.cover,
            stats.refused
        ),
        (1, 1, 4, 3)
    );
    let db = dir.path().join("var/lib/enigm/backend.db");
    assert_eq!(
        queued_in(&db, &bob1_file.mailbox.queue).await,
        0,
        "all acknowledged"
    );

    // Across runs: a message handled by one session keeping a duplicate log and sent again
    // (as after a lost acknowledgement) is dropped by the next session with the same log.
    let seen_log = dir.path().join("bob1-seen.log");
    let again = || envelope("m-again", false, b"once across runs");
    let mut first_run =
        RelayClient::with_key_file(api.clone(), &b1.handle, &b1.token, &bob1_file).unwrap();
    first_run.keep_seen_in(&seen_log).unwrap();
    api.send_message(raw_send("w7", again())).await.unwrap();
    let stats = first_run.receive_pending(|_| Flow::Continue).await.unwrap();
    assert_eq!(stats.delivered, 1);
    drop(first_run);
    api.send_message(raw_send("w8", again())).await.unwrap();
    let mut second_run =
        RelayClient::with_key_file(api.clone(), &b1.handle, &b1.token, &bob1_file).unwrap();
    second_run.keep_seen_in(&seen_log).unwrap();
    let stats = second_run
        .receive_pending(|m| panic!("a duplicate reached the application: {m:?}"))
        .await
        .unwrap();
    assert_eq!((stats.delivered, stats.duplicates), (0, 1));

    // By server push: a message sent while bob streams arrives; the cover task's envelopes
    // do not.
    let cover_task = tokio::spawn(cover.run());
    let (streamed, sent) = tokio::join!(
        tokio::time::timeout(
            Duration::from_secs(20),
            bob1.receive_follow(Duration::from_millis(200), |m| {
                assert_eq!(m.body, b"pushed");
                Flow::Stop
            })
        ),
        async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            alice2
                .send(&Recipient::AccountId(bob_id.clone()), b"pushed", TTL)
                .await
        }
    );
    cover_task.abort();
    assert_eq!(streamed.unwrap().unwrap().delivered, 1);
    let sent = sent.unwrap();
    assert_eq!(sent.own_devices, [a1.handle.clone()]);
    assert_eq!(inbox(&mut alice1).await, [text(&a2.handle, "pushed")]);

    // Unprocessed: left queued, and given again next time.
    alice1
        .send(&Recipient::Username("bob".into()), b"later", TTL)
        .await
        .unwrap();
    let stats = bob1.receive_pending(|_| Flow::Unprocessed).await.unwrap();
    assert_eq!(stats.delivered, 0);
    let again = bob1
        .receive_pending(|m| {
            assert_eq!(m.body, b"later");
            Flow::Continue
        })
        .await
        .unwrap();
    assert_eq!(again.delivered, 1);
    bob1.receive_pending(|_| Flow::Continue).await.unwrap(); // late cover envelopes

    // Revocation: a message waits for bob1; bob1 is revoked; its next operation is refused,
    // the waiting message is deleted, and the directory no longer lists it.
    alice1
        .send(&Recipient::Username("bob".into()), b"too late", TTL)
        .await
        .unwrap();
    assert_eq!(queued_in(&db, &bob1_file.mailbox.queue).await, 1);
    admin.revoke(authed(&admin_key, &b1.handle)).await.unwrap();
    assert_eq!(
        code(bob1.receive_pending(|_| Flow::Continue).await),
        Some(Code::Unauthenticated)
    );
    assert_eq!(
        code(
            bob1.send(&Recipient::Username("alice".into()), b"x", TTL)
                .await
        ),
        Some(Code::Unauthenticated)
    );
    assert_eq!(
        queued_in(&db, &bob1_file.mailbox.queue).await,
        0,
        "queue deleted"
    );
    let fetch = api
        .fetch_messages(FetchMessagesRequest {
            caller_handle: b1.handle.clone(),
            caller_token: b1.token.clone(),
            queue: bob1_file.mailbox.queue.clone(),
            receive_capability: bob1_file.mailbox.receive_capability.clone(),
            limit: 0,
        })
        .await;
    assert!(fetch.is_err());
    assert!(matches!(
        alice1
            .send(&Recipient::Username("bob".into()), b"anyone?", TTL)
            .await,
        Err(RelayError::NoDevices(account)) if account == bob_id
    ));
    // Alice's other device got a copy of everything she sent, each once.
    assert_eq!(
        inbox(&mut alice2).await,
        [text(&a1.handle, "later"), text(&a1.handle, "too late")]
    );
    // Alice's own devices still talk.
    alice1
        .send(&Recipient::Username("alice".into()), b"note to self", TTL)
        .await
        .unwrap();
    assert_eq!(inbox(&mut alice2).await, [text(&a1.handle, "note to self")]);
    assert!(
        inbox(&mut alice1).await.is_empty(),
        "no copy to the sender itself"
    );
    // A key file for another device is refused.
    assert!(matches!(
        RelayClient::with_key_file(api.clone(), &a2.handle, &a2.token, &alice1_file),
        Err(RelayError::OtherDevice { .. })
    ));

    // A suspension while a2 streams ends the stream with a refusal. Reinstated and attested
    // again, a2 sets up again: the same keys, a new mailbox (the old one went with the
    // suspension), a newer bundle; and it receives again.
    let (streamed, ()) = tokio::join!(
        tokio::time::timeout(
            Duration::from_secs(20),
            alice2.receive_follow(Duration::from_millis(200), |m| {
                panic!("nothing was sent: {m:?}")
            })
        ),
        async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            admin.suspend(authed(&admin_key, &a2.handle)).await.unwrap();
        }
    );
    let refused = streamed.expect("the stream ends").unwrap_err();
    assert!(
        matches!(
            refused.code(),
            Some(Code::Unauthenticated | Code::PermissionDenied)
        ),
        "{refused}"
    );
    assert!(
        alice1
            .lookup(&Recipient::AccountId(alice_id.clone()))
            .await
            .unwrap()
            .devices
            .iter()
            .all(|d| d.handle() != a2.handle),
        "a suspended device is not listed"
    );
    admin
        .reinstate(authed(&admin_key, &a2.handle))
        .await
        .unwrap();
    attest(&mut api, &mut a2).await;
    alice2.set_token(&a2.token);
    let renewed = alice2
        .setup(&alice_id, Some(&a2_file), &mut SoftBinder(&mut a2.tpm))
        .await
        .unwrap();
    assert_eq!(renewed.keys, a2_file.keys);
    assert_ne!(renewed.mailbox, a2_file.mailbox);
    assert!(renewed.published_at_unix > a2_file.published_at_unix);
    alice1
        .send(
            &Recipient::AccountId(alice_id.clone()),
            b"welcome back",
            TTL,
        )
        .await
        .unwrap();
    assert_eq!(inbox(&mut alice2).await, [text(&a1.handle, "welcome back")]);
    running.shutdown().await;
}

/// An admin request for `handle` with the admin key.
fn authed(key: &str, handle: &str) -> tonic::Request<AdminTransitionRequest> {
    let mut request = tonic::Request::new(AdminTransitionRequest {
        handle: handle.into(),
        reason: "test".into(),
    });
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {key}").parse().unwrap());
    request
}

/// A push stream ends when the receiver's token expires; the receiver attests again, hands the
/// new token to its session and follows on, and gets what was sent meanwhile. Slow: a token
/// lives at least a minute, and the backend accepts it for a minute of clock leeway more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "over two minutes: run with --ignored"]
async fn following_resumes_with_a_fresh_token_after_expiry() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), 1);
    let config = enigm_backend::Config::load(dir.path(), []).unwrap();
    let running = enigm_backend::start(dir.path(), config).await.unwrap();
    let mut api = DeviceApiClient::new(channel(&running).await);
    let carol_id = create_account(&mut api, "carol").await;
    let dave_id = create_account(&mut api, "dave").await;
    let (mut c1, _) = enroll(&mut api, "carol").await;
    let (mut d1, _) = enroll(&mut api, "dave").await;
    let (mut carol, _) = setup(&api, &mut c1, &carol_id).await;
    let (mut dave, _) = setup(&api, &mut d1, &dave_id).await;

    let started = std::time::Instant::now();
    let expired = tokio::time::timeout(
        Duration::from_secs(200),
        dave.receive_follow(Duration::from_millis(200), |m| {
            panic!("nothing was sent: {m:?}")
        }),
    )
    .await
    .expect("the stream ends when the token expires")
    .unwrap_err();
    assert!(expired.token_refused(), "{expired}");
    assert!(
        started.elapsed() >= Duration::from_secs(30),
        "not before expiry"
    );

    attest(&mut api, &mut c1).await;
    carol.set_token(&c1.token);
    carol
        .send(&Recipient::Username("dave".into()), b"still there?", TTL)
        .await
        .unwrap();
    attest(&mut api, &mut d1).await;
    dave.set_token(&d1.token);
    let stats = tokio::time::timeout(
        Duration::from_secs(20),
        dave.receive_follow(Duration::from_millis(200), |m| {
            assert_eq!(m.body, b"still there?");
            Flow::Stop
        }),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(stats.delivered, 1);
    running.shutdown().await;
}

/// The push stream breaks when the backend restarts: the receiver falls back to fetching
/// (failing while the backend is away), opens a stream again once it is back, and gets the
/// message sent after the restart, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn following_survives_a_backend_restart() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    write_config_at(dir.path(), 5, port);
    let start = || async {
        let config = enigm_backend::Config::load(dir.path(), []).unwrap();
        enigm_backend::start(dir.path(), config).await.unwrap()
    };
    let running = start().await;
    let mut api = DeviceApiClient::new(channel(&running).await);
    let erin_id = create_account(&mut api, "erin").await;
    let frank_id = create_account(&mut api, "frank").await;
    let (mut e1, _) = enroll(&mut api, "erin").await;
    let (mut f1, _) = enroll(&mut api, "frank").await;
    let (mut erin, _) = setup(&api, &mut e1, &erin_id).await;
    let (mut frank, _) = setup(&api, &mut f1, &frank_id).await;

    let mut got = Vec::new();
    let (followed, restarted) = tokio::join!(
        tokio::time::timeout(
            Duration::from_secs(60),
            frank.receive_follow(Duration::from_millis(300), |m| {
                got.push(m.body);
                Flow::Stop
            })
        ),
        async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            running.shutdown().await;
            tokio::time::sleep(Duration::from_secs(1)).await;
            let running = start().await;
            assert_eq!(running.grpc_addr.port(), port);
            // The sender's channel reconnects by itself.
            let mut sent = None;
            for _ in 0..50 {
                match erin
                    .send(
                        &Recipient::Username("frank".into()),
                        b"after the restart",
                        TTL,
                    )
                    .await
                {
                    Ok(report) => {
                        sent = Some(report);
                        break;
                    }
                    Err(e) if e.code() == Some(Code::Unavailable) => {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    Err(e) => panic!("{e}"),
                }
            }
            assert!(sent.is_some(), "the backend came back");
            running
        }
    );
    let stats = followed
        .expect("the message arrives after the restart")
        .unwrap();
    assert_eq!(stats.delivered, 1);
    assert_eq!(got, [b"after the restart".to_vec()]);
    assert!(inbox(&mut frank).await.is_empty());
    restarted.shutdown().await;
}
