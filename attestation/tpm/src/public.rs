//! TPMT_PUBLIC / TPM2B_PUBLIC (TPM 2.0 Part 2, 12.2.4): the public area of an attestation or
//! endorsement key, its TPM Name, and the openssl key it describes.

use std::sync::OnceLock;

use openssl::bn::{BigNum, BigNumContext};
use openssl::ec::{EcGroup, EcKey, EcPoint};
use openssl::nid::Nid;
use openssl::pkey::{PKey, Public};
use openssl::rsa::Rsa;

use crate::hash::HashAlg;
use crate::wire::{Reader, WireError, invalid};

/// TPMA_OBJECT bits a verifier cares about for an attestation key.
pub mod attributes {
    /// fixedTPM: the key cannot leave this TPM.
    pub const FIXED_TPM: u32 = 1 << 1;
    /// fixedParent.
    pub const FIXED_PARENT: u32 = 1 << 4;
    /// sensitiveDataOrigin: the TPM generated the key.
    pub const SENSITIVE_DATA_ORIGIN: u32 = 1 << 5;
    /// restricted: signs only TPM-generated structures.
    pub const RESTRICTED: u32 = 1 << 16;
    /// sign.
    pub const SIGN: u32 = 1 << 18;
}

/// A parsed public area.
#[derive(Debug, Clone)]
pub struct PublicArea {
    /// The name algorithm.
    pub name_alg: HashAlg,
    /// TPMA_OBJECT.
    pub object_attributes: u32,
    /// Symmetric key bits of a storage key (an EK's AES-128-CFB: 128); `None` when NULL.
    pub symmetric_bits: Option<u16>,
    /// For ECC keys, the TPM_ECC_CURVE.
    pub ecc_curve: Option<u16>,
    /// The key.
    pub key: PKey<Public>,
    /// The marshalled TPMT_PUBLIC the Name is computed over.
    pub raw: Vec<u8>,
}

impl PublicArea {
    /// Parses a marshalled TPM2B_PUBLIC (size-prefixed).
    pub fn parse_tpm2b(bytes: &[u8]) -> Result<Self, WireError> {
        let mut reader = Reader::new(bytes);
        let inner = reader.sized("TPM2B_PUBLIC")?;
        reader.finish("TPM2B_PUBLIC")?;
        Self::parse_tpmt(inner)
    }

    /// Parses a marshalled TPMT_PUBLIC.
    pub fn parse_tpmt(bytes: &[u8]) -> Result<Self, WireError> {
        let mut reader = Reader::new(bytes);
        let kind = reader.u16("type")?;
        let name_alg = HashAlg::from_id(reader.u16("nameAlg")?)?;
        let object_attributes = reader.u32("objectAttributes")?;
        reader.sized("authPolicy")?;
        let symmetric_bits = read_symmetric(&mut reader)?;
        let mut ecc_curve = None;
        let key = match kind {
            0x0001 => {
                skip_scheme(&mut reader, "RSA scheme")?;
                let _bits = reader.u16("keyBits")?;
                let exponent = match reader.u32("exponent")? {
                    0 => 65_537,
                    e => e,
                };
                let modulus = reader.sized("RSA modulus")?;
                rsa_key(modulus, exponent)?
            }
            0x0023 => {
                skip_scheme(&mut reader, "ECC scheme")?;
                let curve = reader.u16("curveID")?;
                ecc_curve = Some(curve);
                skip_scheme(&mut reader, "ECC kdf")?;
                let x = reader.sized("ECC x")?;
                let y = reader.sized("ECC y")?;
                ecc_key(curve, x, y)?
            }
            other => {
                return Err(invalid(
                    "type",
                    format!("unsupported key type {other:#06x}"),
                ));
            }
        };
        reader.finish("TPMT_PUBLIC")?;
        Ok(Self {
            name_alg,
            object_attributes,
            symmetric_bits,
            ecc_curve,
            key,
            raw: bytes.to_vec(),
        })
    }

    /// The TPM Name: nameAlg (big-endian) followed by the digest of the TPMT_PUBLIC.
    pub fn name(&self) -> Result<Vec<u8>, openssl::error::ErrorStack> {
        let mut name = self.name_alg.id().to_be_bytes().to_vec();
        name.extend(self.name_alg.digest(&[&self.raw])?);
        Ok(name)
    }

    /// Whether it is a restricted signing key that never leaves the TPM (an AK).
    pub fn is_attestation_key(&self) -> bool {
        use attributes::*;
        let needed = FIXED_TPM | FIXED_PARENT | SENSITIVE_DATA_ORIGIN | RESTRICTED | SIGN;
        self.object_attributes & needed == needed
    }
}

/// Loads a public key from PEM (SubjectPublicKeyInfo) or a marshalled TPM2B_PUBLIC, as
/// `tpm2_checkquote -u` accepts.
pub fn load_public_key(bytes: &[u8]) -> Result<PKey<Public>, WireError> {
    if bytes.starts_with(b"-----BEGIN") {
        return PKey::public_key_from_pem(bytes)
            .map_err(|err| invalid("PEM public key", err.to_string()));
    }
    Ok(PublicArea::parse_tpm2b(bytes)?.key)
}

fn read_symmetric(reader: &mut Reader<'_>) -> Result<Option<u16>, WireError> {
    if reader.u16("symmetric algorithm")? == 0x0010 {
        return Ok(None);
    }
    let bits = reader.u16("symmetric keyBits")?;
    reader.u16("symmetric mode")?;
    Ok(Some(bits))
}

fn skip_scheme(reader: &mut Reader<'_>, what: &'static str) -> Result<(), WireError> {
    if reader.u16(what)? != 0x0010 {
        reader.u16(what)?;
    }
    Ok(())
}

fn rsa_key(modulus: &[u8], exponent: u32) -> Result<PKey<Public>, WireError> {
    let crypto = |err: openssl::error::ErrorStack| invalid("RSA public key", err.to_string());
    let rsa = Rsa::from_public_components(
        BigNum::from_slice(modulus).map_err(crypto)?,
        BigNum::from_u32(exponent).map_err(crypto)?,
    )
    .map_err(crypto)?;
    PKey::from_rsa(rsa).map_err(crypto)
}

/// The curve groups, built once: building one costs about as much as a signature check.
fn group(nid: Nid) -> Result<&'static EcGroup, openssl::error::ErrorStack> {
    static GROUPS: [OnceLock<EcGroup>; 3] = [OnceLock::new(), OnceLock::new(), OnceLock::new()];
    let slot = match nid {
        Nid::X9_62_PRIME256V1 => &GROUPS[0],
        Nid::SECP384R1 => &GROUPS[1],
        _ => &GROUPS[2],
    };
    if let Some(group) = slot.get() {
        return Ok(group);
    }
    let group = EcGroup::from_curve_name(nid)?;
    Ok(slot.get_or_init(|| group))
}

/// An ECC public key from its TPM coordinates. The point is decoded with OpenSSL's
/// on-curve check; the three curves accepted have cofactor 1, so a point on the curve
/// (and not at infinity, which the uncompressed encoding cannot express) is in the
/// prime-order group, and `EC_KEY_check_key`'s extra scalar multiplication would add nothing.
fn ecc_key(curve: u16, x: &[u8], y: &[u8]) -> Result<PKey<Public>, WireError> {
    let (nid, field_len) = match curve {
        0x0003 => (Nid::X9_62_PRIME256V1, 32),
        0x0004 => (Nid::SECP384R1, 48),
        0x0005 => (Nid::SECP521R1, 66),
        other => {
            return Err(invalid(
                "curveID",
                format!("unsupported curve {other:#06x}"),
            ));
        }
    };
    let crypto = |err: openssl::error::ErrorStack| invalid("ECC public key", err.to_string());
    // Uncompressed SEC 1 encoding: 0x04 || X || Y, each left-padded to the field size.
    let mut encoded = vec![0u8; 1 + 2 * field_len];
    encoded[0] = 0x04;
    for (coordinate, offset, name) in [(x, 1, "x"), (y, 1 + field_len, "y")] {
        let significant = coordinate
            .iter()
            .position(|&b| b != 0)
            .map_or(&[][..], |i| &coordinate[i..]);
        if significant.len() > field_len {
            return Err(invalid(
                "ECC public key",
                format!("{name} coordinate longer than the curve's field"),
            ));
        }
        let start = offset + field_len - significant.len();
        encoded[start..offset + field_len].copy_from_slice(significant);
    }
    let group = group(nid).map_err(crypto)?;
    let mut ctx = BigNumContext::new().map_err(crypto)?;
    let point = EcPoint::from_bytes(group, &encoded, &mut ctx).map_err(crypto)?;
    let key = EcKey::from_public_key(group, &point).map_err(crypto)?;
    PKey::from_ec_key(key).map_err(crypto)
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::bn::BigNumContext;

    /// A fresh P-256 key's affine coordinates, each left-padded to 32 bytes.
    fn p256_coordinates() -> (PKey<openssl::pkey::Private>, Vec<u8>, Vec<u8>) {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
        let key = EcKey::generate(&group).unwrap();
        let mut ctx = BigNumContext::new().unwrap();
        let (mut x, mut y) = (BigNum::new().unwrap(), BigNum::new().unwrap());
        key.public_key()
            .affine_coordinates(&group, &mut x, &mut y, &mut ctx)
            .unwrap();
        let (x, y) = (x.to_vec_padded(32).unwrap(), y.to_vec_padded(32).unwrap());
        (PKey::from_ec_key(key).unwrap(), x, y)
    }

    #[test]
    fn ecc_key_accepts_the_point_with_or_without_leading_zeros() {
        let (private, x, y) = p256_coordinates();
        let parsed = ecc_key(0x0003, &x, &y).unwrap();
        assert!(parsed.public_eq(&private));
        let mut long_x = vec![0u8; 3];
        long_x.extend_from_slice(&x);
        assert!(ecc_key(0x0003, &long_x, &y).unwrap().public_eq(&private));
    }

    #[test]
    fn ecc_key_refuses_points_off_the_curve_and_oversized_coordinates() {
        let (_, x, mut y) = p256_coordinates();
        let last = y.len() - 1;
        y[last] ^= 1;
        let err = ecc_key(0x0003, &x, &y).unwrap_err().to_string();
        assert!(err.contains("ECC public key"), "{err}");
        let too_long = vec![1u8; 33];
        let err = ecc_key(0x0003, &too_long, &y).unwrap_err().to_string();
        assert!(err.contains("longer than the curve's field"), "{err}");
        assert!(ecc_key(0x0003, &[], &[]).is_err(), "the point at x = y = 0");
        assert!(ecc_key(0x0010, &x, &y).is_err(), "unknown curve");
    }
}
