//! TPM appraisal: affirming evidence, and each attack refused with the right claim and reason.
//! Quotes come from the software attester, which writes the TPM's exact wire format; the
//! end-to-end tests repeat the important cases with a real (software) TPM and enigm-attestd.

#![allow(clippy::unwrap_used, clippy::panic)] // test helpers: a failed setup should stop the test

use enigm_evidence::v1::{Evidence, HashAlgorithm, PcrBank, PcrValue, TpmEvidence, evidence::Kind};
use enigm_tpm_evidence::attest::ClockInfo;
use enigm_tpm_evidence::eventlog::EventLogWriter;
use enigm_tpm_evidence::hash::HashAlg;
use enigm_tpm_evidence::pcr::{PcrSelection, PcrValues};
use enigm_tpm_evidence::soft::{KeyKind, SoftwareAk};
use enigm_verifier::appraisal::Tier;
use enigm_verifier::policy::Policy;
use enigm_verifier::qualifying_data;
use enigm_verifier::tpm::{DeviceRecord, TpmVerifier};

const POSTURE: &[u8] = b"posture-digest-0123456789abcdef!";

/// A simulated device: an AK, PCRs extended by a matching event log.
struct Device {
    ak: SoftwareAk,
    values: PcrValues,
    log: Vec<u8>,
    clock: ClockInfo,
}

impl Device {
    fn new(kind: KeyKind) -> Self {
        let mut writer = EventLogWriter::new(&[HashAlg::Sha256]);
        let mut values = PcrValues::default();
        for pcr in 0..8 {
            values.insert(HashAlg::Sha256, pcr, vec![0; 32]);
        }
        for (pcr, data) in [
            (0u32, &b"firmware"[..]),
            (4, b"bootloader"),
            (7, b"secure boot db"),
        ] {
            let digests = writer.measure(pcr, 0x8000_0001, data).unwrap();
            let current = values.get(HashAlg::Sha256, pcr).unwrap().to_vec();
            let next = HashAlg::Sha256.digest(&[&current, &digests[0].1]).unwrap();
            values.insert(HashAlg::Sha256, pcr, next);
        }
        Self {
            ak: SoftwareAk::generate(kind).unwrap(),
            values,
            log: writer.bytes().to_vec(),
            clock: ClockInfo {
                clock: 5_000,
                reset_count: 2,
                restart_count: 0,
                safe: true,
            },
        }
    }

    fn evidence(&self, nonce: &[u8]) -> Evidence {
        let selection = PcrSelection::parse("sha256:0,1,2,3,4,5,6,7").unwrap();
        let (attest, signature) = self
            .ak
            .quote(
                &qualifying_data(nonce, POSTURE).unwrap(),
                &selection,
                &self.values,
                self.clock,
            )
            .unwrap();
        let bank = PcrBank {
            algorithm: HashAlgorithm::Sha256 as i32,
            values: (0..8)
                .map(|i| PcrValue {
                    index: i,
                    digest: self.values.get(HashAlg::Sha256, i).unwrap().to_vec(),
                })
                .collect(),
        };
        Evidence {
            kind: Some(Kind::Tpm(TpmEvidence {
                ak_public: self.ak.tpm2b_public(),
                attest,
                signature,
                pcrs: vec![bank],
                event_log: self.log.clone(),
                ek_public: Vec::new(),
                ek_certificate: Vec::new(),
            })),
            posture_digest: POSTURE.to_vec(),
        }
    }

    fn record(&self) -> DeviceRecord {
        DeviceRecord {
            ak_name: self.ak.name().unwrap(),
            pending_secret: None,
            ak_activated: true,
            last_clock: None,
        }
    }
}

fn golden_policy(device: &Device) -> Policy {
    let pcr = |i| hex::encode(device.values.get(HashAlg::Sha256, i).unwrap());
    Policy::parse(&format!(
        "[tpm.pcrs]\n0 = [\"{}\"]\n7 = [\"{}\", \"{}\"]\n",
        pcr(0),
        "00".repeat(32),
        pcr(7)
    ))
    .unwrap()
}

fn verifier_for(device: &Device) -> TpmVerifier {
    let mut verifier = TpmVerifier::new(golden_policy(device), 60);
    verifier.restore_device("phone", device.record());
    verifier
}

#[test]
fn genuine_evidence_is_affirming_for_ecc_and_rsa() {
    for kind in [KeyKind::EccP256, KeyKind::Rsa2048] {
        let device = Device::new(kind);
        let mut verifier = verifier_for(&device);
        let nonce = verifier.challenge(100).unwrap();
        let appraisal = verifier.appraise("phone", &nonce, &device.evidence(&nonce), 100);
        assert_eq!(
            appraisal.tier(),
            Tier::Affirming,
            "{kind:?}: {:#?}",
            appraisal.claims
        );
        let names: Vec<&str> = appraisal.claims.iter().map(|c| c.name).collect();
        for claim in [
            "ak",
            "ak-binding",
            "signature",
            "nonce",
            "pcr-digest",
            "pcrs",
            "event-log",
            "clock",
        ] {
            assert!(names.contains(&claim), "{claim} appraised");
        }
    }
}

fn tpm(evidence: &mut Evidence) -> &mut TpmEvidence {
    match &mut evidence.kind {
        Some(Kind::Tpm(tpm)) => tpm,
        _ => unreachable!(),
    }
}

/// Re-quotes with the device's current state (after the test changed it).
fn requote(device: &Device, evidence: &mut Evidence, nonce: &[u8]) {
    *evidence = device.evidence(nonce);
}

#[test]
fn each_attack_is_refused_with_its_reason() {
    let cases: Vec<(&str, Tamper, &str, &str)> = vec![
        (
            "changed PCR",
            Box::new(|device, _, evidence| {
                device.values.insert(HashAlg::Sha256, 7, vec![0x66; 32]);
                // The quote covers the new value (the TPM really measured something else).
                let extra = enigm_tpm_evidence::attest::Attest::parse(&tpm(evidence).attest)
                    .unwrap()
                    .extra_data;
                let selection = PcrSelection::parse("sha256:0,1,2,3,4,5,6,7").unwrap();
                let (attest, signature) = device
                    .ak
                    .quote(&extra, &selection, &device.values, device.clock)
                    .unwrap();
                let t = tpm(evidence);
                t.attest = attest;
                t.signature = signature;
                t.pcrs[0].values[7].digest = vec![0x66; 32];
            }),
            "pcrs",
            "PCR 7",
        ),
        (
            "replayed nonce",
            Box::new(|device, verifier, evidence| {
                let nonce = verifier.challenge(150).unwrap();
                let replay = device.evidence(&nonce);
                assert_eq!(
                    verifier.appraise("phone", &nonce, &replay, 150).tier(),
                    Tier::Affirming
                );
                // The same evidence and nonce again.
                *evidence = replay;
                NONCE_OVERRIDE.with(|cell| *cell.borrow_mut() = Some(nonce));
            }),
            "nonce",
            "already used",
        ),
        (
            "another TPM's AK",
            Box::new(|_, _, evidence| {
                let other = Device::new(KeyKind::EccP256);
                let extra = enigm_tpm_evidence::attest::Attest::parse(&tpm(evidence).attest)
                    .unwrap()
                    .extra_data;
                let nonce_evidence = other.evidence(b"unused");
                let selection = PcrSelection::parse("sha256:0,1,2,3,4,5,6,7").unwrap();
                let (attest, signature) = other
                    .ak
                    .quote(&extra, &selection, &other.values, other.clock)
                    .unwrap();
                *evidence = nonce_evidence;
                let t = tpm(evidence);
                t.attest = attest;
                t.signature = signature;
            }),
            "ak-binding",
            "not the one enrolled",
        ),
        (
            "flipped signature byte",
            Box::new(|_, _, evidence| {
                let sig = &mut tpm(evidence).signature;
                let at = sig.len() - 3;
                sig[at] ^= 0x01;
            }),
            "signature",
            "does not verify",
        ),
        (
            "AK not activated",
            Box::new(|device, verifier, _| {
                let mut record = device.record();
                record.ak_activated = false;
                verifier.restore_device("phone", record);
            }),
            "ak-binding",
            "not activated",
        ),
        (
            "event log that does not replay",
            Box::new(|_, _, evidence| {
                let mut writer = EventLogWriter::new(&[HashAlg::Sha256]);
                writer.measure(0, 0x8000_0001, b"firmware").unwrap();
                writer
                    .measure(4, 0x8000_0001, b"a different bootloader")
                    .unwrap();
                tpm(evidence).event_log = writer.bytes().to_vec();
            }),
            "event-log",
            "does not replay",
        ),
        (
            "quote clock going backwards",
            Box::new(|device, _, evidence| {
                device.clock.clock = 10;
                let nonce = NONCE_OF.with(|cell| cell.borrow().clone());
                requote(device, evidence, &nonce);
            }),
            "clock",
            "went backwards",
        ),
        (
            "reset counter change without re-enrollment",
            Box::new(|device, _, evidence| {
                device.clock.reset_count += 1;
                let nonce = NONCE_OF.with(|cell| cell.borrow().clone());
                requote(device, evidence, &nonce);
            }),
            "clock",
            "without a re-enrollment",
        ),
    ];
    for (name, tamper, claim, reason) in cases {
        let (refuted, why) = refusal_with_nonce(tamper);
        assert_eq!(refuted, claim, "{name}: refuted {refuted} ({why})");
        assert!(
            why.contains(reason),
            "{name}: reason {why:?} should say {reason:?}"
        );
    }
}

thread_local! {
    static NONCE_OVERRIDE: std::cell::RefCell<Option<Vec<u8>>> = const { std::cell::RefCell::new(None) };
    static NONCE_OF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

type Tamper = Box<dyn FnOnce(&mut Device, &mut TpmVerifier, &mut Evidence)>;

/// After a first accepted quote (which sets the clock history), appraises a second one that
/// `tamper` changed; a tamper may swap in another nonce (`NONCE_OVERRIDE`). Returns the first
/// refuted claim and its reason.
fn refusal_with_nonce(tamper: Tamper) -> (String, String) {
    let mut device = Device::new(KeyKind::EccP256);
    let mut verifier = verifier_for(&device);
    let nonce = verifier.challenge(100).unwrap();
    assert_eq!(
        verifier
            .appraise("phone", &nonce, &device.evidence(&nonce), 100)
            .tier(),
        Tier::Affirming
    );
    device.clock.clock += 1000;
    let nonce = verifier.challenge(200).unwrap();
    NONCE_OF.with(|cell| *cell.borrow_mut() = nonce.clone());
    NONCE_OVERRIDE.with(|cell| *cell.borrow_mut() = None);
    let mut evidence = device.evidence(&nonce);
    tamper(&mut device, &mut verifier, &mut evidence);
    let nonce = NONCE_OVERRIDE
        .with(|cell| cell.borrow_mut().take())
        .unwrap_or(nonce);
    let appraisal = verifier.appraise("phone", &nonce, &evidence, 200);
    let refuted = appraisal
        .first_refuted()
        .unwrap_or_else(|| panic!("not refuted: {:#?}", appraisal.claims));
    (refuted.name.to_owned(), refuted.reason.clone())
}

#[test]
fn unknown_devices_and_expired_nonces_are_refused() {
    let device = Device::new(KeyKind::Rsa2048);
    let mut verifier = verifier_for(&device);
    let nonce = verifier.challenge(100).unwrap();
    let late = verifier.appraise("phone", &nonce, &device.evidence(&nonce), 161);
    assert!(late.refutes("nonce") && late.claims[0].reason.contains("expired"));
    let nonce = verifier.challenge(100).unwrap();
    let stranger = verifier.appraise("tablet", &nonce, &device.evidence(&nonce), 100);
    assert!(stranger.refutes("ak-binding"));
    let nonce = verifier.challenge(100).unwrap();
    let mut wrong_posture = device.evidence(&nonce);
    wrong_posture.posture_digest = b"another posture report digest!!!".to_vec();
    assert!(
        verifier
            .appraise("phone", &nonce, &wrong_posture, 100)
            .refutes("nonce"),
        "posture digest is bound"
    );
}
