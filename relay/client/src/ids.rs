//! Ids and time: random message ids, the per-queue id the server sees for a message, and the
//! clock.

use std::time::{SystemTime, UNIX_EPOCH};

/// 16 random bytes, hex: a message id.
pub fn message_id() -> Result<String, openssl::error::ErrorStack> {
    let mut bytes = [0u8; 16];
    openssl::rand::rand_bytes(&mut bytes)?;
    Ok(hex::encode(bytes))
}

/// The id the server sees for the copy of `message_id` sent into `queue`: the first 16 bytes
/// of SHA-256(`"enigm-relay-wire-v1" || message_id || 0 || queue`), hex. Copies of one message
/// in different queues have unrelated ids (the server cannot tell they are one message), and a
/// retry into the same queue has the same id (the server stores it once).
pub fn wire_id(message_id: &str, queue: &str) -> String {
    let mut hasher = openssl::sha::Sha256::new();
    hasher.update(b"enigm-relay-wire-v1");
    hasher.update(message_id.as_bytes());
    hasher.update(&[0]);
    hasher.update(queue.as_bytes());
    hex::encode(&hasher.finish()[..16])
}

/// A uniform random number in (0, 1].
pub fn unit_random() -> Result<f64, openssl::error::ErrorStack> {
    let mut bytes = [0u8; 8];
    openssl::rand::rand_bytes(&mut bytes)?;
    // 53 random bits, shifted away from zero.
    let bits = u64::from_be_bytes(bytes) >> 11;
    Ok((bits as f64 + 1.0) / (1u64 << 53) as f64)
}

/// Unix seconds now (0 for a clock before 1970).
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn ids_are_random_and_wire_ids_per_queue() {
        let (a, b) = (message_id().unwrap(), message_id().unwrap());
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
        assert_eq!(wire_id(&a, "q1"), wire_id(&a, "q1"));
        assert_ne!(wire_id(&a, "q1"), wire_id(&a, "q2"));
        assert_ne!(wire_id(&a, "q1"), wire_id(&b, "q1"));
        assert_eq!(wire_id(&a, "q1").len(), 32);
        for _ in 0..100 {
            let u = unit_random().unwrap();
            assert!(u > 0.0 && u <= 1.0);
        }
    }
}
