//! [`VerificationCache`]: what [`crate::verify_chain`] may remember between calls.
//!
//! Two kinds of entries, both facts about certificate bytes alone (never about roots, time or
//! revocation, which are checked on every call):
//! - **verified upper chains**: everything above the leaf (`chain[1..]`), keyed by SHA-256 over
//!   those certificates' DER, once it has passed every check that depends only on those bytes
//!   (parsing, usable keys, chain shape, no attestation extension, CA flags, name chaining and
//!   signatures). The entry keeps what the leaf's checks and the per-call checks need: the
//!   leaf's issuer (its subject name and public key), the root's public key, the provisioning,
//!   the attestation certificate's security-level claim, the serials, and the intermediates'
//!   validity windows. A chain whose upper part is cached only parses and verifies its leaf.
//! - **verified links**: one certificate's signature verified under another's key, keyed by
//!   SHA-256 over both DERs; used for the intermediates of chains whose upper part is new (another
//!   device under the same Google intermediates).
//!
//! Bounded: the oldest entry is dropped when full. An upper chain takes a few kilobytes (its parent
//! name and key), a link 32 bytes.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::{Arc, RwLock};

use openssl::asn1::{Asn1Time, Asn1TimeRef};
use openssl::error::ErrorStack;
use openssl::pkey::{PKey, Public};
use openssl::x509::{X509, X509Name};

use crate::chain::{Provisioning, serial_hex};
use crate::key_description::SecurityLevel;

/// Domain separation of upper-chain keys from link keys.
const UPPER_CHAIN_DOMAIN: &[u8] = b"enigm-android-attestation upper chain v1\0";

/// An intermediate's validity window, in seconds since the epoch as OpenSSL compares times
/// ([`seconds_since_epoch`]), with the texts the errors show.
pub(crate) struct Validity {
    pub(crate) not_before: i64,
    pub(crate) not_after: i64,
    pub(crate) not_before_text: String,
    pub(crate) not_after_text: String,
}

/// A verified upper chain (`chain[1..]`): see the module documentation.
pub(crate) struct UpperChain {
    /// Length of the whole chain (leaf included).
    pub(crate) chain_len: usize,
    /// Subject of `chain[1]`, the leaf's issuer.
    pub(crate) parent_subject: X509Name,
    /// Its DER.
    pub(crate) parent_subject_der: Vec<u8>,
    /// Public key of `chain[1]`.
    pub(crate) parent_key: PKey<Public>,
    /// The root's SubjectPublicKeyInfo (DER), to check against the roots of each call.
    pub(crate) root_spki: Vec<u8>,
    /// Whether that is Google's software attestation root.
    pub(crate) root_is_software: bool,
    /// How the attestation key was provisioned.
    pub(crate) provisioning: Provisioning,
    /// The attestation certificate's security-level claim.
    pub(crate) chain_security_level: Option<SecurityLevel>,
    /// Serials of `chain[1..]`, normalised.
    pub(crate) serials: Vec<String>,
    /// Validity of the intermediates `chain[1..len - 1]` (`validity[i - 1]` is `chain[i]`'s).
    pub(crate) validity: Vec<Validity>,
}

/// `t` as seconds since the epoch, computed like `Asn1TimeRef::compare` compares two times
/// (`ASN1_TIME_diff`, day and second differences of the parsed dates), so that comparing two such
/// numbers decides exactly as comparing the times, and this fails exactly when `t` cannot be
/// compared (e.g. a year OpenSSL can encode but not read back).
pub(crate) fn seconds_since_epoch(t: &Asn1TimeRef) -> Result<i64, ErrorStack> {
    let d = Asn1Time::from_unix(0)?.diff(t)?;
    Ok(i64::from(d.days) * 86_400 + i64::from(d.secs))
}

impl UpperChain {
    /// The entry for a verified upper chain: `upper` is `chain[1..]` (parsed), `parent_key` the
    /// key of `chain[1]`. `None` when a value cannot be computed (nothing is cached then).
    pub(crate) fn new(
        upper: &[X509],
        parent_key: &PKey<Public>,
        root_spki: &[u8],
        root_is_software: bool,
        provisioning: Provisioning,
        chain_security_level: Option<SecurityLevel>,
    ) -> Option<Self> {
        let parent = upper.first()?;
        let serials = upper
            .iter()
            .map(|c| serial_hex(c).ok())
            .collect::<Option<Vec<_>>>()?;
        let validity = upper
            .get(..upper.len().checked_sub(1)?)?
            .iter()
            .map(|c| {
                Some(Validity {
                    not_before: seconds_since_epoch(c.not_before()).ok()?,
                    not_after: seconds_since_epoch(c.not_after()).ok()?,
                    not_before_text: c.not_before().to_string(),
                    not_after_text: c.not_after().to_string(),
                })
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Self {
            chain_len: upper.len() + 1,
            parent_subject: parent.subject_name().to_owned().ok()?,
            parent_subject_der: parent.subject_name().to_der().ok()?,
            parent_key: parent_key.clone(),
            root_spki: root_spki.to_vec(),
            root_is_software,
            provisioning,
            chain_security_level,
            serials,
            validity,
        })
    }
}

enum Entry {
    Link,
    UpperChain(Arc<UpperChain>),
}

/// A thread-safe cache of verified certificates above the leaf, so that verifying another key
/// attested under a known chain costs one signature check. Remembers verified **upper chains**
/// (every certificate above the leaf, keyed by SHA-256 over their DER) and verified **links** (one
/// certificate's signature under another's key, keyed by SHA-256 over both DERs). Names, the
/// leaf, the root pin, validity at the requested time and revocation are checked on every call,
/// with the same results and errors as without a cache. Bounded: the oldest entry is dropped when
/// full.
pub struct VerificationCache {
    inner: RwLock<CacheInner>,
    hits: AtomicU64,
    misses: AtomicU64,
}

struct CacheInner {
    map: HashMap<[u8; 32], Entry>,
    order: VecDeque<[u8; 32]>,
    capacity: usize,
}

impl std::fmt::Debug for VerificationCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.read();
        f.debug_struct("VerificationCache")
            .field("len", &inner.map.len())
            .field("capacity", &inner.capacity)
            .field("hits", &self.hits())
            .field("misses", &self.misses())
            .finish()
    }
}

impl Default for VerificationCache {
    fn default() -> Self {
        Self::new(4096)
    }
}

impl VerificationCache {
    /// A cache holding at most `capacity` entries (upper chains and links; at least 1).
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: RwLock::new(CacheInner {
                map: HashMap::new(),
                order: VecDeque::new(),
                capacity: capacity.max(1),
            }),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, CacheInner> {
        self.inner
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, CacheInner> {
        self.inner
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn count(&self, hit: bool) {
        let counter = if hit { &self.hits } else { &self.misses };
        counter.fetch_add(1, AtomicOrdering::Relaxed);
    }

    /// The key of the link "`subject_der` is signed by `issuer_der`'s key".
    pub(crate) fn key(issuer_der: &[u8], subject_der: &[u8]) -> [u8; 32] {
        let mut h = openssl::sha::Sha256::new();
        h.update(&(issuer_der.len() as u64).to_be_bytes());
        h.update(issuer_der);
        h.update(subject_der);
        h.finish()
    }

    /// The key of the upper chain `certs` (`chain[1..]`).
    pub(crate) fn upper_key(certs: &[Vec<u8>]) -> [u8; 32] {
        let mut h = openssl::sha::Sha256::new();
        h.update(UPPER_CHAIN_DOMAIN);
        h.update(&(certs.len() as u64).to_be_bytes());
        for der in certs {
            h.update(&(der.len() as u64).to_be_bytes());
            h.update(der);
        }
        h.finish()
    }

    /// Whether the link `key` is cached (counts a hit or a miss).
    pub(crate) fn contains(&self, key: &[u8; 32]) -> bool {
        let hit = matches!(self.read().map.get(key), Some(Entry::Link));
        self.count(hit);
        hit
    }

    /// The verified upper chain `key`, if cached (counts a hit or a miss).
    pub(crate) fn upper_chain(&self, key: &[u8; 32]) -> Option<Arc<UpperChain>> {
        let found = match self.read().map.get(key) {
            Some(Entry::UpperChain(upper)) => Some(Arc::clone(upper)),
            _ => None,
        };
        self.count(found.is_some());
        found
    }

    fn put(&self, key: [u8; 32], entry: Entry) {
        let mut inner = self.write();
        if inner.map.contains_key(&key) {
            return;
        }
        inner.map.insert(key, entry);
        inner.order.push_back(key);
        while inner.order.len() > inner.capacity {
            if let Some(old) = inner.order.pop_front() {
                inner.map.remove(&old);
            }
        }
    }

    /// Remembers a verified link.
    pub(crate) fn insert(&self, key: [u8; 32]) {
        self.put(key, Entry::Link);
    }

    /// Remembers a verified upper chain.
    pub(crate) fn insert_upper_chain(&self, key: [u8; 32], upper: UpperChain) {
        self.put(key, Entry::UpperChain(Arc::new(upper)));
    }

    /// Number of cached entries (upper chains and links).
    pub fn len(&self) -> usize {
        self.read().map.len()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of cached upper chains.
    pub fn upper_chains(&self) -> usize {
        self.read()
            .map
            .values()
            .filter(|e| matches!(e, Entry::UpperChain(_)))
            .count()
    }

    /// Lookups answered from the cache: a chain whose upper part was cached (one per chain), or,
    /// for a chain whose upper part was not, an intermediate signature that was.
    pub fn hits(&self) -> u64 {
        self.hits.load(AtomicOrdering::Relaxed)
    }

    /// Lookups that were not: an upper chain seen for the first time (one per chain), and each of
    /// its intermediate signatures that had to be verified.
    pub fn misses(&self) -> u64 {
        self.misses.load(AtomicOrdering::Relaxed)
    }

    /// Forgets every entry (to bound memory; entries never become wrong: what they record is a
    /// property of the certificates' bytes).
    pub fn clear(&self) {
        let mut inner = self.write();
        inner.map.clear();
        inner.order.clear();
    }
}
