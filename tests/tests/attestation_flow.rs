//! The whole TPM attestation flow against a real (software) TPM: enigm-attestd on a private
//! bus, the verifier library enrolling the device (MakeCredential → the daemon's
//! ActivateCredential), challenging it, and appraising its evidence — affirming for a genuine
//! device, and refused with the right claim for each attack a real TPM can show: a changed PCR,
//! a replayed nonce, another TPM's AK, a flipped signature byte, an AK never activated, an event
//! log that does not replay, and a TPM reset without re-enrollment. (A clock going backwards
//! cannot be produced on a TPM; `attestation/verifier/tests/tpm_appraisal.rs` covers it with
//! the software attester.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Result, bail};
use enigm_attestd::client::AttestationProxy;
use enigm_attestd::service::BUS_NAME;
use enigm_e2e::{Daemon, PrivateBus, Swtpm, attestd_command, require_tool};
use enigm_evidence::v1::{Evidence, evidence};
use enigm_tpm_evidence::eventlog::EventLogWriter;
use enigm_tpm_evidence::hash::HashAlg;
use enigm_verifier::appraisal::{Appraisal, Tier};
use enigm_verifier::policy::Policy;
use enigm_verifier::tpm::{TpmVerifier, pcr_values};
use prost::Message;

const NOW: u64 = 1_000;

/// A device: a TPM whose PCRs were extended by the measurements in its event log, and the
/// attester daemon serving it.
struct Device {
    tpm: Swtpm,
    bus: PrivateBus,
    root: tempfile::TempDir,
    daemon: Option<Daemon>,
}

fn measure_boot(tpm: &Swtpm, root: &Path, measurements: &[(u32, &[u8])]) -> Result<()> {
    let mut log = EventLogWriter::new(&[HashAlg::Sha256]);
    for (pcr, data) in measurements {
        let digests = log.measure(*pcr, 0x8000_0001, data)?;
        let status = Command::new("tpm2_pcrextend")
            .arg(format!("{pcr}:sha256={}", hex::encode(&digests[0].1)))
            .env("TPM2TOOLS_TCTI", tpm.tcti())
            .status()?;
        if !status.success() {
            bail!("tpm2_pcrextend failed");
        }
    }
    write_log(root, log.bytes())
}

fn write_log(root: &Path, bytes: &[u8]) -> Result<()> {
    let dir = root.join("sys/kernel/security/tpm0");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("binary_bios_measurements"), bytes)?;
    Ok(())
}

const BOOT: &[(u32, &[u8])] = &[
    (0, b"firmware 1.2"),
    (2, b"option roms"),
    (4, b"shim + grub"),
    (7, b"secure boot db"),
];

impl Device {
    async fn boot(measurements: &[(u32, &[u8])]) -> Result<Self> {
        let tpm = Swtpm::start()?;
        let root = tempfile::Builder::new().prefix("enigm-device").tempdir()?;
        std::fs::set_permissions(
            root.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )?;
        measure_boot(&tpm, root.path(), measurements)?;
        let mut device = Self {
            tpm,
            bus: PrivateBus::start("")?,
            root,
            daemon: None,
        };
        device.start_daemon().await?;
        Ok(device)
    }

    async fn start_daemon(&mut self) -> Result<()> {
        self.daemon = None;
        let daemon = Daemon::spawn(attestd_command(
            &self.bus,
            self.root.path(),
            &self.tpm.tcti(),
        )?)?;
        if let Err(err) = self
            .bus
            .wait_for_name(BUS_NAME, Duration::from_secs(20))
            .await
        {
            bail!("{err}; stderr:\n{}", daemon.stderr());
        }
        // The name is released only when the old process is gone; wait for the new owner.
        self.daemon = Some(daemon);
        Ok(())
    }

    async fn evidence(&self, nonce: &[u8]) -> Result<Evidence> {
        let connection = self.bus.connect().await?;
        let proxy = AttestationProxy::new(&connection).await?;
        let posture = openssl::sha::sha256(b"{\"level\":4,\"runtime_issue\":false}");
        let bytes = proxy.get_evidence(nonce, &posture).await?;
        Ok(Evidence::decode(bytes.as_slice())?)
    }

    async fn activate(&self, blob: &[u8], secret: &[u8]) -> Result<Vec<u8>> {
        let connection = self.bus.connect().await?;
        let proxy = AttestationProxy::new(&connection).await?;
        Ok(proxy.activate_credential(blob, secret).await?)
    }
}

fn tpm(evidence: &Evidence) -> &enigm_evidence::v1::TpmEvidence {
    match &evidence.kind {
        Some(evidence::Kind::Tpm(tpm)) => tpm,
        _ => panic!("TPM evidence"),
    }
}

/// Enrolls `device` as `id` with `verifier`; `activate` decides whether it completes.
async fn enroll(
    verifier: &mut TpmVerifier,
    id: &str,
    device: &Device,
    activate: bool,
) -> Result<()> {
    let first = device.evidence(&[0u8; 32]).await?;
    let ev = tpm(&first);
    let credential = verifier.enroll(id, &ev.ek_public, &ev.ak_public)?;
    if activate {
        let secret = device
            .activate(&credential.credential_blob, &credential.encrypted_secret)
            .await?;
        verifier.activate(id, &secret)?;
    }
    Ok(())
}

/// A policy with the device's current sha256 PCR 0–7 values as golden values.
async fn golden_policy(device: &Device) -> Result<Policy> {
    let evidence = device.evidence(&[1u8; 32]).await?;
    let values = pcr_values(tpm(&evidence));
    let mut text = String::from("[tpm]\nrequire_event_log = true\n[tpm.pcrs]\n");
    for pcr in 0..8 {
        text.push_str(&format!(
            "{pcr} = [\"{}\"]\n",
            hex::encode(values.get(HashAlg::Sha256, pcr).unwrap())
        ));
    }
    Policy::parse(&text).map_err(anyhow::Error::msg)
}

async fn attest(
    verifier: &mut TpmVerifier,
    id: &str,
    device: &Device,
) -> Result<(Appraisal, Vec<u8>, Evidence)> {
    let nonce = verifier.challenge(NOW)?;
    let evidence = device.evidence(&nonce).await?;
    Ok((
        verifier.appraise(id, &nonce, &evidence, NOW),
        nonce,
        evidence,
    ))
}

fn assert_refuted(appraisal: &Appraisal, claim: &str, reason: &str, case: &str) {
    let refuted = appraisal
        .first_refuted()
        .unwrap_or_else(|| panic!("{case}: not refuted: {:#?}", appraisal.claims));
    assert_eq!(refuted.name, claim, "{case}: {:#?}", appraisal.claims);
    assert!(
        refuted.reason.contains(reason),
        "{case}: {:?} should say {reason:?}",
        refuted.reason
    );
}

#[tokio::test]
async fn enrollment_challenge_and_appraisal_on_a_real_tpm() -> Result<()> {
    require_tool("tpm2_pcrextend", "tpm2-tools")?;
    let mut device = Device::boot(BOOT).await?;
    let mut verifier = TpmVerifier::new(golden_policy(&device).await?, 60);
    enroll(&mut verifier, "phone", &device, true).await?;

    // Genuine evidence is affirming, on every claim.
    let (appraisal, nonce, evidence) = attest(&mut verifier, "phone", &device).await?;
    assert_eq!(appraisal.tier(), Tier::Affirming, "{:#?}", appraisal.claims);

    // The same evidence and nonce again.
    assert_refuted(
        &verifier.appraise("phone", &nonce, &evidence, NOW),
        "nonce",
        "already used",
        "replayed nonce",
    );

    // A flipped signature byte.
    let nonce = verifier.challenge(NOW)?;
    let mut flipped = device.evidence(&nonce).await?;
    if let Some(evidence::Kind::Tpm(t)) = &mut flipped.kind {
        let at = t.signature.len() - 5;
        t.signature[at] ^= 0x10;
    }
    assert_refuted(
        &verifier.appraise("phone", &nonce, &flipped, NOW),
        "signature",
        "does not verify",
        "flipped signature",
    );

    // Another TPM's AK answering this device's challenge.
    let other = Device::boot(BOOT).await?;
    let nonce = verifier.challenge(NOW)?;
    let foreign = other.evidence(&nonce).await?;
    assert_refuted(
        &verifier.appraise("phone", &nonce, &foreign, NOW),
        "ak-binding",
        "not the one enrolled",
        "another TPM's AK",
    );

    // A device whose enrollment never completed ActivateCredential.
    enroll(&mut verifier, "tablet", &other, false).await?;
    let (appraisal, _, _) = attest(&mut verifier, "tablet", &other).await?;
    assert_refuted(
        &appraisal,
        "ak-binding",
        "not activated",
        "AK not activated",
    );

    // An event log that does not replay to the PCRs (the daemon restarted with another log;
    // the AK is kept, so only the log is wrong).
    let mut other_log = EventLogWriter::new(&[HashAlg::Sha256]);
    for (pcr, data) in BOOT {
        let data: &[u8] = if *pcr == 4 {
            b"a bootloader the TPM never measured"
        } else {
            data
        };
        other_log.measure(*pcr, 0x8000_0001, data)?;
    }
    write_log(device.root.path(), other_log.bytes())?;
    device.start_daemon().await?;
    let (appraisal, _, _) = attest(&mut verifier, "phone", &device).await?;
    assert_refuted(
        &appraisal,
        "event-log",
        "does not replay to the quoted PCR 4",
        "event log",
    );
    let mut good_log = EventLogWriter::new(&[HashAlg::Sha256]);
    for (pcr, data) in BOOT {
        good_log.measure(*pcr, 0x8000_0001, data)?;
    }
    write_log(device.root.path(), good_log.bytes())?;
    device.start_daemon().await?;
    let (appraisal, _, _) = attest(&mut verifier, "phone", &device).await?;
    assert_eq!(
        appraisal.tier(),
        Tier::Affirming,
        "the right log again: {:#?}",
        appraisal.claims
    );

    // A changed PCR: something else was measured into PCR 7.
    let status = Command::new("tpm2_pcrextend")
        .arg(format!("7:sha256={}", "ab".repeat(32)))
        .env("TPM2TOOLS_TCTI", device.tpm.tcti())
        .status()?;
    assert!(status.success());
    let (appraisal, _, _) = attest(&mut verifier, "phone", &device).await?;
    assert_refuted(&appraisal, "pcrs", "PCR 7", "changed PCR");
    Ok(())
}

#[tokio::test]
async fn a_tpm_reset_needs_a_re_enrollment() -> Result<()> {
    require_tool("tpm2_pcrextend", "tpm2-tools")?;
    let mut device = Device::boot(&[]).await?;
    let policy = Policy::parse("[tpm]\nrequire_event_log = false\n").map_err(anyhow::Error::msg)?;
    let mut verifier = TpmVerifier::new(policy, 60);
    enroll(&mut verifier, "phone", &device, true).await?;
    let (appraisal, _, _) = attest(&mut verifier, "phone", &device).await?;
    assert_ne!(
        appraisal.tier(),
        Tier::Contraindicated,
        "{:#?}",
        appraisal.claims
    );

    // Power cycle: swtpm restarts with the same state; TPM2_Startup(CLEAR) counts a reset.
    device.tpm.restart()?;
    device.start_daemon().await?;
    let (appraisal, _, _) = attest(&mut verifier, "phone", &device).await?;
    assert_refuted(&appraisal, "clock", "reset counter changed", "TPM reset");

    // Enrolling again accepts the new boot.
    enroll(&mut verifier, "phone", &device, true).await?;
    let (appraisal, _, _) = attest(&mut verifier, "phone", &device).await?;
    assert_ne!(
        appraisal.tier(),
        Tier::Contraindicated,
        "{:#?}",
        appraisal.claims
    );
    Ok(())
}
