//! End-to-end message envelopes for the relay: what the server stores and forwards is an
//! opaque envelope of one of a few fixed sizes; only the recipient device can open it, and
//! only then learns who sent it.
//!
//! - [`hpke`]: HPKE base mode (RFC 9180) with DHKEM(X25519, HKDF-SHA256), HKDF-SHA256 and
//!   ChaCha20-Poly1305; checked against another implementation (pyhpke) in the tests;
//! - [`pad`]: padding of the sealed message to fixed size buckets, so every envelope on the
//!   wire has one of [`pad::WIRE_SIZES`] bytes;
//! - [`keys`]: a device's message keys (X25519 for HPKE, Ed25519 for signatures) and their
//!   public form for the key directory;
//! - [`envelope`]: sealed sender: the sender's identity and signature travel inside the
//!   ciphertext, bound to the recipient device and the message id;
//! - [`dedup`]: duplicate suppression by message id on the receiving client.

pub mod dedup;
pub mod envelope;
pub mod hpke;
pub mod keys;
pub mod pad;

/// Why an envelope could not be made or opened. Opening errors say what failed, never what
/// the message contained.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    /// HPKE sealing or opening failed (wrong key, tampered bytes).
    #[error("HPKE: {0}")]
    Hpke(String),
    /// The envelope or its contents are malformed.
    #[error("malformed envelope: {0}")]
    Format(String),
    /// The message is larger than the largest bucket.
    #[error("a message of {size} bytes is over the {max}-byte limit")]
    TooLarge {
        /// Its size once encoded.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The sender's signature does not verify with the key the directory lists.
    #[error("the sender's signature does not verify")]
    BadSignature,
    /// The directory has no key for the claimed sender.
    #[error("unknown sender device")]
    UnknownSender,
    /// The envelope was sealed for another device.
    #[error("sealed for another device")]
    WrongRecipient,
    /// A key or signature operation failed.
    #[error("crypto: {0}")]
    Crypto(#[from] openssl::error::ErrorStack),
}
