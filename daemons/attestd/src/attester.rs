//! The attester: turns a verifier's nonce and a posture digest into signed evidence, activates
//! credentials, and keeps the status the daemon reports. No I/O of its own: the TPM is behind
//! [`Tpm`], the event log is read once by the caller, time comes in as an argument.
//!
//! Before a quote leaves the daemon it is checked against what was asked: the qualifying data
//! is ours, the TPM quoted exactly the configured PCR selection, and the PCR values read next
//! to it hash to the quote's `pcrDigest` (when a PCR was extended between the two reads, the
//! quote is taken again, a bounded number of times).

use enigm_evidence::v1::{self, PcrBank, PcrValue, TpmEvidence, evidence};
use prost::Message;

use crate::binding::{self, BindingError};
use crate::pcrs::PcrSpec;
use crate::status::Status;
use crate::tpm::{Identity, RawQuote, Tpm, TpmError};
use crate::wire::{self, WireError};

/// How many times a quote is taken when PCRs keep changing under it.
pub const QUOTE_ATTEMPTS: usize = 3;

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttestError {
    /// The caller's input is not acceptable.
    #[error("{0}")]
    InvalidInput(String),
    /// The TPM could not be reached.
    #[error("{0}")]
    Unavailable(String),
    /// The credential was not made for this TPM's EK and AK.
    #[error("{0}")]
    CredentialRejected(String),
    /// The TPM failed, or its answer did not check out.
    #[error("{0}")]
    Failed(String),
}

impl From<BindingError> for AttestError {
    fn from(err: BindingError) -> Self {
        AttestError::InvalidInput(err.to_string())
    }
}

impl From<TpmError> for AttestError {
    fn from(err: TpmError) -> Self {
        match err {
            TpmError::Unreachable(_) => AttestError::Unavailable(err.to_string()),
            TpmError::CredentialRejected(_) => AttestError::CredentialRejected(err.to_string()),
            TpmError::Malformed(_) => AttestError::InvalidInput(err.to_string()),
            TpmError::Command { .. } | TpmError::Storage(_) => AttestError::Failed(err.to_string()),
        }
    }
}

fn bad_quote(err: WireError) -> AttestError {
    AttestError::Failed(format!("the TPM's quote does not parse: {err}"))
}

/// The attester over a TPM.
#[derive(Debug)]
pub struct Attester<T> {
    tpm: T,
    pcrs: PcrSpec,
    event_log: Vec<u8>,
    status: Status,
}

impl<T: Tpm> Attester<T> {
    /// An attester quoting `pcrs`, attaching `event_log` to every piece of evidence.
    pub fn new(tpm: T, pcrs: PcrSpec, event_log: Vec<u8>, ek_algorithm: &str) -> Self {
        Self {
            tpm,
            pcrs,
            event_log,
            status: Status::new(ek_algorithm),
        }
    }

    /// The current status.
    pub fn status(&self) -> &Status {
        &self.status
    }

    /// Asks the TPM who it is (connecting and creating the AK if needed); updates the status.
    pub fn refresh(&mut self) -> &Status {
        match self.tpm.identity() {
            Ok(identity) => self.succeeded(Some(&identity)),
            Err(err) => self.failed(&err),
        }
        &self.status
    }

    /// Evidence (`enigm_evidence::v1::Evidence` protobuf bytes) binding `nonce` and
    /// `posture_digest`, taken at `now` (seconds since the Unix epoch).
    pub fn evidence(
        &mut self,
        nonce: &[u8],
        posture_digest: &[u8],
        now: u64,
    ) -> Result<Vec<u8>, AttestError> {
        let qualifying = binding::qualifying_data(nonce, posture_digest)?;
        match self.quote(&qualifying) {
            Ok((identity, quote)) => {
                self.succeeded(Some(&identity));
                self.status.last_quote_time = now;
                Ok(encode(
                    identity,
                    quote,
                    self.event_log.clone(),
                    posture_digest,
                ))
            }
            Err(err) => {
                self.failed(&err);
                Err(err.into())
            }
        }
    }

    /// Recovers the secret of a `TPM2_MakeCredential` challenge made for this TPM's EK and AK.
    pub fn activate_credential(
        &mut self,
        credential_blob: &[u8],
        encrypted_secret: &[u8],
    ) -> Result<Vec<u8>, AttestError> {
        match self
            .tpm
            .activate_credential(credential_blob, encrypted_secret)
        {
            Ok(secret) => {
                self.succeeded(None);
                Ok(secret)
            }
            // The TPM answered: it is reachable, whatever it thought of the credential.
            Err(err @ (TpmError::CredentialRejected(_) | TpmError::Malformed(_))) => {
                self.succeeded(None);
                Err(err.into())
            }
            Err(err) => {
                self.failed(&err);
                Err(err.into())
            }
        }
    }

    fn quote(&mut self, qualifying: &[u8]) -> Result<(Identity, RawQuote), TpmError> {
        let identity = self.tpm.identity()?;
        let mut last = String::new();
        for attempt in 1..=QUOTE_ATTEMPTS {
            let quote = self.tpm.quote(qualifying, &self.pcrs)?;
            match check_quote(&quote, qualifying, &self.pcrs) {
                Ok(()) => return Ok((identity, quote)),
                Err(QuoteCheck::PcrsMoved) => {
                    tracing::info!(
                        attempt,
                        "PCRs changed between quote and read; quoting again"
                    );
                    last = "the PCRs kept changing between quote and read".into();
                }
                Err(QuoteCheck::Wrong(reason)) => {
                    return Err(TpmError::Command {
                        command: "Quote",
                        message: reason,
                    });
                }
            }
        }
        Err(TpmError::Command {
            command: "Quote",
            message: last,
        })
    }

    fn succeeded(&mut self, identity: Option<&Identity>) {
        self.status.tpm_reachable = true;
        self.status.last_error.clear();
        if let Some(identity) = identity {
            self.status.ak_loaded = true;
            self.status.ak_name = hex::encode(&identity.ak_name);
        }
    }

    fn failed(&mut self, err: &TpmError) {
        tracing::warn!(error = %err, "TPM operation failed");
        self.status.last_error = err.to_string();
        if err.is_unreachable() {
            self.status.tpm_reachable = false;
            self.status.ak_loaded = false;
        } else if matches!(err, TpmError::Storage(_)) {
            self.status.ak_loaded = false;
        }
    }
}

/// Why a quote was not handed out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuoteCheck {
    /// The PCR values read do not hash to the quoted digest: a PCR was extended in between.
    PcrsMoved,
    /// The quote is not what was asked for.
    Wrong(String),
}

/// Checks a quote against the request: qualifying data, PCR selection, PCR digest (SHA-256,
/// the AK's signing hash).
pub fn check_quote(quote: &RawQuote, qualifying: &[u8], spec: &PcrSpec) -> Result<(), QuoteCheck> {
    let attest = wire::parse_quote_attest(&quote.attest)
        .map_err(|err| QuoteCheck::Wrong(bad_quote(err).to_string()))?;
    if attest.extra_data != qualifying {
        return Err(QuoteCheck::Wrong(
            "the quote's qualifying data is not the one asked for".into(),
        ));
    }
    let quoted: Vec<(Option<_>, Vec<u8>)> = attest
        .pcr_select
        .iter()
        .map(|bank| (bank.algorithm, bank.indices.clone()))
        .collect();
    let wanted: Vec<(Option<_>, Vec<u8>)> = spec
        .banks()
        .iter()
        .map(|bank| (Some(bank.algorithm), bank.indices.iter().copied().collect()))
        .collect();
    if quoted != wanted {
        return Err(QuoteCheck::Wrong(format!(
            "the TPM quoted another PCR selection than {spec}"
        )));
    }
    let read: Vec<(Option<_>, Vec<u8>)> = quote
        .pcrs
        .iter()
        .map(|bank| {
            (
                Some(bank.algorithm),
                bank.values.iter().map(|(index, _)| *index).collect(),
            )
        })
        .collect();
    if read != wanted {
        return Err(QuoteCheck::Wrong(format!(
            "the PCR values read do not cover {spec}"
        )));
    }
    for bank in &quote.pcrs {
        if let Some((index, _)) = bank
            .values
            .iter()
            .find(|(_, digest)| digest.len() != bank.algorithm.digest_len())
        {
            return Err(QuoteCheck::Wrong(format!(
                "PCR {}:{index} has a digest of the wrong size",
                bank.algorithm.name()
            )));
        }
    }
    let mut hasher = openssl::sha::Sha256::new();
    for bank in &quote.pcrs {
        for (_, digest) in &bank.values {
            hasher.update(digest);
        }
    }
    if hasher.finish().as_slice() != attest.pcr_digest.as_slice() {
        return Err(QuoteCheck::PcrsMoved);
    }
    Ok(())
}

fn encode(
    identity: Identity,
    quote: RawQuote,
    event_log: Vec<u8>,
    posture_digest: &[u8],
) -> Vec<u8> {
    let pcrs = quote
        .pcrs
        .into_iter()
        .map(|bank| PcrBank {
            algorithm: bank.algorithm.to_proto().into(),
            values: bank
                .values
                .into_iter()
                .map(|(index, digest)| PcrValue {
                    index: u32::from(index),
                    digest,
                })
                .collect(),
        })
        .collect();
    v1::Evidence {
        kind: Some(evidence::Kind::Tpm(TpmEvidence {
            ak_public: identity.ak_public,
            attest: quote.attest,
            signature: quote.signature,
            pcrs,
            event_log,
            ek_public: identity.endorsement.public,
            ek_certificate: identity.endorsement.certificate.unwrap_or_default(),
        })),
        posture_digest: posture_digest.to_vec(),
    }
    .encode_to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EkAlgorithm;
    use crate::pcrs::PcrAlgorithm;
    use crate::tpm::BankValues;
    use crate::wire::tests::quote_attest;

    /// A TPM whose PCR 0 moves `moves` times between quote and read.
    struct FakeTpm {
        reachable: bool,
        moves: usize,
        quotes: usize,
        quote_selection: Option<[u8; 3]>,
    }

    impl FakeTpm {
        fn new() -> Self {
            Self {
                reachable: true,
                moves: 0,
                quotes: 0,
                quote_selection: None,
            }
        }
    }

    fn pcr_value(index: u8, generation: usize) -> Vec<u8> {
        vec![index.wrapping_add(generation as u8); 32]
    }

    impl Tpm for FakeTpm {
        fn identity(&mut self) -> Result<Identity, TpmError> {
            if !self.reachable {
                return Err(TpmError::Unreachable("no such socket".into()));
            }
            Ok(Identity {
                ek_algorithm: EkAlgorithm::Ecc,
                endorsement: crate::tpm::Endorsement {
                    public: vec![0, 1, 0xee],
                    certificate: None,
                },
                ak_public: vec![0, 1, 0xaa],
                ak_name: vec![0, 0x0b, 0xab],
            })
        }

        fn quote(&mut self, qualifying: &[u8], spec: &PcrSpec) -> Result<RawQuote, TpmError> {
            self.identity()?;
            self.quotes += 1;
            let bank = &spec.banks()[0];
            let generation = self.quotes;
            let quoted: Vec<u8> = bank
                .indices
                .iter()
                .flat_map(|i| pcr_value(*i, generation))
                .collect();
            let read_generation = if self.moves > 0 {
                self.moves -= 1;
                generation + 100
            } else {
                generation
            };
            let bitmap = self
                .quote_selection
                .unwrap_or_else(|| PcrSpec::bitmap(&bank.indices));
            Ok(RawQuote {
                attest: quote_attest(
                    qualifying,
                    &[(0x000b, bitmap)],
                    &openssl::sha::sha256(&quoted),
                ),
                signature: vec![0x00, 0x18],
                pcrs: vec![BankValues {
                    algorithm: PcrAlgorithm::Sha256,
                    values: bank
                        .indices
                        .iter()
                        .map(|i| (*i, pcr_value(*i, read_generation)))
                        .collect(),
                }],
            })
        }

        fn activate_credential(
            &mut self,
            blob: &[u8],
            _secret: &[u8],
        ) -> Result<Vec<u8>, TpmError> {
            self.identity()?;
            if blob == b"mine" {
                Ok(b"the secret".to_vec())
            } else {
                Err(TpmError::CredentialRejected(
                    "integrity check failed".into(),
                ))
            }
        }
    }

    fn attester(tpm: FakeTpm) -> Attester<FakeTpm> {
        Attester::new(tpm, PcrSpec::sha256_boot(), b"log".to_vec(), "ecc")
    }

    #[test]
    fn evidence_carries_the_bound_quote_and_the_pcrs() {
        let mut attester = attester(FakeTpm::new());
        let bytes = attester.evidence(&[1; 16], &[2; 32], 1234).unwrap();
        let evidence = v1::Evidence::decode(bytes.as_slice()).unwrap();
        assert_eq!(evidence.posture_digest, [2; 32]);
        let Some(evidence::Kind::Tpm(tpm)) = evidence.kind else {
            panic!("not TPM evidence");
        };
        let attest = wire::parse_quote_attest(&tpm.attest).unwrap();
        assert_eq!(
            attest.extra_data,
            binding::qualifying_data(&[1; 16], &[2; 32]).unwrap()
        );
        assert_eq!(tpm.ak_public, [0, 1, 0xaa]);
        assert_eq!(tpm.event_log, b"log");
        assert_eq!(tpm.ek_public, [0, 1, 0xee]);
        assert!(tpm.ek_certificate.is_empty());
        assert_eq!(tpm.pcrs.len(), 1);
        assert_eq!(tpm.pcrs[0].algorithm, i32::from(v1::HashAlgorithm::Sha256));
        let indices: Vec<u32> = tpm.pcrs[0].values.iter().map(|v| v.index).collect();
        assert_eq!(indices, [0, 1, 2, 3, 4, 5, 6, 7]);
        let status = attester.status();
        assert!(status.tpm_reachable && status.ak_loaded);
        assert_eq!(status.ak_name, "000bab");
        assert_eq!(status.last_quote_time, 1234);
    }

    #[test]
    fn moving_pcrs_are_quoted_again_but_not_forever() {
        let mut tpm = FakeTpm::new();
        tpm.moves = QUOTE_ATTEMPTS - 1;
        let mut once = attester(tpm);
        once.evidence(&[1; 16], &[2; 32], 1).unwrap();
        assert_eq!(once.tpm.quotes, QUOTE_ATTEMPTS);

        let mut tpm = FakeTpm::new();
        tpm.moves = QUOTE_ATTEMPTS;
        let mut never = attester(tpm);
        let err = never.evidence(&[1; 16], &[2; 32], 1).unwrap_err();
        assert!(err.to_string().contains("kept changing"), "{err}");
        assert_eq!(never.status().last_quote_time, 0);
    }

    #[test]
    fn a_quote_over_another_selection_is_refused() {
        let mut tpm = FakeTpm::new();
        tpm.quote_selection = Some([0x7f, 0, 0]);
        let err = attester(tpm).evidence(&[1; 16], &[2; 32], 1).unwrap_err();
        assert!(
            matches!(&err, AttestError::Failed(m) if m.contains("another PCR selection")),
            "{err}"
        );
    }

    #[test]
    fn bad_input_and_unreachable_tpm() {
        let mut attester = attester(FakeTpm::new());
        assert!(matches!(
            attester.evidence(&[1; 4], &[2; 32], 1),
            Err(AttestError::InvalidInput(_))
        ));
        let mut tpm = FakeTpm::new();
        tpm.reachable = false;
        let mut down = Attester::new(tpm, PcrSpec::sha256_boot(), Vec::new(), "ecc");
        assert!(matches!(
            down.evidence(&[1; 16], &[2; 32], 1),
            Err(AttestError::Unavailable(_))
        ));
        let status = down.refresh();
        assert!(!status.tpm_reachable && !status.ak_loaded);
        assert!(status.last_error.contains("no such socket"));
    }

    #[test]
    fn credentials_activate_only_when_made_for_us() {
        let mut attester = attester(FakeTpm::new());
        assert_eq!(
            attester.activate_credential(b"mine", b"s").unwrap(),
            b"the secret"
        );
        assert!(matches!(
            attester.activate_credential(b"theirs", b"s"),
            Err(AttestError::CredentialRejected(_))
        ));
        assert!(attester.status().tpm_reachable);
    }
}
