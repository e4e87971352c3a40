//! Chain validation: from the attested key's certificate up to a pinned Google root, "as of" a
//! given time, against Google's revocation status list, with an optional cache of verified
//! intermediate signatures.
//!
//! The rules follow Google's reference verifier (android/keyattestation):
//! - the chain is ordered leaf first and ends with the root; it has 3 (software), 4 (factory
//!   provisioned) or 5 (remotely provisioned, RKP) certificates: an extended chain is rejected;
//! - the root is trusted when its **public key** (SubjectPublicKeyInfo) equals a pinned root's, so
//!   re-issued or expired root certificates with the same key keep working; the root
//!   certificate's own validity and self-signature are not checked;
//! - every certificate's issuer name matches the next one's subject and its signature verifies
//!   with the next one's key;
//! - intermediates must be valid at [`VerifyOptions::at`]; like the reference verifier, expiry is
//!   tolerated on factory-provisioned chains (their keys cannot be rotated) unless
//!   [`VerifyOptions::enforce_factory_expiry`] is set; the leaf's validity is set by the device and
//!   is not checked;
//! - only the leaf carries the key attestation extension;
//! - every certificate whose serial is on the revocation list fails.
//!
//! Checks run structure first (certificate DER, root pin, chain shape, extension placement, the
//! KeyDescription, CA flags), then the links from the root down (names, signatures, validity),
//! then revocation; the error is the first failed check. Parsing before signature checks rejects
//! malformed input without spending signature verifications on it.
//!
//! Stricter than the reference: the intermediates Google issues must be CAs (basicConstraints
//! cA = TRUE): every issuer between the root and the attestation-key certificate, and the
//! attestation-key certificate itself on RKP chains. Factory attestation-key certificates are
//! exempt because real devices ship them with `cA = FALSE`; they cannot be misused to extend a
//! chain, since only the leaf may carry the attestation extension and the chain length is fixed.
//!
//! A chain ending at Google's *software* attestation root is never hardware-backed: it is an error
//! by default, and with [`VerifyOptions::allow_software_root`] it verifies with
//! `hardware_backed: false` and a failed [`Verdict`].

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet, VecDeque};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use openssl::asn1::Asn1Time;
use openssl::nid::Nid;
use openssl::x509::{X509, X509NameRef};

use crate::error::AndroidError;
use crate::key_description::{KeyDescription, SecurityLevel};
use crate::x509::{basic_constraints, key_description_der};

/// SubjectPublicKeyInfo (base64 DER) of Google's two software attestation roots (EC and RSA),
/// from AOSP `keymaster_soft_attestation_keys.xml`. They are recognised, never trusted.
const GOOGLE_SOFTWARE_ROOT_KEYS: [&str; 2] = [
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE7l1ex+HA220Dpn7mthvsTWpdamguD/9/SQ59dx9EIm29sa/6FsvHrcV30lacqrewLVQBXT5DKyqO107sSHVBpA==",
    "MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQCia63rbi5EYe/VDoLmt5TRdSMfd5tjkWP/96r/C3JHTsAsQ+wzfNes7UA+jCigZtX3hwszl94OuE4TQKuvpSe/lWmgMdsGUmX4RFlXYfC78hdLt0GAZMAoDo9Sd47b0ke2RekZyOmLw9vCkT/X11DEHTVm+Vfkl5YLCazOkjWFmwIDAQAB",
];

/// The most certificates a chain may have before it is rejected without parsing.
const MAX_CHAIN_LEN: usize = 8;

fn is_software_root_key(spki_der: &[u8]) -> bool {
    let b64 = B64.encode(spki_der);
    GOOGLE_SOFTWARE_ROOT_KEYS.contains(&b64.as_str())
}

/// Google's hardware attestation roots, pinned by public key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedRoots {
    keys: Vec<Vec<u8>>,
}

impl TrustedRoots {
    /// No roots (nothing verifies).
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads Google's `roots.json`: a JSON array of PEM certificates.
    pub fn from_roots_json(json: &str) -> Result<Self, AndroidError> {
        let pems: Vec<String> = serde_json::from_str(json)
            .map_err(|e| AndroidError::Roots(format!("not a JSON array of PEM strings: {e}")))?;
        let mut roots = Self::new();
        for (i, pem) in pems.iter().enumerate() {
            let cert = X509::from_pem(pem.as_bytes())
                .map_err(|e| AndroidError::Roots(format!("entry {i}: {e}")))?;
            roots.add_certificate(&cert)?;
        }
        if roots.is_empty() {
            return Err(AndroidError::Roots("no roots".into()));
        }
        Ok(roots)
    }

    /// Reads `roots.json` from a file.
    pub fn from_roots_json_file(path: &Path) -> Result<Self, AndroidError> {
        let text = std::fs::read_to_string(path).map_err(|source| AndroidError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_roots_json(&text)
    }

    /// Pins the public key of a root certificate.
    pub fn add_certificate(&mut self, cert: &X509) -> Result<(), AndroidError> {
        let spki = cert.public_key()?.public_key_to_der()?;
        self.add_public_key_der(spki)
    }

    /// Pins a DER SubjectPublicKeyInfo. Google's software attestation roots are refused.
    pub fn add_public_key_der(&mut self, spki_der: Vec<u8>) -> Result<(), AndroidError> {
        if is_software_root_key(&spki_der) {
            return Err(AndroidError::Roots(
                "Google's software attestation root cannot be a trusted root".into(),
            ));
        }
        if !self.keys.contains(&spki_der) {
            self.keys.push(spki_der);
        }
        Ok(())
    }

    /// Whether `spki_der` is a pinned key.
    pub fn contains(&self, spki_der: &[u8]) -> bool {
        self.keys.iter().any(|k| k == spki_der)
    }

    /// Number of pinned keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when no key is pinned.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// The status of a listed certificate.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum RevocationStatus {
    /// `REVOKED`.
    Revoked,
    /// `SUSPENDED`.
    Suspended,
    /// Any other status string (treated as not good: fail closed).
    Other(String),
}

impl std::fmt::Display for RevocationStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Revoked => f.write_str("REVOKED"),
            Self::Suspended => f.write_str("SUSPENDED"),
            Self::Other(s) => f.write_str(s),
        }
    }
}

/// One entry of the revocation status list.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RevocationEntry {
    /// Status.
    pub status: RevocationStatus,
    /// Reason, e.g. `KEY_COMPROMISE`.
    pub reason: Option<String>,
}

/// Google's attestation revocation status list
/// (`{"entries": {"<serial hex>": {"status": "REVOKED", "reason": "KEY_COMPROMISE"}}}`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RevocationList {
    entries: HashMap<String, RevocationEntry>,
}

#[derive(serde::Deserialize)]
struct RawStatusFile {
    entries: HashMap<String, RawStatusEntry>,
}

#[derive(serde::Deserialize)]
struct RawStatusEntry {
    status: String,
    #[serde(default)]
    reason: Option<String>,
}

/// Normalises a serial in hex: lower case, no leading zeros (Java's `BigInteger.toString(16)`).
fn normalize_serial(hex: &str) -> String {
    let (sign, digits) = match hex.strip_prefix('-') {
        Some(d) => ("-", d),
        None => ("", hex),
    };
    let trimmed = digits.trim_start_matches('0').to_ascii_lowercase();
    if trimmed.is_empty() {
        "0".into()
    } else {
        format!("{sign}{trimmed}")
    }
}

impl RevocationList {
    /// Parses the status list JSON. Fails (closed) on anything that is not the documented shape.
    pub fn from_json(json: &str) -> Result<Self, AndroidError> {
        let raw: RawStatusFile =
            serde_json::from_str(json).map_err(|e| AndroidError::Revocations(e.to_string()))?;
        let entries = raw
            .entries
            .into_iter()
            .map(|(serial, e)| {
                let status = match e.status.as_str() {
                    "REVOKED" => RevocationStatus::Revoked,
                    "SUSPENDED" => RevocationStatus::Suspended,
                    other => RevocationStatus::Other(other.to_owned()),
                };
                (
                    normalize_serial(&serial),
                    RevocationEntry {
                        status,
                        reason: e.reason,
                    },
                )
            })
            .collect();
        Ok(Self { entries })
    }

    /// Reads the status list from a file.
    pub fn from_file(path: &Path) -> Result<Self, AndroidError> {
        let text = std::fs::read_to_string(path).map_err(|source| AndroidError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_json(&text)
    }

    /// The entry for a serial number in hex (any case, leading zeros allowed).
    pub fn get(&self, serial_hex: &str) -> Option<&RevocationEntry> {
        self.entries.get(&normalize_serial(serial_hex))
    }

    /// Number of listed serials.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is listed.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// A thread-safe cache of verified certificate signatures, keyed by SHA-256 over the DER of the
/// issuer and of the certificate it signed. Only links above the leaf are cached (the leaf
/// changes with every key); names, validity, CA flags and revocation are still checked on every
/// call. Bounded: the oldest entry is dropped when full.
#[derive(Debug)]
pub struct VerificationCache {
    inner: Mutex<CacheInner>,
    hits: AtomicU64,
    misses: AtomicU64,
}

#[derive(Debug)]
struct CacheInner {
    set: HashSet<[u8; 32]>,
    order: VecDeque<[u8; 32]>,
    capacity: usize,
}

impl Default for VerificationCache {
    fn default() -> Self {
        Self::new(4096)
    }
}

impl VerificationCache {
    /// A cache holding at most `capacity` verified links (at least 1).
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(CacheInner {
                set: HashSet::new(),
                order: VecDeque::new(),
                capacity: capacity.max(1),
            }),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CacheInner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn key(issuer_der: &[u8], subject_der: &[u8]) -> [u8; 32] {
        let mut h = openssl::sha::Sha256::new();
        h.update(&(issuer_der.len() as u64).to_be_bytes());
        h.update(issuer_der);
        h.update(subject_der);
        h.finish()
    }

    fn contains(&self, key: &[u8; 32]) -> bool {
        let hit = self.lock().set.contains(key);
        let counter = if hit { &self.hits } else { &self.misses };
        counter.fetch_add(1, AtomicOrdering::Relaxed);
        hit
    }

    fn insert(&self, key: [u8; 32]) {
        let mut inner = self.lock();
        if inner.set.insert(key) {
            inner.order.push_back(key);
            while inner.order.len() > inner.capacity {
                if let Some(old) = inner.order.pop_front() {
                    inner.set.remove(&old);
                }
            }
        }
    }

    /// Number of cached links.
    pub fn len(&self) -> usize {
        self.lock().set.len()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Lookups that skipped a signature verification.
    pub fn hits(&self) -> u64 {
        self.hits.load(AtomicOrdering::Relaxed)
    }

    /// Lookups that had to verify.
    pub fn misses(&self) -> u64 {
        self.misses.load(AtomicOrdering::Relaxed)
    }

    /// Forgets every cached link (to bound memory; entries never become wrong: a signature that
    /// verified keeps verifying).
    pub fn clear(&self) {
        let mut inner = self.lock();
        inner.set.clear();
        inner.order.clear();
    }
}

/// What [`verify_chain`] checks against.
#[derive(Debug, Clone, Copy)]
pub struct VerifyOptions<'a> {
    /// Pinned Google hardware roots.
    pub roots: &'a TrustedRoots,
    /// The instant the chain must be valid at (tests use the key's creationDateTime).
    pub at: SystemTime,
    /// Revocation status list; `None` skips the revocation check.
    pub revocations: Option<&'a RevocationList>,
    /// Cache of verified intermediate signatures.
    pub cache: Option<&'a VerificationCache>,
    /// Accept chains rooted at Google's software attestation root (never hardware-backed; the
    /// verdict fails). Default: such chains are an error.
    pub allow_software_root: bool,
    /// Also fail expired intermediates of factory-provisioned chains (the reference verifier
    /// tolerates them). Default: false.
    pub enforce_factory_expiry: bool,
}

impl<'a> VerifyOptions<'a> {
    /// Options with the given roots and time, no revocation list, no cache.
    pub fn new(roots: &'a TrustedRoots, at: SystemTime) -> Self {
        Self {
            roots,
            at,
            revocations: None,
            cache: None,
            allow_software_root: false,
            enforce_factory_expiry: false,
        }
    }

    /// Checks serials against `revocations`.
    pub fn with_revocations(mut self, revocations: &'a RevocationList) -> Self {
        self.revocations = Some(revocations);
        self
    }

    /// Uses `cache` for intermediate signatures.
    pub fn with_cache(mut self, cache: &'a VerificationCache) -> Self {
        self.cache = Some(cache);
        self
    }

    /// See [`VerifyOptions::allow_software_root`].
    pub fn allow_software_root(mut self, allow: bool) -> Self {
        self.allow_software_root = allow;
        self
    }

    /// See [`VerifyOptions::enforce_factory_expiry`].
    pub fn enforce_factory_expiry(mut self, enforce: bool) -> Self {
        self.enforce_factory_expiry = enforce;
        self
    }
}

/// Which kind of root the chain ends at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RootKind {
    /// A pinned Google hardware attestation root.
    GoogleHardware,
    /// Google's software attestation root.
    GoogleSoftware,
}

/// How the attestation key was provisioned (from the certificate under the root).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Provisioning {
    /// Keys injected in the factory (intermediate subject has a serialNumber).
    Factory,
    /// Remote key provisioning (RKP, "Droid CA2").
    Remote,
    /// Neither (software chains).
    Unknown,
}

impl std::fmt::Display for Provisioning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Factory => "factory-provisioned",
            Self::Remote => "remotely provisioned",
            Self::Unknown => "software or unknown",
        })
    }
}

/// Whether the attestation can be relied on as hardware-backed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "result", content = "reasons")]
pub enum Verdict {
    /// Rooted in a Google hardware root, hardware security level, levels consistent.
    Passed,
    /// Why not (one line each).
    Failed(Vec<String>),
}

impl Verdict {
    /// True for [`Verdict::Passed`].
    pub fn passed(&self) -> bool {
        matches!(self, Self::Passed)
    }

    /// The failure reasons (empty when passed).
    pub fn reasons(&self) -> &[String] {
        match self {
            Self::Passed => &[],
            Self::Failed(r) => r,
        }
    }
}

/// A chain that verified, with its parsed key description and verdict.
#[derive(Debug, Clone, serde::Serialize)]
pub struct VerifiedAttestation {
    /// The leaf's KeyDescription (serialises as the reference JSON).
    pub key_description: KeyDescription,
    /// Which root the chain ends at.
    pub root: RootKind,
    /// How the attestation key was provisioned.
    pub provisioning: Provisioning,
    /// `min(attestationSecurityLevel, keyMintSecurityLevel)` (the reference's `securityLevel`).
    pub security_level: SecurityLevel,
    /// The security level the attestation certificate's subject claims (RKP `O=TEE/StrongBox`,
    /// factory `StrongBox` titles), when it makes a claim.
    pub chain_security_level: Option<SecurityLevel>,
    /// True only for a hardware root and a non-SOFTWARE security level.
    pub hardware_backed: bool,
    /// The verdict, with reasons when failed.
    pub verdict: Verdict,
    /// The attested key (leaf SubjectPublicKeyInfo, DER).
    #[serde(serialize_with = "ser_b64")]
    pub leaf_public_key_der: Vec<u8>,
    /// Serial numbers, leaf first (lower-case hex, as in the revocation list).
    pub serials: Vec<String>,
    /// Intermediate signatures taken from the cache instead of verified.
    pub cached_links: usize,
}

fn ser_b64<S: serde::Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&B64.encode(b))
}

fn unix_seconds(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_secs()).map_or(i64::MIN, |s| -s),
    }
}

fn name_entries(name: &X509NameRef, nid: Nid) -> Vec<String> {
    name.entries_by_nid(nid)
        .map(|e| String::from_utf8_lossy(e.data().as_slice()).into_owned())
        .collect()
}

fn name_mentions_strongbox(name: &X509NameRef) -> bool {
    name.entries().any(|e| {
        String::from_utf8_lossy(e.data().as_slice())
            .to_ascii_lowercase()
            .contains("strongbox")
    })
}

fn provisioning_of(below_root: &X509) -> Provisioning {
    let subject = below_root.subject_name();
    if subject.entries_by_nid(Nid::SERIALNUMBER).next().is_some() {
        Provisioning::Factory
    } else if name_entries(subject, Nid::COMMONNAME) == ["Droid CA2"]
        && name_entries(subject, Nid::ORGANIZATIONNAME) == ["Google LLC"]
    {
        Provisioning::Remote
    } else {
        Provisioning::Unknown
    }
}

fn serial_hex(cert: &X509) -> Result<String, AndroidError> {
    let hex = cert.serial_number().to_bn()?.to_hex_str()?;
    Ok(normalize_serial(&hex))
}

/// Verifies an attestation chain (DER certificates, leaf first, root last) and parses the leaf's
/// KeyDescription. See the [module documentation](self) for the rules.
///
/// `Ok` means the chain is authentic as of `options.at`; whether it is hardware-backed is in
/// [`VerifiedAttestation::hardware_backed`] and [`VerifiedAttestation::verdict`].
pub fn verify_chain(
    chain_der: &[Vec<u8>],
    options: &VerifyOptions<'_>,
) -> Result<VerifiedAttestation, AndroidError> {
    let n = chain_der.len();
    if n < 3 {
        return Err(AndroidError::ChainTooShort(n));
    }
    if n > MAX_CHAIN_LEN {
        return Err(AndroidError::ChainLength {
            found: n,
            expected: MAX_CHAIN_LEN,
            provisioning: None,
        });
    }
    let certs = chain_der
        .iter()
        .enumerate()
        .map(|(index, der)| {
            X509::from_der(der).map_err(|source| AndroidError::Certificate { index, source })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let Some(below_root) = certs.get(n - 2) else {
        return Err(AndroidError::ChainTooShort(n));
    };
    let keys = certs
        .iter()
        .enumerate()
        .map(|(index, c)| {
            c.public_key()
                .map_err(|source| AndroidError::UnsupportedPublicKey { index, source })
        })
        .collect::<Result<Vec<_>, _>>()?;

    // Root: pinned by public key.
    let root_spki = keys
        .last()
        .ok_or(AndroidError::ChainTooShort(n))?
        .public_key_to_der()?;
    let root_kind = if options.roots.contains(&root_spki) {
        RootKind::GoogleHardware
    } else if is_software_root_key(&root_spki) {
        if !options.allow_software_root {
            return Err(AndroidError::SoftwareRoot);
        }
        RootKind::GoogleSoftware
    } else {
        return Err(AndroidError::UntrustedRoot);
    };

    // Shape: no certificates beyond the attested key, none missing.
    let provisioning = provisioning_of(below_root);
    let expected = match provisioning {
        Provisioning::Remote => 5,
        Provisioning::Factory => 4,
        Provisioning::Unknown if n == 4 => 4,
        Provisioning::Unknown => 3,
    };
    if n != expected {
        return Err(AndroidError::ChainLength {
            found: n,
            expected,
            provisioning: Some(provisioning),
        });
    }

    // Structure before cryptography: only the leaf carries the attestation extension, and it
    // must parse (cheap rejection of malformed input; the parser is total).
    let mut leaf_extension = None;
    for (index, der) in chain_der.iter().enumerate() {
        let ext =
            key_description_der(der).map_err(|source| AndroidError::Extension { index, source })?;
        match (index, ext) {
            (0, Some(bytes)) => leaf_extension = Some(bytes),
            (0, None) => return Err(AndroidError::MissingExtension),
            (_, Some(_)) => return Err(AndroidError::ExtensionOutsideLeaf { index }),
            (_, None) => {}
        }
    }
    let Some(ext) = leaf_extension else {
        return Err(AndroidError::MissingExtension);
    };
    let key_description = KeyDescription::parse(ext)?;

    // Google-issued intermediates must be CAs (the pinned root is trusted by key). The
    // attestation-key certificate of factory chains is exempt: real devices ship it with
    // `cA = FALSE` (e.g. the Sony Xperia 10 III in the reference verifier's testdata).
    for (index, der) in chain_der.iter().enumerate().take(n - 1).skip(1) {
        if index == 1 && provisioning != Provisioning::Remote {
            continue;
        }
        let bc =
            basic_constraints(der).map_err(|source| AndroidError::Extension { index, source })?;
        if !bc.is_some_and(|bc| bc.ca) {
            return Err(AndroidError::NotCa { index });
        }
    }

    // Links, root side first: names, signatures (cached above the leaf), validity.
    let at_secs = unix_seconds(options.at);
    let at = Asn1Time::from_unix(at_secs)?;
    let mut cached_links = 0;
    for index in (0..n - 1).rev() {
        let (Some(child), Some(parent), Some(parent_key), Some(child_der), Some(parent_der)) = (
            certs.get(index),
            certs.get(index + 1),
            keys.get(index + 1),
            chain_der.get(index),
            chain_der.get(index + 1),
        ) else {
            return Err(AndroidError::ChainTooShort(n));
        };

        if child.issuer_name().try_cmp(parent.subject_name())? != Ordering::Equal {
            return Err(AndroidError::NameChaining { index });
        }

        let cache_key = (index > 0)
            .then_some(options.cache)
            .flatten()
            .map(|c| (c, VerificationCache::key(parent_der, child_der)));
        if let Some((cache, key)) = &cache_key
            && cache.contains(key)
        {
            cached_links += 1;
        } else {
            if !child.verify(parent_key).unwrap_or(false) {
                return Err(AndroidError::Signature { index });
            }
            if let Some((cache, key)) = cache_key {
                cache.insert(key);
            }
        }

        // Validity of intermediates (the leaf's is device-set, the root is pinned by key).
        if index > 0 {
            if child.not_before().compare(&at)? == Ordering::Greater {
                return Err(AndroidError::NotYetValid {
                    index,
                    not_before: child.not_before().to_string(),
                    at: at_secs,
                });
            }
            let tolerate = provisioning == Provisioning::Factory && !options.enforce_factory_expiry;
            if child.not_after().compare(&at)? == Ordering::Less && !tolerate {
                return Err(AndroidError::Expired {
                    index,
                    not_after: child.not_after().to_string(),
                    at: at_secs,
                });
            }
        }
    }

    let serials = certs
        .iter()
        .map(serial_hex)
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(list) = options.revocations {
        // Root side first, like path validation.
        for (index, serial) in serials.iter().enumerate().rev() {
            if let Some(entry) = list.get(serial) {
                return Err(AndroidError::Revoked {
                    index,
                    serial: serial.clone(),
                    status: entry.status.to_string(),
                    reason: entry.reason.clone(),
                });
            }
        }
    }
    let leaf_public_key_der = keys
        .first()
        .ok_or(AndroidError::ChainTooShort(n))?
        .public_key_to_der()?;

    let chain_security_level = match provisioning {
        Provisioning::Unknown => None,
        Provisioning::Remote => {
            let org = certs
                .get(1)
                .map(|c| name_entries(c.subject_name(), Nid::ORGANIZATIONNAME));
            Some(match org.as_deref() {
                Some([o]) if o == "TEE" => SecurityLevel::TrustedEnvironment,
                Some([o]) if o == "StrongBox" => SecurityLevel::StrongBox,
                _ => SecurityLevel::Software,
            })
        }
        Provisioning::Factory => {
            let sb = [certs.get(1), certs.get(n - 2)]
                .into_iter()
                .flatten()
                .any(|c| name_mentions_strongbox(c.subject_name()));
            sb.then_some(SecurityLevel::StrongBox)
        }
    };

    let security_level = key_description.security_level();
    let mut reasons = Vec::new();
    if root_kind != RootKind::GoogleHardware {
        reasons.push(
            "not rooted in a Google hardware root (chain ends at Google's software attestation root)"
                .to_owned(),
        );
    }
    if security_level == SecurityLevel::Software {
        reasons.push(format!(
            "security level is SOFTWARE (attestationSecurityLevel {}, keyMintSecurityLevel {})",
            key_description.attestation_security_level, key_description.key_mint_security_level
        ));
    } else if key_description.attestation_security_level != key_description.key_mint_security_level
    {
        reasons.push(format!(
            "attestationSecurityLevel {} differs from keyMintSecurityLevel {}",
            key_description.attestation_security_level, key_description.key_mint_security_level
        ));
    }
    let km = key_description.key_mint_security_level;
    let chain_matches = match km {
        SecurityLevel::Software => {
            matches!(chain_security_level, None | Some(SecurityLevel::Software))
        }
        SecurityLevel::TrustedEnvironment => {
            matches!(
                chain_security_level,
                None | Some(SecurityLevel::TrustedEnvironment)
            )
        }
        SecurityLevel::StrongBox => chain_security_level == Some(SecurityLevel::StrongBox),
    };
    if !chain_matches {
        let claim = chain_security_level.map_or("none".to_owned(), |l| l.to_string());
        reasons.push(format!(
            "keyMintSecurityLevel {km} does not match the attestation certificate's claim ({claim})"
        ));
    }
    let hardware_backed =
        root_kind == RootKind::GoogleHardware && security_level != SecurityLevel::Software;
    let verdict = if reasons.is_empty() {
        Verdict::Passed
    } else {
        Verdict::Failed(reasons)
    };

    Ok(VerifiedAttestation {
        key_description,
        root: root_kind,
        provisioning,
        security_level,
        chain_security_level,
        hardware_backed,
        verdict,
        leaf_public_key_der,
        serials,
        cached_links,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_are_normalised_like_java_biginteger() {
        assert_eq!(
            normalize_serial("0388266760658996860D"),
            "388266760658996860d"
        );
        assert_eq!(normalize_serial("00"), "0");
        assert_eq!(normalize_serial("-0A"), "-a");
    }

    #[test]
    fn revocation_list_parses_and_fails_closed() {
        let list = RevocationList::from_json(
            r#"{"entries": {"00AB": {"status": "REVOKED", "reason": "KEY_COMPROMISE", "expires": "2030-01-01"},
                            "cd": {"status": "SUSPENDED"}, "ef": {"status": "SOMETHING_NEW"}}}"#,
        )
        .unwrap();
        assert_eq!(list.len(), 3);
        assert_eq!(
            list.get("ab").map(|e| &e.status),
            Some(&RevocationStatus::Revoked)
        );
        assert_eq!(
            list.get("00cd").map(|e| &e.status),
            Some(&RevocationStatus::Suspended)
        );
        assert!(matches!(
            list.get("EF").map(|e| &e.status),
            Some(RevocationStatus::Other(_))
        ));
        assert!(list.get("12").is_none());
        assert!(RevocationList::from_json("{}").is_err());
        assert!(RevocationList::from_json(r#"{"entries": {"ab": {}}}"#).is_err());
        assert!(RevocationList::from_json("not json").is_err());
    }

    #[test]
    fn cache_is_bounded() {
        let cache = VerificationCache::new(2);
        for i in 0u8..5 {
            cache.insert([i; 32]);
        }
        assert_eq!(cache.len(), 2);
        assert!(cache.contains(&[4; 32]));
        assert!(!cache.contains(&[0; 32]));
        assert_eq!((cache.hits(), cache.misses()), (1, 1));
        cache.clear();
        assert!(cache.is_empty());
    }

    #[test]
    fn software_root_cannot_be_pinned() {
        let mut roots = TrustedRoots::new();
        let key = B64.decode(GOOGLE_SOFTWARE_ROOT_KEYS[0]).unwrap();
        assert!(roots.add_public_key_der(key).is_err());
        assert!(roots.is_empty());
    }
}
