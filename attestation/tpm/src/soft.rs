//! A software attester that writes quotes in exactly the TPM's wire format — for tests and
//! benchmarks only (it proves nothing about a device: its key is not in a TPM). It lets the
//! verifier's production code path be measured and table-tested without a TPM.

use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey};
use openssl::ecdsa::EcdsaSig;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::sign::Signer;

use crate::attest::{ClockInfo, ST_ATTEST_QUOTE, TPM_GENERATED};
use crate::hash::HashAlg;
use crate::pcr::{PcrSelection, PcrValues};
use crate::public::attributes;

/// The key type of a software AK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// ECDSA P-256 / SHA-256.
    EccP256,
    /// RSASSA-PKCS1-v1_5 2048 / SHA-256.
    Rsa2048,
}

/// A software attestation key.
pub struct SoftwareAk {
    kind: KeyKind,
    key: PKey<Private>,
    tpmt_public: Vec<u8>,
}

fn tpm2b(bytes: &[u8]) -> Vec<u8> {
    let mut out = (bytes.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(bytes);
    out
}

impl SoftwareAk {
    /// Generates a key and its TPMT_PUBLIC with an AK's attributes.
    pub fn generate(kind: KeyKind) -> Result<Self, openssl::error::ErrorStack> {
        let attrs = attributes::FIXED_TPM
            | attributes::FIXED_PARENT
            | attributes::SENSITIVE_DATA_ORIGIN
            | attributes::RESTRICTED
            | attributes::SIGN
            | (1 << 6); // userWithAuth
        let mut public = Vec::new();
        let (key, type_id) = match kind {
            KeyKind::EccP256 => {
                let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
                (PKey::from_ec_key(EcKey::generate(&group)?)?, 0x0023u16)
            }
            KeyKind::Rsa2048 => (PKey::from_rsa(Rsa::generate(2048)?)?, 0x0001u16),
        };
        public.extend(type_id.to_be_bytes());
        public.extend(HashAlg::Sha256.id().to_be_bytes());
        public.extend(attrs.to_be_bytes());
        public.extend(tpm2b(&[]));
        public.extend(0x0010u16.to_be_bytes()); // symmetric: NULL
        match kind {
            KeyKind::EccP256 => {
                public.extend(0x0018u16.to_be_bytes()); // scheme ECDSA
                public.extend(HashAlg::Sha256.id().to_be_bytes());
                public.extend(0x0003u16.to_be_bytes()); // NIST P-256
                public.extend(0x0010u16.to_be_bytes()); // kdf NULL
                let ec = key.ec_key()?;
                let group = ec.group();
                let mut ctx = openssl::bn::BigNumContext::new()?;
                let (mut x, mut y) = (BigNum::new()?, BigNum::new()?);
                ec.public_key()
                    .affine_coordinates(group, &mut x, &mut y, &mut ctx)?;
                public.extend(tpm2b(&x.to_vec_padded(32)?));
                public.extend(tpm2b(&y.to_vec_padded(32)?));
            }
            KeyKind::Rsa2048 => {
                public.extend(0x0014u16.to_be_bytes()); // scheme RSASSA
                public.extend(HashAlg::Sha256.id().to_be_bytes());
                public.extend(2048u16.to_be_bytes());
                public.extend(0u32.to_be_bytes()); // default exponent
                public.extend(tpm2b(&key.rsa()?.n().to_vec()));
            }
        }
        Ok(Self {
            kind,
            key,
            tpmt_public: public,
        })
    }

    /// TPM2B_PUBLIC of the key.
    pub fn tpm2b_public(&self) -> Vec<u8> {
        tpm2b(&self.tpmt_public)
    }

    /// The key's TPM Name.
    pub fn name(&self) -> Result<Vec<u8>, openssl::error::ErrorStack> {
        let mut name = HashAlg::Sha256.id().to_be_bytes().to_vec();
        name.extend(HashAlg::Sha256.digest(&[&self.tpmt_public])?);
        Ok(name)
    }

    /// A quote over `values` in `selection` with `extra_data`: (TPMS_ATTEST, TPMT_SIGNATURE).
    pub fn quote(
        &self,
        extra_data: &[u8],
        selection: &PcrSelection,
        values: &PcrValues,
        clock: ClockInfo,
    ) -> Result<(Vec<u8>, Vec<u8>), SoftQuoteError> {
        let digest = values
            .digest(selection, HashAlg::Sha256)
            .map_err(|err| SoftQuoteError(err.to_string()))?;
        let mut attest = Vec::new();
        attest.extend(TPM_GENERATED.to_be_bytes());
        attest.extend(ST_ATTEST_QUOTE.to_be_bytes());
        attest.extend(tpm2b(&self.name()?));
        attest.extend(tpm2b(extra_data));
        attest.extend(clock.clock.to_be_bytes());
        attest.extend(clock.reset_count.to_be_bytes());
        attest.extend(clock.restart_count.to_be_bytes());
        attest.push(u8::from(clock.safe));
        attest.extend(0x2023_0101_0000_0001u64.to_be_bytes());
        attest.extend((selection.banks.len() as u32).to_be_bytes());
        for (alg, pcrs) in &selection.banks {
            attest.extend(alg.id().to_be_bytes());
            attest.push(3);
            let mut bitmap = [0u8; 3];
            for pcr in pcrs {
                if let Some(byte) = bitmap.get_mut((pcr / 8) as usize) {
                    *byte |= 1 << (pcr % 8);
                }
            }
            attest.extend(bitmap);
        }
        attest.extend(tpm2b(&digest));
        let signature = self.sign(&attest)?;
        Ok((attest, signature))
    }

    /// TPMT_SIGNATURE over `message`.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, openssl::error::ErrorStack> {
        let mut out = Vec::new();
        match self.kind {
            KeyKind::EccP256 => {
                let digest = HashAlg::Sha256.digest(&[message])?;
                let sig = EcdsaSig::sign(&digest, &*self.key.ec_key()?)?;
                out.extend(0x0018u16.to_be_bytes());
                out.extend(HashAlg::Sha256.id().to_be_bytes());
                out.extend(tpm2b(&sig.r().to_vec_padded(32)?));
                out.extend(tpm2b(&sig.s().to_vec_padded(32)?));
            }
            KeyKind::Rsa2048 => {
                let mut signer = Signer::new(HashAlg::Sha256.message_digest(), &self.key)?;
                signer.update(message)?;
                out.extend(0x0014u16.to_be_bytes());
                out.extend(HashAlg::Sha256.id().to_be_bytes());
                out.extend(tpm2b(&signer.sign_to_vec()?));
            }
        }
        Ok(out)
    }
}

/// A software quote that could not be made.
#[derive(Debug, thiserror::Error)]
#[error("software quote: {0}")]
pub struct SoftQuoteError(String);

impl From<openssl::error::ErrorStack> for SoftQuoteError {
    fn from(err: openssl::error::ErrorStack) -> Self {
        Self(err.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::public::PublicArea;
    use crate::quote::{QuoteError, verify_quote};

    #[test]
    fn software_quotes_verify_and_tampering_is_caught() {
        for kind in [KeyKind::EccP256, KeyKind::Rsa2048] {
            let ak = SoftwareAk::generate(kind).unwrap();
            let public = PublicArea::parse_tpm2b(&ak.tpm2b_public()).unwrap();
            assert!(public.is_attestation_key());
            assert_eq!(public.name().unwrap(), ak.name().unwrap());
            let selection = PcrSelection::parse("sha256:0,7").unwrap();
            let mut values = PcrValues::default();
            values.insert(HashAlg::Sha256, 0, vec![1; 32]);
            values.insert(HashAlg::Sha256, 7, vec![7; 32]);
            let clock = ClockInfo {
                clock: 10,
                reset_count: 1,
                restart_count: 0,
                safe: true,
            };
            let (attest, sig) = ak.quote(b"nonce", &selection, &values, clock).unwrap();
            let quote =
                verify_quote(&public.key, &attest, &sig, Some(b"nonce"), Some(&values)).unwrap();
            assert_eq!(quote.attest.clock_info, clock);
            assert!(matches!(
                verify_quote(&public.key, &attest, &sig, Some(b"other"), None),
                Err(QuoteError::WrongNonce)
            ));
            let mut changed = values.clone();
            changed.insert(HashAlg::Sha256, 7, vec![8; 32]);
            assert!(matches!(
                verify_quote(&public.key, &attest, &sig, None, Some(&changed)),
                Err(QuoteError::PcrDigestMismatch)
            ));
            let mut flipped = sig.clone();
            let last = flipped.len() - 1;
            flipped[last] ^= 1;
            assert!(matches!(
                verify_quote(&public.key, &attest, &flipped, None, None),
                Err(QuoteError::BadSignature)
            ));
        }
    }
}
