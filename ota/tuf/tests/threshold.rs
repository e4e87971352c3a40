//! Thresholds count distinct keys: one key listed under two key IDs counts once; a key ID
//! repeated in the signatures makes the file invalid.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use enigm_tuf::TufError;
use enigm_tuf::canonical;
use enigm_tuf::metadata::{Envelope, RoleKeys};
use openssl::pkey::{PKey, Private};
use openssl::sign::Signer;
use serde_json::{Value, json};

fn key(k: &PKey<Private>) -> Value {
    json!({"keytype": "ed25519", "scheme": "ed25519",
           "keyval": {"public": hex::encode(k.raw_public_key().unwrap())}})
}

fn sign(k: &PKey<Private>, signed: &Value) -> String {
    let msg = canonical::encode(signed).unwrap();
    hex::encode(
        Signer::new_without_digest(k)
            .unwrap()
            .sign_oneshot_to_vec(&msg)
            .unwrap(),
    )
}

fn envelope(signed: &Value, sigs: &[(&str, String)]) -> Envelope {
    let doc = json!({
        "signed": signed,
        "signatures": sigs.iter().map(|(id, s)| json!({"keyid": id, "sig": s})).collect::<Vec<_>>(),
    });
    Envelope::parse(&serde_json::to_vec(&doc).unwrap(), "test").unwrap()
}

#[test]
fn distinct_keys_only() {
    let (a, b) = (
        PKey::generate_ed25519().unwrap(),
        PKey::generate_ed25519().unwrap(),
    );
    let signed = json!({"_type": "timestamp", "version": 1});
    let keys = BTreeMap::from([
        ("a1".to_owned(), key(&a)),
        ("a2".to_owned(), key(&a)),
        ("b".to_owned(), key(&b)),
    ]);
    let two = |ids: &[&str]| RoleKeys {
        keyids: ids.iter().map(|s| s.to_string()).collect(),
        threshold: 2,
    };
    // The same key under two IDs: one.
    let env = envelope(
        &signed,
        &[("a1", sign(&a, &signed)), ("a2", sign(&a, &signed))],
    );
    assert!(matches!(
        env.verify("timestamp", &keys, &two(&["a1", "a2"])),
        Err(TufError::Threshold { valid: 1, .. })
    ));
    // The same key ID twice in the signatures: the file is refused (keyids must be unique).
    let doc = json!({"signed": signed, "signatures": [
        {"keyid": "b", "sig": sign(&b, &signed)}, {"keyid": "b", "sig": sign(&b, &signed)}]});
    let err = Envelope::parse(&serde_json::to_vec(&doc).unwrap(), "test")
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("more than once"), "{err}");
    // Two distinct keys: two.
    let env = envelope(
        &signed,
        &[("a1", sign(&a, &signed)), ("b", sign(&b, &signed))],
    );
    env.verify("timestamp", &keys, &two(&["a1", "b"])).unwrap();
    // A key the role does not list does not count.
    assert!(env.verify("timestamp", &keys, &two(&["a2", "x"])).is_err());
    // A signature over other bytes does not count.
    let other = json!({"_type": "timestamp", "version": 2});
    let env = envelope(
        &signed,
        &[("a1", sign(&a, &other)), ("b", sign(&b, &signed))],
    );
    assert!(env.verify("timestamp", &keys, &two(&["a1", "b"])).is_err());
}
