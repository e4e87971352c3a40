//! Minimal X.509 walking with the strict DER reader: the extensions of a certificate, the key
//! attestation extension, and basicConstraints.
//!
//! Signatures, names, keys and times are handled by OpenSSL in [`crate::chain`]; this module only
//! finds extensions, which the `openssl` crate does not expose by OID. It reads the same bytes
//! OpenSSL verifies the signature over (the first element of the certificate, `tbsCertificate`).

use crate::der::{self, Class, DerError, Reader, tag};
use crate::key_description::{KEY_DESCRIPTION_OID_DER, KeyDescription, KeyDescriptionError};

/// DER contents of OID 2.5.29.19 (basicConstraints).
const BASIC_CONSTRAINTS_OID_DER: &[u8] = &[0x55, 0x1d, 0x13];

/// Why the key attestation extension could not be read from a certificate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExtensionError {
    /// The certificate's DER could not be walked to its extensions.
    #[error("certificate structure: {0}")]
    Certificate(#[source] DerError),
    /// The same extension appears twice.
    #[error("extension {0} appears more than once")]
    Duplicate(&'static str),
    /// The key attestation extension is marked critical (the schema makes it non-critical; the
    /// reference verifier ignores a critical one).
    #[error("the key attestation extension must not be critical")]
    Critical,
    /// The extension's contents are not a valid KeyDescription.
    #[error("key description: {0}")]
    KeyDescription(#[source] KeyDescriptionError),
}

/// One certificate extension.
#[derive(Debug, Clone, Copy)]
pub struct Extension<'a> {
    /// OID contents octets.
    pub oid: &'a [u8],
    /// The critical flag.
    pub critical: bool,
    /// The extnValue OCTET STRING contents.
    pub value: &'a [u8],
}

/// Every extension of a DER certificate, in order (empty for a v1/v2 certificate).
pub fn extensions(cert_der: &[u8]) -> Result<Vec<Extension<'_>>, DerError> {
    let mut outer = Reader::new(cert_der);
    let mut cert = outer.read_sequence()?;
    outer.finish()?;
    let mut tbs = cert.read_sequence()?;
    let _signature_algorithm = cert.read_sequence()?;
    let _signature = cert.read()?;
    cert.finish()?;
    let mut out = Vec::new();
    while !tbs.is_empty() {
        let field = tbs.read()?;
        if field.tag.class == Class::Context && field.tag.number == 3 {
            let mut wrapper = field.contents()?;
            let mut list = wrapper.read_sequence()?;
            wrapper.finish()?;
            while !list.is_empty() {
                let mut ext = list.read_sequence()?;
                let oid = ext.read_universal(tag::OID, "OBJECT IDENTIFIER")?.value;
                let critical = if ext
                    .peek_tag()
                    .is_some_and(|t| t.class == Class::Universal && t.number == 1)
                {
                    ext.read_boolean()?
                } else {
                    false
                };
                let value = ext.read_octet_string()?;
                ext.finish()?;
                out.push(Extension {
                    oid,
                    critical,
                    value,
                });
            }
        }
    }
    Ok(out)
}

/// The raw KeyDescription DER of a certificate, if it has the extension.
pub fn key_description_der(cert_der: &[u8]) -> Result<Option<&[u8]>, ExtensionError> {
    let exts = extensions(cert_der).map_err(ExtensionError::Certificate)?;
    let mut found = None;
    for e in exts.iter().filter(|e| e.oid == KEY_DESCRIPTION_OID_DER) {
        if found.is_some() {
            return Err(ExtensionError::Duplicate("key attestation"));
        }
        if e.critical {
            return Err(ExtensionError::Critical);
        }
        found = Some(e.value);
    }
    Ok(found)
}

/// Parses the KeyDescription of a DER certificate; `Ok(None)` when it has no such extension.
///
/// This does not verify anything about the certificate: use [`crate::verify_chain`] for that.
pub fn key_description_from_certificate(
    cert_der: &[u8],
) -> Result<Option<KeyDescription>, ExtensionError> {
    match key_description_der(cert_der)? {
        Some(bytes) => KeyDescription::parse(bytes)
            .map(Some)
            .map_err(ExtensionError::KeyDescription),
        None => Ok(None),
    }
}

/// The basicConstraints of a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BasicConstraints {
    /// The cA flag.
    pub ca: bool,
    /// pathLenConstraint.
    pub path_len: Option<i128>,
}

/// The certificate's basicConstraints, or `None` when absent.
pub fn basic_constraints(cert_der: &[u8]) -> Result<Option<BasicConstraints>, ExtensionError> {
    let exts = extensions(cert_der).map_err(ExtensionError::Certificate)?;
    let mut found = None;
    for e in exts.iter().filter(|e| e.oid == BASIC_CONSTRAINTS_OID_DER) {
        if found.is_some() {
            return Err(ExtensionError::Duplicate("basicConstraints"));
        }
        let parse = || -> Result<BasicConstraints, DerError> {
            let seq = der::parse_single(e.value)?;
            seq.expect_universal(tag::SEQUENCE, "SEQUENCE")?;
            let mut r = seq.contents()?;
            let mut bc = BasicConstraints {
                ca: false,
                path_len: None,
            };
            if r.peek_tag()
                .is_some_and(|t| t.class == Class::Universal && t.number == 1)
            {
                bc.ca = r.read_boolean()?;
            }
            if !r.is_empty() {
                bc.path_len = Some(r.read_integer()?);
            }
            r.finish()?;
            Ok(bc)
        };
        found = Some(parse().map_err(ExtensionError::Certificate)?);
    }
    Ok(found)
}
