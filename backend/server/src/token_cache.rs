//! Attestation results already verified by this node, so a device's repeated calls with the
//! same token (a relay client sends and acknowledges with one token for minutes) cost a hash
//! instead of a signature check.
//!
//! Only the signature work is saved: a cached result is used only while it has not expired
//! (no leeway: a result in its leeway window is verified again in full), for the same device,
//! and when its revocation epoch is still the device's current one, which the caller reads
//! from the database on every call. Keyed by the SHA-256 of the whole token, so a token that
//! differs in any byte is verified in full.

use std::collections::HashMap;
use std::sync::Mutex;

use enigm_backend_tokens::Claims;

/// Results kept before the cache starts over.
const CAPACITY: usize = 10_000;

/// Verified results by token digest.
#[derive(Debug, Default)]
pub struct TokenCache {
    verified: Mutex<HashMap<[u8; 32], Claims>>,
}

fn digest(token: &str) -> [u8; 32] {
    openssl::sha::sha256(token.as_bytes())
}

impl TokenCache {
    /// The cached result of `token`, if it is `device`'s, unexpired at `now` and of the
    /// device's `current_epoch`.
    pub fn get(&self, token: &str, device: &str, current_epoch: u64, now: u64) -> Option<Claims> {
        let verified = self
            .verified
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        verified
            .get(&digest(token))
            .filter(|c| c.sub == device && c.epoch == current_epoch && now < c.exp)
            .cloned()
    }

    /// Remembers a result whose signature and claims were verified in full.
    pub fn insert(&self, token: &str, claims: &Claims) {
        let mut verified = self
            .verified
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if verified.len() >= CAPACITY {
            verified.clear();
        }
        verified.insert(digest(token), claims.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use enigm_backend_tokens::{PostureSummary, Tier};

    fn claims(sub: &str, epoch: u64, exp: u64) -> Claims {
        Claims {
            sub: sub.into(),
            tier: Tier::Affirming,
            posture: PostureSummary {
                level: 3,
                runtime_issue: false,
            },
            iat: exp.saturating_sub(300),
            exp,
            epoch,
            jti: "j".into(),
        }
    }

    #[test]
    fn a_hit_needs_the_same_token_device_epoch_and_an_unexpired_result() {
        let cache = TokenCache::default();
        cache.insert("token-a", &claims("dev-1", 4, 1000));
        let cases = [
            ("token-a", "dev-1", 4, 999, true),
            ("token-a", "dev-1", 4, 1000, false),
            ("token-a", "dev-1", 5, 999, false),
            ("token-a", "dev-2", 4, 999, false),
            ("token-b", "dev-1", 4, 999, false),
            ("token-a ", "dev-1", 4, 999, false),
        ];
        for (token, device, epoch, now, hit) in cases {
            assert_eq!(
                cache.get(token, device, epoch, now).is_some(),
                hit,
                "{token:?} {device} {epoch} {now}"
            );
        }
    }

    #[test]
    fn starts_over_when_full() {
        let cache = TokenCache::default();
        for i in 0..=CAPACITY {
            cache.insert(&format!("t{i}"), &claims("d", 0, 10));
        }
        assert!(cache.get("t0", "d", 0, 1).is_none());
        assert!(cache.get(&format!("t{CAPACITY}"), "d", 0, 1).is_some());
    }
}
