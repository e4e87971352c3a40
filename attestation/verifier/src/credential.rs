//! MakeCredential (TPM 2.0 Part 1, 24; Part 3, TPM2_MakeCredential), done by the verifier in
//! software: a secret that only the TPM holding the EK can recover, and only for a key with
//! the given Name. The device's ActivateCredential returning the secret proves its AK lives
//! in the same TPM as its EK.

use openssl::derive::Deriver;
use openssl::ec::{EcGroup, EcKey};
use openssl::encrypt::Encrypter;
use openssl::pkey::PKey;
use openssl::rsa::Padding;
use openssl::sign::Signer;
use openssl::symm::{Cipher, encrypt};

use enigm_tpm_evidence::hash::HashAlg;
use enigm_tpm_evidence::public::PublicArea;

/// A credential that cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// The EK is not a storage key this code supports.
    #[error("unsupported endorsement key: {0}")]
    Unsupported(String),
    /// openssl failed.
    #[error("crypto error: {0}")]
    Crypto(#[from] openssl::error::ErrorStack),
}

/// MakeCredential's output: what the device passes to ActivateCredential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    /// TPM2B_ID_OBJECT, marshalled.
    pub credential_blob: Vec<u8>,
    /// TPM2B_ENCRYPTED_SECRET, marshalled.
    pub encrypted_secret: Vec<u8>,
}

/// KDFa (SP 800-108 counter mode with HMAC), as TPM 2.0 Part 1, 11.4.10.2 defines it.
pub fn kdfa(
    hash: HashAlg,
    key: &[u8],
    label: &str,
    context_u: &[u8],
    context_v: &[u8],
    bits: u32,
) -> Result<Vec<u8>, CredentialError> {
    let bytes = bits.div_ceil(8) as usize;
    let hmac_key = PKey::hmac(key)?;
    let mut out = Vec::with_capacity(bytes + hash.size());
    let mut counter: u32 = 1;
    while out.len() < bytes {
        let mut signer = Signer::new(hash.message_digest(), &hmac_key)?;
        signer.update(&counter.to_be_bytes())?;
        signer.update(label.as_bytes())?;
        signer.update(&[0])?;
        signer.update(context_u)?;
        signer.update(context_v)?;
        signer.update(&bits.to_be_bytes())?;
        out.extend(signer.sign_to_vec()?);
        counter += 1;
    }
    out.truncate(bytes);
    Ok(out)
}

/// KDFe (SP 800-56A concatenation KDF), as TPM 2.0 Part 1, 11.4.10.3 defines it.
pub fn kdfe(
    hash: HashAlg,
    z: &[u8],
    label: &str,
    party_u: &[u8],
    party_v: &[u8],
    bits: u32,
) -> Result<Vec<u8>, CredentialError> {
    let bytes = bits.div_ceil(8) as usize;
    let mut out = Vec::with_capacity(bytes + hash.size());
    let mut counter: u32 = 1;
    while out.len() < bytes {
        out.extend(hash.digest(&[
            &counter.to_be_bytes(),
            z,
            label.as_bytes(),
            &[0],
            party_u,
            party_v,
        ])?);
        counter += 1;
    }
    out.truncate(bytes);
    Ok(out)
}

fn tpm2b(bytes: &[u8]) -> Vec<u8> {
    let mut out = (bytes.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(bytes);
    out
}

/// Makes a credential protecting `secret` for the object named `name`, under `ek`.
pub fn make_credential(
    ek: &PublicArea,
    name: &[u8],
    secret: &[u8],
) -> Result<Credential, CredentialError> {
    let hash = ek.name_alg;
    let sym_bits = ek
        .symmetric_bits
        .ok_or_else(|| CredentialError::Unsupported("no symmetric algorithm".into()))?;
    let (seed, encrypted) = if let Ok(rsa) = ek.key.rsa() {
        let mut seed = vec![0u8; hash.size()];
        openssl::rand::rand_bytes(&mut seed)?;
        let key = PKey::from_rsa(rsa)?;
        let mut encrypter = Encrypter::new(&key)?;
        encrypter.set_rsa_padding(Padding::PKCS1_OAEP)?;
        encrypter.set_rsa_oaep_md(hash.message_digest())?;
        encrypter.set_rsa_mgf1_md(hash.message_digest())?;
        encrypter.set_rsa_oaep_label(b"IDENTITY\0")?;
        let mut out = vec![0u8; encrypter.encrypt_len(&seed)?];
        let n = encrypter.encrypt(&seed, &mut out)?;
        out.truncate(n);
        (seed, out)
    } else if let Ok(ek_ec) = ek.key.ec_key() {
        let group = EcGroup::from_curve_name(
            ek_ec
                .group()
                .curve_name()
                .ok_or_else(|| CredentialError::Unsupported("unnamed curve".into()))?,
        )?;
        let size = (group.degree() as usize).div_ceil(8);
        let ephemeral = EcKey::generate(&group)?;
        let coordinates =
            |point: &openssl::ec::EcPointRef| -> Result<(Vec<u8>, Vec<u8>), CredentialError> {
                let mut ctx = openssl::bn::BigNumContext::new()?;
                let mut x = openssl::bn::BigNum::new()?;
                let mut y = openssl::bn::BigNum::new()?;
                point.affine_coordinates(&group, &mut x, &mut y, &mut ctx)?;
                Ok((x.to_vec_padded(size as i32)?, y.to_vec_padded(size as i32)?))
            };
        let (eph_x, eph_y) = coordinates(ephemeral.public_key())?;
        let (ek_x, _) = coordinates(ek_ec.public_key())?;
        let eph_pkey = PKey::from_ec_key(ephemeral)?;
        let mut deriver = Deriver::new(&eph_pkey)?;
        deriver.set_peer(&ek.key)?;
        let z = deriver.derive_to_vec()?;
        let seed = kdfe(hash, &z, "IDENTITY", &eph_x, &ek_x, hash.size() as u32 * 8)?;
        let mut point = tpm2b(&eph_x);
        point.extend(tpm2b(&eph_y));
        (seed, point)
    } else {
        return Err(CredentialError::Unsupported("neither RSA nor ECC".into()));
    };
    let cipher = match sym_bits {
        128 => Cipher::aes_128_cfb128(),
        256 => Cipher::aes_256_cfb128(),
        other => return Err(CredentialError::Unsupported(format!("AES-{other}"))),
    };
    let sym_key = kdfa(hash, &seed, "STORAGE", name, &[], u32::from(sym_bits))?;
    let enc_identity = encrypt(cipher, &sym_key, Some(&[0u8; 16]), &tpm2b(secret))?;
    let hmac_key = kdfa(hash, &seed, "INTEGRITY", &[], &[], hash.size() as u32 * 8)?;
    let hmac_pkey = PKey::hmac(&hmac_key)?;
    let mut signer = Signer::new(hash.message_digest(), &hmac_pkey)?;
    signer.update(&enc_identity)?;
    signer.update(name)?;
    let outer_hmac = signer.sign_to_vec()?;
    let mut id_object = tpm2b(&outer_hmac);
    id_object.extend(enc_identity);
    Ok(Credential {
        credential_blob: tpm2b(&id_object),
        encrypted_secret: tpm2b(&encrypted),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kdfs_are_deterministic_and_sized() {
        let a = kdfa(HashAlg::Sha256, b"key", "STORAGE", b"name", &[], 128).unwrap();
        assert_eq!(a.len(), 16);
        assert_eq!(
            a,
            kdfa(HashAlg::Sha256, b"key", "STORAGE", b"name", &[], 128).unwrap()
        );
        assert_ne!(
            a,
            kdfa(HashAlg::Sha256, b"key", "STORAGE", b"other", &[], 128).unwrap()
        );
        assert_eq!(
            kdfa(HashAlg::Sha256, b"k", "INTEGRITY", &[], &[], 512)
                .unwrap()
                .len(),
            64
        );
        assert_eq!(
            kdfe(HashAlg::Sha256, b"z", "IDENTITY", b"u", b"v", 256)
                .unwrap()
                .len(),
            32
        );
    }
}
