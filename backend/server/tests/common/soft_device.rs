//! A software TPM device for the backend's tests and its round-trip benchmark: an ECC P-256
//! attestation key quoting in exactly the TPM's wire format ([`SoftwareAk`]), a software
//! RSA endorsement key that answers MakeCredential ([`SoftwareEk`]), and a TPM clock that
//! advances with every quote. PCRs 0 and 7 read 0x01… and 0x07…, which the test policies
//! expect.

use anyhow::{Result, anyhow};
use enigm_evidence::v1::{
    CredentialChallenge, Evidence, HashAlgorithm, PcrBank, PcrValue, TpmEvidence, evidence,
};
use enigm_tpm_evidence::attest::ClockInfo;
use enigm_tpm_evidence::hash::HashAlg;
use enigm_tpm_evidence::pcr::{PcrSelection, PcrValues};
use enigm_tpm_evidence::soft::{KeyKind, SoftwareAk};
use enigm_verifier::credential::Credential;
use enigm_verifier::soft_ek::SoftwareEk;

/// A software device.
pub struct SoftDevice {
    /// The attestation key.
    pub ak: SoftwareAk,
    /// The endorsement key.
    pub ek: SoftwareEk,
    clock: u64,
    selection: PcrSelection,
    values: PcrValues,
}

impl SoftDevice {
    /// A new device with fresh keys.
    pub fn new() -> Result<Self> {
        let mut values = PcrValues::default();
        values.insert(HashAlg::Sha256, 0, vec![1; 32]);
        values.insert(HashAlg::Sha256, 7, vec![7; 32]);
        Ok(Self {
            ak: SoftwareAk::generate(KeyKind::EccP256)?,
            ek: SoftwareEk::generate()?,
            clock: 1000,
            selection: PcrSelection::parse("sha256:0,7").map_err(|e| anyhow!("{e}"))?,
            values,
        })
    }

    /// The key part of TPM evidence (AK and EK public areas).
    pub fn tpm(&self) -> TpmEvidence {
        TpmEvidence {
            ak_public: self.ak.tpm2b_public(),
            ek_public: self.ek.public().to_vec(),
            ..TpmEvidence::default()
        }
    }

    /// What enrollment sends: the keys, no quote.
    pub fn enrollment_evidence(&self) -> Evidence {
        Evidence {
            kind: Some(evidence::Kind::Tpm(self.tpm())),
            posture_digest: vec![0; 32],
        }
    }

    /// ActivateCredential for the server's challenge: the secret, or `None` when it was not
    /// made for this AK under this EK.
    pub fn activate(&self, credential: &CredentialChallenge) -> Result<Option<Vec<u8>>> {
        let credential = Credential {
            credential_blob: credential.credential_blob.clone(),
            encrypted_secret: credential.encrypted_secret.clone(),
        };
        Ok(self.ek.activate(&credential, &self.ak.name()?)?)
    }

    /// A quote over PCRs 0 and 7 whose qualifying data binds `nonce` and the posture digest.
    pub fn quote(&mut self, nonce: &[u8]) -> Result<Evidence> {
        self.quote_with_posture(nonce, vec![0x5a; 32])
    }

    /// A quote binding `nonce` and `posture_digest` (as `enigm-attestd`'s GetEvidence; the
    /// relay's key binding uses an all-zero posture digest).
    pub fn quote_with_posture(
        &mut self,
        nonce: &[u8],
        posture_digest: Vec<u8>,
    ) -> Result<Evidence> {
        let qualifying = enigm_verifier::qualifying_data(nonce, &posture_digest)
            .map_err(|e| anyhow!("qualifying data: {e}"))?;
        self.clock += 1000;
        let clock = ClockInfo {
            clock: self.clock,
            reset_count: 1,
            restart_count: 0,
            safe: true,
        };
        let (attest, signature) = self
            .ak
            .quote(&qualifying, &self.selection, &self.values, clock)
            .map_err(|e| anyhow!("quote: {e:?}"))?;
        let mut tpm = self.tpm();
        tpm.attest = attest;
        tpm.signature = signature;
        tpm.pcrs = vec![PcrBank {
            algorithm: HashAlgorithm::Sha256 as i32,
            values: [(0, 1u8), (7, 7u8)]
                .into_iter()
                .map(|(index, byte)| PcrValue {
                    index,
                    digest: vec![byte; 32],
                })
                .collect(),
        }];
        Ok(Evidence {
            kind: Some(evidence::Kind::Tpm(tpm)),
            posture_digest,
        })
    }
}
