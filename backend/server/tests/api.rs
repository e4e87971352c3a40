//! End-to-end tests of the device API: the server runs in-process on 127.0.0.1 ephemeral
//! ports with a temporary config root and SQLite file; the client trusts only the server's
//! generated self-signed certificate. Devices are software TPMs: `SoftwareAk` for quotes and a
//! software RSA EK (below) that performs ActivateCredential.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers: a failed setup step should stop the test

use std::path::Path;

#[path = "common/raw_call.rs"]
mod raw_call;
#[path = "common/soft_device.rs"]
mod soft_device;
use raw_call::raw_call;
#[path = "../../storage/tests/common/mod.rs"]
mod storage_harness;
use soft_device::SoftDevice as Device;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use storage_harness::{Kind, TestDb};

use enigm_backend::proto::device_api_client::DeviceApiClient;
use enigm_backend::proto::{
    ActivateCredentialRequest, ApproveRequest, CreateAccountRequest, DeviceState,
    EnrollDeviceRequest, GetChallengeRequest, SubmitEvidenceRequest, SubmitEvidenceResponse, Tier,
};
use enigm_backend::{Config, Running};
use enigm_evidence::v1::{Evidence, PcrBank, evidence};
use enigm_tpm_evidence::soft::{KeyKind, SoftwareAk};
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::transport::Channel;
use tonic::{Code, Status};

const PASSWORD: &str = "correct horse battery staple";

/// Writes the config under `root` (generous rate limits).
fn write_config(root: &Path, challenge_ttl_secs: u64) {
    write_config_with(
        root,
        challenge_ttl_secs,
        "",
        "[rate_limit]\nper_minute = 60000\nburst = 10000\n",
    );
}

/// Writes the config under `root` with extra top-level keys (`top`) and extra sections.
fn write_config_with(root: &Path, challenge_ttl_secs: u64, top: &str, sections: &str) {
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
            "challenge_ttl_secs = {challenge_ttl_secs}\n\
             policy_file = \"/etc/enigm/backend-policy.toml\"\n\
             token_lifetime_minutes = 5\n\
             {top}\
             [listen]\ngrpc = \"127.0.0.1:0\"\nhttp = \"127.0.0.1:0\"\n\
             [tls]\nnames = [\"backend.test\"]\n\
             [argon2]\nm_kib = 64\nt = 1\np = 1\n\
             {sections}"
        ),
    )
    .unwrap();
}

async fn start(root: &Path) -> Running {
    let config = Config::load(root, []).unwrap();
    enigm_backend::start(root, config).await.unwrap()
}

async fn client(running: &Running) -> DeviceApiClient<Channel> {
    let channel = enigm_backend::client::channel(running.grpc_addr, &running.cert_pem, "localhost")
        .await
        .unwrap();
    DeviceApiClient::new(channel)
}

fn code<T: std::fmt::Debug>(result: Result<T, Status>) -> Code {
    result.unwrap_err().code()
}

async fn create_account(api: &mut DeviceApiClient<Channel>, username: &str) {
    let created = api
        .create_account(CreateAccountRequest {
            username: username.into(),
            password: PASSWORD.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!created.account_id.is_empty());
    assert_eq!(created.recovery_phrase.split_whitespace().count(), 12);
}

/// Enrolls and activates `device`; returns its handle and enrollment state.
async fn enroll(
    api: &mut DeviceApiClient<Channel>,
    username: &str,
    device: &Device,
) -> (String, DeviceState) {
    let enrolled = api
        .enroll_device(EnrollDeviceRequest {
            username: username.into(),
            password: PASSWORD.into(),
            evidence: Some(device.enrollment_evidence()),
        })
        .await
        .unwrap()
        .into_inner();
    let state = enrolled.state();
    let credential = enrolled.credential.unwrap();
    let secret = device
        .activate(&credential)
        .unwrap()
        .expect("credential made for this AK under this EK");
    api.activate_credential(ActivateCredentialRequest {
        handle: enrolled.handle.clone(),
        secret,
    })
    .await
    .unwrap();
    (enrolled.handle, state)
}

async fn challenge(api: &mut DeviceApiClient<Channel>, handle: &str) -> Vec<u8> {
    api.get_challenge(GetChallengeRequest {
        handle: handle.into(),
    })
    .await
    .unwrap()
    .into_inner()
    .nonce
}

async fn submit(
    api: &mut DeviceApiClient<Channel>,
    handle: &str,
    nonce: &[u8],
    evidence: Evidence,
) -> Result<SubmitEvidenceResponse, Status> {
    api.submit_evidence(SubmitEvidenceRequest {
        handle: handle.into(),
        nonce: nonce.to_vec(),
        evidence: Some(evidence),
        posture_level: 3,
        runtime_issue: false,
    })
    .await
    .map(tonic::Response::into_inner)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claim_tier(result: &SubmitEvidenceResponse, name: &str) -> Option<Tier> {
    result
        .claims
        .iter()
        .find(|c| c.name == name)
        .map(|c| c.tier())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enroll_attest_token_replay_and_expiry() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), 1);
    let running = start(dir.path()).await;
    let mut api = client(&running).await;
    create_account(&mut api, "alice").await;
    assert_eq!(
        code(
            api.create_account(CreateAccountRequest {
                username: "alice".into(),
                password: PASSWORD.into(),
            })
            .await
        ),
        Code::AlreadyExists
    );
    assert_eq!(
        code(
            api.create_account(CreateAccountRequest {
                username: "bob".into(),
                password: "short".into(),
            })
            .await
        ),
        Code::InvalidArgument
    );

    let mut device = Device::new().unwrap();
    // Wrong password, then a wrong credential secret: refused.
    assert_eq!(
        code(
            api.enroll_device(EnrollDeviceRequest {
                username: "alice".into(),
                password: "not the password at all".into(),
                evidence: Some(device.enrollment_evidence()),
            })
            .await
        ),
        Code::Unauthenticated
    );
    let enrolled = api
        .enroll_device(EnrollDeviceRequest {
            username: "alice".into(),
            password: PASSWORD.into(),
            evidence: Some(device.enrollment_evidence()),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        enrolled.state(),
        DeviceState::Trusted,
        "first device is trusted"
    );
    let handle = enrolled.handle.clone();
    assert_eq!(handle.len(), 64);
    assert_eq!(
        code(
            api.activate_credential(ActivateCredentialRequest {
                handle: handle.clone(),
                secret: vec![0; 32],
            })
            .await
        ),
        Code::PermissionDenied
    );
    // Another AK's name does not open the credential.
    let other = SoftwareAk::generate(KeyKind::EccP256).unwrap();
    let credential = enrolled.credential.unwrap();
    let as_made = enigm_verifier::credential::Credential {
        credential_blob: credential.credential_blob.clone(),
        encrypted_secret: credential.encrypted_secret.clone(),
    };
    assert!(
        device
            .ek
            .activate(&as_made, &other.name().unwrap())
            .unwrap()
            .is_none()
    );

    // Before activation, a quote is contraindicated (AK not bound to the EK).
    let nonce = challenge(&mut api, &handle).await;
    let early = submit(&mut api, &handle, &nonce, device.quote(&nonce).unwrap())
        .await
        .unwrap();
    assert_eq!(early.tier(), Tier::Contraindicated);
    assert_eq!(
        claim_tier(&early, "ak-binding"),
        Some(Tier::Contraindicated)
    );

    let secret = device.activate(&credential).unwrap().unwrap();
    api.activate_credential(ActivateCredentialRequest {
        handle: handle.clone(),
        secret,
    })
    .await
    .unwrap();

    let nonce = challenge(&mut api, &handle).await;
    assert_eq!(nonce.len(), 32);
    let evidence = device.quote(&nonce).unwrap();
    let result = submit(&mut api, &handle, &nonce, evidence.clone())
        .await
        .unwrap();
    // No event log (the test policy does not require one): warning; the rest affirmed.
    assert_eq!(result.tier(), Tier::Warning, "{:?}", result.claims);
    for name in [
        "ak",
        "ak-binding",
        "signature",
        "nonce",
        "pcr-digest",
        "pcrs",
        "clock",
    ] {
        assert_eq!(claim_tier(&result, name), Some(Tier::Affirming), "{name}");
    }
    assert_eq!(claim_tier(&result, "event-log"), Some(Tier::Warning));
    assert_eq!(result.state(), DeviceState::Trusted);

    // A relying party verifies the token offline with the backend's public key.
    let epochs = |d: &str| (d == handle).then_some(0u64);
    let claims =
        enigm_backend_tokens::verify(&result.token, &running.verification_keys, now(), &epochs)
            .unwrap();
    assert_eq!(claims.sub, handle);
    assert_eq!(claims.tier, enigm_backend_tokens::Tier::Warning);
    assert_eq!(claims.posture.level, 3);
    assert!(claims.exp - claims.iat == 300);
    // ... and refuses it once past expiry, or when the device's epoch moved on.
    assert!(
        enigm_backend_tokens::verify(
            &result.token,
            &running.verification_keys,
            now() + 3600,
            &epochs
        )
        .is_err()
    );
    let bumped = |d: &str| (d == handle).then_some(1u64);
    assert!(
        enigm_backend_tokens::verify(&result.token, &running.verification_keys, now(), &bumped)
            .is_err()
    );

    // Replayed nonce: refused.
    let replay = submit(&mut api, &handle, &nonce, evidence).await;
    assert_eq!(code(replay), Code::FailedPrecondition);

    // Expired challenge (TTL 1 s): refused.
    let nonce = challenge(&mut api, &handle).await;
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let expired = submit(&mut api, &handle, &nonce, device.quote(&nonce).unwrap()).await;
    let status = expired.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(status.message().contains("expired"), "{status:?}");

    // Unknown device, bad handle.
    assert_eq!(
        code(
            api.get_challenge(GetChallengeRequest {
                handle: "ab".repeat(32)
            })
            .await
        ),
        Code::NotFound
    );
    assert_eq!(
        code(
            api.get_challenge(GetChallengeRequest {
                handle: "nope".into()
            })
            .await
        ),
        Code::InvalidArgument
    );
    drop(api);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_device_pending_until_approved_by_first() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), 60);
    let running = start(dir.path()).await;
    let mut api = client(&running).await;
    create_account(&mut api, "carol").await;
    let mut first = Device::new().unwrap();
    let mut second = Device::new().unwrap();
    let (first_handle, state) = enroll(&mut api, "carol", &first).await;
    assert_eq!(state, DeviceState::Trusted);
    let (second_handle, state) = enroll(&mut api, "carol", &second).await;
    assert_eq!(
        state,
        DeviceState::Pending,
        "a new device is a new trust event"
    );

    // The pending device may attest, but its result is capped at warning.
    let nonce = challenge(&mut api, &second_handle).await;
    let pending_result = submit(
        &mut api,
        &second_handle,
        &nonce,
        second.quote(&nonce).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(pending_result.state(), DeviceState::Pending);
    assert_eq!(
        claim_tier(&pending_result, "lifecycle"),
        Some(Tier::Warning)
    );

    let nonce = challenge(&mut api, &first_handle).await;
    let first_result = submit(
        &mut api,
        &first_handle,
        &nonce,
        first.quote(&nonce).unwrap(),
    )
    .await
    .unwrap();

    let approve = |approver: &str, token: &str| ApproveRequest {
        approver_handle: approver.into(),
        approver_token: token.into(),
        pending_handle: second_handle.clone(),
    };
    // A pending device cannot approve itself, even with its own valid token.
    assert_eq!(
        code(
            api.approve(approve(&second_handle, &pending_result.token))
                .await
        ),
        Code::PermissionDenied
    );
    // The first device's handle with someone else's token, or garbage: unauthenticated.
    assert_eq!(
        code(
            api.approve(approve(&first_handle, &pending_result.token))
                .await
        ),
        Code::Unauthenticated
    );
    assert_eq!(
        code(api.approve(approve(&first_handle, "a.b.c")).await),
        Code::Unauthenticated
    );
    // Still pending: a further challenge's result is still capped.
    let nonce = challenge(&mut api, &second_handle).await;
    let still = submit(
        &mut api,
        &second_handle,
        &nonce,
        second.quote(&nonce).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(still.state(), DeviceState::Pending);

    // Approved by the trusted first device.
    let approved = api
        .approve(approve(&first_handle, &first_result.token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(approved.state(), DeviceState::Trusted);
    let nonce = challenge(&mut api, &second_handle).await;
    let trusted = submit(
        &mut api,
        &second_handle,
        &nonce,
        second.quote(&nonce).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(trusted.state(), DeviceState::Trusted);
    assert_eq!(claim_tier(&trusted, "lifecycle"), None);
    // Approving twice: the move no longer exists.
    assert_eq!(
        code(
            api.approve(approve(&first_handle, &first_result.token))
                .await
        ),
        Code::FailedPrecondition
    );
    drop(api);
    running.shutdown().await;
}

async fn https_get(running: &Running, path: &str) -> String {
    let connector = enigm_backend::client::pinned_connector(
        &running.cert_pem,
        enigm_backend::client::ALPN_HTTP1,
    )
    .unwrap();
    let mut stream = enigm_backend::client::connect_tls(&connector, running.http_addr, "localhost")
        .await
        .unwrap();
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_clear_statuses_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), 60);
    let running = start(dir.path()).await;
    let channel = enigm_backend::client::channel(running.grpc_addr, &running.cert_pem, "localhost")
        .await
        .unwrap();
    let mut api = DeviceApiClient::new(channel.clone());
    create_account(&mut api, "dave").await;
    let device = Device::new().unwrap();
    let good = EnrollDeviceRequest {
        username: "dave".into(),
        password: PASSWORD.into(),
        evidence: Some(device.enrollment_evidence()),
    };

    // Malformed protobuf: a length-delimited field whose length runs past the end.
    let status = raw_call(
        channel.clone(),
        "/enigm.backend.v1.DeviceApi/EnrollDevice",
        vec![0x0a, 0x7f, 0x01],
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("malformed protobuf"));

    // Unknown enum value in the evidence.
    let mut unknown_enum = good.clone();
    if let Some(evidence::Kind::Tpm(tpm)) =
        unknown_enum.evidence.as_mut().and_then(|e| e.kind.as_mut())
    {
        tpm.pcrs = vec![PcrBank {
            algorithm: 99,
            values: vec![],
        }];
    }
    let status = api.enroll_device(unknown_enum.clone()).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("unknown enum value 99"),
        "{status:?}"
    );
    // The same, sent as raw bytes (prost keeps unknown enum values as integers).
    let status = raw_call(
        channel.clone(),
        "/enigm.backend.v1.DeviceApi/EnrollDevice",
        unknown_enum.encode_to_vec(),
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);

    // Oversized request (limit 256 KiB).
    let mut oversized = good.clone();
    if let Some(evidence::Kind::Tpm(tpm)) =
        oversized.evidence.as_mut().and_then(|e| e.kind.as_mut())
    {
        tpm.event_log = vec![0; 300 * 1024];
    }
    let status = api.enroll_device(oversized).await.unwrap_err();
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");

    // Missing evidence, garbage AK.
    let mut missing = good.clone();
    missing.evidence = None;
    assert_eq!(
        code(api.enroll_device(missing).await),
        Code::InvalidArgument
    );
    let mut garbage = good.clone();
    if let Some(evidence::Kind::Tpm(tpm)) = garbage.evidence.as_mut().and_then(|e| e.kind.as_mut())
    {
        tpm.ak_public = vec![0, 3, 1, 2, 3];
    }
    assert_eq!(
        code(api.enroll_device(garbage).await),
        Code::InvalidArgument
    );

    // Nothing was stored: this device is still the account's first, so it is trusted.
    let enrolled = api.enroll_device(good.clone()).await.unwrap().into_inner();
    assert_eq!(enrolled.state(), DeviceState::Trusted);
    assert_eq!(code(api.enroll_device(good).await), Code::AlreadyExists);

    // Health and metrics, over TLS with the pinned certificate.
    let health = https_get(&running, "/healthz").await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(health.ends_with("ok\n"));
    let metrics = https_get(&running, "/metrics").await;
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    assert!(
        metrics.contains("enigm_backend_grpc_errors_total{code=\"invalid_argument\"} 5\n"),
        "{metrics}"
    );
    assert!(metrics.contains("enigm_backend_grpc_errors_total{code=\"out_of_range\"} 1\n"));
    assert!(metrics.contains("enigm_backend_grpc_errors_total{code=\"already_exists\"} 1\n"));
    assert!(metrics.contains("enigm_backend_challenges_issued_total 0\n"));
    drop(api);
    drop(channel);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_accounts_devices_challenges_and_certificate() {
    restart_keeps_state(Kind::Sqlite).await;
}

/// The same on PostgreSQL (the database started the way the storage suite starts it): the
/// server's whole path runs against it, and a `pg_dump` holds no raw identifier.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_accounts_devices_challenges_and_certificate_on_postgres() {
    restart_keeps_state(Kind::Postgres).await;
}

async fn restart_keeps_state(kind: Kind) {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new(kind).unwrap();
    let database = match kind {
        Kind::Sqlite => String::new(),
        Kind::Postgres => format!("database_url = \"{}\"\n", db.url()),
    };
    write_config_with(
        dir.path(),
        60,
        &database,
        "[rate_limit]\nper_minute = 60000\nburst = 10000\n",
    );
    let running = start(dir.path()).await;
    let fingerprint = running.fingerprint.clone();
    assert_eq!(fingerprint.len(), 32 * 3 - 1);
    let mut api = client(&running).await;
    create_account(&mut api, "erin.restart").await;
    let mut device = Device::new().unwrap();
    let (handle, _) = enroll(&mut api, "erin.restart", &device).await;
    let nonce = challenge(&mut api, &handle).await;
    // Private files are 0600.
    for file in ["backend-keys.toml", "backend-token.pem", "backend-tls.key"] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("var/lib/enigm").join(file))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{file}");
    }
    drop(api);
    running.shutdown().await;

    let running = start(dir.path()).await;
    assert_eq!(running.fingerprint, fingerprint, "certificate kept");
    let mut api = client(&running).await;
    // The challenge issued before the restart is still pending and answers once.
    let result = submit(&mut api, &handle, &nonce, device.quote(&nonce).unwrap())
        .await
        .unwrap();
    assert_eq!(result.state(), DeviceState::Trusted);
    assert_eq!(claim_tier(&result, "ak-binding"), Some(Tier::Affirming));
    assert_eq!(
        code(submit(&mut api, &handle, &nonce, device.quote(&nonce).unwrap()).await),
        Code::FailedPrecondition
    );
    // The account is kept: a second device of it is pending.
    let (_, state) = enroll(&mut api, "erin.restart", &Device::new().unwrap()).await;
    assert_eq!(state, DeviceState::Pending);
    // The token signing key is kept: the new instance's keys verify a token it just issued
    // and the old ring's kid is the same.
    let epochs = |d: &str| (d == handle).then_some(0u64);
    enigm_backend_tokens::verify(&result.token, &running.verification_keys, now(), &epochs)
        .unwrap();
    drop(api);
    running.shutdown().await;
    if kind == Kind::Postgres {
        let dump = db.dump().unwrap();
        let ak = device.ak.tpm2b_public();
        for (what, needle) in [
            ("username", b"erin.restart".to_vec()),
            ("raw AK public area", ak[2..].to_vec()),
            ("raw EK public area", device.ek.public()[2..].to_vec()),
        ] {
            assert!(
                !dump.windows(needle.len()).any(|w| w == needle.as_slice()),
                "{what} in pg_dump"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspended_device_gets_nothing_and_its_results_stop_verifying() {
    use enigm_backend_storage::{Actor, DeviceHandle, ServerKeys, Store};
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), 60);
    let running = start(dir.path()).await;
    let mut api = client(&running).await;
    create_account(&mut api, "frank").await;
    let mut device = Device::new().unwrap();
    let mut second = Device::new().unwrap();
    let (handle, _) = enroll(&mut api, "frank", &device).await;
    let (second_handle, _) = enroll(&mut api, "frank", &second).await;
    let nonce = challenge(&mut api, &handle).await;
    let result = submit(&mut api, &handle, &nonce, device.quote(&nonce).unwrap())
        .await
        .unwrap();
    let pending_nonce = challenge(&mut api, &handle).await;
    let second_nonce = challenge(&mut api, &second_handle).await;
    let second_result = submit(
        &mut api,
        &second_handle,
        &second_nonce,
        second.quote(&second_nonce).unwrap(),
    )
    .await
    .unwrap();
    let ring = running.verification_keys.verification_only().unwrap();
    drop(api);
    running.shutdown().await;

    // An admin suspends the device (through storage: the admin API is not built yet).
    let config = Config::load(dir.path(), []).unwrap();
    let keys = ServerKeys::load(&dir.path().join("var/lib/enigm/backend-keys.toml")).unwrap();
    let store = Store::open(&config.resolved_database_url(dir.path()), keys)
        .await
        .unwrap();
    let h = DeviceHandle::parse(&handle).unwrap();
    store
        .transition(
            &h,
            enigm_backend_storage::DeviceState::Trusted,
            enigm_backend_storage::DeviceState::Suspended,
            &Actor::Admin("ops".into()),
            "lost phone",
            SystemTime::now(),
        )
        .await
        .unwrap();
    let epoch = u64::try_from(store.revocation_epoch(&h).await.unwrap()).unwrap();
    store.close().await;
    // A relying party consulting the current epoch refuses the result issued before.
    let epochs = |d: &str| (d == handle).then_some(epoch);
    assert!(enigm_backend_tokens::verify(&result.token, &ring, now(), &epochs).is_err());

    let running = start(dir.path()).await;
    let mut api = client(&running).await;
    assert_eq!(
        code(
            api.get_challenge(GetChallengeRequest {
                handle: handle.clone()
            })
            .await
        ),
        Code::PermissionDenied
    );
    // A challenge it got before the suspension yields no result either.
    let status = submit(
        &mut api,
        &handle,
        &pending_nonce,
        device.quote(&pending_nonce).unwrap(),
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    // Its (now stale) token cannot approve the pending second device.
    assert_eq!(
        code(
            api.approve(ApproveRequest {
                approver_handle: handle.clone(),
                approver_token: result.token.clone(),
                pending_handle: second_handle.clone(),
            })
            .await
        ),
        Code::Unauthenticated
    );
    // Nor can the pending device approve itself with its own result.
    assert_eq!(
        code(
            api.approve(ApproveRequest {
                approver_handle: second_handle.clone(),
                approver_token: second_result.token.clone(),
                pending_handle: second_handle.clone(),
            })
            .await
        ),
        Code::PermissionDenied
    );
    drop(api);
    running.shutdown().await;
}

// ----- admin API, revocation list, abuse limits, purge -------------------------------------

use enigm_backend::proto::admin_api_client::AdminApiClient;
use enigm_backend::proto::{
    AdminReplaceRequest, AdminTransitionRequest, DeviceReplaceRequest, GetRevocationsRequest,
    ListDevicesRequest,
};
use enigm_backend_tokens::RevocationList;

fn admin_key(root: &Path) -> String {
    let path = root.join("var/lib/enigm/backend-admin.key");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "the admin key file is private");
    std::fs::read_to_string(path).unwrap().trim().to_owned()
}

async fn admin_client(running: &Running) -> AdminApiClient<Channel> {
    let channel = enigm_backend::client::channel(running.grpc_addr, &running.cert_pem, "localhost")
        .await
        .unwrap();
    AdminApiClient::new(channel)
}

/// `message` with `authorization: Bearer key`.
fn authed<T>(key: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {key}").parse().unwrap());
    request
}

fn change(handle: &str, reason: &str) -> AdminTransitionRequest {
    AdminTransitionRequest {
        handle: handle.into(),
        reason: reason.into(),
    }
}

/// Challenge, quote, submit: the device's token.
async fn attest(api: &mut DeviceApiClient<Channel>, handle: &str, device: &mut Device) -> String {
    let nonce = challenge(api, handle).await;
    submit(api, handle, &nonce, device.quote(&nonce).unwrap())
        .await
        .unwrap()
        .token
}

/// The current revocation list from the admin API, after checking its signature with `ring`.
async fn revocations(
    admin: &mut AdminApiClient<Channel>,
    key: &str,
    ring: &enigm_backend_tokens::KeyRing,
) -> RevocationList {
    let response = admin
        .get_revocations(authed(key, GetRevocationsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert!(response.changed);
    let list = RevocationList::open(&response.signed_list, ring).unwrap();
    assert_eq!(list.version, response.version);
    list
}

async fn open_store(root: &Path) -> enigm_backend_storage::Store {
    let config = Config::load(root, []).unwrap();
    let keys =
        enigm_backend_storage::ServerKeys::load(&root.join("var/lib/enigm/backend-keys.toml"))
            .unwrap();
    enigm_backend_storage::Store::open(&config.resolved_database_url(root), keys)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_suspend_reinstate_revoke_retire_with_signed_revocation_list() {
    use enigm_backend_storage::{Actor, DeviceHandle, DeviceState as St};
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), 60);
    let running = start(dir.path()).await;
    let key = admin_key(dir.path());
    let ring = running.verification_keys.verification_only().unwrap();
    let mut api = client(&running).await;
    let mut admin = admin_client(&running).await;
    let account = api
        .create_account(CreateAccountRequest {
            username: "gina".into(),
            password: PASSWORD.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .account_id;
    let mut device = Device::new().unwrap();
    let (handle, state) = enroll(&mut api, "gina", &device).await;
    assert_eq!(state, DeviceState::Trusted);
    let token = attest(&mut api, &handle, &mut device).await;

    // Absent, wrong (same length) and wrong-length keys: Unauthenticated, nothing changes.
    let wrong = "0".repeat(key.len());
    for request in [
        tonic::Request::new(change(&handle, "lost")),
        authed(&wrong, change(&handle, "lost")),
        authed("abcd", change(&handle, "lost")),
        authed(&format!("{key}00"), change(&handle, "lost")),
    ] {
        assert_eq!(code(admin.suspend(request).await), Code::Unauthenticated);
    }
    assert_eq!(
        code(
            admin
                .list_devices(tonic::Request::new(ListDevicesRequest {
                    account_id: account.clone()
                }))
                .await
        ),
        Code::Unauthenticated
    );
    // A reason is required.
    assert_eq!(
        code(admin.suspend(authed(&key, change(&handle, " "))).await),
        Code::InvalidArgument
    );

    // The signed list reflects the device and verifies its token.
    let before = revocations(&mut admin, &key, &ring).await;
    assert_eq!(before.devices.get(&handle), Some(&0));
    enigm_backend_tokens::verify(&token, &ring, now(), &before).unwrap();
    // Devices get it only with their own current result; nobody else at all.
    let as_device = |caller_handle: &str, caller_token: &str| GetRevocationsRequest {
        since_version: 0,
        caller_handle: caller_handle.into(),
        caller_token: caller_token.into(),
    };
    for (who, request) in [
        ("nobody", GetRevocationsRequest::default()),
        ("a handle without a token", as_device(&handle, "")),
        ("a forged token", as_device(&handle, "e30.e30.AAAA")),
        (
            "another handle's token",
            as_device(&"ab".repeat(32), &token),
        ),
    ] {
        assert_eq!(
            code(api.get_revocations(request).await),
            Code::Unauthenticated,
            "{who}"
        );
    }
    assert_eq!(
        code(
            admin
                .get_revocations(tonic::Request::new(GetRevocationsRequest::default()))
                .await
        ),
        Code::Unauthenticated,
        "admin API without the key"
    );
    let signed = api
        .get_revocations(as_device(&handle, &token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        RevocationList::open(&signed.signed_list, &ring).unwrap(),
        before
    );
    // Tampered lists do not open.
    let mut tampered = signed.signed_list.clone().into_bytes();
    let mid = tampered.len() / 2;
    tampered[mid] = if tampered[mid] == b'A' { b'B' } else { b'A' };
    assert!(RevocationList::open(&String::from_utf8(tampered).unwrap(), &ring).is_err());
    // Asking with the current version: unchanged, nothing resent.
    let same = api
        .get_revocations(GetRevocationsRequest {
            since_version: signed.version,
            ..as_device(&handle, &token)
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!same.changed && same.signed_list.is_empty());

    // Suspend: no challenge, and the token stops verifying against the new list.
    let suspended = admin
        .suspend(authed(&key, change(&handle, "reported lost")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(suspended.state(), DeviceState::Suspended);
    assert_eq!(
        code(
            api.get_challenge(GetChallengeRequest {
                handle: handle.clone()
            })
            .await
        ),
        Code::PermissionDenied
    );
    let after = revocations(&mut admin, &key, &ring).await;
    assert!(after.version > before.version);
    assert!(after.devices[&handle] > before.devices[&handle]);
    assert!(enigm_backend_tokens::verify(&token, &ring, now(), &after).is_err());
    // Its old result no longer fetches the list either.
    assert_eq!(
        code(api.get_revocations(as_device(&handle, &token)).await),
        Code::Unauthenticated
    );
    // Suspending again is not a move.
    assert_eq!(
        code(admin.suspend(authed(&key, change(&handle, "again"))).await),
        Code::FailedPrecondition
    );

    // Reinstate: attests again; the token from before the suspension stays refused.
    let reinstated = admin
        .reinstate(authed(&key, change(&handle, "found")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reinstated.state(), DeviceState::Trusted);
    let fresh = attest(&mut api, &handle, &mut device).await;
    let list = revocations(&mut admin, &key, &ring).await;
    enigm_backend_tokens::verify(&fresh, &ring, now(), &list).unwrap();
    assert!(enigm_backend_tokens::verify(&token, &ring, now(), &list).is_err());

    // Revoke: no challenge, fresh token refused, no way back.
    assert_eq!(
        admin
            .revoke(authed(&key, change(&handle, "stolen")))
            .await
            .unwrap()
            .into_inner()
            .state(),
        DeviceState::Revoked
    );
    assert_eq!(
        code(
            api.get_challenge(GetChallengeRequest {
                handle: handle.clone()
            })
            .await
        ),
        Code::PermissionDenied
    );
    let list = revocations(&mut admin, &key, &ring).await;
    assert!(enigm_backend_tokens::verify(&fresh, &ring, now(), &list).is_err());
    assert_eq!(
        code(admin.reinstate(authed(&key, change(&handle, "oops"))).await),
        Code::FailedPrecondition
    );
    // Retire.
    assert_eq!(
        admin
            .retire(authed(&key, change(&handle, "decommissioned")))
            .await
            .unwrap()
            .into_inner()
            .state(),
        DeviceState::Retired
    );
    // Inventory: handles and states only.
    let listed = admin
        .list_devices(authed(
            &key,
            ListDevicesRequest {
                account_id: account.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.devices.len(), 1);
    assert_eq!(listed.devices[0].handle, handle);
    assert_eq!(listed.devices[0].state(), DeviceState::Retired);
    assert_eq!(
        code(
            admin
                .list_devices(authed(
                    &key,
                    ListDevicesRequest {
                        account_id: "no-such-account".into()
                    }
                ))
                .await
        ),
        Code::NotFound
    );
    drop((api, admin));
    running.shutdown().await;

    // Every change was recorded with the admin and the reason.
    let store = open_store(dir.path()).await;
    let h = DeviceHandle::parse(&handle).unwrap();
    let recorded: Vec<_> = store
        .list_transitions(&h)
        .await
        .unwrap()
        .into_iter()
        .map(|t| (t.to, t.actor, t.reason))
        .collect();
    let admin_actor = || Actor::Admin("command".into());
    assert_eq!(
        recorded[1..],
        [
            (St::Suspended, admin_actor(), "reported lost".to_owned()),
            (St::Trusted, admin_actor(), "found".to_owned()),
            (St::Revoked, admin_actor(), "stolen".to_owned()),
            (St::Retired, admin_actor(), "decommissioned".to_owned()),
        ]
    );
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_approve_and_replace_atomically() {
    use enigm_backend_storage::{Actor, DeviceHandle, DeviceState as St};
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), 60);
    let running = start(dir.path()).await;
    let key = admin_key(dir.path());
    let ring = running.verification_keys.verification_only().unwrap();
    let mut api = client(&running).await;
    let mut admin = admin_client(&running).await;
    create_account(&mut api, "hana").await;
    create_account(&mut api, "ivan").await;
    let mut first = Device::new().unwrap();
    let mut second = Device::new().unwrap();
    let third = Device::new().unwrap();
    let fourth = Device::new().unwrap();
    let foreign = Device::new().unwrap();
    let (a, _) = enroll(&mut api, "hana", &first).await;
    let (b, b_state) = enroll(&mut api, "hana", &second).await;
    let (c, _) = enroll(&mut api, "hana", &third).await;
    let (d, _) = enroll(&mut api, "hana", &fourth).await;
    let (x, _) = enroll(&mut api, "ivan", &foreign).await;
    assert_eq!(b_state, DeviceState::Pending);

    // Admin approval of a pending device; its pending-time (capped) result stops verifying.
    let pending_token = attest(&mut api, &b, &mut second).await;
    assert_eq!(
        admin
            .approve(authed(&key, change(&b, "checked by the helpdesk")))
            .await
            .unwrap()
            .into_inner()
            .state(),
        DeviceState::Trusted
    );
    let list = revocations(&mut admin, &key, &ring).await;
    assert!(enigm_backend_tokens::verify(&pending_token, &ring, now(), &list).is_err());
    assert_eq!(
        code(admin.approve(authed(&key, change(&b, "twice"))).await),
        Code::FailedPrecondition
    );

    // Admin replace: a is revoked and c trusted in one step; a's token stops verifying.
    let a_token = attest(&mut api, &a, &mut first).await;
    let replace = |old: &str, new: &str| AdminReplaceRequest {
        old_handle: old.into(),
        new_handle: new.into(),
        reason: "new phone".into(),
    };
    assert_eq!(
        code(admin.replace(tonic::Request::new(replace(&a, &c))).await),
        Code::Unauthenticated
    );
    // A refused replacement changes nothing: across accounts.
    assert_eq!(
        code(admin.replace(authed(&key, replace(&a, &x))).await),
        Code::PermissionDenied
    );
    let replaced = admin
        .replace(authed(&key, replace(&a, &c)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(replaced.old_state(), DeviceState::Revoked);
    assert_eq!(replaced.new_state(), DeviceState::Trusted);
    let list = revocations(&mut admin, &key, &ring).await;
    assert!(enigm_backend_tokens::verify(&a_token, &ring, now(), &list).is_err());
    assert_eq!(
        code(
            api.get_challenge(GetChallengeRequest { handle: a.clone() })
                .await
        ),
        Code::PermissionDenied
    );

    // Device-initiated replace: b (trusted, with its current result) hands over to d.
    let b_token = attest(&mut api, &b, &mut second).await;
    assert_eq!(
        code(
            api.replace(DeviceReplaceRequest {
                old_handle: b.clone(),
                old_token: pending_token.clone(),
                new_handle: d.clone(),
            })
            .await
        ),
        Code::Unauthenticated
    );
    let replaced = api
        .replace(DeviceReplaceRequest {
            old_handle: b.clone(),
            old_token: b_token.clone(),
            new_handle: d.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(replaced.old_state(), DeviceState::Revoked);
    assert_eq!(replaced.new_state(), DeviceState::Trusted);
    drop((api, admin));
    running.shutdown().await;

    let store = open_store(dir.path()).await;
    let last = |handle: &str| {
        let store = &store;
        let h = DeviceHandle::parse(handle).unwrap();
        async move {
            let t = store.list_transitions(&h).await.unwrap().pop().unwrap();
            (
                store.get_device(&h).await.unwrap().unwrap().state,
                t.from,
                t.to,
                t.actor,
                t.reason,
            )
        }
    };
    let admin_actor = Actor::Admin("command".into());
    assert_eq!(
        last(&a).await,
        (
            St::Revoked,
            Some(St::Trusted),
            St::Revoked,
            admin_actor.clone(),
            "new phone".to_owned()
        )
    );
    assert_eq!(
        last(&c).await,
        (
            St::Trusted,
            Some(St::Pending),
            St::Trusted,
            admin_actor,
            "new phone".to_owned()
        )
    );
    let b_actor = Actor::Device(DeviceHandle::parse(&b).unwrap());
    assert_eq!(last(&b).await.2, St::Revoked);
    assert_eq!(last(&b).await.3, b_actor);
    assert_eq!(last(&d).await.2, St::Trusted);
    assert_eq!(last(&d).await.3, b_actor);
    assert_eq!(last(&x).await.0, St::Trusted);
    // Each gRPC connection left a (sealed) connection record with its source address only.
    let connections = store.list_connection_records().await.unwrap();
    assert!(!connections.is_empty());
    assert!(connections.iter().all(|c| c.remote_addr == "127.0.0.1"));
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_trips_then_recovers() {
    let dir = tempfile::tempdir().unwrap();
    // 600 per minute: one token every 100 ms; a burst of 3.
    write_config_with(
        dir.path(),
        60,
        "",
        "[rate_limit]\nper_minute = 600\nburst = 3\n",
    );
    let running = start(dir.path()).await;
    let mut api = client(&running).await;
    create_account(&mut api, "jane").await;
    let device = Device::new().unwrap();
    let (handle, _) = enroll(&mut api, "jane", &device).await;
    tokio::time::sleep(Duration::from_millis(400)).await; // buckets full again
    // The burst passes; within a few more calls (a token refills every 100 ms) it trips.
    for _ in 0..3 {
        challenge(&mut api, &handle).await;
    }
    let mut refused = None;
    for _ in 0..10 {
        if let Err(status) = api
            .get_challenge(GetChallengeRequest {
                handle: handle.clone(),
            })
            .await
        {
            refused = Some(status);
            break;
        }
    }
    let status = refused.expect("the limit trips");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("retry in 1 s"), "{status:?}");
    let retry_ms: u64 = status
        .metadata()
        .get("retry-after-ms")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_ms <= 100, "{retry_ms}");
    assert_eq!(status.metadata().get("retry-after").unwrap(), "1");
    tokio::time::sleep(Duration::from_millis(retry_ms + 150)).await;
    challenge(&mut api, &handle).await;
    let metrics = https_get(&running, "/metrics").await;
    assert!(
        metrics.contains("enigm_backend_grpc_errors_total{code=\"resource_exhausted\"} 1\n"),
        "{metrics}"
    );
    drop(api);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_task_deletes_expired_challenges() {
    let dir = tempfile::tempdir().unwrap();
    write_config_with(
        dir.path(),
        1,
        "purge_interval_secs = 1\n",
        "[rate_limit]\nper_minute = 60000\nburst = 10000\n[retention]\nchallenges_secs = 0\n",
    );
    let running = start(dir.path()).await;
    let mut api = client(&running).await;
    create_account(&mut api, "lena").await;
    let mut device = Device::new().unwrap();
    let (handle, _) = enroll(&mut api, "lena", &device).await;
    let old = challenge(&mut api, &handle).await;
    tokio::time::sleep(Duration::from_millis(2600)).await;
    // Past its expiry and its (zero) retention: purged, so now unknown rather than expired.
    let status = submit(&mut api, &handle, &old, device.quote(&old).unwrap())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(status.message().contains("unknown challenge"), "{status:?}");
    // A challenge inside its validity is kept and works.
    let fresh = challenge(&mut api, &handle).await;
    submit(&mut api, &handle, &fresh, device.quote(&fresh).unwrap())
        .await
        .unwrap();
    let metrics = https_get(&running, "/metrics").await;
    let purged: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("enigm_backend_purged_records_total{class=\"challenges\"} "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(purged >= 1, "{metrics}");
    drop(api);
    running.shutdown().await;
}

/// The relay between trusted devices of two accounts: a mailbox, a sealed envelope sent,
/// fetched, opened by the recipient only and acknowledged; bad input refused with clear
/// statuses; only ciphertext in the database files; a suspended device refused at once, its
/// mailbox gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_between_trusted_devices_of_two_accounts() {
    use enigm_backend::proto::{
        AckMessageRequest, CreateMailboxRequest, FetchMessagesRequest, SendMessageRequest,
    };
    use enigm_envelope::envelope::{Message, open, seal};
    use enigm_envelope::keys::{DeviceId, DeviceKeys};

    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), 60);
    let running = start(dir.path()).await;
    let key = admin_key(dir.path());
    let mut api = client(&running).await;
    let mut admin = admin_client(&running).await;
    create_account(&mut api, "alice").await;
    create_account(&mut api, "bob").await;
    let (mut alice_dev, mut bob_dev) = (Device::new().unwrap(), Device::new().unwrap());
    let (alice, _) = enroll(&mut api, "alice", &alice_dev).await;
    let (bob, _) = enroll(&mut api, "bob", &bob_dev).await;
    let alice_token = attest(&mut api, &alice, &mut alice_dev).await;
    let bob_token = attest(&mut api, &bob, &mut bob_dev).await;

    let mailbox = api
        .create_mailbox(CreateMailboxRequest {
            caller_handle: bob.clone(),
            caller_token: bob_token.clone(),
        })
        .await
        .unwrap()
        .into_inner();

    // The message keys (the key directory is not built yet: exchanged here directly).
    let id = |account: &str| DeviceId {
        account: account.into(),
        device: "phone".into(),
    };
    let alice_keys = DeviceKeys::generate(id("alice")).unwrap();
    let bob_keys = DeviceKeys::generate(id("bob")).unwrap();
    let marker = b"RELAY-PLAINTEXT-MARKER-7c1f";
    let envelope = seal(
        &alice_keys,
        &bob_keys.public().unwrap(),
        Message {
            id: "m1",
            sent_at: 0,
            cover: false,
            body: marker,
        },
    )
    .unwrap();
    let send =
        |envelope: Vec<u8>, capability: &str, token: &str, ttl_secs: u64| SendMessageRequest {
            caller_handle: alice.clone(),
            caller_token: token.to_owned(),
            queue: mailbox.queue.clone(),
            send_capability: capability.to_owned(),
            message_id: "m1".into(),
            envelope,
            ttl_secs,
        };
    // Bad input: clear statuses, nothing stored.
    for (request, expected) in [
        (
            send(
                vec![0u8; 1000],
                &mailbox.send_capability,
                &alice_token,
                3600,
            ),
            Code::InvalidArgument,
        ),
        (
            send(
                envelope.clone(),
                &mailbox.receive_capability,
                &alice_token,
                3600,
            ),
            Code::PermissionDenied,
        ),
        (
            send(envelope.clone(), &mailbox.send_capability, "", 3600),
            Code::Unauthenticated,
        ),
        (
            send(envelope.clone(), &mailbox.send_capability, &bob_token, 3600),
            Code::Unauthenticated,
        ),
        (
            send(envelope.clone(), &mailbox.send_capability, &alice_token, 0),
            Code::InvalidArgument,
        ),
    ] {
        assert_eq!(code(api.send_message(request).await), expected);
    }
    let fetch = |token: &str, capability: &str| FetchMessagesRequest {
        caller_handle: bob.clone(),
        caller_token: token.to_owned(),
        queue: mailbox.queue.clone(),
        receive_capability: capability.to_owned(),
        limit: 0,
    };
    let empty = api
        .fetch_messages(fetch(&bob_token, &mailbox.receive_capability))
        .await
        .unwrap()
        .into_inner();
    assert!(empty.messages.is_empty());

    // Sent (twice: a retry changes nothing), fetched, opened by Bob only, acknowledged.
    for _ in 0..2 {
        api.send_message(send(
            envelope.clone(),
            &mailbox.send_capability,
            &alice_token,
            3600,
        ))
        .await
        .unwrap();
    }
    assert_eq!(
        code(
            api.fetch_messages(fetch(&bob_token, &mailbox.send_capability))
                .await
        ),
        Code::PermissionDenied
    );
    let fetched = api
        .fetch_messages(fetch(&bob_token, &mailbox.receive_capability))
        .await
        .unwrap()
        .into_inner()
        .messages;
    assert_eq!(fetched.len(), 1);
    let alice_public = alice_keys.public().unwrap();
    let opened = open(&bob_keys, &fetched[0].envelope, |d| {
        (*d == alice_public.id).then(|| alice_public.clone())
    })
    .unwrap();
    assert_eq!(opened.body, marker);
    assert_eq!(opened.from, id("alice"));

    // Only ciphertext in the database files (the SQLite file and its WAL).
    let db_dir = dir.path().join("var/lib/enigm");
    for entry in std::fs::read_dir(&db_dir).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        assert!(
            !bytes.windows(marker.len()).any(|w| w == marker),
            "plaintext in the database files"
        );
    }

    let ack = |message_id: &str| AckMessageRequest {
        caller_handle: bob.clone(),
        caller_token: bob_token.clone(),
        queue: mailbox.queue.clone(),
        receive_capability: mailbox.receive_capability.clone(),
        message_id: message_id.into(),
    };
    assert!(
        api.ack_message(ack("m1"))
            .await
            .unwrap()
            .into_inner()
            .deleted
    );
    assert!(
        !api.ack_message(ack("m1"))
            .await
            .unwrap()
            .into_inner()
            .deleted
    );

    // Bob's device is suspended: refused at once, its mailbox and queue gone.
    api.send_message(send(
        envelope.clone(),
        &mailbox.send_capability,
        &alice_token,
        3600,
    ))
    .await
    .unwrap();
    admin
        .suspend(authed(&key, change(&bob, "lost phone")))
        .await
        .unwrap();
    assert_eq!(
        code(
            api.fetch_messages(fetch(&bob_token, &mailbox.receive_capability))
                .await
        ),
        Code::Unauthenticated
    );
    assert_eq!(
        code(
            api.send_message(send(
                envelope.clone(),
                &mailbox.send_capability,
                &alice_token,
                3600
            ))
            .await
        ),
        Code::PermissionDenied
    );
    running.shutdown().await;
}

/// A published bundle for `handle`'s mailbox, bound by `device`'s AK.
fn key_bundle(
    device: &mut Device,
    handle: &str,
    account_id: &str,
    mailbox: &enigm_backend::proto::CreateMailboxResponse,
    issued_at_unix: u64,
) -> (Vec<u8>, Evidence) {
    let bundle = enigm_backend::proto::KeyBundle {
        handle: handle.into(),
        account_id: account_id.into(),
        hpke_public: vec![7; 32],
        signing_public: vec![9; 32],
        queue: mailbox.queue.clone(),
        send_capability: mailbox.send_capability.clone(),
        issued_at_unix,
    }
    .encode_to_vec();
    let mut nonce = b"enigm-keydir-v1".to_vec();
    nonce.extend_from_slice(&bundle);
    let binding = device
        .quote_with_posture(&openssl::sha::sha256(&nonce), vec![0; 32])
        .unwrap();
    (bundle, binding)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_directory_lists_trusted_devices_with_keys_bound_to_their_attestation_keys() {
    use enigm_backend::proto::lookup_keys_request::Account;
    use enigm_backend::proto::{CreateMailboxRequest, LookupKeysRequest, PublishKeysRequest};

    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), 60);
    let running = start(dir.path()).await;
    let key = admin_key(dir.path());
    let mut api = client(&running).await;
    let mut admin = admin_client(&running).await;
    create_account(&mut api, "carol").await;
    let (mut phone, mut tablet, mut other) = (
        Device::new().unwrap(),
        Device::new().unwrap(),
        Device::new().unwrap(),
    );
    let (phone_handle, _) = enroll(&mut api, "carol", &phone).await;
    let (tablet_handle, tablet_state) = enroll(&mut api, "carol", &tablet).await;
    assert_eq!(tablet_state, DeviceState::Pending);
    create_account(&mut api, "dave").await;
    let (other_handle, _) = enroll(&mut api, "dave", &other).await;
    let phone_token = attest(&mut api, &phone_handle, &mut phone).await;
    let tablet_token = attest(&mut api, &tablet_handle, &mut tablet).await;
    let other_token = attest(&mut api, &other_handle, &mut other).await;
    let store = open_store(dir.path()).await;
    let account_id = store
        .find_account_by_username("carol")
        .await
        .unwrap()
        .unwrap()
        .id
        .0;
    let mailbox = |handle: &str, token: &str| CreateMailboxRequest {
        caller_handle: handle.into(),
        caller_token: token.into(),
    };
    let phone_box = api
        .create_mailbox(mailbox(&phone_handle, &phone_token))
        .await
        .unwrap()
        .into_inner();
    let other_box = api
        .create_mailbox(mailbox(&other_handle, &other_token))
        .await
        .unwrap()
        .into_inner();
    let publish =
        |handle: &str, token: &str, (bundle, binding): (Vec<u8>, Evidence)| PublishKeysRequest {
            caller_handle: handle.into(),
            caller_token: token.into(),
            bundle,
            binding: Some(binding),
        };
    let t0 = now();

    // Refused, and nothing published: a quote by another device's AK, a quote of another
    // bundle, a bundle naming another device, someone else's mailbox, no binding, garbage,
    // a pending device.
    let good = key_bundle(&mut phone, &phone_handle, &account_id, &phone_box, t0);
    let by_other_ak = key_bundle(&mut other, &phone_handle, &account_id, &phone_box, t0);
    let (other_bundle, _) = key_bundle(&mut phone, &phone_handle, &account_id, &phone_box, t0 + 1);
    let cases = [
        (
            publish(&phone_handle, &phone_token, by_other_ak),
            Code::PermissionDenied,
        ),
        (
            publish(&phone_handle, &phone_token, (other_bundle, good.1.clone())),
            Code::PermissionDenied,
        ),
        (
            publish(
                &phone_handle,
                &phone_token,
                key_bundle(&mut phone, &other_handle, &account_id, &phone_box, t0),
            ),
            Code::InvalidArgument,
        ),
        (
            publish(
                &phone_handle,
                &phone_token,
                key_bundle(&mut phone, &phone_handle, &account_id, &other_box, t0),
            ),
            Code::InvalidArgument,
        ),
        (
            PublishKeysRequest {
                binding: None,
                ..publish(&phone_handle, &phone_token, good.clone())
            },
            Code::InvalidArgument,
        ),
        (
            publish(
                &phone_handle,
                &phone_token,
                (vec![0xff; 40], good.1.clone()),
            ),
            Code::InvalidArgument,
        ),
        (
            publish(
                &tablet_handle,
                &tablet_token,
                key_bundle(&mut tablet, &tablet_handle, &account_id, &phone_box, t0),
            ),
            Code::PermissionDenied,
        ),
    ];
    for (request, expected) in cases {
        assert_eq!(code(api.publish_keys(request).await), expected);
    }
    let lookup = |handle: &str, token: &str, account: Account| LookupKeysRequest {
        caller_handle: handle.into(),
        caller_token: token.into(),
        account: Some(account),
    };
    let listed = api
        .lookup_keys(lookup(
            &other_handle,
            &other_token,
            Account::Username("carol".into()),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.account_id, account_id);
    assert!(listed.devices.is_empty());

    // Published; an older or equal bundle is refused; a newer one replaces it.
    api.publish_keys(publish(&phone_handle, &phone_token, good.clone()))
        .await
        .unwrap();
    assert_eq!(
        code(
            api.publish_keys(publish(&phone_handle, &phone_token, good.clone()))
                .await
        ),
        Code::FailedPrecondition
    );
    let newer = key_bundle(&mut phone, &phone_handle, &account_id, &phone_box, t0 + 5);
    api.publish_keys(publish(&phone_handle, &phone_token, newer.clone()))
        .await
        .unwrap();
    let listed = api
        .lookup_keys(lookup(
            &other_handle,
            &other_token,
            Account::AccountId(account_id.clone()),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.devices.len(), 1);
    assert_eq!(listed.devices[0].bundle, newer.0);
    // The stored quote verifies with the phone's AK, as tpm2_checkquote would.
    let ak = enigm_tpm_evidence::public::load_public_key(&phone.tpm().ak_public).unwrap();
    enigm_tpm_evidence::quote::verify_quote(
        &ak,
        &listed.devices[0].quote_attest,
        &listed.devices[0].quote_signature,
        Some(&enigm_backend::directory::binding_qualifying_data(&newer.0)),
        None,
    )
    .unwrap();
    // A pending device looks up nothing; an unknown account is not found.
    assert_eq!(
        code(
            api.lookup_keys(lookup(
                &tablet_handle,
                &tablet_token,
                Account::Username("carol".into())
            ))
            .await
        ),
        Code::PermissionDenied
    );
    assert_eq!(
        code(
            api.lookup_keys(lookup(
                &other_handle,
                &other_token,
                Account::Username("nobody".into())
            ))
            .await
        ),
        Code::NotFound
    );

    // Revoked: its entry is gone at once.
    admin
        .revoke(authed(&key, change(&phone_handle, "stolen")))
        .await
        .unwrap();
    let listed = api
        .lookup_keys(lookup(
            &other_handle,
            &other_token,
            Account::AccountId(account_id.clone()),
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(listed.devices.is_empty());
    store.close().await;
    running.shutdown().await;
}

/// Sends `count` envelopes into `mailbox` as `sender`.
async fn send_envelopes(
    api: &mut DeviceApiClient<Channel>,
    sender: (&str, &str),
    mailbox: &enigm_backend::proto::CreateMailboxResponse,
    ids: std::ops::Range<u32>,
) {
    for i in ids {
        api.send_message(enigm_backend::proto::SendMessageRequest {
            caller_handle: sender.0.into(),
            caller_token: sender.1.into(),
            queue: mailbox.queue.clone(),
            send_capability: mailbox.send_capability.clone(),
            message_id: format!("m{i}"),
            envelope: vec![i as u8; enigm_envelope::pad::WIRE_SIZES[0]],
            ttl_secs: 600,
        })
        .await
        .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_stream_delivers_waiting_and_new_messages_until_suspension() {
    push_stream(Kind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_stream_reaches_a_receiver_on_another_node_over_postgres() {
    push_stream(Kind::Postgres).await;
}

/// A receiver streams from one node; messages sent through another node sharing the
/// database (on SQLite: the same node) arrive on the stream, unacknowledged ones come again
/// on a new stream, and a suspension ends the stream.
async fn push_stream(kind: Kind) {
    use enigm_backend::proto::{AckMessageRequest, CreateMailboxRequest, FetchMessagesRequest};

    let db = TestDb::new(kind).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let top = match kind {
        Kind::Postgres => format!("database_url = \"{}\"\n", db.url()),
        Kind::Sqlite => String::new(),
    };
    write_config_with(dir.path(), 60, &top, "");
    let node_a = start(dir.path()).await;
    // The second node shares the config root (keys, token key) and the database.
    let node_b = match kind {
        Kind::Postgres => Some(start(dir.path()).await),
        Kind::Sqlite => None,
    };
    let key = admin_key(dir.path());
    let mut api_a = client(&node_a).await;
    let mut api_b = client(node_b.as_ref().unwrap_or(&node_a)).await;
    create_account(&mut api_a, "erin").await;
    create_account(&mut api_a, "frank").await;
    let (mut erin_dev, mut frank_dev) = (Device::new().unwrap(), Device::new().unwrap());
    let (erin, _) = enroll(&mut api_a, "erin", &erin_dev).await;
    let (frank, _) = enroll(&mut api_a, "frank", &frank_dev).await;
    let erin_token = attest(&mut api_a, &erin, &mut erin_dev).await;
    let frank_token = attest(&mut api_a, &frank, &mut frank_dev).await;
    let mailbox = api_a
        .create_mailbox(CreateMailboxRequest {
            caller_handle: frank.clone(),
            caller_token: frank_token.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let request = FetchMessagesRequest {
        caller_handle: frank.clone(),
        caller_token: frank_token.clone(),
        queue: mailbox.queue.clone(),
        receive_capability: mailbox.receive_capability.clone(),
        limit: 0,
    };
    // A wrong capability is refused before the stream starts.
    assert_eq!(
        code(
            api_a
                .stream_messages(FetchMessagesRequest {
                    receive_capability: mailbox.send_capability.clone(),
                    ..request.clone()
                })
                .await
        ),
        Code::PermissionDenied
    );

    send_envelopes(&mut api_b, (&erin, &erin_token), &mailbox, 0..2).await;
    let mut stream = api_a
        .stream_messages(request.clone())
        .await
        .unwrap()
        .into_inner();
    // The waiting ones, then new ones sent through the other node, each once.
    let mut ids = Vec::new();
    for _ in 0..2 {
        ids.push(next(&mut stream).await.unwrap().unwrap().message_id);
    }
    send_envelopes(&mut api_b, (&erin, &erin_token), &mailbox, 2..5).await;
    for _ in 2..5 {
        ids.push(next(&mut stream).await.unwrap().unwrap().message_id);
    }
    assert_eq!(ids, ["m0", "m1", "m2", "m3", "m4"]);
    for id in &ids[..3] {
        api_a
            .ack_message(AckMessageRequest {
                caller_handle: frank.clone(),
                caller_token: frank_token.clone(),
                queue: mailbox.queue.clone(),
                receive_capability: mailbox.receive_capability.clone(),
                message_id: id.clone(),
            })
            .await
            .unwrap();
    }
    drop(stream);
    // A new stream (on the other node) has the two unacknowledged ones.
    let mut again = api_b
        .stream_messages(request.clone())
        .await
        .unwrap()
        .into_inner();
    let mut rest = Vec::new();
    for _ in 0..2 {
        rest.push(next(&mut again).await.unwrap().unwrap().message_id);
    }
    assert_eq!(rest, ["m3", "m4"]);
    if kind == Kind::Sqlite {
        let metrics = https_get(&node_a, "/metrics").await;
        for line in [
            "enigm_backend_relay_messages_total{event=\"stored\"} 5\n",
            "enigm_backend_relay_messages_total{event=\"delivered\"} 7\n",
            "enigm_backend_relay_messages_total{event=\"acknowledged\"} 3\n",
        ] {
            assert!(metrics.contains(line), "{line} in {metrics}");
        }
    }

    // Suspended: the stream ends with a refusal, no later than its recheck.
    let mut admin = admin_client(&node_a).await;
    admin
        .suspend(authed(&key, change(&frank, "lost")))
        .await
        .unwrap();
    send_envelopes_refused(&mut api_a, (&erin, &erin_token), &mailbox).await;
    let ended = tokio::time::timeout(Duration::from_secs(15), again.message())
        .await
        .expect("the stream ends after the suspension");
    assert!(ended.is_err(), "a refusal, not a message: {ended:?}");
    if let Some(node_b) = node_b {
        node_b.shutdown().await;
    }
    node_a.shutdown().await;
}

/// The stream's next item, within 10 s.
async fn next(
    stream: &mut tonic::Streaming<enigm_backend::proto::RelayedMessage>,
) -> Result<Option<enigm_backend::proto::RelayedMessage>, Status> {
    tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("a message within 10 s")
}

/// A send into a deleted mailbox is refused.
async fn send_envelopes_refused(
    api: &mut DeviceApiClient<Channel>,
    sender: (&str, &str),
    mailbox: &enigm_backend::proto::CreateMailboxResponse,
) {
    let refused = api
        .send_message(enigm_backend::proto::SendMessageRequest {
            caller_handle: sender.0.into(),
            caller_token: sender.1.into(),
            queue: mailbox.queue.clone(),
            send_capability: mailbox.send_capability.clone(),
            message_id: "late".into(),
            envelope: vec![0; enigm_envelope::pad::WIRE_SIZES[0]],
            ttl_secs: 600,
        })
        .await;
    assert_eq!(code(refused), Code::PermissionDenied);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_into_one_queue_are_rate_limited_and_other_queues_are_not() {
    use enigm_backend::proto::{CreateMailboxRequest, FetchMessagesRequest, SendMessageRequest};

    let dir = tempfile::tempdir().unwrap();
    // One send a second into a queue, a burst of 3.
    write_config_with(
        dir.path(),
        60,
        "",
        "[relay_rate_limit]\nper_minute = 60\nburst = 3\n",
    );
    let running = start(dir.path()).await;
    let mut api = client(&running).await;
    create_account(&mut api, "gina").await;
    create_account(&mut api, "hank").await;
    let (mut gina_dev, mut hank_dev) = (Device::new().unwrap(), Device::new().unwrap());
    let (gina, _) = enroll(&mut api, "gina", &gina_dev).await;
    let (hank, _) = enroll(&mut api, "hank", &hank_dev).await;
    let gina_token = attest(&mut api, &gina, &mut gina_dev).await;
    let hank_token = attest(&mut api, &hank, &mut hank_dev).await;
    let new_mailbox = || CreateMailboxRequest {
        caller_handle: hank.clone(),
        caller_token: hank_token.clone(),
    };
    let busy = api
        .create_mailbox(new_mailbox())
        .await
        .unwrap()
        .into_inner();
    let quiet = api
        .create_mailbox(new_mailbox())
        .await
        .unwrap()
        .into_inner();

    send_envelopes(&mut api, (&gina, &gina_token), &busy, 0..3).await;
    let refused = api
        .send_message(SendMessageRequest {
            caller_handle: gina.clone(),
            caller_token: gina_token.clone(),
            queue: busy.queue.clone(),
            send_capability: busy.send_capability.clone(),
            message_id: "over".into(),
            envelope: vec![0; enigm_envelope::pad::WIRE_SIZES[0]],
            ttl_secs: 600,
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(refused.message().contains("queue"), "{refused:?}");
    assert!(refused.metadata().get("retry-after").is_some());
    // Another queue is not affected; the refused send stored nothing.
    send_envelopes(&mut api, (&gina, &gina_token), &quiet, 0..3).await;
    let queued = api
        .fetch_messages(FetchMessagesRequest {
            caller_handle: hank.clone(),
            caller_token: hank_token.clone(),
            queue: busy.queue.clone(),
            receive_capability: busy.receive_capability.clone(),
            limit: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .messages;
    assert_eq!(
        queued
            .iter()
            .map(|m| m.message_id.as_str())
            .collect::<Vec<_>>(),
        ["m0", "m1", "m2"]
    );
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_stream_drains_a_backlog_larger_than_one_look() {
    use enigm_backend::proto::{AckMessageRequest, CreateMailboxRequest, FetchMessagesRequest};

    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), 60);
    let running = start(dir.path()).await;
    let mut api = client(&running).await;
    create_account(&mut api, "ivan").await;
    create_account(&mut api, "judy").await;
    let (mut ivan_dev, mut judy_dev) = (Device::new().unwrap(), Device::new().unwrap());
    let (ivan, _) = enroll(&mut api, "ivan", &ivan_dev).await;
    let (judy, _) = enroll(&mut api, "judy", &judy_dev).await;
    let ivan_token = attest(&mut api, &ivan, &mut ivan_dev).await;
    let judy_token = attest(&mut api, &judy, &mut judy_dev).await;
    let mailbox = api
        .create_mailbox(CreateMailboxRequest {
            caller_handle: judy.clone(),
            caller_token: judy_token.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    // Eight waiting, a stream that looks at three at a time: it gets all eight as they are
    // acknowledged, with nothing new sent meanwhile.
    send_envelopes(&mut api, (&ivan, &ivan_token), &mailbox, 0..8).await;
    let mut stream = api
        .stream_messages(FetchMessagesRequest {
            caller_handle: judy.clone(),
            caller_token: judy_token.clone(),
            queue: mailbox.queue.clone(),
            receive_capability: mailbox.receive_capability.clone(),
            limit: 3,
        })
        .await
        .unwrap()
        .into_inner();
    let mut ids = Vec::new();
    for _ in 0..8 {
        let message = next(&mut stream).await.unwrap().unwrap();
        api.ack_message(AckMessageRequest {
            caller_handle: judy.clone(),
            caller_token: judy_token.clone(),
            queue: mailbox.queue.clone(),
            receive_capability: mailbox.receive_capability.clone(),
            message_id: message.message_id.clone(),
        })
        .await
        .unwrap();
        ids.push(message.message_id);
    }
    let expected: Vec<String> = (0..8).map(|i| format!("m{i}")).collect();
    assert_eq!(ids, expected);
    drop(stream);
    running.shutdown().await;
}
