//! The storage suite: every test runs on SQLite (a file) and on PostgreSQL (a real server
//! started by the harness in `common`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test bodies: a failed step should stop the test

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Result;
use base64::Engine as _;
use common::{Kind, TestDb};
use enigm_backend_storage::store::{Delivery, MailboxLimits, MailboxRefusal};
use enigm_backend_storage::{
    AccountId, Actor, AttestationRecord, ChallengeIssue, ChallengeOutcome, ChallengePeek,
    ClockInfo, DeviceHandle, DeviceState, KeyFile, NewAccount, NewDevice, Recorded, Retention,
    SealError, ServerKeys, Store, StoreError, VerifierData, handle,
};
use serde_json::json;

fn t(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut b = vec![0u8; n];
    openssl::rand::rand_bytes(&mut b).unwrap();
    b
}

/// A key file written to the test dir, and the keys it holds.
fn key_file(db: &TestDb, name: &str, kf: &KeyFile) -> Result<ServerKeys> {
    let path = db.dir().join(name);
    let text = if name.ends_with(".json") {
        kf.to_json()?
    } else {
        kf.to_toml()?
    };
    std::fs::write(&path, text)?;
    Ok(ServerKeys::load(&path)?)
}

/// Stand-in for the caller's argon2id PHC string (the store keeps it as given).
fn phc(secret: &str) -> String {
    let digest = openssl::sha::sha256(secret.as_bytes());
    format!(
        "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ${}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest)
    )
}

struct Fixture {
    db: TestDb,
    kf: KeyFile,
    store: Store,
}

async fn fixture(kind: Kind) -> Result<Fixture> {
    let db = TestDb::new(kind)?;
    let kf = KeyFile::generate("k1")?;
    let keys = key_file(&db, "keys.toml", &kf)?;
    let store = Store::open(db.url(), keys).await?;
    Ok(Fixture { db, kf, store })
}

fn verifier(ak: &[u8]) -> VerifierData {
    VerifierData {
        ak_public: ak.to_vec(),
        ek_public: random_bytes(64),
        ek_certificate: Some(random_bytes(200)),
        activated: true,
        last_clock: Some(ClockInfo {
            clock: 1234,
            reset_count: 1,
            restart_count: 0,
            safe: true,
        }),
    }
}

async fn account(store: &Store, username: &str, at: SystemTime) -> Result<AccountId> {
    Ok(store
        .create_account(&NewAccount {
            username,
            password_hash: &phc("pw"),
            recovery_hash: &phc("recovery"),
            metadata: json!({"plan": "basic"}),
            at,
        })
        .await?)
}

/// Enroll a device with a random attestation key; returns its handle and key.
async fn device(
    store: &Store,
    account: &AccountId,
    state: DeviceState,
    at: SystemTime,
) -> Result<(DeviceHandle, Vec<u8>)> {
    let ak = random_bytes(65);
    let h = handle(store.lookup_secret(), &ak)?;
    store
        .enroll_device(&NewDevice {
            handle: &h,
            account,
            state,
            verifier: &verifier(&ak),
            actor: &Actor::System,
            reason: "enrollment",
            at,
        })
        .await?;
    Ok((h, ak))
}

async fn state_of(store: &Store, h: &DeviceHandle) -> Result<DeviceState> {
    Ok(store.get_device(h).await?.expect("device exists").state)
}

// ---------------------------------------------------------------------------------------

async fn account_and_device_lifecycle(kind: Kind) -> Result<()> {
    let Fixture { store, db: _db, .. } = fixture(kind).await?;
    let acc = account(&store, "Alice", t(0)).await?;

    // Lookup is case insensitive; a second account with the same name is refused.
    let found = store.find_account_by_username("aLiCe").await?.unwrap();
    assert_eq!(found.id, acc);
    assert_eq!(found.username, "Alice");
    assert_eq!(found.password_hash, phc("pw"));
    assert_eq!(found.recovery_hash, phc("recovery"));
    assert_eq!(found.created_at, t(0));
    assert_eq!(found.metadata, json!({"plan": "basic"}));
    assert!(store.find_account_by_username("bob").await?.is_none());
    assert!(matches!(
        account(&store, "ALICE", t(1))
            .await
            .unwrap_err()
            .downcast_ref::<StoreError>(),
        Some(StoreError::AccountExists)
    ));
    store.set_recovery_hash(&acc, &phc("new phrase")).await?;
    assert_eq!(
        store.get_account(&acc).await?.unwrap().recovery_hash,
        phc("new phrase")
    );
    assert!(matches!(
        store
            .set_recovery_hash(&AccountId("nope".into()), "x")
            .await,
        Err(StoreError::NotFound { .. })
    ));

    // First device trusted, second pending.
    let (first, first_ak) = device(&store, &acc, DeviceState::Trusted, t(10)).await?;
    let (second, _) = device(&store, &acc, DeviceState::Pending, t(20)).await?;
    let d = store.get_device(&first).await?.unwrap();
    assert_eq!(d.state, DeviceState::Trusted);
    assert_eq!(d.account, acc);
    assert_eq!(d.verifier.ak_public, first_ak);
    assert_eq!(d.created_at, t(10));
    let listed: Vec<_> = store
        .list_devices(&acc)
        .await?
        .into_iter()
        .map(|d| (d.handle, d.state))
        .collect();
    assert_eq!(
        listed,
        vec![
            (first.clone(), DeviceState::Trusted),
            (second.clone(), DeviceState::Pending)
        ]
    );

    // Re-enrolling the same key is refused; an unknown account is refused.
    let again = store
        .enroll_device(&NewDevice {
            handle: &first,
            account: &acc,
            state: DeviceState::Pending,
            verifier: &verifier(&first_ak),
            actor: &Actor::System,
            reason: "again",
            at: t(30),
        })
        .await;
    assert!(
        matches!(again, Err(StoreError::DeviceExists { .. })),
        "{again:?}"
    );
    let stray = handle(store.lookup_secret(), b"stray")?;
    let orphan = store
        .enroll_device(&NewDevice {
            handle: &stray,
            account: &AccountId("no-such-account".into()),
            state: DeviceState::Pending,
            verifier: &verifier(b"stray"),
            actor: &Actor::System,
            reason: "orphan",
            at: t(30),
        })
        .await;
    assert!(
        matches!(
            orphan,
            Err(StoreError::NotFound {
                what: "account",
                ..
            })
        ),
        "{orphan:?}"
    );
    assert!(store.get_device(&stray).await?.is_none());

    // The first device approves the second; an admin suspends the first.
    store
        .transition(
            &second,
            DeviceState::Pending,
            DeviceState::Trusted,
            &Actor::Device(first.clone()),
            "approved on first device",
            t(40),
        )
        .await?;
    // Every change of state changes trust: approval bumps the approved device's epoch too
    // (results it got while pending stop being accepted).
    assert_eq!(store.revocation_epoch(&first).await?, 0);
    assert_eq!(store.revocation_epoch(&second).await?, 1);
    assert_eq!(store.global_revocation_epoch().await?, 1);
    let mut expected = vec![(first.clone(), 0), (second.clone(), 1)];
    expected.sort();
    assert_eq!(store.device_epochs().await?, expected);
    store
        .transition(
            &first,
            DeviceState::Trusted,
            DeviceState::Suspended,
            &Actor::Admin("ops".into()),
            "lost phone",
            t(50),
        )
        .await?;
    assert_eq!(state_of(&store, &second).await?, DeviceState::Trusted);
    let d = store.get_device(&first).await?.unwrap();
    assert_eq!(d.state, DeviceState::Suspended);
    assert_eq!(d.state_changed_at, t(50));
    // Suspension invalidates results already issued.
    assert_eq!(store.revocation_epoch(&first).await?, 1);
    assert_eq!(store.global_revocation_epoch().await?, 2);
    assert_eq!(store.revocations_since(1).await?, vec![(first.clone(), 1)]);
    assert!(store.revocations_since(2).await?.is_empty());
    let e = store.bump_revocation_epoch(&second).await?;
    assert_eq!((e.device, e.global), (2, 3));
    assert_eq!(store.revocations_since(2).await?, vec![(second.clone(), 2)]);
    // Every device with its epoch, sorted by handle.
    let mut expected = vec![(first.clone(), 1), (second.clone(), 2)];
    expected.sort();
    assert_eq!(store.device_epochs().await?, expected);

    let history = store.list_transitions(&second).await?;
    assert_eq!(history.len(), 2);
    assert_eq!(history[0].from, None);
    assert_eq!(history[0].to, DeviceState::Pending);
    assert_eq!(history[0].actor, Actor::System);
    assert_eq!(history[1].from, Some(DeviceState::Pending));
    assert_eq!(history[1].to, DeviceState::Trusted);
    assert_eq!(history[1].actor, Actor::Device(first.clone()));
    assert_eq!(history[1].reason, "approved on first device");
    assert_eq!(history[1].at, t(40));
    let history = store.list_transitions(&first).await?;
    assert_eq!(history[1].actor, Actor::Admin("ops".into()));
    assert_eq!(history[1].reason, "lost phone");

    // Verifier data updates.
    let mut v = store.get_device(&second).await?.unwrap().verifier;
    v.last_clock = Some(ClockInfo {
        clock: 99_999,
        reset_count: 2,
        restart_count: 3,
        safe: false,
    });
    store.update_verifier_data(&second, &v).await?;
    assert_eq!(store.get_device(&second).await?.unwrap().verifier, v);

    // Appraisals and connection records round-trip.
    store
        .record_appraisal(&second, t(60), "high", &json!({"secure_boot": true}))
        .await?;
    let a = store.list_appraisals(&second).await?;
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].tier, "high");
    assert_eq!(a[0].claims, json!({"secure_boot": true}));
    assert!(matches!(
        store.record_appraisal(&stray, t(60), "x", &json!({})).await,
        Err(StoreError::NotFound { .. })
    ));
    store.record_connection(t(61), "192.0.2.7:4433").await?;
    assert_eq!(
        store.list_connection_records().await?[0].remote_addr,
        "192.0.2.7:4433"
    );
    store.close().await;
    Ok(())
}

async fn transition_compare_and_set(kind: Kind) -> Result<()> {
    let Fixture { db, kf, store } = fixture(kind).await?;
    let acc = account(&store, "carol", t(0)).await?;
    let (h, _) = device(&store, &acc, DeviceState::Trusted, t(1)).await?;

    // A stale from-state is refused and changes nothing.
    let stale = store
        .transition(
            &h,
            DeviceState::Pending,
            DeviceState::Revoked,
            &Actor::System,
            "stale",
            t(2),
        )
        .await;
    match stale {
        Err(StoreError::StateConflict {
            expected, actual, ..
        }) => {
            assert_eq!(expected, DeviceState::Pending);
            assert_eq!(actual, DeviceState::Trusted);
        }
        other => panic!("expected a state conflict, got {other:?}"),
    }
    assert_eq!(state_of(&store, &h).await?, DeviceState::Trusted);
    assert_eq!(store.list_transitions(&h).await?.len(), 1);
    assert_eq!(store.revocation_epoch(&h).await?, 0);
    let unknown = handle(store.lookup_secret(), b"unknown")?;
    assert!(matches!(
        store
            .transition(
                &unknown,
                DeviceState::Trusted,
                DeviceState::Revoked,
                &Actor::System,
                "x",
                t(2)
            )
            .await,
        Err(StoreError::NotFound { .. })
    ));

    // Two nodes (two stores on one database) race trusted -> X: exactly one wins.
    let other = Store::open(db.url(), kf.clone().into_keys()?).await?;
    let mut tasks = Vec::new();
    for (i, s) in [store.clone(), other.clone(), store.clone(), other.clone()]
        .into_iter()
        .enumerate()
    {
        let h = h.clone();
        let to = if i % 2 == 0 {
            DeviceState::Suspended
        } else {
            DeviceState::Revoked
        };
        tasks.push(tokio::spawn(async move {
            s.transition(
                &h,
                DeviceState::Trusted,
                to,
                &Actor::Admin(format!("admin{i}")),
                "race",
                t(3),
            )
            .await
            .map(|()| to)
        }));
    }
    let mut winners = Vec::new();
    for task in tasks {
        match task.await? {
            Ok(to) => winners.push(to),
            Err(StoreError::StateConflict { actual, .. }) => {
                assert_ne!(actual, DeviceState::Trusted)
            }
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one CAS wins: {winners:?}");
    assert_eq!(state_of(&store, &h).await?, winners[0]);
    let history = store.list_transitions(&h).await?;
    assert_eq!(history.len(), 2);
    assert_eq!(history[1].to, winners[0]);
    assert_eq!(store.revocation_epoch(&h).await?, 1);
    other.close().await;
    store.close().await;
    Ok(())
}

type Snapshot = (Vec<(DeviceState, usize, i64)>, i64);

/// States, transition counts and epochs of `handles`, and the global epoch.
async fn snapshot(store: &Store, handles: &[&DeviceHandle]) -> Result<Snapshot> {
    let mut s = Vec::new();
    for h in handles {
        s.push((
            state_of(store, h).await?,
            store.list_transitions(h).await?.len(),
            store.revocation_epoch(h).await?,
        ));
    }
    Ok((s, store.global_revocation_epoch().await?))
}

async fn replace_is_atomic(kind: Kind) -> Result<()> {
    let Fixture { store, db: _db, .. } = fixture(kind).await?;
    let acc = account(&store, "dave", t(0)).await?;
    let other_acc = account(&store, "erin", t(0)).await?;
    let (old, _) = device(&store, &acc, DeviceState::Trusted, t(1)).await?;
    let (trusted2, _) = device(&store, &acc, DeviceState::Trusted, t(2)).await?;
    let (foreign, _) = device(&store, &other_acc, DeviceState::Pending, t(3)).await?;
    let (pending, _) = device(&store, &acc, DeviceState::Pending, t(4)).await?;
    let (pending_old, _) = device(&store, &acc, DeviceState::Pending, t(5)).await?;
    let (retired, _) = device(&store, &acc, DeviceState::Retired, t(6)).await?;
    let admin = Actor::Admin("ops".into());

    let all = [&old, &trusted2, &foreign, &pending, &pending_old, &retired];
    let before = snapshot(&store, &all).await?;

    // Refusals: replacement neither pending nor trusted, of another account, old not
    // trusted, itself.
    for (o, n) in [
        (&old, &retired),
        (&old, &foreign),
        (&pending_old, &pending),
        (&old, &old),
    ] {
        let r = store.replace(o, n, &admin, "swap", t(10)).await;
        assert!(
            matches!(r, Err(StoreError::ReplaceRefused { .. })),
            "{o} -> {n}: {r:?}"
        );
    }
    // Nothing changed: no state, no transition record, no epoch.
    assert_eq!(snapshot(&store, &all).await?, before);

    // Success: both changes and both records, together.
    store
        .replace(
            &old,
            &pending,
            &Actor::Device(trusted2.clone()),
            "new phone",
            t(20),
        )
        .await?;
    assert_eq!(state_of(&store, &old).await?, DeviceState::Revoked);
    assert_eq!(state_of(&store, &pending).await?, DeviceState::Trusted);
    let old_hist = store.list_transitions(&old).await?;
    let new_hist = store.list_transitions(&pending).await?;
    assert_eq!(old_hist.len(), 2);
    assert_eq!(new_hist.len(), 2);
    assert_eq!(
        (old_hist[1].from, old_hist[1].to),
        (Some(DeviceState::Trusted), DeviceState::Revoked)
    );
    assert_eq!(
        (new_hist[1].from, new_hist[1].to),
        (Some(DeviceState::Pending), DeviceState::Trusted)
    );
    for h in [&old_hist[1], &new_hist[1]] {
        assert_eq!(h.actor, Actor::Device(trusted2.clone()));
        assert_eq!(h.reason, "new phone");
        assert_eq!(h.at, t(20));
    }
    assert_eq!(store.revocation_epoch(&old).await?, 1);
    assert_eq!(store.revocation_epoch(&pending).await?, 1);
    // An already trusted device can take over too: only the old one changes.
    store
        .replace(&pending, &trusted2, &admin, "back to the tablet", t(25))
        .await?;
    assert_eq!(state_of(&store, &pending).await?, DeviceState::Revoked);
    assert_eq!(state_of(&store, &trusted2).await?, DeviceState::Trusted);
    assert_eq!(store.list_transitions(&trusted2).await?.len(), 1);
    assert_eq!(store.revocation_epoch(&trusted2).await?, 0);
    assert_eq!(store.revocation_epoch(&pending).await?, 2);
    // The old one cannot be replaced twice.
    assert!(matches!(
        store
            .replace(&old, &pending_old, &admin, "again", t(30))
            .await,
        Err(StoreError::ReplaceRefused { .. })
    ));
    assert_eq!(state_of(&store, &pending_old).await?, DeviceState::Pending);

    // Two concurrent replacements of one device: exactly one happens.
    let (victim, _) = device(&store, &acc, DeviceState::Trusted, t(40)).await?;
    let (cand_a, _) = device(&store, &acc, DeviceState::Pending, t(41)).await?;
    let (cand_b, _) = device(&store, &acc, DeviceState::Pending, t(42)).await?;
    let (ra, rb) = tokio::join!(
        store.replace(&victim, &cand_a, &admin, "a", t(50)),
        store.replace(&victim, &cand_b, &admin, "b", t(50))
    );
    assert!(ra.is_ok() ^ rb.is_ok(), "{ra:?} {rb:?}");
    let trusted_now = [
        state_of(&store, &cand_a).await?,
        state_of(&store, &cand_b).await?,
    ];
    assert_eq!(
        trusted_now
            .iter()
            .filter(|s| **s == DeviceState::Trusted)
            .count(),
        1
    );
    assert_eq!(store.list_transitions(&victim).await?.len(), 2);
    store.close().await;
    Ok(())
}

async fn challenges_single_use_with_ttl(kind: Kind) -> Result<()> {
    let Fixture { db, kf, store } = fixture(kind).await?;
    let acc = account(&store, "frank", t(0)).await?;
    let (h, _) = device(&store, &acc, DeviceState::Trusted, t(0)).await?;
    let ttl = Duration::from_secs(60);

    let n1 = random_bytes(32);
    store.issue_challenge(&h, &n1, t(100), ttl).await?;
    assert_eq!(
        store.consume_challenge(&n1, t(130)).await?,
        ChallengeOutcome::Consumed(h.clone())
    );
    assert_eq!(
        store.consume_challenge(&n1, t(131)).await?,
        ChallengeOutcome::AlreadyUsed
    );

    // Valid up to and including the expiry instant; not after it.
    let n2 = random_bytes(32);
    store.issue_challenge(&h, &n2, t(100), ttl).await?;
    let n3 = random_bytes(32);
    store.issue_challenge(&h, &n3, t(100), ttl).await?;
    assert_eq!(
        store
            .consume_challenge(&n2, t(160) + Duration::from_millis(1))
            .await?,
        ChallengeOutcome::Expired
    );
    assert_eq!(
        store.consume_challenge(&n2, t(200)).await?,
        ChallengeOutcome::Expired
    );
    assert_eq!(
        store.consume_challenge(&n3, t(160)).await?,
        ChallengeOutcome::Consumed(h.clone())
    );
    assert_eq!(
        store.consume_challenge(&random_bytes(32), t(100)).await?,
        ChallengeOutcome::Unknown
    );

    // Many concurrent consumers, from two nodes: one success.
    let other = Store::open(db.url(), kf.clone().into_keys()?).await?;
    let n4 = random_bytes(32);
    store.issue_challenge(&h, &n4, t(200), ttl).await?;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let s = if i % 2 == 0 {
            store.clone()
        } else {
            other.clone()
        };
        let n = n4.clone();
        tasks.push(tokio::spawn(async move {
            s.consume_challenge(&n, t(201)).await
        }));
    }
    let mut consumed = 0;
    for task in tasks {
        match task.await?? {
            ChallengeOutcome::Consumed(_) => consumed += 1,
            ChallengeOutcome::AlreadyUsed => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(consumed, 1);
    other.close().await;
    store.close().await;
    Ok(())
}

/// The attestation path's read (`peek_challenge`) and its one write transaction
/// (`record_attestation`): consumed once, only by the device it was issued to, only in
/// time, with the verifier update and the appraisal written together or not at all.
async fn attestation_write_is_one_transaction(kind: Kind) -> Result<()> {
    let Fixture { db, kf, store } = fixture(kind).await?;
    let acc = account(&store, "grace", t(0)).await?;
    let (h, _) = device(&store, &acc, DeviceState::Trusted, t(0)).await?;
    let (g, _) = device(&store, &acc, DeviceState::Pending, t(0)).await?;
    let ttl = Duration::from_secs(60);
    let claims = json!({"pcrs": "match"});
    let mut verifier = store.get_device(&h).await?.unwrap().verifier;
    verifier.last_clock = Some(ClockInfo {
        clock: 42,
        reset_count: 1,
        restart_count: 2,
        safe: true,
    });
    let record = |nonce: &'static [u8], device: &'static DeviceHandle, at, v| AttestationRecord {
        nonce,
        device,
        at,
        verifier: v,
        tier: "affirming",
        claims: &claims,
    };
    // 'static borrows for the closure above.
    let (h, g): (&'static DeviceHandle, &'static DeviceHandle) =
        (Box::leak(Box::new(h)), Box::leak(Box::new(g)));
    let n1: &'static [u8] = Box::leak(random_bytes(32).into_boxed_slice());
    store.issue_challenge(h, n1, t(100), ttl).await?;

    match store.peek_challenge(n1, t(110)).await? {
        ChallengePeek::Pending { device, epoch } => {
            assert_eq!(&device.handle, h);
            assert_eq!(epoch, 0);
        }
        other => panic!("expected pending, got {other:?}"),
    }
    // Another device cannot use it, and nothing is written.
    assert_eq!(
        store
            .record_attestation(&record(n1, g, t(110), None))
            .await?,
        Recorded::ChallengeRefused(ChallengeOutcome::Unknown)
    );
    assert!(store.list_appraisals(g).await?.is_empty());
    assert!(matches!(
        store.peek_challenge(n1, t(110)).await?,
        ChallengePeek::Pending { .. }
    ));
    // Its own device: consumed, verifier updated and appraisal recorded together.
    let Recorded::Appraisal(id) = store
        .record_attestation(&record(n1, h, t(111), Some(&verifier)))
        .await?
    else {
        panic!("not recorded");
    };
    let appraisals = store.list_appraisals(h).await?;
    assert_eq!(appraisals.len(), 1);
    assert_eq!(
        (
            &appraisals[0].id,
            appraisals[0].tier.as_str(),
            &appraisals[0].claims
        ),
        (&id, "affirming", &claims)
    );
    assert_eq!(appraisals[0].at, t(111));
    assert_eq!(store.get_device(h).await?.unwrap().verifier, verifier);
    assert!(matches!(
        store.peek_challenge(n1, t(112)).await?,
        ChallengePeek::AlreadyUsed
    ));
    assert_eq!(
        store
            .record_attestation(&record(n1, h, t(112), None))
            .await?,
        Recorded::ChallengeRefused(ChallengeOutcome::AlreadyUsed)
    );
    assert_eq!(store.list_appraisals(h).await?.len(), 1);

    // Expired and unknown challenges.
    let n2: &'static [u8] = Box::leak(random_bytes(32).into_boxed_slice());
    store.issue_challenge(h, n2, t(100), ttl).await?;
    assert!(matches!(
        store.peek_challenge(n2, t(161)).await?,
        ChallengePeek::Expired
    ));
    assert_eq!(
        store
            .record_attestation(&record(n2, h, t(161), None))
            .await?,
        Recorded::ChallengeRefused(ChallengeOutcome::Expired)
    );
    assert!(matches!(
        store.peek_challenge(&random_bytes(32), t(100)).await?,
        ChallengePeek::Unknown
    ));

    // The epoch comes with the challenge: a state change bumps it.
    store
        .transition(
            g,
            DeviceState::Pending,
            DeviceState::Trusted,
            &Actor::Device(h.clone()),
            "approved",
            t(120),
        )
        .await?;
    let n3: &'static [u8] = Box::leak(random_bytes(32).into_boxed_slice());
    assert_eq!(
        store.issue_challenge(g, n3, t(120), ttl).await?,
        ChallengeIssue::Issued
    );
    match store.peek_challenge(n3, t(121)).await? {
        ChallengePeek::Pending { device, epoch } => {
            assert_eq!(device.state, DeviceState::Trusted);
            assert_eq!(epoch, 1);
        }
        other => panic!("expected pending, got {other:?}"),
    }
    // Suspended and unknown devices get no challenge, and nothing is stored.
    store
        .transition(
            h,
            DeviceState::Trusted,
            DeviceState::Suspended,
            &Actor::Admin("ops".into()),
            "check",
            t(120),
        )
        .await?;
    let refused = random_bytes(32);
    assert_eq!(
        store.issue_challenge(h, &refused, t(120), ttl).await?,
        ChallengeIssue::Refused(DeviceState::Suspended)
    );
    assert!(matches!(
        store.peek_challenge(&refused, t(120)).await?,
        ChallengePeek::Unknown
    ));
    let stranger = handle(store.lookup_secret(), b"never enrolled")?;
    assert_eq!(
        store
            .issue_challenge(&stranger, &refused, t(120), ttl)
            .await?,
        ChallengeIssue::NotEnrolled
    );

    // Concurrent recorders on two nodes: exactly one appraisal.
    let other = Store::open(db.url(), kf.clone().into_keys()?).await?;
    let claims: &'static serde_json::Value = Box::leak(Box::new(claims.clone()));
    let mut tasks = Vec::new();
    for i in 0..8 {
        let s = if i % 2 == 0 {
            store.clone()
        } else {
            other.clone()
        };
        tasks.push(tokio::spawn(async move {
            s.record_attestation(&AttestationRecord {
                nonce: n3,
                device: g,
                at: t(122),
                verifier: None,
                tier: "warning",
                claims,
            })
            .await
        }));
    }
    let mut recorded = 0;
    for task in tasks {
        match task.await?? {
            Recorded::Appraisal(_) => recorded += 1,
            Recorded::ChallengeRefused(ChallengeOutcome::AlreadyUsed) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(recorded, 1);
    assert_eq!(store.list_appraisals(g).await?.len(), 1);
    other.close().await;
    store.close().await;
    Ok(())
}

async fn restart_keeps_state(kind: Kind) -> Result<()> {
    let Fixture { db, kf, store } = fixture(kind).await?;
    let acc = account(&store, "grace", t(0)).await?;
    let (first, ak) = device(&store, &acc, DeviceState::Trusted, t(1)).await?;
    let (second, _) = device(&store, &acc, DeviceState::Pending, t(2)).await?;
    let pending = random_bytes(32);
    store
        .issue_challenge(&second, &pending, t(3), Duration::from_secs(300))
        .await?;
    let used = random_bytes(32);
    store
        .issue_challenge(&first, &used, t(3), Duration::from_secs(300))
        .await?;
    store.consume_challenge(&used, t(4)).await?;
    store.bump_revocation_epoch(&first).await?;
    store.close().await;

    let store = Store::open(db.url(), kf.clone().into_keys()?).await?;
    let found = store.find_account_by_username("GRACE").await?.unwrap();
    assert_eq!(found.id, acc);
    let devices = store.list_devices(&acc).await?;
    assert_eq!(devices.len(), 2);
    assert_eq!(devices[0].handle, first);
    assert_eq!(devices[0].verifier.ak_public, ak);
    assert_eq!(devices[1].state, DeviceState::Pending);
    assert_eq!(store.list_transitions(&second).await?.len(), 1);
    assert_eq!(store.revocation_epoch(&first).await?, 1);
    assert_eq!(
        store.consume_challenge(&used, t(5)).await?,
        ChallengeOutcome::AlreadyUsed
    );
    assert_eq!(
        store.consume_challenge(&pending, t(5)).await?,
        ChallengeOutcome::Consumed(second.clone())
    );
    store.close().await;
    Ok(())
}

async fn purge_respects_retention(kind: Kind) -> Result<()> {
    let Fixture { store, db: _db, .. } = fixture(kind).await?;
    let acc = account(&store, "heidi", t(0)).await?;
    let (h, _) = device(&store, &acc, DeviceState::Pending, t(0)).await?;
    let day = 86_400;
    let retention = Retention {
        challenges: Duration::from_secs(day),
        appraisals: Duration::from_secs(10 * day),
        transitions: Duration::from_secs(20 * day),
        connection_records: Duration::from_secs(5 * day),
    };
    let now = t(100 * day);
    // Challenges: one expired long ago, one expired within retention, one still valid.
    let ttl = Duration::from_secs(60);
    store
        .issue_challenge(
            &h,
            b"old challenge",
            now - Duration::from_secs(3 * day),
            ttl,
        )
        .await?;
    store
        .issue_challenge(
            &h,
            b"recent challenge",
            now - Duration::from_secs(3600),
            ttl,
        )
        .await?;
    store
        .issue_challenge(&h, b"live challenge", now, ttl)
        .await?;
    // Appraisals: 11 days and 9 days old.
    store
        .record_appraisal(&h, now - Duration::from_secs(11 * day), "old", &json!({}))
        .await?;
    store
        .record_appraisal(&h, now - Duration::from_secs(9 * day), "recent", &json!({}))
        .await?;
    // Transitions: enrollment at t(0) (100 days old), one 30 days old, one 1 day old.
    store
        .transition(
            &h,
            DeviceState::Pending,
            DeviceState::Trusted,
            &Actor::System,
            "a",
            now - Duration::from_secs(30 * day),
        )
        .await?;
    store
        .transition(
            &h,
            DeviceState::Trusted,
            DeviceState::Suspended,
            &Actor::System,
            "b",
            now - Duration::from_secs(day),
        )
        .await?;
    // Connection records: 6 days and 4 days old.
    store
        .record_connection(now - Duration::from_secs(6 * day), "198.51.100.1")
        .await?;
    store
        .record_connection(now - Duration::from_secs(4 * day), "198.51.100.2")
        .await?;

    let counts = store.purge(now, &retention).await?;
    assert_eq!(counts.challenges, 1);
    assert_eq!(counts.appraisals, 1);
    assert_eq!(counts.transitions, 2);
    assert_eq!(counts.connection_records, 1);

    assert_eq!(
        store.consume_challenge(b"old challenge", now).await?,
        ChallengeOutcome::Unknown
    );
    assert_eq!(
        store.consume_challenge(b"recent challenge", now).await?,
        ChallengeOutcome::Expired
    );
    assert_eq!(
        store.consume_challenge(b"live challenge", now).await?,
        ChallengeOutcome::Consumed(h.clone())
    );
    let tiers: Vec<_> = store
        .list_appraisals(&h)
        .await?
        .into_iter()
        .map(|a| a.tier)
        .collect();
    assert_eq!(tiers, vec!["recent"]);
    let reasons: Vec<_> = store
        .list_transitions(&h)
        .await?
        .into_iter()
        .map(|t| t.reason)
        .collect();
    assert_eq!(reasons, vec!["b"]);
    let addrs: Vec<_> = store
        .list_connection_records()
        .await?
        .into_iter()
        .map(|c| c.remote_addr)
        .collect();
    assert_eq!(addrs, vec!["198.51.100.2"]);
    // The device itself is not a record class with retention.
    assert_eq!(state_of(&store, &h).await?, DeviceState::Suspended);

    // A second cycle finds nothing more; transitions after a purge keep numbering.
    assert_eq!(store.purge(now, &retention).await?, Default::default());
    store
        .transition(
            &h,
            DeviceState::Suspended,
            DeviceState::Trusted,
            &Actor::System,
            "c",
            now,
        )
        .await?;
    assert_eq!(store.list_transitions(&h).await?.len(), 2);
    store.close().await;
    Ok(())
}

async fn key_rotation_and_reseal(kind: Kind) -> Result<()> {
    let Fixture { db, mut kf, store } = fixture(kind).await?;
    let acc = account(&store, "ivan", t(0)).await?;
    let (h, ak) = device(&store, &acc, DeviceState::Pending, t(1)).await?;
    store
        .transition(
            &h,
            DeviceState::Pending,
            DeviceState::Trusted,
            &Actor::Admin("ops".into()),
            "approved",
            t(2),
        )
        .await?;
    store
        .record_appraisal(&h, t(3), "high", &json!({"k": 1}))
        .await?;
    store.record_connection(t(4), "203.0.113.9").await?;
    store.close().await;

    let check = |store: Store| {
        let h = h.clone();
        let ak = ak.clone();
        async move {
            let a = store.find_account_by_username("ivan").await?.unwrap();
            assert_eq!(a.metadata, json!({"plan": "basic"}));
            assert_eq!(store.get_device(&h).await?.unwrap().verifier.ak_public, ak);
            let tr = store.list_transitions(&h).await?;
            assert_eq!(tr[1].actor, Actor::Admin("ops".into()));
            assert_eq!(tr[1].reason, "approved");
            assert_eq!(store.list_appraisals(&h).await?[0].claims, json!({"k": 1}));
            assert_eq!(
                store.list_connection_records().await?[0].remote_addr,
                "203.0.113.9"
            );
            anyhow::Ok(store)
        }
    };

    // Rotate: k2 becomes current, k1 still opens the old rows.
    kf.rotate("k2")?;
    let store = Store::open(db.url(), key_file(&db, "rotated.toml", &kf)?).await?;
    let store = check(store).await?;
    let counts = store.reseal().await?;
    // 1 account, 1 device, 2 transitions x (actor + reason), 1 appraisal, 1 connection.
    assert_eq!(counts.accounts, 1);
    assert_eq!(counts.devices, 1);
    assert_eq!(counts.transitions, 4);
    assert_eq!(counts.appraisals, 1);
    assert_eq!(counts.connection_records, 1);
    assert_eq!(
        store.reseal().await?.total(),
        0,
        "second reseal has nothing to do"
    );
    store.close().await;

    // k1 removed from the file: everything still opens.
    let mut only_k2 = kf.clone();
    only_k2.remove("k1");
    let keys = key_file(&db, "only-k2.json", &only_k2)?;
    let store = check(Store::open(db.url(), keys).await?).await?;
    store.close().await;

    // The other way round: with only k1, the resealed rows name an unknown key.
    let mut only_k1 = kf.clone();
    only_k1.remove("k2");
    only_k1.keys[0].current = true;
    let store = Store::open(db.url(), key_file(&db, "only-k1.toml", &only_k1)?).await?;
    let err = store.get_device(&h).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Seal(SealError::UnknownKeyId { key_id, .. }) if key_id == "k2"),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("k2") && msg.contains("devices.sealed_verifier"),
        "{msg}"
    );
    store.close().await;
    Ok(())
}

async fn malformed_sealed_values(kind: Kind) -> Result<()> {
    let Fixture { db, mut kf, store } = fixture(kind).await?;
    let acc = account(&store, "judy", t(0)).await?;
    let (a, _) = device(&store, &acc, DeviceState::Trusted, t(1)).await?;
    let (b, _) = device(&store, &acc, DeviceState::Pending, t(2)).await?;

    sqlx::any::install_default_drivers();
    let raw = sqlx::AnyPool::connect(db.url()).await?;
    let set = |h: DeviceHandle, blob: Vec<u8>| {
        let raw = raw.clone();
        async move {
            sqlx::query("UPDATE devices SET sealed_verifier = $1 WHERE handle = $2")
                .bind(blob)
                .bind(h.as_str().to_owned())
                .execute(&raw)
                .await
        }
    };

    // Truncated blob.
    set(a.clone(), vec![2, b'k', b'1', 1, 2, 3]).await?;
    let err = store.get_device(&a).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Seal(SealError::Malformed { .. })),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("malformed sealed blob for devices.sealed_verifier")
    );
    // Unknown key id.
    let stranger = KeyFile::generate("ghost")?.into_keys()?.sealer;
    let aad = enigm_backend_storage::Aad::new("devices", "sealed_verifier", a.as_str());
    set(a.clone(), stranger.seal(aad, b"{}")?).await?;
    let err = store.get_device(&a).await.unwrap_err();
    assert!(err.to_string().contains("\"ghost\""), "{err}");
    // A valid blob moved from another row fails authentication (AAD binds the row).
    let row = sqlx::query("SELECT sealed_verifier FROM devices WHERE handle = $1")
        .bind(b.as_str().to_owned())
        .fetch_one(&raw)
        .await?;
    let b_blob: Vec<u8> = sqlx::Row::try_get(&row, "sealed_verifier")?;
    set(a.clone(), b_blob).await?;
    let err = store.get_device(&a).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Seal(SealError::Authentication { .. })),
        "{err:?}"
    );
    // The other device is unaffected; listing the account reports the bad row's error.
    assert_eq!(state_of(&store, &b).await?, DeviceState::Pending);
    assert!(store.list_devices(&acc).await.is_err());
    store.close().await;
    // After a rotation, reseal refuses to rewrite what it cannot open, with the same error.
    kf.rotate("k2")?;
    let store = Store::open(db.url(), kf.into_keys()?).await?;
    let err = store.reseal().await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Seal(SealError::Authentication { .. })),
        "{err:?}"
    );
    raw.close().await;
    store.close().await;
    Ok(())
}

/// Bytes never to be found in the database: the needle in raw, hex, base64 and JSON forms,
/// and each of those hex-encoded again (how pg_dump writes a BYTEA column).
fn forms(needle: &[u8]) -> Vec<Vec<u8>> {
    let base = vec![
        needle.to_vec(),
        hex::encode(needle).into_bytes(),
        hex::encode_upper(needle).into_bytes(),
        base64::engine::general_purpose::STANDARD
            .encode(needle)
            .into_bytes(),
        // As serde writes a byte vector into JSON (a prefix is enough to tell).
        serde_json::to_string(&needle[..needle.len().min(16)])
            .unwrap()
            .trim_end_matches(']')
            .as_bytes()
            .to_vec(),
    ];
    let hexed: Vec<Vec<u8>> = base.iter().map(|f| hex::encode(f).into_bytes()).collect();
    base.into_iter().chain(hexed).collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

async fn no_identifiers_in_database_files(kind: Kind) -> Result<()> {
    let Fixture { db, store, kf: _ } = fixture(kind).await?;
    let username = format!("Mallory.Unique-{}", hex::encode(random_bytes(4)));
    let phrase = format!(
        "correct horse battery staple {}",
        hex::encode(random_bytes(4))
    );
    let acc = store
        .create_account(&NewAccount {
            username: &username,
            password_hash: &phc("password"),
            recovery_hash: &phc(&phrase),
            metadata: json!({"note": "x"}),
            at: t(0),
        })
        .await?;
    let ak = random_bytes(65);
    let ek_cert = random_bytes(300);
    let h = handle(store.lookup_secret(), &ak)?;
    let mut v = verifier(&ak);
    v.ek_certificate = Some(ek_cert.clone());
    store
        .enroll_device(&NewDevice {
            handle: &h,
            account: &acc,
            state: DeviceState::Trusted,
            verifier: &v,
            actor: &Actor::System,
            reason: "first device",
            at: t(1),
        })
        .await?;
    store
        .record_appraisal(&h, t(2), "high", &json!({"ak": hex::encode(&ak)}))
        .await?;
    let nonce = random_bytes(32);
    store
        .issue_challenge(&h, &nonce, t(3), Duration::from_secs(60))
        .await?;

    let mut needles: Vec<(&str, Vec<u8>)> = Vec::new();
    for f in forms(&ak) {
        needles.push(("attestation public key", f));
    }
    for f in forms(&ek_cert) {
        needles.push(("EK certificate", f));
    }
    for f in forms(v.ek_public.as_slice()) {
        needles.push(("EK public key", f));
    }
    for f in forms(&nonce) {
        needles.push(("challenge nonce", f));
    }
    needles.push(("username", username.clone().into_bytes()));
    needles.push((
        "username (lower case)",
        username.to_lowercase().into_bytes(),
    ));
    needles.push(("recovery phrase", phrase.clone().into_bytes()));

    let check = |dump: &[u8], when: &str| {
        // The dump really holds the rows: the handle is a lookup field, stored as is.
        assert!(
            contains(dump, h.as_str().as_bytes()),
            "{when}: the dump does not contain the device rows at all"
        );
        for (what, needle) in &needles {
            assert!(
                !contains(dump, needle),
                "{when}: {what} found in the database"
            );
        }
    };
    let dump = db.dump()?;
    if kind == Kind::Sqlite {
        assert!(db.sqlite_wal_exists(), "SQLite runs in WAL mode");
    }
    check(&dump, "while open");
    store.close().await;
    check(&db.dump()?, "after close");
    Ok(())
}

fn delivery<'a>(
    queue: &'a str,
    send: &'a str,
    message_id: &'a str,
    envelope: &'a [u8],
    expires_at: SystemTime,
) -> Delivery<'a> {
    Delivery {
        queue,
        send,
        message_id,
        envelope,
        expires_at,
    }
}

/// Relay mailboxes: capabilities, durable store-and-forward, acknowledgement, idempotent
/// retries, quotas, size and expiry limits, purge, and deletion with the device.
async fn mailboxes_store_and_forward(kind: Kind) -> Result<()> {
    let Fixture { db, kf, store } = fixture(kind).await?;
    let acc = account(&store, "mailbox-owner", t(0)).await?;
    let (bob, _) = device(&store, &acc, DeviceState::Trusted, t(0)).await?;
    let mailbox = store.create_mailbox(&bob, t(1)).await?;
    let other = store.create_mailbox(&bob, t(1)).await?;
    assert_ne!(mailbox.queue, other.queue);
    let limits = MailboxLimits {
        max_envelope: 4096,
        max_queued: 3,
        max_ttl: Duration::from_secs(3600),
    };
    let (now, later) = (t(10), t(10 + 600));
    let envelope = random_bytes(1072);

    // Wrong capabilities and unknown queues: the same refusal, nothing stored.
    for (queue, send) in [
        (&mailbox.queue, &mailbox.receive),
        (&mailbox.queue, &other.send),
        (&"no-such-queue".to_owned(), &mailbox.send),
    ] {
        let refused = store
            .enqueue(delivery(queue, send, "m0", &envelope, later), now, limits)
            .await?;
        assert_eq!(refused, Err(MailboxRefusal::Capability));
    }
    assert_eq!(
        store
            .fetch_messages(&mailbox.queue, &mailbox.send, now, 10)
            .await?,
        Err(MailboxRefusal::Capability)
    );
    assert_eq!(
        store
            .fetch_messages(&mailbox.queue, &mailbox.receive, now, 10)
            .await?,
        Ok(vec![])
    );

    // Limits.
    assert!(matches!(
        store
            .enqueue(
                delivery(
                    &mailbox.queue,
                    &mailbox.send,
                    "big",
                    &random_bytes(5000),
                    later
                ),
                now,
                limits
            )
            .await?,
        Err(MailboxRefusal::TooLarge { .. })
    ));
    for expires in [now, t(10 + 7200)] {
        assert!(matches!(
            store
                .enqueue(
                    delivery(&mailbox.queue, &mailbox.send, "e", &envelope, expires),
                    now,
                    limits
                )
                .await?,
            Err(MailboxRefusal::Expiry(3600))
        ));
    }

    // Send, retry (idempotent), a short-lived one, then the quota.
    store
        .enqueue(
            delivery(&mailbox.queue, &mailbox.send, "m1", &envelope, later),
            now,
            limits,
        )
        .await?
        .unwrap();
    store
        .enqueue(
            delivery(&mailbox.queue, &mailbox.send, "m1", &envelope, later),
            now,
            limits,
        )
        .await?
        .unwrap();
    store
        .enqueue(
            delivery(&mailbox.queue, &mailbox.send, "m2", &envelope, t(20)),
            now,
            limits,
        )
        .await?
        .unwrap();
    store
        .enqueue(
            delivery(&mailbox.queue, &mailbox.send, "m3", &envelope, later),
            now,
            limits,
        )
        .await?
        .unwrap();
    assert_eq!(
        store
            .enqueue(
                delivery(&mailbox.queue, &mailbox.send, "m4", &envelope, later),
                now,
                limits
            )
            .await?,
        Err(MailboxRefusal::QueueFull(3))
    );

    // Acknowledged sends survive a restart of the store.
    store.close().await;
    let store = Store::open(db.url(), key_file(&db, "keys2.toml", &kf)?).await?;
    let queued = store
        .fetch_messages(&mailbox.queue, &mailbox.receive, now, 10)
        .await?
        .unwrap();
    let ids: Vec<_> = queued.iter().map(|q| q.message_id.as_str()).collect();
    assert_eq!(ids, ["m1", "m2", "m3"]);
    assert_eq!(queued[0].envelope, envelope);

    // An expired message is never delivered and is gone after a purge.
    let ids_after_expiry: Vec<_> = store
        .fetch_messages(&mailbox.queue, &mailbox.receive, t(30), 10)
        .await?
        .unwrap()
        .into_iter()
        .map(|q| q.message_id)
        .collect();
    assert_eq!(ids_after_expiry, ["m1", "m3"]);
    assert_eq!(store.purge_expired_messages(t(30)).await?, 1);

    // The receiver's acknowledgement deletes; a wrong capability cannot.
    assert_eq!(
        store
            .acknowledge(&mailbox.queue, &mailbox.send, "m1")
            .await?,
        Err(MailboxRefusal::Capability)
    );
    assert_eq!(
        store
            .acknowledge(&mailbox.queue, &mailbox.receive, "m1")
            .await?,
        Ok(true)
    );
    assert_eq!(
        store
            .acknowledge(&mailbox.queue, &mailbox.receive, "m1")
            .await?,
        Ok(false)
    );

    // A device suspended loses its mailboxes and what they hold, with the state change.
    let (carol, _) = device(&store, &acc, DeviceState::Trusted, t(0)).await?;
    let carols = store.create_mailbox(&carol, t(1)).await?;
    store
        .enqueue(
            delivery(&carols.queue, &carols.send, "c1", &envelope, later),
            now,
            limits,
        )
        .await?
        .unwrap();
    store
        .transition(
            &carol,
            DeviceState::Trusted,
            DeviceState::Suspended,
            &Actor::System,
            "lost",
            t(31),
        )
        .await?;
    assert_eq!(
        store
            .fetch_messages(&carols.queue, &carols.receive, t(31), 10)
            .await?,
        Err(MailboxRefusal::Capability)
    );

    // Or on request.
    assert_eq!(store.delete_mailboxes_of(&bob).await?, 2);
    assert_eq!(
        store
            .fetch_messages(&mailbox.queue, &mailbox.receive, t(30), 10)
            .await?,
        Err(MailboxRefusal::Capability)
    );
    // No capability is stored in the clear.
    let dump = db.dump()?;
    for capability in [&mailbox.send, &mailbox.receive, &other.send] {
        assert!(!contains(&dump, capability.as_bytes()));
    }
    store.close().await;
    Ok(())
}

/// Many sends at once are committed in shared transactions, each checked on its own: the
/// quota holds exactly, a wrong capability is refused without failing its batch, a repeated
/// id is stored once, and every accepted send survives a restart.
async fn concurrent_sends_group_commit(kind: Kind) -> Result<()> {
    let Fixture { db, kf, store } = fixture(kind).await?;
    let acc = account(&store, "busy-receiver", t(0)).await?;
    let (owner, _) = device(&store, &acc, DeviceState::Trusted, t(0)).await?;
    let mailbox = store.create_mailbox(&owner, t(1)).await?;
    let limits = MailboxLimits {
        max_envelope: 4096,
        max_queued: 150,
        max_ttl: Duration::from_secs(3600),
    };
    let envelope = random_bytes(1072);
    let mut sends = Vec::new();
    for i in 0..220u32 {
        let (store, mailbox, envelope) = (store.clone(), mailbox.clone(), envelope.clone());
        sends.push(tokio::spawn(async move {
            // Every tenth uses the receive capability; ids 200.. repeat ids 0..20.
            let capability = if i % 10 == 9 {
                &mailbox.receive
            } else {
                &mailbox.send
            };
            let id = format!("m{}", i % 200);
            store
                .enqueue(
                    delivery(&mailbox.queue, capability, &id, &envelope, t(600)),
                    t(10),
                    limits,
                )
                .await
        }));
    }
    let (mut accepted, mut full, mut refused) = (0, 0, 0);
    for send in sends {
        match send.await?? {
            Ok(()) => accepted += 1,
            Err(MailboxRefusal::QueueFull(_)) => full += 1,
            Err(MailboxRefusal::Capability) => refused += 1,
            Err(other) => anyhow::bail!("unexpected refusal: {other}"),
        }
    }
    assert_eq!(refused, 22);
    assert_eq!(accepted + full, 198);
    store.close().await;
    let store = Store::open(db.url(), key_file(&db, "keys2.toml", &kf)?).await?;
    let queued = store
        .fetch_messages(&mailbox.queue, &mailbox.receive, t(10), 1000)
        .await?
        .unwrap();
    assert_eq!(queued.len(), 150, "the quota holds exactly");
    let ids: std::collections::BTreeSet<_> = queued.iter().map(|q| &q.message_id).collect();
    assert_eq!(ids.len(), 150, "each id once");
    store.close().await;
    Ok(())
}

async fn key_directory_publish_lookup_withdraw(kind: Kind) -> Result<()> {
    use enigm_backend_storage::store::{DirectoryEntry, DirectoryRefusal};

    let Fixture { db, kf, store } = fixture(kind).await?;
    let acc = account(&store, "directory-owner", t(0)).await?;
    let other = account(&store, "someone-else", t(0)).await?;
    let (phone, _) = device(&store, &acc, DeviceState::Trusted, t(0)).await?;
    let (tablet, _) = device(&store, &acc, DeviceState::Pending, t(0)).await?;
    let capability = "SEND-CAPABILITY-IN-A-BUNDLE-3f9a";
    let entry = |handle: &DeviceHandle, issued: u64| DirectoryEntry {
        handle: handle.as_str().to_owned(),
        account: acc.0.clone(),
        issued_at: t(issued),
        bundle: [b"bundle:".as_slice(), capability.as_bytes()].concat(),
        quote_attest: random_bytes(100),
        quote_signature: random_bytes(72),
    };

    // Only a trusted device of the account publishes.
    assert_eq!(
        store.publish_keys(&entry(&tablet, 5)).await?,
        Err(DirectoryRefusal::NotTrusted)
    );
    let foreign = DirectoryEntry {
        account: other.0.clone(),
        ..entry(&phone, 5)
    };
    assert_eq!(
        store.publish_keys(&foreign).await?,
        Err(DirectoryRefusal::NotTrusted)
    );
    assert!(store.lookup_keys(&acc).await?.is_empty());

    // Newer replaces, older or equal is refused.
    let first = entry(&phone, 5);
    store.publish_keys(&first).await?.unwrap();
    assert_eq!(
        store.publish_keys(&entry(&phone, 5)).await?,
        Err(DirectoryRefusal::Stale)
    );
    assert_eq!(
        store.publish_keys(&entry(&phone, 4)).await?,
        Err(DirectoryRefusal::Stale)
    );
    let second = entry(&phone, 9);
    store.publish_keys(&second).await?.unwrap();
    assert_eq!(store.lookup_keys(&acc).await?, vec![second.clone()]);
    assert!(store.lookup_keys(&other).await?.is_empty());

    // Sealed at rest: the bundle's capability is not in the database; it survives a restart.
    assert!(!contains(&db.dump()?, capability.as_bytes()));
    store.close().await;
    let store = Store::open(db.url(), key_file(&db, "keys2.toml", &kf)?).await?;
    assert_eq!(store.lookup_keys(&acc).await?, vec![second.clone()]);

    // Suspended: withdrawn with the change; reinstated: not listed until it publishes again.
    for (from, to) in [
        (DeviceState::Trusted, DeviceState::Suspended),
        (DeviceState::Suspended, DeviceState::Trusted),
    ] {
        store
            .transition(&phone, from, to, &Actor::System, "test", t(20))
            .await?;
    }
    assert!(store.lookup_keys(&acc).await?.is_empty());
    store.close().await;
    Ok(())
}

macro_rules! on_both_engines {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() -> anyhow::Result<()> {
                    super::$name(super::Kind::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() -> anyhow::Result<()> {
                    super::$name(super::Kind::Postgres).await
                }
            )*
        }
    };
}

on_both_engines!(
    account_and_device_lifecycle,
    transition_compare_and_set,
    replace_is_atomic,
    challenges_single_use_with_ttl,
    attestation_write_is_one_transaction,
    restart_keeps_state,
    purge_respects_retention,
    key_rotation_and_reseal,
    malformed_sealed_values,
    no_identifiers_in_database_files,
    mailboxes_store_and_forward,
    key_directory_publish_lookup_withdraw,
    concurrent_sends_group_commit,
);
