//! A software RSA-2048 endorsement key, for tests and benchmarks only: its TPM2B_PUBLIC in
//! the TCG EK template's shape, and ActivateCredential — [`crate::credential::make_credential`]'s
//! inverse (RSA-OAEP with the "IDENTITY" label for the seed, KDFa "INTEGRITY" for the outer
//! HMAC over the encrypted identity and the AK name, KDFa "STORAGE" for AES-128-CFB).
//!
//! A real TPM does this in hardware; `tpm_oracle` checks our MakeCredential against one.

use enigm_tpm_evidence::hash::HashAlg;
use openssl::encrypt::Decrypter;
use openssl::hash::MessageDigest;
use openssl::memcmp;
use openssl::pkey::{PKey, Private};
use openssl::rsa::{Padding, Rsa};
use openssl::sign::Signer;
use openssl::symm::{Cipher, decrypt};

use crate::credential::{Credential, CredentialError, kdfa};

/// A software endorsement key.
pub struct SoftwareEk {
    key: PKey<Private>,
    public: Vec<u8>,
}

impl std::fmt::Debug for SoftwareEk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SoftwareEk(<private>)")
    }
}

fn tpm2b(bytes: &[u8]) -> Result<Vec<u8>, CredentialError> {
    let len = u16::try_from(bytes.len())
        .map_err(|_| CredentialError::Unsupported("TPM2B over 65535 bytes".into()))?;
    let mut out = len.to_be_bytes().to_vec();
    out.extend_from_slice(bytes);
    Ok(out)
}

/// Splits a TPM2B off the front of `bytes`: (its body, the rest).
fn untpm2b<'a>(bytes: &'a [u8], what: &str) -> Result<(&'a [u8], &'a [u8]), CredentialError> {
    let short = || CredentialError::Unsupported(format!("{what}: truncated TPM2B"));
    let len = bytes.get(..2).ok_or_else(short)?;
    let n = usize::from(u16::from_be_bytes([len[0], len[1]]));
    let body = bytes.get(2..2 + n).ok_or_else(short)?;
    Ok((body, &bytes[2 + n..]))
}

impl SoftwareEk {
    /// A fresh RSA-2048 EK (restricted decryption key, AES-128-CFB, SHA-256 name).
    pub fn generate() -> Result<Self, CredentialError> {
        let rsa = Rsa::generate(2048)?;
        let mut t = Vec::new();
        t.extend(0x0001u16.to_be_bytes()); // TPM_ALG_RSA
        t.extend(HashAlg::Sha256.id().to_be_bytes());
        // fixedTPM | fixedParent | sensitiveDataOrigin | adminWithPolicy | restricted | decrypt
        t.extend(0x0003_00B2u32.to_be_bytes());
        t.extend(tpm2b(&[])?); // authPolicy
        t.extend(0x0006u16.to_be_bytes()); // AES
        t.extend(128u16.to_be_bytes());
        t.extend(0x0043u16.to_be_bytes()); // CFB
        t.extend(0x0010u16.to_be_bytes()); // scheme NULL
        t.extend(2048u16.to_be_bytes());
        t.extend(0u32.to_be_bytes()); // default exponent
        t.extend(tpm2b(&rsa.n().to_vec())?);
        Ok(Self {
            key: PKey::from_rsa(rsa)?,
            public: tpm2b(&t)?,
        })
    }

    /// The EK's TPM2B_PUBLIC, as evidence carries it.
    pub fn public(&self) -> &[u8] {
        &self.public
    }

    /// ActivateCredential: the secret, or `Ok(None)` when the credential was not made for
    /// the key named `ak_name` (its outer HMAC does not match).
    pub fn activate(
        &self,
        credential: &Credential,
        ak_name: &[u8],
    ) -> Result<Option<Vec<u8>>, CredentialError> {
        let (id_object, _) = untpm2b(&credential.credential_blob, "credential blob")?;
        let (outer_hmac, enc_identity) = untpm2b(id_object, "outer HMAC")?;
        let (encrypted_seed, _) = untpm2b(&credential.encrypted_secret, "encrypted secret")?;
        let mut decrypter = Decrypter::new(&self.key)?;
        decrypter.set_rsa_padding(Padding::PKCS1_OAEP)?;
        decrypter.set_rsa_oaep_md(MessageDigest::sha256())?;
        decrypter.set_rsa_mgf1_md(MessageDigest::sha256())?;
        decrypter.set_rsa_oaep_label(b"IDENTITY\0")?;
        let mut seed = vec![0u8; decrypter.decrypt_len(encrypted_seed)?];
        let n = decrypter.decrypt(encrypted_seed, &mut seed)?;
        seed.truncate(n);
        let hmac_key = kdfa(HashAlg::Sha256, &seed, "INTEGRITY", &[], &[], 256)?;
        let hmac = PKey::hmac(&hmac_key)?;
        let mut signer = Signer::new(MessageDigest::sha256(), &hmac)?;
        signer.update(enc_identity)?;
        signer.update(ak_name)?;
        let expected = signer.sign_to_vec()?;
        if expected.len() != outer_hmac.len() || !memcmp::eq(&expected, outer_hmac) {
            return Ok(None);
        }
        let sym = kdfa(HashAlg::Sha256, &seed, "STORAGE", ak_name, &[], 128)?;
        let plain = decrypt(
            Cipher::aes_128_cfb128(),
            &sym,
            Some(&[0u8; 16]),
            enc_identity,
        )?;
        Ok(Some(untpm2b(&plain, "credential")?.0.to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credential::make_credential;
    use enigm_tpm_evidence::public::PublicArea;

    #[test]
    fn activates_what_make_credential_made_for_its_name_only() {
        let ek = SoftwareEk::generate().unwrap();
        let area = PublicArea::parse_tpm2b(ek.public()).unwrap();
        let name = [0x00, 0x0b, 1, 2, 3];
        let credential = make_credential(&area, &name, b"the secret").unwrap();
        assert_eq!(
            ek.activate(&credential, &name).unwrap(),
            Some(b"the secret".to_vec())
        );
        assert_eq!(ek.activate(&credential, &[0x00, 0x0b, 9]).unwrap(), None);
        let truncated = Credential {
            credential_blob: vec![0, 40, 1],
            encrypted_secret: credential.encrypted_secret.clone(),
        };
        assert!(ek.activate(&truncated, &name).is_err());
    }
}
