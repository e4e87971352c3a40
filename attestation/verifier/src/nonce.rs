//! Single-use verifier nonces with a time to live.

use std::collections::HashMap;

/// Why a nonce was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NonceError {
    /// Never issued (or already purged).
    #[error("unknown nonce: not issued by this verifier")]
    Unknown,
    /// Issued, but used before.
    #[error("nonce already used: replayed evidence")]
    Replayed,
    /// Issued, but its time to live ran out.
    #[error("nonce expired")]
    Expired,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    expires_at: u64,
    used: bool,
}

/// Issued nonces (in memory; the backend keeps them in its database).
#[derive(Debug, Default)]
pub struct NonceStore {
    nonces: HashMap<Vec<u8>, Entry>,
}

impl NonceStore {
    /// Issues 32 random bytes valid until `now + ttl_secs`.
    pub fn issue(
        &mut self,
        now: u64,
        ttl_secs: u64,
    ) -> Result<Vec<u8>, openssl::error::ErrorStack> {
        let mut nonce = vec![0u8; 32];
        openssl::rand::rand_bytes(&mut nonce)?;
        self.nonces.insert(
            nonce.clone(),
            Entry {
                expires_at: now.saturating_add(ttl_secs),
                used: false,
            },
        );
        Ok(nonce)
    }

    /// Uses a nonce up: succeeds once, within its time to live.
    pub fn consume(&mut self, nonce: &[u8], now: u64) -> Result<(), NonceError> {
        let entry = self.nonces.get_mut(nonce).ok_or(NonceError::Unknown)?;
        if entry.used {
            return Err(NonceError::Replayed);
        }
        if now > entry.expires_at {
            return Err(NonceError::Expired);
        }
        entry.used = true;
        Ok(())
    }

    /// Forgets nonces that expired before `now`, used or not: a replay of one is then refused
    /// as unknown.
    pub fn purge(&mut self, now: u64) {
        self.nonces.retain(|_, entry| entry.expires_at >= now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_are_single_use_and_expire() {
        let mut store = NonceStore::default();
        let a = store.issue(100, 60).unwrap();
        let b = store.issue(100, 60).unwrap();
        assert_ne!(a, b);
        assert_eq!(store.consume(&a, 120), Ok(()));
        assert_eq!(store.consume(&a, 121), Err(NonceError::Replayed));
        assert_eq!(store.consume(&b, 161), Err(NonceError::Expired));
        assert_eq!(
            store.consume(b"never issued", 100),
            Err(NonceError::Unknown)
        );
        store.purge(200);
        assert_eq!(
            store.consume(&a, 200),
            Err(NonceError::Unknown),
            "purged, still refused"
        );
    }
}
