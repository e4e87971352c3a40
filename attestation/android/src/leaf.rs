//! The attested key's certificate (the leaf) without OpenSSL's decoders when it is safe to do so.
//!
//! With OpenSSL 3.0, parsing a certificate costs about 0.17 ms and re-encoding its public key as
//! much again, because both go through the provider decoders and encoders; the one signature
//! check a cached chain still needs costs less than that together. So the leaf is first read with
//! the strict DER reader in a narrow **profile** that OpenSSL is known to read the same way:
//! - DER throughout, nothing after the certificate; version 3; a non-negative serial;
//! - the signature algorithm is ECDSA or PKCS#1 RSA with SHA-256/384/512, in its one DER form,
//!   and the same inside and outside `tbsCertificate`; the signature BIT STRING has no unused bits;
//! - names made of non-empty RDNs whose values are PrintableString, IA5String (ASCII) or
//!   UTF8String (valid UTF-8), with well-formed attribute OIDs;
//! - validity times in their DER form (`YYMMDDHHMMSSZ`, `YYYYMMDDHHMMSSZ`) with real dates;
//! - a canonical public key (see [`canonical_spki`]): OpenSSL decodes it and encodes it back to the
//!   same bytes;
//! - no unique identifiers; at least one extension, each with a well-formed OID, `critical` absent
//!   or `0xFF`, and an OCTET STRING value.
//!
//! Every such certificate parses in OpenSSL with a usable key, so the errors OpenSSL would report
//! (unparseable certificate, unusable key) cannot occur, and the values [`crate::verify_chain`]
//! reads from it (serial, public key DER, issuer, the signed bytes) are the same. Anything outside
//! the profile, or a check the profile cannot answer exactly (an issuer that differs byte-wise
//! from the parent's subject, a signature algorithm that does not match the parent's key type), is
//! handed to OpenSSL as before. The tests compare both ways on every captured chain and on
//! thousands of mutated leaves.

use std::cell::OnceCell;
use std::cmp::Ordering;
use std::sync::OnceLock;

use openssl::bn::BigNumContext;
use openssl::ec::{EcGroup, EcPoint};
use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{Id, PKey, PKeyRef, Public};
use openssl::sign::Verifier;
use openssl::x509::{X509, X509NameRef};

use crate::der::{Class, Reader, Tlv, parse_single};
use crate::error::AndroidError;

/// Universal tags the profile reads (besides those in [`crate::der::tag`]).
const BIT_STRING: u32 = 3;
const UTF8_STRING: u32 = 12;
const PRINTABLE_STRING: u32 = 19;
const IA5_STRING: u32 = 22;
const UTC_TIME: u32 = 23;
const GENERALIZED_TIME: u32 = 24;

/// `[0] EXPLICIT INTEGER 2` (version 3).
const VERSION_3: &[u8] = &[0xa0, 0x03, 0x02, 0x01, 0x02];

/// A signature AlgorithmIdentifier (DER) with its digest and the key type it needs.
type SignatureAlgorithm = (&'static [u8], fn() -> MessageDigest, Id);

/// Signature AlgorithmIdentifiers of the profile.
const SIGNATURE_ALGORITHMS: [SignatureAlgorithm; 6] = [
    // ecdsa-with-SHA256/384/512: parameters absent (RFC 5758).
    (
        &[
            0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02,
        ],
        MessageDigest::sha256,
        Id::EC,
    ),
    (
        &[
            0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03,
        ],
        MessageDigest::sha384,
        Id::EC,
    ),
    (
        &[
            0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04,
        ],
        MessageDigest::sha512,
        Id::EC,
    ),
    // sha256/384/512WithRSAEncryption: parameters NULL (RFC 4055).
    (
        &[
            0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b, 0x05,
            0x00,
        ],
        MessageDigest::sha256,
        Id::RSA,
    ),
    (
        &[
            0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c, 0x05,
            0x00,
        ],
        MessageDigest::sha384,
        Id::RSA,
    ),
    (
        &[
            0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d, 0x05,
            0x00,
        ],
        MessageDigest::sha512,
        Id::RSA,
    ),
];

/// Public-key AlgorithmIdentifiers of canonical keys (DER): id-ecPublicKey with a named curve, and
/// rsaEncryption with NULL parameters.
const EC_P256: &[u8] = &[
    0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48,
    0xce, 0x3d, 0x03, 0x01, 0x07,
];
const EC_P384: &[u8] = &[
    0x30, 0x10, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x05, 0x2b, 0x81, 0x04,
    0x00, 0x22,
];
const EC_P521: &[u8] = &[
    0x30, 0x10, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x05, 0x2b, 0x81, 0x04,
    0x00, 0x23,
];
const RSA_ENCRYPTION: &[u8] = &[
    0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
];

/// Discards OpenSSL's thread-local error queue (a failed check may leave entries there that would
/// otherwise show up in the next, unrelated, error).
fn clear_openssl_errors() {
    drop(ErrorStack::get());
}

/// True when the check succeeded; a failure or an error is `false` (as
/// `verify(..).unwrap_or(false)`), leaving no stale OpenSSL errors behind.
pub(crate) fn verified(result: Result<bool, ErrorStack>) -> bool {
    if matches!(result, Ok(true)) {
        true
    } else {
        clear_openssl_errors();
        false
    }
}

/// The leaf's fields read in the profile.
#[derive(Clone, Copy)]
struct Profiled<'a> {
    /// `tbsCertificate`, tag and length included: the signed bytes.
    tbs: &'a [u8],
    /// Serial INTEGER contents (non-negative, minimal).
    serial: &'a [u8],
    /// Issuer Name, tag and length included.
    issuer: &'a [u8],
    /// SubjectPublicKeyInfo, tag and length included (canonical).
    spki: &'a [u8],
    /// Digest and key type of the signature algorithm.
    digest: MessageDigest,
    key_type: Id,
    /// Signature BIT STRING contents after the unused-bits octet.
    signature: &'a [u8],
}

/// The leaf certificate of a chain being verified: read in the profile when possible, parsed by
/// OpenSSL otherwise or when a check needs it.
pub(crate) struct Leaf<'a> {
    der: &'a [u8],
    profiled: Option<Profiled<'a>>,
    cert: OnceCell<X509>,
    key: OnceCell<PKey<Public>>,
}

impl<'a> Leaf<'a> {
    /// Reads the leaf. Fails, like [`X509::from_der`], with [`AndroidError::Certificate`] (index
    /// 0) only when OpenSSL cannot parse it.
    pub(crate) fn parse(der: &'a [u8]) -> Result<Self, AndroidError> {
        let leaf = Self {
            der,
            profiled: profile(der),
            cert: OnceCell::new(),
            key: OnceCell::new(),
        };
        if leaf.profiled.is_none() {
            leaf.openssl()?;
        }
        Ok(leaf)
    }

    /// True when the leaf was read in the profile (OpenSSL was not needed to parse it).
    #[cfg(test)]
    pub(crate) fn is_profiled(&self) -> bool {
        self.profiled.is_some()
    }

    fn openssl(&self) -> Result<&X509, AndroidError> {
        if let Some(cert) = self.cert.get() {
            return Ok(cert);
        }
        let cert = X509::from_der(self.der)
            .map_err(|source| AndroidError::Certificate { index: 0, source })?;
        Ok(self.cert.get_or_init(|| cert))
    }

    /// Checks the public key is usable ([`AndroidError::UnsupportedPublicKey`], index 0, as
    /// `X509::public_key` fails).
    pub(crate) fn check_key(&self) -> Result<(), AndroidError> {
        if self.profiled.is_some() || self.key.get().is_some() {
            return Ok(());
        }
        let key = self
            .openssl()?
            .public_key()
            .map_err(|source| AndroidError::UnsupportedPublicKey { index: 0, source })?;
        let _ = self.key.set(key);
        Ok(())
    }

    /// The attested key's SubjectPublicKeyInfo as OpenSSL encodes it (`public_key_to_der`).
    pub(crate) fn public_key_der(&self) -> Result<Vec<u8>, AndroidError> {
        if let Some(p) = &self.profiled {
            return Ok(p.spki.to_vec());
        }
        self.check_key()?;
        match self.key.get() {
            Some(key) => Ok(key.public_key_to_der()?),
            None => Ok(self.openssl()?.public_key()?.public_key_to_der()?),
        }
    }

    /// The serial number in lower-case hex without leading zeros (as in the revocation list).
    pub(crate) fn serial_hex(&self) -> Result<String, AndroidError> {
        if let Some(p) = &self.profiled {
            return Ok(crate::chain::normalize_serial(&hex::encode(p.serial)));
        }
        crate::chain::serial_hex(self.openssl()?)
    }

    /// Whether the leaf's issuer name matches `parent_subject` (`X509_NAME_cmp`).
    /// `parent_subject_der` is that name's DER, when known: equal bytes are equal names.
    pub(crate) fn issued_by(
        &self,
        parent_subject: &X509NameRef,
        parent_subject_der: Option<&[u8]>,
    ) -> Result<bool, AndroidError> {
        if let (Some(p), Some(parent)) = (&self.profiled, parent_subject_der)
            && p.issuer == parent
        {
            return Ok(true);
        }
        Ok(self.openssl()?.issuer_name().try_cmp(parent_subject)? == Ordering::Equal)
    }

    /// Whether the leaf's signature verifies with `parent_key` (as `X509_verify`).
    pub(crate) fn signed_by(&self, parent_key: &PKeyRef<Public>) -> Result<bool, AndroidError> {
        if let Some(p) = &self.profiled
            && parent_key.id() == p.key_type
        {
            // What X509_verify does once it has checked that the two AlgorithmIdentifiers are
            // equal and the BIT STRING has no unused bits: a digest-verify of the encoded
            // tbsCertificate (OpenSSL re-emits the bytes it parsed) with the algorithm's digest.
            let result = Verifier::new(p.digest, parent_key)
                .and_then(|mut v| v.verify_oneshot(p.signature, p.tbs));
            return Ok(verified(result));
        }
        Ok(verified(self.openssl()?.verify(parent_key)))
    }
}

/// Reads `der` in the profile (module documentation), or `None`.
fn profile(der: &[u8]) -> Option<Profiled<'_>> {
    let mut outer = Reader::new(der);
    let cert = sequence(&mut outer)?;
    outer.finish().ok()?;
    let mut cert = cert.contents().ok()?;
    let tbs = sequence(&mut cert)?;
    let outer_algorithm = sequence(&mut cert)?;
    let signature = cert.read().ok()?;
    cert.finish().ok()?;
    let signature = bit_string(&signature)?;

    let mut t = tbs.contents().ok()?;
    if t.read().ok()?.raw != VERSION_3 {
        return None;
    }
    let serial = t.read().ok()?;
    if !is_primitive(&serial, crate::der::tag::INTEGER) || !non_negative_minimal(serial.value) {
        return None;
    }
    let algorithm = sequence(&mut t)?;
    if algorithm.raw != outer_algorithm.raw {
        return None;
    }
    let (_, digest, key_type) = SIGNATURE_ALGORITHMS
        .iter()
        .find(|(der, _, _)| *der == algorithm.raw)?;
    let issuer = sequence(&mut t)?;
    if !name_in_profile(&issuer) {
        return None;
    }
    let mut validity = sequence(&mut t)?.contents().ok()?;
    for _ in 0..2 {
        if !time_in_profile(&validity.read().ok()?) {
            return None;
        }
    }
    validity.finish().ok()?;
    let subject = sequence(&mut t)?;
    if !name_in_profile(&subject) {
        return None;
    }
    let spki = sequence(&mut t)?;
    if !canonical_spki(spki.raw) {
        return None;
    }
    let extensions = t.read().ok()?;
    if extensions.tag.class != Class::Context
        || !extensions.tag.constructed
        || extensions.tag.number != 3
        || !extensions_in_profile(&extensions)
    {
        return None;
    }
    t.finish().ok()?;
    Some(Profiled {
        tbs: tbs.raw,
        serial: serial.value,
        issuer: issuer.raw,
        spki: spki.raw,
        digest: digest(),
        key_type: *key_type,
        signature,
    })
}

fn is_primitive(tlv: &Tlv<'_>, number: u32) -> bool {
    tlv.tag.class == Class::Universal && !tlv.tag.constructed && tlv.tag.number == number
}

/// The next element, which must be a (constructed) SEQUENCE.
fn sequence<'a>(r: &mut Reader<'a>) -> Option<Tlv<'a>> {
    let tlv = r.read().ok()?;
    tlv.expect_universal(crate::der::tag::SEQUENCE, "SEQUENCE")
        .ok()?;
    Some(tlv)
}

/// A BIT STRING without unused bits: its bytes.
fn bit_string<'a>(tlv: &Tlv<'a>) -> Option<&'a [u8]> {
    if !is_primitive(tlv, BIT_STRING) {
        return None;
    }
    match tlv.value.split_first() {
        Some((0, bits)) => Some(bits),
        _ => None,
    }
}

/// INTEGER contents that are minimal and non-negative.
fn non_negative_minimal(v: &[u8]) -> bool {
    match v {
        [] => false,
        [b, ..] if b & 0x80 != 0 => false,
        [0, b, ..] => b & 0x80 != 0,
        _ => true,
    }
}

/// An OBJECT IDENTIFIER OpenSSL accepts: contents non-empty, no subidentifier starting with
/// `0x80`, the last octet ending a subidentifier.
fn oid_in_profile(tlv: &Tlv<'_>) -> bool {
    let v = tlv.value;
    is_primitive(tlv, crate::der::tag::OID)
        && !v.is_empty()
        && v.len() <= 64
        && v.last().is_some_and(|b| b & 0x80 == 0)
        && v.iter()
            .enumerate()
            .all(|(i, b)| *b != 0x80 || (i > 0 && v.get(i - 1).is_some_and(|p| p & 0x80 != 0)))
}

fn is_printable_string_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b" '()+,-./:=?".contains(&b)
}

/// A Name of non-empty RDNs of `type, value` pairs with PrintableString, IA5String or UTF8String
/// values.
fn name_in_profile(name: &Tlv<'_>) -> bool {
    let Ok(mut rdns) = name.contents() else {
        return false;
    };
    if rdns.is_empty() {
        return false;
    }
    while !rdns.is_empty() {
        let Ok(mut rdn) = rdns.read_set() else {
            return false;
        };
        if rdn.is_empty() {
            return false;
        }
        while !rdn.is_empty() {
            let Ok(mut atv) = rdn.read_sequence() else {
                return false;
            };
            let (Ok(oid), Ok(value)) = (atv.read(), atv.read()) else {
                return false;
            };
            if atv.finish().is_err() || !oid_in_profile(&oid) || value.value.is_empty() {
                return false;
            }
            let ok = if is_primitive(&value, PRINTABLE_STRING) {
                value.value.iter().all(|b| is_printable_string_char(*b))
            } else if is_primitive(&value, IA5_STRING) {
                value.value.is_ascii()
            } else if is_primitive(&value, UTF8_STRING) {
                std::str::from_utf8(value.value).is_ok()
            } else {
                false
            };
            if !ok {
                return false;
            }
        }
    }
    true
}

fn digits(v: &[u8]) -> Option<u32> {
    v.iter().try_fold(0u32, |acc, b| {
        b.is_ascii_digit().then(|| acc * 10 + u32::from(b - b'0'))
    })
}

/// UTCTime `YYMMDDHHMMSSZ` or GeneralizedTime `YYYYMMDDHHMMSSZ` naming a real instant.
fn time_in_profile(tlv: &Tlv<'_>) -> bool {
    let (year, rest) = if is_primitive(tlv, UTC_TIME) && tlv.value.len() == 13 {
        let Some(yy) = tlv.value.get(..2).and_then(digits) else {
            return false;
        };
        (if yy < 50 { 2000 + yy } else { 1900 + yy }, &tlv.value[2..])
    } else if is_primitive(tlv, GENERALIZED_TIME) && tlv.value.len() == 15 {
        let Some(yyyy) = tlv.value.get(..4).and_then(digits) else {
            return false;
        };
        (yyyy, &tlv.value[4..])
    } else {
        return false;
    };
    let field = |i: usize| rest.get(i..i + 2).and_then(digits);
    let (Some(month), Some(day), Some(hour), Some(minute), Some(second)) =
        (field(0), field(2), field(4), field(6), field(8))
    else {
        return false;
    };
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    rest.get(10) == Some(&b'Z')
        && (1..=days).contains(&day)
        && hour < 24
        && minute < 60
        && second < 60
}

/// `[3] { SEQUENCE OF Extension }`, non-empty, each `{ OID, [critical 0xFF], OCTET STRING }`.
fn extensions_in_profile(wrapper: &Tlv<'_>) -> bool {
    let Ok(mut wrapper) = wrapper.contents() else {
        return false;
    };
    let Ok(mut list) = wrapper.read_sequence() else {
        return false;
    };
    if wrapper.finish().is_err() || list.is_empty() {
        return false;
    }
    while !list.is_empty() {
        let Ok(mut ext) = list.read_sequence() else {
            return false;
        };
        let Ok(oid) = ext.read() else {
            return false;
        };
        let Ok(mut next) = ext.read() else {
            return false;
        };
        if is_primitive(&next, crate::der::tag::BOOLEAN) {
            if next.value != [0xff] {
                return false;
            }
            let Ok(value) = ext.read() else {
                return false;
            };
            next = value;
        }
        if !oid_in_profile(&oid)
            || !is_primitive(&next, crate::der::tag::OCTET_STRING)
            || ext.finish().is_err()
        {
            return false;
        }
    }
    true
}

fn group(nid: Nid) -> Option<&'static EcGroup> {
    static P256: OnceLock<Option<EcGroup>> = OnceLock::new();
    static P384: OnceLock<Option<EcGroup>> = OnceLock::new();
    static P521: OnceLock<Option<EcGroup>> = OnceLock::new();
    let cell = match nid {
        Nid::X9_62_PRIME256V1 => &P256,
        Nid::SECP384R1 => &P384,
        Nid::SECP521R1 => &P521,
        _ => return None,
    };
    cell.get_or_init(|| EcGroup::from_curve_name(nid).ok())
        .as_ref()
}

/// An uncompressed point of the curve (what OpenSSL's decoder checks: `EC_POINT_oct2point`).
fn ec_point_in_profile(nid: Nid, field_len: usize, point: &[u8]) -> bool {
    if point.len() != 1 + 2 * field_len || point.first() != Some(&0x04) {
        return false;
    }
    let Some(group) = group(nid) else {
        return false;
    };
    let ok = BigNumContext::new()
        .and_then(|mut ctx| EcPoint::from_bytes(group, point, &mut ctx))
        .is_ok();
    if !ok {
        clear_openssl_errors();
    }
    ok
}

/// `RSAPublicKey { n, e }` with a 1024–8192-bit modulus and a small odd exponent ≥ 3, both
/// minimal non-negative INTEGERs.
fn rsa_key_in_profile(bits: &[u8]) -> bool {
    let Ok(key) = parse_single(bits) else {
        return false;
    };
    let Ok(mut r) = key.contents() else {
        return false;
    };
    if key
        .expect_universal(crate::der::tag::SEQUENCE, "SEQUENCE")
        .is_err()
    {
        return false;
    }
    let (Ok(n), Ok(e)) = (r.read(), r.read()) else {
        return false;
    };
    if r.finish().is_err()
        || !is_primitive(&n, crate::der::tag::INTEGER)
        || !is_primitive(&e, crate::der::tag::INTEGER)
        || !non_negative_minimal(n.value)
        || !non_negative_minimal(e.value)
    {
        return false;
    }
    let modulus = match n.value {
        [0, rest @ ..] => rest,
        all => all,
    };
    let modulus_bits = modulus
        .first()
        .map_or(0, |b| modulus.len() * 8 - b.leading_zeros() as usize);
    let exponent_odd_ge_3 = e.value.len() <= 8
        && e.value.last().is_some_and(|b| b & 1 == 1)
        && (e.value.len() > 1 || e.value.first().is_some_and(|b| *b >= 3));
    (1024..=8192).contains(&modulus_bits) && exponent_odd_ge_3
}

/// True when `spki_der` is a SubjectPublicKeyInfo that OpenSSL decodes into a usable key and
/// encodes back (`public_key_to_der`) to exactly these bytes: an uncompressed point on P-256,
/// P-384 or P-521 with the named curve, or an RSA key with NULL parameters (see
/// [`rsa_key_in_profile`]).
pub(crate) fn canonical_spki(spki_der: &[u8]) -> bool {
    let Ok(spki) = parse_single(spki_der) else {
        return false;
    };
    if spki
        .expect_universal(crate::der::tag::SEQUENCE, "SEQUENCE")
        .is_err()
    {
        return false;
    }
    let Ok(mut r) = spki.contents() else {
        return false;
    };
    let (Ok(algorithm), Ok(key)) = (r.read(), r.read()) else {
        return false;
    };
    if r.finish().is_err() {
        return false;
    }
    let Some(bits) = bit_string(&key) else {
        return false;
    };
    match algorithm.raw {
        EC_P256 => ec_point_in_profile(Nid::X9_62_PRIME256V1, 32, bits),
        EC_P384 => ec_point_in_profile(Nid::SECP384R1, 48, bits),
        EC_P521 => ec_point_in_profile(Nid::SECP521R1, 66, bits),
        RSA_ENCRYPTION => rsa_key_in_profile(bits),
        _ => false,
    }
}

/// The SubjectPublicKeyInfo of a DER certificate (tag and length included), read strictly.
pub(crate) fn spki_of(cert_der: &[u8]) -> Option<&[u8]> {
    let mut outer = Reader::new(cert_der);
    let mut cert = sequence(&mut outer)?.contents().ok()?;
    outer.finish().ok()?;
    let mut tbs = sequence(&mut cert)?.contents().ok()?;
    if tbs
        .peek_tag()
        .is_some_and(|t| t.class == Class::Context && t.number == 0)
    {
        tbs.read().ok()?;
    }
    // serialNumber, signature, issuer, validity, subject.
    for _ in 0..5 {
        tbs.read().ok()?;
    }
    Some(sequence(&mut tbs)?.raw)
}

/// The public key DER `public_key_to_der` gives for a certificate's `key`, without re-encoding
/// when the certificate's own SubjectPublicKeyInfo is canonical (the same bytes).
pub(crate) fn public_key_der(
    cert_der: &[u8],
    key: &PKeyRef<Public>,
) -> Result<Vec<u8>, ErrorStack> {
    match spki_of(cert_der) {
        Some(spki) if canonical_spki(spki) => Ok(spki.to_vec()),
        _ => key.public_key_to_der(),
    }
}

#[cfg(test)]
mod tests {
    // Test code: failing loudly on broken testdata is the point.
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::path::{Path, PathBuf};

    use super::*;
    use crate::chain::serial_hex;

    /// Every chain of the shared testdata and of the crate's fixtures (the invalid one included).
    fn chains() -> Vec<(String, Vec<Vec<u8>>)> {
        fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
            for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    walk(&path, out);
                } else if path.extension().is_some_and(|e| e == "pem") {
                    out.push(path);
                }
            }
        }
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut paths = Vec::new();
        walk(
            &manifest.join("../../../shared/testdata/android-attestation"),
            &mut paths,
        );
        walk(&manifest.join("tests/fixtures/keyattestation"), &mut paths);
        paths.sort();
        let chains: Vec<_> = paths
            .iter()
            .map(|p| {
                let text = std::fs::read_to_string(p).unwrap();
                (
                    p.display().to_string(),
                    crate::parse_pem_chain(&text).unwrap(),
                )
            })
            .filter(|(_, chain)| chain.len() >= 2)
            .collect();
        assert!(
            chains.len() >= 21,
            "testdata missing: {} chains",
            chains.len()
        );
        chains
    }

    /// Checks that reading `leaf_der` in the profile gives what OpenSSL gives; returns whether it
    /// was read in the profile.
    fn agrees_with_openssl(name: &str, leaf_der: &[u8], parent: &X509) -> bool {
        let ours = Leaf::parse(leaf_der);
        let theirs = X509::from_der(leaf_der);
        let (ours, theirs) = match (ours, theirs) {
            (Ok(ours), Ok(theirs)) => (ours, theirs),
            (Err(AndroidError::Certificate { index: 0, .. }), Err(_)) => return false,
            (ours, theirs) => panic!("{name}: parse differs: {:?} vs {theirs:?}", ours.err()),
        };
        let parent_key = parent.public_key().unwrap();
        let parent_subject_der = parent.subject_name().to_der().unwrap();
        let key = theirs.public_key();
        assert_eq!(ours.check_key().is_ok(), key.is_ok(), "{name}");
        if let Ok(key) = &key {
            assert_eq!(
                ours.public_key_der().unwrap(),
                key.public_key_to_der().unwrap(),
                "{name}"
            );
        }
        assert_eq!(
            ours.serial_hex().unwrap(),
            serial_hex(&theirs).unwrap(),
            "{name}"
        );
        assert_eq!(
            ours.issued_by(parent.subject_name(), Some(&parent_subject_der))
                .unwrap(),
            theirs.issuer_name().try_cmp(parent.subject_name()).unwrap() == Ordering::Equal,
            "{name}"
        );
        assert_eq!(
            ours.signed_by(&parent_key).unwrap(),
            verified(theirs.verify(&parent_key)),
            "{name}"
        );
        if ours.is_profiled() {
            assert!(key.is_ok(), "{name}: profiled leaf with an unusable key");
            assert_eq!(theirs.to_der().unwrap(), leaf_der, "{name}");
        }
        ours.is_profiled()
    }

    #[test]
    fn every_captured_leaf_is_read_in_the_profile_like_openssl() {
        for (name, chain) in chains() {
            let parent = X509::from_der(&chain[1]).unwrap();
            let profiled = agrees_with_openssl(&name, &chain[0], &parent);
            // ML-DSA keys (attestation 500) are outside the profile.
            const ML_DSA_ARC: [u8; 8] = [0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x03];
            let ml_dsa = spki_of(&chain[0])
                .unwrap()
                .windows(ML_DSA_ARC.len())
                .any(|w| w == ML_DSA_ARC);
            assert!(profiled || ml_dsa, "{name}: leaf not in the profile");
            // Intermediates and roots: the SubjectPublicKeyInfo shortcut gives OpenSSL's DER.
            for der in &chain[1..] {
                let cert = X509::from_der(der).unwrap();
                if let Ok(key) = cert.public_key() {
                    assert_eq!(
                        public_key_der(der, &key).unwrap(),
                        key.public_key_to_der().unwrap(),
                        "{name}"
                    );
                }
            }
        }
    }

    #[test]
    fn mutated_leaves_read_in_the_profile_agree_with_openssl() {
        const INTERESTING: &[u8] = &[
            0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x0c, 0x13, 0x14, 0x16, 0x17, 0x18, 0x1e,
            0x30, 0x31, 0x7f, 0x80, 0x81, 0xa0, 0xa3, 0xff, b'0', b'1', b'2', b'9', b'Z', b' ',
            b'*',
        ];
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move |bound: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            usize::try_from(state % bound as u64).unwrap()
        };
        let (mut profiled, mut total) = (0, 0);
        for (name, chain) in chains() {
            let parent = X509::from_der(&chain[1]).unwrap();
            // A parent of the other key type too (the signature goes through OpenSSL then).
            for round in 0..250 {
                let mut leaf = chain[0].clone();
                for _ in 0..1 + round % 2 {
                    let at = next(leaf.len());
                    leaf[at] = match next(3) {
                        0 => leaf[at] ^ (1 << next(8)),
                        1 => INTERESTING[next(INTERESTING.len())],
                        _ => u8::try_from(next(256)).unwrap(),
                    };
                }
                total += 1;
                if agrees_with_openssl(&format!("{name} mutation {round}"), &leaf, &parent) {
                    profiled += 1;
                }
            }
        }
        // Most single-byte changes stay in the profile (inside the KeyDescription, the
        // signature, names): the comparison exercised the profile, not only the fallback.
        eprintln!("{profiled} of {total} mutated leaves in the profile");
        assert!(profiled * 3 > total, "{profiled} of {total} in the profile");
    }

    #[test]
    fn a_parent_key_of_another_type_goes_through_openssl() {
        let chains = chains();
        let find = |name: &str| {
            chains
                .iter()
                .find(|(n, _)| n.contains(name))
                .map(|(_, c)| c.clone())
                .unwrap()
        };
        let ec_signed = find("caiman/sdk36/TEE_EC_RKP");
        let rsa_parent = X509::from_der(&find("blueline/sdk28/TEE_RSA_NONE")[1]).unwrap();
        let rsa_key = rsa_parent.public_key().unwrap();
        assert_eq!(rsa_key.id(), Id::RSA);
        assert!(agrees_with_openssl(
            "RSA parent",
            &ec_signed[0],
            &rsa_parent
        ));
        assert!(
            !Leaf::parse(&ec_signed[0])
                .unwrap()
                .signed_by(&rsa_key)
                .unwrap()
        );
    }

    #[test]
    fn oids_and_strings_follow_openssl() {
        let oid = |v: &'static [u8]| Tlv {
            tag: crate::der::TagDesc {
                class: Class::Universal,
                constructed: false,
                number: 6,
            },
            value: v,
            raw: v,
            offset: 0,
            value_offset: 0,
        };
        assert!(oid_in_profile(&oid(&[0x55, 0x04, 0x03])));
        assert!(oid_in_profile(&oid(&[0x2b, 0x81, 0x04, 0x00, 0x22])));
        assert!(!oid_in_profile(&oid(&[])));
        assert!(!oid_in_profile(&oid(&[0x80, 0x01])));
        assert!(!oid_in_profile(&oid(&[0x2b, 0x80, 0x01])));
        assert!(!oid_in_profile(&oid(&[0x2b, 0x81])));
        assert!(non_negative_minimal(&[0]));
        assert!(non_negative_minimal(&[0, 0x80]));
        assert!(!non_negative_minimal(&[0, 0x7f]));
        assert!(!non_negative_minimal(&[0x80]));
        assert!(!non_negative_minimal(&[]));
    }

    #[test]
    fn times_must_be_real_dates() {
        let t = |number: u32, v: &'static [u8]| Tlv {
            tag: crate::der::TagDesc {
                class: Class::Universal,
                constructed: false,
                number,
            },
            value: v,
            raw: v,
            offset: 0,
            value_offset: 0,
        };
        assert!(time_in_profile(&t(UTC_TIME, b"700101000000Z")));
        assert!(time_in_profile(&t(UTC_TIME, b"240229235959Z")));
        assert!(!time_in_profile(&t(UTC_TIME, b"230229000000Z")));
        assert!(!time_in_profile(&t(UTC_TIME, b"701301000000Z")));
        assert!(!time_in_profile(&t(UTC_TIME, b"700101240000Z")));
        assert!(!time_in_profile(&t(UTC_TIME, b"7001010000000")));
        assert!(!time_in_profile(&t(UTC_TIME, b"7001010000Z")));
        assert!(time_in_profile(&t(GENERALIZED_TIME, b"99991231235959Z")));
        assert!(time_in_profile(&t(GENERALIZED_TIME, b"20000229000000Z")));
        assert!(!time_in_profile(&t(GENERALIZED_TIME, b"21000229000000Z")));
        assert!(!time_in_profile(&t(GENERALIZED_TIME, b"9999123123595.Z")));
    }
}
