//! TPMT_PUBLIC / TPM2B_PUBLIC (TPM 2.0 Part 2, 12.2.4): the public area of an attestation or
//! endorsement key, its TPM Name, and the openssl key it describes.

use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey};
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

fn ecc_key(curve: u16, x: &[u8], y: &[u8]) -> Result<PKey<Public>, WireError> {
    let nid = match curve {
        0x0003 => Nid::X9_62_PRIME256V1,
        0x0004 => Nid::SECP384R1,
        0x0005 => Nid::SECP521R1,
        other => {
            return Err(invalid(
                "curveID",
                format!("unsupported curve {other:#06x}"),
            ));
        }
    };
    let crypto = |err: openssl::error::ErrorStack| invalid("ECC public key", err.to_string());
    let group = EcGroup::from_curve_name(nid).map_err(crypto)?;
    let key = EcKey::from_public_key_affine_coordinates(
        &group,
        &*BigNum::from_slice(x).map_err(crypto)?,
        &*BigNum::from_slice(y).map_err(crypto)?,
    )
    .map_err(crypto)?;
    key.check_key().map_err(crypto)?;
    PKey::from_ec_key(key).map_err(crypto)
}
