//! HPKE base mode (RFC 9180): DHKEM(X25519, HKDF-SHA256) (KEM 0x0020), HKDF-SHA256 (KDF
//! 0x0001), ChaCha20-Poly1305 (AEAD 0x0003). A sealed message is `enc` (32 bytes) followed by
//! the ciphertext and its 16-byte tag.

use hpke::aead::ChaCha20Poly1305;
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, Kem, OpModeR, OpModeS, Serializable};

use crate::EnvelopeError;

/// Length of the encapsulated key in front of every sealed message.
pub const ENC_LEN: usize = 32;
/// Length of the AEAD tag.
pub const TAG_LEN: usize = 16;

type SuiteKem = X25519HkdfSha256;

fn hpke_err(e: hpke::HpkeError) -> EnvelopeError {
    EnvelopeError::Hpke(e.to_string())
}

/// A fresh X25519 key pair: (secret, public).
pub fn generate_keypair() -> ([u8; 32], [u8; 32]) {
    let mut rng = rand_core::UnwrapErr(rand_core::OsRng);
    let (secret, public) = SuiteKem::gen_keypair(&mut rng);
    (to_array(&secret.to_bytes()), to_array(&public.to_bytes()))
}

/// The public key of `secret`.
pub fn public_of(secret: &[u8; 32]) -> Result<[u8; 32], EnvelopeError> {
    let secret = <SuiteKem as Kem>::PrivateKey::from_bytes(secret).map_err(hpke_err)?;
    Ok(to_array(&SuiteKem::sk_to_pk(&secret).to_bytes()))
}

fn to_array(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(&bytes[..32.min(bytes.len())]);
    out
}

/// Seals `plaintext` to `recipient` (base mode) with `info` and `aad`: `enc || ciphertext`.
pub fn seal(
    recipient: &[u8; 32],
    info: &[u8],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, EnvelopeError> {
    let public = <SuiteKem as Kem>::PublicKey::from_bytes(recipient).map_err(hpke_err)?;
    let mut rng = rand_core::UnwrapErr(rand_core::OsRng);
    let (enc, ciphertext) = hpke::single_shot_seal::<ChaCha20Poly1305, HkdfSha256, SuiteKem, _>(
        &OpModeS::Base,
        &public,
        info,
        plaintext,
        aad,
        &mut rng,
    )
    .map_err(hpke_err)?;
    let mut out = enc.to_bytes().to_vec();
    out.extend_from_slice(&ciphertext);
    Ok(out)
}

/// Opens `enc || ciphertext` with the recipient's `secret`.
pub fn open(
    secret: &[u8; 32],
    info: &[u8],
    aad: &[u8],
    sealed: &[u8],
) -> Result<Vec<u8>, EnvelopeError> {
    if sealed.len() < ENC_LEN + TAG_LEN {
        return Err(EnvelopeError::Format(format!(
            "{} bytes is shorter than an HPKE message",
            sealed.len()
        )));
    }
    let (enc, ciphertext) = sealed.split_at(ENC_LEN);
    let secret = <SuiteKem as Kem>::PrivateKey::from_bytes(secret).map_err(hpke_err)?;
    let enc = <SuiteKem as Kem>::EncappedKey::from_bytes(enc).map_err(hpke_err)?;
    hpke::single_shot_open::<ChaCha20Poly1305, HkdfSha256, SuiteKem>(
        &OpModeR::Base,
        &secret,
        &enc,
        info,
        ciphertext,
        aad,
    )
    .map_err(hpke_err)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn seal_open_and_refusals() {
        let (secret, public) = generate_keypair();
        assert_eq!(public_of(&secret).unwrap(), public);
        let sealed = seal(&public, b"info", b"aad", b"hello").unwrap();
        assert_eq!(sealed.len(), ENC_LEN + 5 + TAG_LEN);
        assert_eq!(open(&secret, b"info", b"aad", &sealed).unwrap(), b"hello");
        let (other, _) = generate_keypair();
        for (key, info, aad) in [
            (&other, &b"info"[..], &b"aad"[..]),
            (&secret, b"other", b"aad"),
            (&secret, b"info", b"other"),
        ] {
            assert!(open(key, info, aad, &sealed).is_err());
        }
        let mut flipped = sealed.clone();
        flipped[40] ^= 1;
        assert!(open(&secret, b"info", b"aad", &flipped).is_err());
        assert!(open(&secret, b"info", b"aad", &sealed[..20]).is_err());
    }
}
