//! The key directory's entries.
//!
//! A device publishes a serialized `KeyBundle` (see `backend/proto/device.proto`): its handle
//! and account id, its X25519 and Ed25519 public keys, its mailbox's queue and send capability
//! and the issue time. The bundle is bound to the device's TPM attestation key: the binding is
//! the evidence the device's attester gives for the nonce
//! SHA-256(`"enigm-keydir-v1"` || bundle) with an all-zero posture digest ([`KeyBinder`]);
//! the backend checks the quote against the AK the device enrolled with.
//!
//! A lookup's entries are checked here before use: every field well formed, and the bundle's
//! account the one looked up; entries that fail are refused one by one.

use std::future::Future;

use enigm_backend_client::proto::{KeyBundle, LookupKeysResponse, PublishedKeys};
use enigm_envelope::keys::{DeviceId, DeviceKeys, PublicDeviceKeys};
use enigm_evidence::v1::Evidence;
use prost::Message as _;

use crate::keyfile::Mailbox;

/// Domain separation of the binding nonce.
pub const BUNDLE_DOMAIN: &[u8] = b"enigm-keydir-v1";
/// The posture digest a key binding is quoted with.
pub const BINDING_POSTURE: [u8; 32] = [0; 32];
/// The longest queue id and send capability the backend accepts in a bundle.
const MAX_QUEUE: usize = 64;
const MAX_CAPABILITY: usize = 128;

/// Why an attester could not bind a bundle.
pub type BindError = Box<dyn std::error::Error + Send + Sync>;

/// The device's attester, as far as the directory needs it: evidence (a TPM quote) for a
/// nonce, with an all-zero posture digest.
pub trait KeyBinder {
    /// Evidence for `nonce` with [`BINDING_POSTURE`].
    fn bind(&mut self, nonce: [u8; 32])
    -> impl Future<Output = Result<Evidence, BindError>> + Send;
}

/// Why a directory entry was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    /// The bytes are not a `KeyBundle`.
    #[error("a directory entry is not a KeyBundle")]
    Decode,
    /// A field is missing or malformed.
    #[error("a directory entry has a malformed {0}")]
    Field(&'static str),
    /// The bundle names another account than the one looked up.
    #[error("a directory entry names account {found}, not the looked-up {expected}")]
    OtherAccount {
        /// The looked-up account.
        expected: String,
        /// The bundle's.
        found: String,
    },
    /// The answer is for another account than the one asked for.
    #[error("the directory answered for account {found}, not {expected}")]
    OtherAnswer {
        /// The account asked for.
        expected: String,
        /// The answer's.
        found: String,
    },
}

/// The serialized bundle publishing `keys` (whose id is {account id, handle}) and `mailbox`'s
/// send address, issued at `issued_at_unix`.
pub fn build(
    keys: &DeviceKeys,
    mailbox: &Mailbox,
    issued_at_unix: u64,
) -> Result<Vec<u8>, enigm_envelope::EnvelopeError> {
    let (hpke, signing) = keys.public_raw()?;
    Ok(KeyBundle {
        handle: keys.id.device.clone(),
        account_id: keys.id.account.clone(),
        hpke_public: hpke.to_vec(),
        signing_public: signing.to_vec(),
        queue: mailbox.queue.clone(),
        send_capability: mailbox.send_capability.clone(),
        issued_at_unix,
    }
    .encode_to_vec())
}

/// The nonce the attester binds `bundle` with: SHA-256(`"enigm-keydir-v1"` || bundle).
pub fn binding_nonce(bundle: &[u8]) -> [u8; 32] {
    let mut hasher = openssl::sha::Sha256::new();
    hasher.update(BUNDLE_DOMAIN);
    hasher.update(bundle);
    hasher.finish()
}

/// A device a lookup listed, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Its public message keys; the id is {account id, handle}.
    pub keys: PublicDeviceKeys,
    /// Its queue.
    pub queue: String,
    /// The capability to send into it.
    pub send_capability: String,
    /// When its bundle was issued.
    pub issued_at_unix: u64,
}

impl Listed {
    /// The device's handle.
    pub fn handle(&self) -> &str {
        &self.keys.id.device
    }
}

/// A lookup's answer, checked.
#[derive(Debug, Clone)]
pub struct Lookup {
    /// The account.
    pub account_id: String,
    /// Its trusted devices with well-formed entries.
    pub devices: Vec<Listed>,
    /// Why the other entries were refused.
    pub refused: Vec<BundleError>,
}

fn text(field: &'static str, value: &str, max: usize) -> Result<(), BundleError> {
    if value.is_empty() || value.len() > max || value.chars().any(char::is_control) {
        return Err(BundleError::Field(field));
    }
    Ok(())
}

/// Checks one entry of `account_id`'s lookup.
pub fn parse_entry(account_id: &str, entry: &PublishedKeys) -> Result<Listed, BundleError> {
    let bundle = KeyBundle::decode(entry.bundle.as_slice()).map_err(|_| BundleError::Decode)?;
    if bundle.account_id != account_id {
        return Err(BundleError::OtherAccount {
            expected: account_id.to_owned(),
            found: bundle.account_id,
        });
    }
    text("handle", &bundle.handle, enigm_envelope::envelope::MAX_ID)?;
    text("queue", &bundle.queue, MAX_QUEUE)?;
    text("send_capability", &bundle.send_capability, MAX_CAPABILITY)?;
    if bundle.issued_at_unix == 0 {
        return Err(BundleError::Field("issued_at_unix"));
    }
    if bundle.hpke_public.len() != 32 {
        return Err(BundleError::Field("hpke_public"));
    }
    let id = DeviceId {
        account: bundle.account_id,
        device: bundle.handle,
    };
    let keys = PublicDeviceKeys::from_raw(id, &bundle.hpke_public, &bundle.signing_public)
        .map_err(|_| BundleError::Field("signing_public"))?;
    Ok(Listed {
        keys,
        queue: bundle.queue,
        send_capability: bundle.send_capability,
        issued_at_unix: bundle.issued_at_unix,
    })
}

/// Checks a lookup's answer. `expected` is the account id asked for (`None` when asked by
/// username: the answer names it). Malformed entries and entries of another account are
/// refused one by one; an answer for another account than the one asked for is refused whole.
/// A handle listed twice keeps its newest bundle.
pub fn parse_lookup(
    expected: Option<&str>,
    answer: &LookupKeysResponse,
) -> Result<Lookup, BundleError> {
    if let Some(expected) = expected
        && expected != answer.account_id
    {
        return Err(BundleError::OtherAnswer {
            expected: expected.to_owned(),
            found: answer.account_id.clone(),
        });
    }
    if answer.account_id.is_empty() {
        return Err(BundleError::Field("account_id"));
    }
    let mut devices: Vec<Listed> = Vec::new();
    let mut refused = Vec::new();
    for entry in &answer.devices {
        match parse_entry(&answer.account_id, entry) {
            Ok(listed) => match devices.iter_mut().find(|d| d.handle() == listed.handle()) {
                Some(old) if old.issued_at_unix < listed.issued_at_unix => *old = listed,
                Some(_) => {}
                None => devices.push(listed),
            },
            Err(e) => refused.push(e),
        }
    }
    Ok(Lookup {
        account_id: answer.account_id.clone(),
        devices,
        refused,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn keys(account: &str, handle: &str) -> DeviceKeys {
        DeviceKeys::generate(DeviceId {
            account: account.into(),
            device: handle.into(),
        })
        .unwrap()
    }

    fn mailbox() -> Mailbox {
        Mailbox {
            queue: "queue-1".into(),
            send_capability: "send-1".into(),
            receive_capability: "receive-1".into(),
        }
    }

    fn entry(bundle: KeyBundle) -> PublishedKeys {
        PublishedKeys {
            bundle: bundle.encode_to_vec(),
            ..PublishedKeys::default()
        }
    }

    #[test]
    fn bundle_has_the_proto_fields_and_the_nonce_its_domain() {
        let keys = keys("acct", "h1");
        let bytes = build(&keys, &mailbox(), 42).unwrap();
        let bundle = KeyBundle::decode(bytes.as_slice()).unwrap();
        let (hpke, signing) = keys.public_raw().unwrap();
        assert_eq!(
            bundle,
            KeyBundle {
                handle: "h1".into(),
                account_id: "acct".into(),
                hpke_public: hpke.to_vec(),
                signing_public: signing.to_vec(),
                queue: "queue-1".into(),
                send_capability: "send-1".into(),
                issued_at_unix: 42,
            }
        );
        let mut preimage = b"enigm-keydir-v1".to_vec();
        preimage.extend_from_slice(&bytes);
        assert_eq!(binding_nonce(&bytes), openssl::sha::sha256(&preimage));
        // The receive capability is never published.
        assert!(!bytes.windows(9).any(|w| w == b"receive-1"));
        // A published bundle parses back to the same public keys and address.
        let listed = parse_entry("acct", &entry(bundle)).unwrap();
        assert_eq!(listed.keys, keys.public().unwrap());
        assert_eq!(
            (listed.queue.as_str(), listed.send_capability.as_str()),
            ("queue-1", "send-1")
        );
    }

    #[test]
    fn malformed_entries_and_other_accounts_are_refused() {
        let keys = keys("acct", "h1");
        let good = KeyBundle::decode(build(&keys, &mailbox(), 42).unwrap().as_slice()).unwrap();
        let cases: Vec<(&str, PublishedKeys, BundleError)> = vec![
            (
                "garbage",
                PublishedKeys {
                    bundle: vec![0xff; 10],
                    ..PublishedKeys::default()
                },
                BundleError::Decode,
            ),
            (
                "other account",
                entry(KeyBundle {
                    account_id: "mallory".into(),
                    ..good.clone()
                }),
                BundleError::OtherAccount {
                    expected: "acct".into(),
                    found: "mallory".into(),
                },
            ),
            (
                "no handle",
                entry(KeyBundle {
                    handle: String::new(),
                    ..good.clone()
                }),
                BundleError::Field("handle"),
            ),
            (
                "short hpke",
                entry(KeyBundle {
                    hpke_public: vec![1; 31],
                    ..good.clone()
                }),
                BundleError::Field("hpke_public"),
            ),
            (
                "long signing",
                entry(KeyBundle {
                    signing_public: vec![1; 33],
                    ..good.clone()
                }),
                BundleError::Field("signing_public"),
            ),
            (
                "no queue",
                entry(KeyBundle {
                    queue: String::new(),
                    ..good.clone()
                }),
                BundleError::Field("queue"),
            ),
            (
                "long capability",
                entry(KeyBundle {
                    send_capability: "c".repeat(129),
                    ..good.clone()
                }),
                BundleError::Field("send_capability"),
            ),
            (
                "control characters",
                entry(KeyBundle {
                    handle: "h\n1".into(),
                    ..good.clone()
                }),
                BundleError::Field("handle"),
            ),
            (
                "no issue time",
                entry(KeyBundle {
                    issued_at_unix: 0,
                    ..good.clone()
                }),
                BundleError::Field("issued_at_unix"),
            ),
        ];
        for (name, entry, expected) in &cases {
            assert_eq!(parse_entry("acct", entry).unwrap_err(), *expected, "{name}");
        }

        // In a whole answer: bad entries refused one by one, the newest of a handle kept.
        let newer = KeyBundle {
            issued_at_unix: 43,
            ..good.clone()
        };
        let mut devices: Vec<PublishedKeys> = cases.into_iter().map(|(_, e, _)| e).collect();
        devices.push(entry(good.clone()));
        devices.push(entry(newer));
        let answer = LookupKeysResponse {
            account_id: "acct".into(),
            devices,
        };
        let lookup = parse_lookup(Some("acct"), &answer).unwrap();
        assert_eq!(lookup.devices.len(), 1);
        assert_eq!(lookup.devices[0].issued_at_unix, 43);
        assert_eq!(lookup.refused.len(), 9);
        assert_eq!(parse_lookup(None, &answer).unwrap().devices.len(), 1);
        assert!(matches!(
            parse_lookup(Some("other"), &answer),
            Err(BundleError::OtherAnswer { .. })
        ));
        assert_eq!(
            parse_lookup(None, &LookupKeysResponse::default()).unwrap_err(),
            BundleError::Field("account_id")
        );
    }
}
