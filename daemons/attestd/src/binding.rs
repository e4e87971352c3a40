//! The binding of a verifier's nonce and a posture digest into a quote's qualifying data:
//! `SHA-256("enigm-attest-v1" || nonce || posture_digest)` (see `evidence.proto`).

use enigm_evidence::QUALIFYING_DATA_DOMAIN;

/// The shortest nonce accepted (128 bits of verifier freshness).
pub const MIN_NONCE_LEN: usize = 16;
/// The longest nonce accepted.
pub const MAX_NONCE_LEN: usize = 64;
/// The length of a posture digest (SHA-256).
pub const POSTURE_DIGEST_LEN: usize = 32;

/// Inputs that cannot be bound.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BindingError {
    /// The nonce is too short or too long.
    #[error("the nonce must be {MIN_NONCE_LEN} to {MAX_NONCE_LEN} bytes, not {0}")]
    NonceLength(usize),
    /// The posture digest is not a SHA-256 digest.
    #[error("the posture digest must be {POSTURE_DIGEST_LEN} bytes (SHA-256), not {0}")]
    PostureDigestLength(usize),
}

/// The qualifying data (`TPMS_ATTEST.extraData`) for `nonce` and `posture_digest`.
pub fn qualifying_data(nonce: &[u8], posture_digest: &[u8]) -> Result<[u8; 32], BindingError> {
    if !(MIN_NONCE_LEN..=MAX_NONCE_LEN).contains(&nonce.len()) {
        return Err(BindingError::NonceLength(nonce.len()));
    }
    if posture_digest.len() != POSTURE_DIGEST_LEN {
        return Err(BindingError::PostureDigestLength(posture_digest.len()));
    }
    let mut hasher = openssl::sha::Sha256::new();
    hasher.update(QUALIFYING_DATA_DOMAIN);
    hasher.update(nonce);
    hasher.update(posture_digest);
    Ok(hasher.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_a_plain_sha256_of_the_concatenation() {
        let nonce = [0x11u8; 16];
        let posture = [0x22u8; 32];
        let mut joined = b"enigm-attest-v1".to_vec();
        joined.extend_from_slice(&nonce);
        joined.extend_from_slice(&posture);
        assert_eq!(
            qualifying_data(&nonce, &posture).unwrap(),
            openssl::sha::sha256(&joined)
        );
        // Known answer: `(printf enigm-attest-v1; head -c 48 /dev/zero) | sha256sum`.
        assert_eq!(
            hex::encode(qualifying_data(&[0u8; 16], &[0u8; 32]).unwrap()),
            "04c8f9f2b76f29eb18ef33834fb86cc311cec7a303f8eacc6f547c67c2b2126e"
        );
    }

    #[test]
    fn rejects_bad_lengths() {
        let cases = [
            (15, 32, Err(BindingError::NonceLength(15))),
            (65, 32, Err(BindingError::NonceLength(65))),
            (16, 31, Err(BindingError::PostureDigestLength(31))),
            (16, 0, Err(BindingError::PostureDigestLength(0))),
        ];
        for (nonce, posture, expected) in cases {
            assert_eq!(
                qualifying_data(&vec![0; nonce], &vec![0; posture]).map(|_| ()),
                expected
            );
        }
    }
}
