//! TPMT_SIGNATURE (TPM 2.0 Part 2, 11.3.4) and its verification with openssl.

use openssl::bn::BigNum;
use openssl::ecdsa::EcdsaSig;
use openssl::pkey::{PKey, Public};
use openssl::rsa::Padding;
use openssl::sign::{RsaPssSaltlen, Verifier};

use crate::hash::HashAlg;
use crate::wire::{Reader, WireError, invalid};

/// A parsed signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signature {
    /// TPM_ALG_RSASSA (PKCS#1 v1.5).
    RsaSsa {
        /// Digest algorithm.
        hash: HashAlg,
        /// The signature.
        sig: Vec<u8>,
    },
    /// TPM_ALG_RSAPSS.
    RsaPss {
        /// Digest algorithm.
        hash: HashAlg,
        /// The signature.
        sig: Vec<u8>,
    },
    /// TPM_ALG_ECDSA.
    Ecdsa {
        /// Digest algorithm.
        hash: HashAlg,
        /// r.
        r: Vec<u8>,
        /// s.
        s: Vec<u8>,
    },
}

impl Signature {
    /// Parses the whole of `bytes` as a marshalled TPMT_SIGNATURE.
    pub fn parse(bytes: &[u8]) -> Result<Self, WireError> {
        let mut reader = Reader::new(bytes);
        let alg = reader.u16("sigAlg")?;
        let hash = HashAlg::from_id(reader.u16("signature hash")?)?;
        let signature = match alg {
            0x0014 => Self::RsaSsa {
                hash,
                sig: reader.sized("RSA signature")?.to_vec(),
            },
            0x0016 => Self::RsaPss {
                hash,
                sig: reader.sized("RSA signature")?.to_vec(),
            },
            0x0018 => Self::Ecdsa {
                hash,
                r: reader.sized("ECDSA r")?.to_vec(),
                s: reader.sized("ECDSA s")?.to_vec(),
            },
            other => {
                return Err(invalid(
                    "sigAlg",
                    format!("unsupported signature scheme {other:#06x}"),
                ));
            }
        };
        reader.finish("TPMT_SIGNATURE")?;
        Ok(signature)
    }

    /// The digest algorithm.
    pub fn hash(&self) -> HashAlg {
        match self {
            Self::RsaSsa { hash, .. } | Self::RsaPss { hash, .. } | Self::Ecdsa { hash, .. } => {
                *hash
            }
        }
    }

    /// Whether the signature over `message` verifies with `key`. A key of the wrong type for
    /// the scheme does not verify.
    pub fn verify(
        &self,
        key: &PKey<Public>,
        message: &[u8],
    ) -> Result<bool, openssl::error::ErrorStack> {
        match self {
            Self::Ecdsa { hash, r, s } => {
                let Ok(ec) = key.ec_key() else {
                    return Ok(false);
                };
                let digest = hash.digest(&[message])?;
                let sig = EcdsaSig::from_private_components(
                    BigNum::from_slice(r)?,
                    BigNum::from_slice(s)?,
                )?;
                sig.verify(&digest, &ec)
            }
            Self::RsaSsa { hash, sig } => {
                // RSA public operation with PKCS#1 v1.5 padding, then the DigestInfo compared
                // whole: the same check as EVP verify, without a context per call.
                let Ok(rsa) = key.rsa() else { return Ok(false) };
                if sig.len() != rsa.size() as usize {
                    return Ok(false);
                }
                let mut decrypted = vec![0u8; rsa.size() as usize];
                let Ok(n) = rsa.public_decrypt(sig, &mut decrypted, Padding::PKCS1) else {
                    return Ok(false);
                };
                let mut expected = hash.digest_info_prefix().to_vec();
                expected.extend(hash.digest(&[message])?);
                Ok(decrypted.get(..n) == Some(expected.as_slice()))
            }
            Self::RsaPss { hash, sig } => {
                if key.rsa().is_err() {
                    return Ok(false);
                }
                let mut verifier = Verifier::new(hash.message_digest(), key)?;
                verifier.set_rsa_padding(Padding::PKCS1_PSS)?;
                // Any salt length: TPMs use the digest size or the maximum.
                verifier.set_rsa_pss_saltlen(RsaPssSaltlen::custom(-2))?;
                verifier.update(message)?;
                Ok(verifier.verify(sig).unwrap_or(false))
            }
        }
    }
}
