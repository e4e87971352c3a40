//! Sealed sender: the envelope names only the recipient's queue on the outside (the relay's
//! business); inside the HPKE ciphertext travel the sender's identity, the recipient device,
//! a message id, the time and the body, signed by the sender's Ed25519 key. The recipient
//! checks the signature against the key the directory lists for the claimed sender, and that
//! the envelope was sealed for itself.

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::keys::{DeviceId, DeviceKeys, PublicDeviceKeys};
use crate::{EnvelopeError, hpke, pad};

/// The largest body an envelope carries (the largest bucket holds it base64-encoded with the
/// signed header).
pub const MAX_BODY: usize = 46 * 1024;
/// The longest account handle, device id or message id an envelope carries.
pub const MAX_ID: usize = 256;

/// HPKE `info`: binds every envelope to this protocol and version.
pub const INFO: &[u8] = b"enigm relay envelope v1";

/// What the sender signs and seals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Signed {
    from: DeviceId,
    to: DeviceId,
    id: String,
    sent_at: u64,
    cover: bool,
    body: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Inner {
    signed: Signed,
    signature: String,
}

/// An opened message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// Who sent it (verified against the directory's key).
    pub from: DeviceId,
    /// Its id (for duplicate suppression).
    pub id: String,
    /// When it was sent (unix seconds, the sender's clock).
    pub sent_at: u64,
    /// A cover message, to be dropped.
    pub cover: bool,
    /// The body.
    pub body: Vec<u8>,
}

/// What to seal.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    /// Its id, unique per sender (16 random bytes, hex, is what clients use).
    pub id: &'a str,
    /// The send time, unix seconds.
    pub sent_at: u64,
    /// Cover traffic rather than a real message.
    pub cover: bool,
    /// The body.
    pub body: &'a [u8],
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// Seals `message` from `sender` to `recipient`: one envelope of one of
/// [`pad::WIRE_SIZES`] bytes.
pub fn seal(
    sender: &DeviceKeys,
    recipient: &PublicDeviceKeys,
    message: Message<'_>,
) -> Result<Vec<u8>, EnvelopeError> {
    if message.body.len() > MAX_BODY {
        return Err(EnvelopeError::TooLarge {
            size: message.body.len(),
            max: MAX_BODY,
        });
    }
    for (what, id) in [
        ("sender account", &sender.id.account),
        ("sender device", &sender.id.device),
        ("recipient account", &recipient.id.account),
        ("recipient device", &recipient.id.device),
        ("message id", &message.id.to_owned()),
    ] {
        if id.len() > MAX_ID {
            return Err(EnvelopeError::Format(format!(
                "{what} is over {MAX_ID} bytes"
            )));
        }
    }
    let signed = Signed {
        from: sender.id.clone(),
        to: recipient.id.clone(),
        id: message.id.to_owned(),
        sent_at: message.sent_at,
        cover: message.cover,
        body: b64().encode(message.body),
    };
    let signed_bytes =
        serde_json::to_vec(&signed).map_err(|e| EnvelopeError::Format(e.to_string()))?;
    let inner = Inner {
        signature: hex::encode(sender.sign(&signed_bytes)?),
        signed,
    };
    let plaintext = serde_json::to_vec(&inner).map_err(|e| EnvelopeError::Format(e.to_string()))?;
    hpke::seal(&recipient.hpke_key()?, INFO, b"", &pad::pad(&plaintext)?)
}

/// Opens an envelope sealed to `recipient`, checking the sender's signature with the key
/// `directory` returns for the claimed sender.
pub fn open(
    recipient: &DeviceKeys,
    envelope: &[u8],
    directory: impl Fn(&DeviceId) -> Option<PublicDeviceKeys>,
) -> Result<Opened, EnvelopeError> {
    if !pad::WIRE_SIZES.contains(&envelope.len()) {
        return Err(EnvelopeError::Format(format!(
            "{} bytes is not an envelope size",
            envelope.len()
        )));
    }
    let padded = hpke::open(recipient.hpke_secret(), INFO, b"", envelope)?;
    let inner: Inner = serde_json::from_slice(pad::unpad(&padded)?)
        .map_err(|e| EnvelopeError::Format(format!("contents: {e}")))?;
    if inner.signed.to != recipient.id {
        return Err(EnvelopeError::WrongRecipient);
    }
    let sender = directory(&inner.signed.from).ok_or(EnvelopeError::UnknownSender)?;
    let signed_bytes =
        serde_json::to_vec(&inner.signed).map_err(|e| EnvelopeError::Format(e.to_string()))?;
    let signature = hex::decode(&inner.signature)
        .map_err(|_| EnvelopeError::Format("signature is not hex".into()))?;
    if sender.id != inner.signed.from || !sender.verifies(&signed_bytes, &signature) {
        return Err(EnvelopeError::BadSignature);
    }
    let body = b64()
        .decode(&inner.signed.body)
        .map_err(|_| EnvelopeError::Format("body is not base64".into()))?;
    Ok(Opened {
        from: inner.signed.from,
        id: inner.signed.id,
        sent_at: inner.signed.sent_at,
        cover: inner.signed.cover,
        body,
    })
}
