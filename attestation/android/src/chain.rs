//! Chain validation: from the attested key's certificate up to a pinned Google root, "as of" a
//! given time, against Google's revocation status list, with an optional [`VerificationCache`]
//! of the verified certificates above the leaf.
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
//! Speed: a chain whose certificates above the leaf are in the cache skips every check whose
//! outcome depends on those bytes alone (the entry records that they passed) and runs the rest in
//! the same order: the leaf's parsing, key, extension and KeyDescription, the root pin against
//! this call's roots, the intermediates' validity at this call's time, the leaf's name and
//! signature, revocation. The leaf itself is read without OpenSSL's (slow, in OpenSSL 3)
//! certificate and key decoders when it lies in a profile OpenSSL reads identically (see
//! `leaf.rs`). Either way, results and errors are those of the uncached path.
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
use std::collections::HashMap;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use openssl::asn1::Asn1Time;
use openssl::nid::Nid;
use openssl::pkey::{PKeyRef, Public};
use openssl::x509::{X509, X509NameRef};

pub use crate::cache::VerificationCache;
use crate::cache::{UpperChain, seconds_since_epoch};
use crate::error::AndroidError;
use crate::key_description::{KeyDescription, SecurityLevel};
use crate::leaf::{Leaf, verified};
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
pub(crate) fn normalize_serial(hex: &str) -> String {
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

/// What [`verify_chain`] checks against.
#[derive(Debug, Clone, Copy)]
pub struct VerifyOptions<'a> {
    /// Pinned Google hardware roots.
    pub roots: &'a TrustedRoots,
    /// The instant the chain must be valid at (tests use the key's creationDateTime).
    pub at: SystemTime,
    /// Revocation status list; `None` skips the revocation check.
    pub revocations: Option<&'a RevocationList>,
    /// Cache of verified certificates above the leaf (upper chains and intermediate links).
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

    /// Uses `cache` for the certificates above the leaf.
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

pub(crate) fn serial_hex(cert: &X509) -> Result<String, AndroidError> {
    let hex = cert.serial_number().to_bn()?.to_hex_str()?;
    Ok(normalize_serial(&hex))
}

/// Verifies an attestation chain (DER certificates, leaf first, root last) and parses the leaf's
/// KeyDescription. See the [module documentation](self) for the rules.
///
/// `Ok` means the chain is authentic as of `options.at`; whether it is hardware-backed is in
/// [`VerifiedAttestation::hardware_backed`] and [`VerifiedAttestation::verdict`].
///
/// With a [`VerificationCache`] whose entries cover `chain_der[1..]`, only the leaf is parsed and
/// its one signature verified; the result, and the error for a chain that fails, are the same as
/// without the cache.
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
    let (Some(leaf_der), Some(upper_der)) = (chain_der.first(), chain_der.get(1..)) else {
        return Err(AndroidError::ChainTooShort(n));
    };
    match options.cache {
        Some(cache) => {
            let key = VerificationCache::upper_key(upper_der);
            match cache.upper_chain(&key) {
                Some(upper) => verify_under_cached_upper_chain(leaf_der, &upper, options),
                None => verify_full(chain_der, options, Some((cache, key))),
            }
        }
        None => verify_full(chain_der, options, None),
    }
}

/// The root's kind under `options`, or why it is not accepted.
fn root_kind_of(
    options: &VerifyOptions<'_>,
    root_spki: &[u8],
    is_software: bool,
) -> Result<RootKind, AndroidError> {
    if options.roots.contains(root_spki) {
        Ok(RootKind::GoogleHardware)
    } else if is_software {
        if options.allow_software_root {
            Ok(RootKind::GoogleSoftware)
        } else {
            Err(AndroidError::SoftwareRoot)
        }
    } else {
        Err(AndroidError::UntrustedRoot)
    }
}

/// The leaf's KeyDescription; the leaf must carry the extension.
fn leaf_key_description(leaf_der: &[u8]) -> Result<Option<&[u8]>, AndroidError> {
    key_description_der(leaf_der).map_err(|source| AndroidError::Extension { index: 0, source })
}

/// The security level the attestation certificate's subject claims.
fn chain_security_level_of(
    provisioning: Provisioning,
    attestation_cert: Option<&X509>,
    below_root: Option<&X509>,
) -> Option<SecurityLevel> {
    match provisioning {
        Provisioning::Unknown => None,
        Provisioning::Remote => {
            let org =
                attestation_cert.map(|c| name_entries(c.subject_name(), Nid::ORGANIZATIONNAME));
            Some(match org.as_deref() {
                Some([o]) if o == "TEE" => SecurityLevel::TrustedEnvironment,
                Some([o]) if o == "StrongBox" => SecurityLevel::StrongBox,
                _ => SecurityLevel::Software,
            })
        }
        Provisioning::Factory => {
            let sb = [attestation_cert, below_root]
                .into_iter()
                .flatten()
                .any(|c| name_mentions_strongbox(c.subject_name()));
            sb.then_some(SecurityLevel::StrongBox)
        }
    }
}

/// The leaf's link to its issuer: name, then signature.
fn check_leaf_link(
    leaf: &Leaf<'_>,
    parent_subject: &X509NameRef,
    parent_subject_der: Option<&[u8]>,
    parent_key: &PKeyRef<Public>,
) -> Result<(), AndroidError> {
    if !leaf.issued_by(parent_subject, parent_subject_der)? {
        return Err(AndroidError::NameChaining { index: 0 });
    }
    if !leaf.signed_by(parent_key)? {
        return Err(AndroidError::Signature { index: 0 });
    }
    Ok(())
}

/// Fails on the first serial (root side first, like path validation) on the list.
fn check_revocation(serials: &[String], options: &VerifyOptions<'_>) -> Result<(), AndroidError> {
    if let Some(list) = options.revocations {
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
    Ok(())
}

/// Every check, for a chain whose upper part is not cached; caches the upper part once it has
/// verified when `cache` is given.
fn verify_full(
    chain_der: &[Vec<u8>],
    options: &VerifyOptions<'_>,
    cache: Option<(&VerificationCache, [u8; 32])>,
) -> Result<VerifiedAttestation, AndroidError> {
    let n = chain_der.len();
    let Some(leaf_der) = chain_der.first() else {
        return Err(AndroidError::ChainTooShort(n));
    };
    let leaf = Leaf::parse(leaf_der)?;
    // `upper[i - 1]` is certificate `i`.
    let upper = chain_der
        .iter()
        .enumerate()
        .skip(1)
        .map(|(index, der)| {
            X509::from_der(der).map_err(|source| AndroidError::Certificate { index, source })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let cert = |index: usize| index.checked_sub(1).and_then(|i| upper.get(i));
    let Some(below_root) = cert(n - 2) else {
        return Err(AndroidError::ChainTooShort(n));
    };
    leaf.check_key()?;
    let keys = upper
        .iter()
        .enumerate()
        .map(|(i, c)| {
            c.public_key()
                .map_err(|source| AndroidError::UnsupportedPublicKey {
                    index: i + 1,
                    source,
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let key = |index: usize| index.checked_sub(1).and_then(|i| keys.get(i));

    // Root: pinned by public key.
    let (Some(root_key), Some(root_der)) = (keys.last(), chain_der.last()) else {
        return Err(AndroidError::ChainTooShort(n));
    };
    let root_spki = crate::leaf::public_key_der(root_der, root_key)?;
    let root_is_software = is_software_root_key(&root_spki);
    let root_kind = root_kind_of(options, &root_spki, root_is_software)?;

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
    let Some(ext) = leaf_key_description(leaf_der)? else {
        return Err(AndroidError::MissingExtension);
    };
    for (index, der) in chain_der.iter().enumerate().skip(1) {
        let ext =
            key_description_der(der).map_err(|source| AndroidError::Extension { index, source })?;
        if ext.is_some() {
            return Err(AndroidError::ExtensionOutsideLeaf { index });
        }
    }
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
    for index in (1..n - 1).rev() {
        let (Some(child), Some(parent), Some(parent_key), Some(child_der), Some(parent_der)) = (
            cert(index),
            cert(index + 1),
            key(index + 1),
            chain_der.get(index),
            chain_der.get(index + 1),
        ) else {
            return Err(AndroidError::ChainTooShort(n));
        };

        if child.issuer_name().try_cmp(parent.subject_name())? != Ordering::Equal {
            return Err(AndroidError::NameChaining { index });
        }

        let cache_key = cache.map(|(c, _)| (c, VerificationCache::key(parent_der, child_der)));
        if let Some((cache, key)) = &cache_key
            && cache.contains(key)
        {
            cached_links += 1;
        } else {
            if !verified(child.verify(parent_key)) {
                return Err(AndroidError::Signature { index });
            }
            if let Some((cache, key)) = cache_key {
                cache.insert(key);
            }
        }

        // Validity of intermediates (the leaf's is device-set, the root is pinned by key).
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

    let (Some(parent), Some(parent_key)) = (cert(1), key(1)) else {
        return Err(AndroidError::ChainTooShort(n));
    };
    let chain_security_level = chain_security_level_of(provisioning, Some(parent), cert(n - 2));
    // Everything above the leaf has verified: later chains under it only check their leaf.
    if let Some((cache, upper_key)) = cache
        && let Some(entry) = UpperChain::new(
            &upper,
            parent_key,
            &root_spki,
            root_is_software,
            provisioning,
            chain_security_level,
        )
    {
        cache.insert_upper_chain(upper_key, entry);
    }
    let parent_subject_der = parent.subject_name().to_der().ok();
    check_leaf_link(
        &leaf,
        parent.subject_name(),
        parent_subject_der.as_deref(),
        parent_key,
    )?;

    let mut serials = Vec::with_capacity(n);
    serials.push(leaf.serial_hex()?);
    for c in &upper {
        serials.push(serial_hex(c)?);
    }
    check_revocation(&serials, options)?;
    let leaf_public_key_der = leaf.public_key_der()?;

    Ok(finish(
        key_description,
        root_kind,
        provisioning,
        chain_security_level,
        leaf_public_key_der,
        serials,
        cached_links,
    ))
}

/// The checks for a chain whose upper part (`chain[1..]`) is a cached, verified upper chain, in
/// the order [`verify_full`] runs them, skipping those whose outcome the entry records (they
/// passed); the root pin, validity at `options.at` and revocation are checked as in
/// [`verify_full`].
fn verify_under_cached_upper_chain(
    leaf_der: &[u8],
    upper: &UpperChain,
    options: &VerifyOptions<'_>,
) -> Result<VerifiedAttestation, AndroidError> {
    let n = upper.chain_len;
    let leaf = Leaf::parse(leaf_der)?;
    leaf.check_key()?;
    let root_kind = root_kind_of(options, &upper.root_spki, upper.root_is_software)?;
    let Some(ext) = leaf_key_description(leaf_der)? else {
        return Err(AndroidError::MissingExtension);
    };
    let key_description = KeyDescription::parse(ext)?;

    // Validity of the intermediates as of `at`, compared as `Asn1TimeRef::compare` does: on the
    // same day/second differences, failing where it fails (both on `at`: the certificates' times
    // compared when the entry was made).
    let at_secs = unix_seconds(options.at);
    let at = seconds_since_epoch(&*Asn1Time::from_unix(at_secs)?)?;
    let tolerate = upper.provisioning == Provisioning::Factory && !options.enforce_factory_expiry;
    for index in (1..n - 1).rev() {
        let Some(validity) = upper.validity.get(index - 1) else {
            return Err(AndroidError::ChainTooShort(n));
        };
        if validity.not_before > at {
            return Err(AndroidError::NotYetValid {
                index,
                not_before: validity.not_before_text.clone(),
                at: at_secs,
            });
        }
        if validity.not_after < at && !tolerate {
            return Err(AndroidError::Expired {
                index,
                not_after: validity.not_after_text.clone(),
                at: at_secs,
            });
        }
    }
    check_leaf_link(
        &leaf,
        &upper.parent_subject,
        Some(&upper.parent_subject_der),
        &upper.parent_key,
    )?;

    let mut serials = Vec::with_capacity(n);
    serials.push(leaf.serial_hex()?);
    serials.extend(upper.serials.iter().cloned());
    check_revocation(&serials, options)?;
    let leaf_public_key_der = leaf.public_key_der()?;

    Ok(finish(
        key_description,
        root_kind,
        upper.provisioning,
        upper.chain_security_level,
        leaf_public_key_der,
        serials,
        n - 2,
    ))
}

/// The result of a verified chain: security levels and the verdict.
fn finish(
    key_description: KeyDescription,
    root_kind: RootKind,
    provisioning: Provisioning,
    chain_security_level: Option<SecurityLevel>,
    leaf_public_key_der: Vec<u8>,
    serials: Vec<String>,
    cached_links: usize,
) -> VerifiedAttestation {
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

    VerifiedAttestation {
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
    }
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
