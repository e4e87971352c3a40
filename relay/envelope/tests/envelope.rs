//! Envelopes between devices of two accounts: opened only by the device they were sealed
//! to, with the sender verified against the directory; every envelope has one of the fixed
//! wire sizes; tampering, a forged or unknown sender and a replay are refused.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use enigm_envelope::EnvelopeError;
use enigm_envelope::dedup::Seen;
use enigm_envelope::envelope::{MAX_BODY, Message, open, seal};
use enigm_envelope::keys::{DeviceId, DeviceKeys, PublicDeviceKeys};
use enigm_envelope::pad::WIRE_SIZES;

fn device(account: &str, device: &str) -> DeviceKeys {
    DeviceKeys::generate(DeviceId {
        account: account.into(),
        device: device.into(),
    })
    .unwrap()
}

fn directory(devices: &[&DeviceKeys]) -> BTreeMap<DeviceId, PublicDeviceKeys> {
    devices
        .iter()
        .map(|d| (d.id.clone(), d.public().unwrap()))
        .collect()
}

fn message<'a>(id: &'a str, body: &'a [u8]) -> Message<'a> {
    Message {
        id,
        sent_at: 1_795_000_000,
        cover: false,
        body,
    }
}

#[test]
fn only_the_recipient_opens_and_learns_the_verified_sender() {
    let alice = device("alice", "phone");
    let bob = device("bob", "phone");
    let bob_tablet = device("bob", "tablet");
    let dir = directory(&[&alice, &bob, &bob_tablet]);
    let lookup = |id: &DeviceId| dir.get(id).cloned();

    let envelope = seal(&alice, &dir[&bob.id], message("m1", b"hello bob")).unwrap();
    let opened = open(&bob, &envelope, lookup).unwrap();
    assert_eq!(opened.from, alice.id);
    assert_eq!(opened.body, b"hello bob");
    assert!(!opened.cover);
    // Nobody else can open it: not the recipient's other device, not the sender.
    assert!(matches!(
        open(&bob_tablet, &envelope, lookup),
        Err(EnvelopeError::Hpke(_))
    ));
    assert!(matches!(
        open(&alice, &envelope, lookup),
        Err(EnvelopeError::Hpke(_))
    ));
    // The plaintext appears nowhere in the envelope.
    assert!(!envelope.windows(9).any(|w| w == b"hello bob"));
    assert!(!envelope.windows(5).any(|w| w == b"alice"));
}

#[test]
fn every_envelope_has_a_fixed_size() {
    let alice = device("alice", "phone");
    let bob = device("bob", "phone");
    let bob_public = bob.public().unwrap();
    for len in [0, 1, 500, 800, 3000, 10_000, MAX_BODY] {
        let body = vec![b'x'; len];
        let envelope = seal(&alice, &bob_public, message("m", &body)).unwrap();
        assert!(
            WIRE_SIZES.contains(&envelope.len()),
            "{len} -> {}",
            envelope.len()
        );
    }
    let small = seal(&alice, &bob_public, message("a", b"")).unwrap();
    let also_small = seal(&alice, &bob_public, message("b", &[b'y'; 300])).unwrap();
    assert_eq!(
        small.len(),
        also_small.len(),
        "message lengths hide inside a bucket"
    );
    assert!(matches!(
        seal(
            &alice,
            &bob_public,
            message("big", &vec![0u8; MAX_BODY + 1])
        ),
        Err(EnvelopeError::TooLarge { .. })
    ));
}

#[test]
fn tampering_forgery_unknown_senders_and_replays_are_refused() {
    let alice = device("alice", "phone");
    let mallory = device("mallory", "phone");
    let bob = device("bob", "phone");
    let dir = directory(&[&alice, &bob]);
    let lookup = |id: &DeviceId| dir.get(id).cloned();
    let envelope = seal(&alice, &dir[&bob.id], message("m1", b"hi")).unwrap();

    let mut flipped = envelope.clone();
    flipped[100] ^= 1;
    assert!(matches!(
        open(&bob, &flipped, lookup),
        Err(EnvelopeError::Hpke(_))
    ));
    assert!(matches!(
        open(&bob, &envelope[..500], lookup),
        Err(EnvelopeError::Format(_))
    ));

    // Mallory claims to be Alice: her key is not Alice's in the directory.
    let forged_keys = DeviceKeys::generate(alice.id.clone()).unwrap();
    let forged = seal(&forged_keys, &dir[&bob.id], message("m2", b"pay me")).unwrap();
    assert!(matches!(
        open(&bob, &forged, lookup),
        Err(EnvelopeError::BadSignature)
    ));
    // Mallory as herself: not in the directory.
    let unknown = seal(&mallory, &dir[&bob.id], message("m3", b"hi")).unwrap();
    assert!(matches!(
        open(&bob, &unknown, lookup),
        Err(EnvelopeError::UnknownSender)
    ));

    // A replayed envelope opens again; the client drops it by its id.
    let mut seen = Seen::new(1000);
    for attempt in 0..2 {
        let opened = open(&bob, &envelope, lookup).unwrap();
        let sender = format!("{}/{}", opened.from.account, opened.from.device);
        assert_eq!(seen.first_time(&sender, &opened.id), attempt == 0);
    }
}

#[test]
fn an_envelope_sealed_for_another_device_of_the_same_key_is_refused() {
    // A device that reuses another's HPKE key cannot be handed that device's messages.
    let alice = device("alice", "phone");
    let bob = device("bob", "phone");
    let mut impostor = bob.public().unwrap();
    impostor.id.device = "laptop".into();
    let dir = directory(&[&alice, &bob]);
    let envelope = seal(&alice, &impostor, message("m1", b"hi")).unwrap();
    assert!(matches!(
        open(&bob, &envelope, |id| dir.get(id).cloned()),
        Err(EnvelopeError::WrongRecipient)
    ));
}
