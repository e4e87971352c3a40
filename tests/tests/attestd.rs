//! enigm-attestd end to end: a private dbus-daemon with the shipped bus policy, a real software
//! TPM (swtpm), and the real daemon binary dropping to its system user under its seccomp
//! filter. Its answers are checked by code we did not write: tpm2-tools (`tpm2_checkquote`,
//! `tpm2_print`, `tpm2_makecredential`), `openssl` and `systemd-analyze`.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use enigm_attestd::client::{AttestationProxy, PostureSignalProxy};
use enigm_attestd::service::BUS_NAME;
use enigm_e2e::{Daemon, PrivateBus, Swtpm, attestd_command, require_tool, uid_of};
use enigm_evidence::v1::{Evidence, PcrBank, TpmEvidence, evidence};
use prost::Message;

const START: Duration = Duration::from_secs(20);

/// Not a real log: the daemon hands over the bytes as they are, which is what is checked.
const EVENT_LOG: &[u8] = b"\x00\x00\x00\x00\x03\x00\x00\x00enigm test event log";

/// A bus, a sysroot with an event log, and the daemon on a TPM.
struct Setup {
    daemon: Daemon,
    root: tempfile::TempDir,
    bus: PrivateBus,
}

fn sysroot() -> Result<tempfile::TempDir> {
    let root = tempfile::Builder::new().prefix("enigm-attestd").tempdir()?;
    std::fs::set_permissions(
        root.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )?;
    let log = root.path().join("sys/kernel/security/tpm0");
    std::fs::create_dir_all(&log)?;
    std::fs::write(log.join("binary_bios_measurements"), EVENT_LOG)?;
    Ok(root)
}

async fn start_on(
    bus: PrivateBus,
    root: tempfile::TempDir,
    tpm: &Swtpm,
    configure: impl FnOnce(&mut Command),
) -> Result<Setup> {
    let mut command = attestd_command(&bus, root.path(), &tpm.tcti())?;
    configure(&mut command);
    let daemon = Daemon::spawn(command)?;
    if let Err(err) = bus.wait_for_name(BUS_NAME, START).await {
        bail!("{err}; daemon stderr:\n{}", daemon.stderr());
    }
    Ok(Setup { daemon, root, bus })
}

async fn start(tpm: &Swtpm, configure: impl FnOnce(&mut Command)) -> Result<Setup> {
    start_on(PrivateBus::start("")?, sysroot()?, tpm, configure).await
}

fn sha256(parts: &[&[u8]]) -> Result<Vec<u8>> {
    // openssl(1) as the oracle for the binding, not our own code.
    let dir = tempfile::tempdir()?;
    let input = dir.path().join("input");
    std::fs::write(&input, parts.concat())?;
    let output = Command::new("openssl")
        .args(["dgst", "-sha256", "-binary"])
        .arg(&input)
        .output()?;
    ensure!(output.status.success(), "openssl dgst failed");
    Ok(output.stdout)
}

fn run(dir: &Path, program: &str, args: &[&str]) -> Result<std::process::Output> {
    let output = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .with_context(|| format!("running {program}"))?;
    Ok(output)
}

fn run_ok(dir: &Path, program: &str, args: &[&str]) -> Result<Vec<u8>> {
    let output = run(dir, program, args)?;
    ensure!(
        output.status.success(),
        "{program} {} failed: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(output.stdout)
}

fn tpm_evidence(bytes: &[u8]) -> Result<(Evidence, TpmEvidence)> {
    let evidence = Evidence::decode(bytes)?;
    match &evidence.kind {
        Some(evidence::Kind::Tpm(tpm)) => {
            let tpm = tpm.clone();
            Ok((evidence, tpm))
        }
        other => bail!("not TPM evidence: {other:?}"),
    }
}

/// The PCR file `tpm2_quote -o` writes and `tpm2_checkquote -f` reads: tpm2-tools dumps its
/// in-memory structures (little-endian, C layout): a `TPML_PCR_SELECTION` (count, then 16
/// `TPMS_PCR_SELECTION` of hash u16, sizeofSelect u8, pcrSelect[4], one byte of padding), the
/// number of `TPML_DIGEST`s (u32), and each `TPML_DIGEST` (count, then 8 `TPM2B_DIGEST` of
/// size u16 and a 64-byte buffer), the digests in selection order, 8 to a list.
fn tpm2_tools_pcr_file(banks: &[PcrBank]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(banks.len() as u32).to_le_bytes());
    for n in 0..16 {
        let mut selection = [0u8; 8];
        if let Some(bank) = banks.get(n) {
            let alg: u16 = match bank.algorithm {
                1 => 0x0004,
                2 => 0x000b,
                3 => 0x000c,
                _ => 0x000d,
            };
            selection[..2].copy_from_slice(&alg.to_le_bytes());
            selection[2] = 3;
            for value in &bank.values {
                selection[3 + value.index as usize / 8] |= 1 << (value.index % 8);
            }
        }
        out.extend_from_slice(&selection);
    }
    let digests: Vec<&[u8]> = banks
        .iter()
        .flat_map(|bank| bank.values.iter().map(|v| v.digest.as_slice()))
        .collect();
    let lists: Vec<&[&[u8]]> = digests.chunks(8).collect();
    out.extend_from_slice(&(lists.len() as u32).to_le_bytes());
    for list in lists {
        out.extend_from_slice(&(list.len() as u32).to_le_bytes());
        for n in 0..8 {
            let mut digest = [0u8; 66];
            if let Some(value) = list.get(n) {
                digest[..2].copy_from_slice(&(value.len() as u16).to_le_bytes());
                digest[2..2 + value.len()].copy_from_slice(value);
            }
            out.extend_from_slice(&digest);
        }
    }
    out
}

/// Writes the evidence's quote as tpm2-tools files in `dir`: `ak.pub` (TPM2B_PUBLIC),
/// `ak.pem`, `quote.msg`, `quote.sig`, `quote.pcrs`.
fn write_quote_files(dir: &Path, tpm: &TpmEvidence) -> Result<()> {
    std::fs::write(dir.join("ak.pub"), &tpm.ak_public)?;
    let pem = run_ok(
        dir,
        "tpm2_print",
        &["-t", "TPM2B_PUBLIC", "-f", "pem", "ak.pub"],
    )?;
    std::fs::write(dir.join("ak.pem"), pem)?;
    std::fs::write(dir.join("quote.msg"), &tpm.attest)?;
    std::fs::write(dir.join("quote.sig"), &tpm.signature)?;
    std::fs::write(dir.join("quote.pcrs"), tpm2_tools_pcr_file(&tpm.pcrs))?;
    Ok(())
}

fn checkquote(dir: &Path, qualifying: &[u8], pcrs_file: bool) -> Result<std::process::Output> {
    let qualifying = hex::encode(qualifying);
    let mut args = vec![
        "-u",
        "ak.pem",
        "-m",
        "quote.msg",
        "-s",
        "quote.sig",
        "-g",
        "sha256",
        "-q",
        &qualifying,
    ];
    if pcrs_file {
        args.extend(["-f", "quote.pcrs"]);
    }
    run(dir, "tpm2_checkquote", &args)
}

/// The `extraData` of a TPMS_ATTEST, as tpm2_print decodes it.
fn extra_data(dir: &Path) -> Result<Vec<u8>> {
    let text = String::from_utf8(run_ok(
        dir,
        "tpm2_print",
        &["-t", "TPMS_ATTEST", "quote.msg"],
    )?)?;
    let line = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("extraData:"))
        .context("no extraData in tpm2_print output")?;
    Ok(hex::decode(line.trim())?)
}

/// The TPM name of a TPM2B_PUBLIC: `000b` (SHA-256) and the SHA-256 of the TPMT_PUBLIC.
fn tpm_name(public: &[u8]) -> Result<String> {
    Ok(format!("000b{}", hex::encode(sha256(&[&public[2..]])?)))
}

fn require_tpm2_tools() -> Result<()> {
    require_tool("tpm2_checkquote", "tpm2-tools")?;
    require_tool("openssl", "openssl")
}

#[tokio::test]
async fn evidence_binds_nonce_and_posture_and_tpm2_checkquote_verifies_it() -> Result<()> {
    require_tpm2_tools()?;
    let tpm = Swtpm::start()?;
    let setup = start(&tpm, |_| {}).await?;
    let connection = setup.bus.connect().await?;
    let proxy = AttestationProxy::new(&connection).await?;

    let nonce: Vec<u8> = (0u8..32).map(|n| n.wrapping_mul(37)).collect();
    let posture = sha256(&[b"{\"level\":4}"])?;
    let bytes = proxy.get_evidence(&nonce, &posture).await?;
    let (evidence, tpm_ev) = tpm_evidence(&bytes)?;
    assert_eq!(evidence.posture_digest, posture);
    assert_eq!(
        tpm_ev.event_log, EVENT_LOG,
        "the event log from the sysroot"
    );
    let ek_public = &tpm_ev.ek_public;
    ensure!(
        !ek_public.is_empty(),
        "the evidence carries the EK public area"
    );
    ensure!(
        tpm_ev.ek_certificate.is_empty(),
        "this TPM has no EK certificate"
    );

    let work = tempfile::tempdir()?;
    let dir = work.path();
    write_quote_files(dir, &tpm_ev)?;
    let qualifying = sha256(&[b"enigm-attest-v1", &nonce, &posture])?;
    assert_eq!(
        extra_data(dir)?,
        qualifying,
        "extraData binds nonce and posture"
    );

    // The PCRs: the configured selection, in order, SHA-256 digests.
    assert_eq!(tpm_ev.pcrs.len(), 1);
    assert_eq!(tpm_ev.pcrs[0].algorithm, 2, "sha256 bank");
    let indices: Vec<u32> = tpm_ev.pcrs[0].values.iter().map(|v| v.index).collect();
    assert_eq!(indices, [0, 1, 2, 3, 4, 5, 6, 7]);
    assert!(tpm_ev.pcrs[0].values.iter().all(|v| v.digest.len() == 32));

    // The outside oracle: signature, message, qualifying data and PCR digest.
    let verdict = checkquote(dir, &qualifying, true)?;
    assert!(
        verdict.status.success(),
        "tpm2_checkquote rejected the daemon's quote: {}",
        String::from_utf8_lossy(&verdict.stderr)
    );
    // ... and it rejects what does not match: another posture, another PCR value.
    let other = sha256(&[b"enigm-attest-v1", &nonce, &[0u8; 32]])?;
    assert!(!checkquote(dir, &other, true)?.status.success());
    let mut tampered = tpm_ev.clone();
    tampered.pcrs[0].values[3].digest[0] ^= 1;
    std::fs::write(dir.join("quote.pcrs"), tpm2_tools_pcr_file(&tampered.pcrs))?;
    assert!(!checkquote(dir, &qualifying, true)?.status.success());

    // The EK: an ECC P-256 public area, as tpm2_print reads it.
    std::fs::write(dir.join("ek.pub"), ek_public)?;
    let ek = String::from_utf8(run_ok(
        dir,
        "tpm2_print",
        &["-t", "TPM2B_PUBLIC", "ek.pub"],
    )?)?;
    // TCG default EK template L-2: P-256, AES-128-CFB, policy A (PolicySecret(endorsement)).
    for needle in [
        "value: ecc",
        "NIST p256",
        "sym-keybits: 128",
        "authorization policy: 837197674484b3f81a90cc8d46a5d724fd52d76e06520b64f2a1da1b331469aa",
    ] {
        assert!(ek.contains(needle), "{needle} in {ek}");
    }

    // The status names the AK whose public area the evidence carries.
    let status = proxy.get_status().await?;
    assert!(status.tpm_reachable && status.ak_loaded, "{status:?}");
    assert_eq!(status.ek_algorithm, "ecc");
    assert_eq!(status.ak_name, tpm_name(&tpm_ev.ak_public)?);
    assert!(status.last_quote_time > 1_700_000_000, "{status:?}");
    let ak = String::from_utf8(run_ok(
        dir,
        "tpm2_print",
        &["-t", "TPM2B_PUBLIC", "ak.pub"],
    )?)?;
    assert!(ak.contains("ecdsa") && ak.contains("sha256"), "{ak}");

    let signal = PostureSignalProxy::new(&connection)
        .await?
        .get_signal()
        .await?;
    assert_eq!(signal, ("pass".into(), "TPM reachable, AK loaded".into()));

    // Inputs the binding cannot take are refused by name.
    let err = proxy.get_evidence(&nonce[..8], &posture).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("org.enigm.Attestation1.Error.InvalidArgs"),
        "{err}"
    );
    let err = proxy
        .get_evidence(&nonce, &posture[..20])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("posture digest"), "{err}");
    Ok(())
}

#[tokio::test]
async fn the_attestation_key_survives_a_restart() -> Result<()> {
    require_tpm2_tools()?;
    let tpm = Swtpm::start()?;
    let mut setup = start(&tpm, |_| {}).await?;
    let nonce = [7u8; 16];
    let posture = [9u8; 32];
    let (name, public) = {
        let connection = setup.bus.connect().await?;
        let proxy = AttestationProxy::new(&connection).await?;
        let (_, first) = tpm_evidence(&proxy.get_evidence(&nonce, &posture).await?)?;
        (proxy.get_status().await?.ak_name, first.ak_public)
    };
    let state = setup.root.path().join("var/lib/enigm/attestd");
    for file in ["ak-ecc.pub", "ak-ecc.priv"] {
        let meta = std::fs::metadata(state.join(file))?;
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{file}");
        assert_eq!(Some(meta.uid()), uid_of("enigm-attestd"), "{file}");
    }
    assert_eq!(std::fs::read(state.join("ak-ecc.pub"))?, public);

    let status = setup.daemon.terminate(Duration::from_secs(10))?;
    assert!(status.success(), "clean exit: {status}");
    let Setup { root, bus, .. } = setup;
    let again = start_on(bus, root, &tpm, |_| {}).await?;
    let connection = again.bus.connect().await?;
    let proxy = AttestationProxy::new(&connection).await?;
    assert_eq!(
        proxy.get_status().await?.ak_name,
        name,
        "same AK after restart"
    );
    let (_, second) = tpm_evidence(&proxy.get_evidence(&nonce, &posture).await?)?;
    assert_eq!(second.ak_public, public);
    let log = again.daemon.stderr();
    assert!(
        !log.contains("created and stored a new attestation key"),
        "{log}"
    );
    Ok(())
}

#[tokio::test]
async fn an_ak_from_another_tpm_is_set_aside_and_replaced() -> Result<()> {
    // What a TPM clear looks like: the stored AK was wrapped under another endorsement seed.
    let first = Swtpm::start()?;
    let mut setup = start(&first, |_| {}).await?;
    let old_name = {
        let connection = setup.bus.connect().await?;
        AttestationProxy::new(&connection)
            .await?
            .get_status()
            .await?
            .ak_name
    };
    setup.daemon.terminate(Duration::from_secs(10))?;
    let Setup { root, bus, .. } = setup;

    let second = Swtpm::start()?;
    let again = start_on(bus, root, &second, |_| {}).await?;
    let connection = again.bus.connect().await?;
    let proxy = AttestationProxy::new(&connection).await?;
    let status = proxy.get_status().await?;
    assert!(status.ak_loaded, "{status:?}");
    assert_ne!(status.ak_name, old_name, "a new AK on the new TPM");
    let state = again.root.path().join("var/lib/enigm/attestd");
    assert!(state.join("ak-ecc.pub.rejected").exists());
    assert!(state.join("ak-ecc.priv.rejected").exists());
    let log = again.daemon.stderr();
    assert!(log.contains("does not load under this TPM's EK"), "{log}");
    tpm_evidence(&proxy.get_evidence(&[1; 16], &[2; 32]).await?)?;
    Ok(())
}

/// `tpm2_makecredential -T none` (offline, the verifier's side) for `name` under the EK in
/// `ek_file` (TPM2B_PUBLIC, or PEM with `-G`); returns the TPM2B_ID_OBJECT and the
/// TPM2B_ENCRYPTED_SECRET from the tool's credential file.
fn make_credential(
    dir: &Path,
    ek_args: &[&str],
    name: &str,
    secret: &[u8],
) -> Result<(Vec<u8>, Vec<u8>)> {
    std::fs::write(dir.join("secret.bin"), secret)?;
    let mut args = vec!["-T", "none"];
    args.extend_from_slice(ek_args);
    args.extend(["-s", "secret.bin", "-n", name, "-o", "cred.bin"]);
    run_ok(dir, "tpm2_makecredential", &args)?;
    // tpm2-tools' file: magic 0xBADCC0DE, version 1, TPM2B_ID_OBJECT, TPM2B_ENCRYPTED_SECRET.
    let file = std::fs::read(dir.join("cred.bin"))?;
    ensure!(
        file.starts_with(&[0xba, 0xdc, 0xc0, 0xde, 0, 0, 0, 1]),
        "credential file header"
    );
    let rest = &file[8..];
    let blob_len = 2 + usize::from(u16::from_be_bytes([rest[0], rest[1]]));
    let (blob, secret) = rest.split_at(blob_len);
    let secret_len = 2 + usize::from(u16::from_be_bytes([secret[0], secret[1]]));
    ensure!(secret.len() == secret_len, "credential file layout");
    Ok((blob.to_vec(), secret.to_vec()))
}

#[tokio::test]
async fn activate_credential_recovers_the_secret_only_for_its_ak() -> Result<()> {
    require_tpm2_tools()?;
    let tpm = Swtpm::start()?;
    let setup = start(&tpm, |_| {}).await?;
    let connection = setup.bus.connect().await?;
    let proxy = AttestationProxy::new(&connection).await?;
    let (_, tpm_ev) = tpm_evidence(&proxy.get_evidence(&[1; 16], &[2; 32]).await?)?;
    let ek_public = &tpm_ev.ek_public;
    ensure!(!ek_public.is_empty(), "expected the EK public area");
    let work = tempfile::tempdir()?;
    let dir = work.path();
    std::fs::write(dir.join("ek.pub"), ek_public)?;
    let name = tpm_name(&tpm_ev.ak_public)?;
    assert_eq!(proxy.get_status().await?.ak_name, name);

    let secret = b"verifier challenge 0123456789ab";
    let (blob, encrypted) = make_credential(dir, &["-u", "ek.pub"], &name, secret)?;
    let recovered = proxy.activate_credential(&blob, &encrypted).await?;
    assert_eq!(recovered, secret);

    // A credential for another key's name: the TPM's integrity check fails.
    let mut other = name.clone().into_bytes();
    let last = other.len() - 1;
    other[last] = if other[last] == b'0' { b'1' } else { b'0' };
    let (blob, encrypted) =
        make_credential(dir, &["-u", "ek.pub"], std::str::from_utf8(&other)?, secret)?;
    let err = proxy
        .activate_credential(&blob, &encrypted)
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("org.enigm.Attestation1.Error.CredentialRejected"),
        "{err}"
    );
    // Garbage is refused before it reaches the TPM.
    let err = proxy
        .activate_credential(&[0, 9, 1], &encrypted)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("InvalidArgs"), "{err}");
    // And the daemon keeps working after a refusal.
    let (blob, encrypted) = make_credential(dir, &["-u", "ek.pub"], &name, b"second secret")?;
    assert_eq!(
        proxy.activate_credential(&blob, &encrypted).await?,
        b"second secret"
    );
    Ok(())
}

#[tokio::test]
async fn rsa_ek_with_certificate() -> Result<()> {
    require_tpm2_tools()?;
    let (tpm, ca) = Swtpm::start_with_ek_certificates()?;
    let setup = start(&tpm, |command| {
        command.env("ENIGM_ATTESTD__TPM__EK_ALGORITHM", "rsa");
    })
    .await?;
    let connection = setup.bus.connect().await?;
    let proxy = AttestationProxy::new(&connection).await?;
    let nonce = [3u8; 20];
    let posture = [4u8; 32];
    let (_, tpm_ev) = tpm_evidence(&proxy.get_evidence(&nonce, &posture).await?)?;
    let der = &tpm_ev.ek_certificate;
    ensure!(
        !der.is_empty(),
        "a provisioned RSA EK certificate is carried in the evidence"
    );
    ensure!(
        !tpm_ev.ek_public.is_empty(),
        "with the EK public area beside it"
    );
    let work = tempfile::tempdir()?;
    let dir = work.path();

    // The certificate is the one swtpm's CA issued.
    std::fs::write(dir.join("ek.der"), der)?;
    let issuer = String::from_utf8(run_ok(
        dir,
        "openssl",
        &[
            "x509", "-inform", "DER", "-in", "ek.der", "-noout", "-issuer",
        ],
    )?)?;
    let ca_subject = String::from_utf8(run_ok(
        dir,
        "openssl",
        &[
            "x509",
            "-in",
            &ca.join("issuercert.pem").display().to_string(),
            "-noout",
            "-subject",
        ],
    )?)?;
    assert_eq!(
        issuer.trim().trim_start_matches("issuer="),
        ca_subject.trim().trim_start_matches("subject="),
    );

    // The quote, RSASSA this time, through the oracle.
    write_quote_files(dir, &tpm_ev)?;
    let qualifying = sha256(&[b"enigm-attest-v1", &nonce, &posture])?;
    let verdict = checkquote(dir, &qualifying, true)?;
    assert!(
        verdict.status.success(),
        "{}",
        String::from_utf8_lossy(&verdict.stderr)
    );
    let ak = String::from_utf8(run_ok(
        dir,
        "tpm2_print",
        &["-t", "TPM2B_PUBLIC", "ak.pub"],
    )?)?;
    assert!(ak.contains("rsassa") && ak.contains("2048"), "{ak}");
    let status = proxy.get_status().await?;
    assert_eq!(status.ek_algorithm, "rsa");

    // A credential made for the certified key (its public key, out of the certificate) is
    // activated: the certificate belongs to the EK the daemon's AK lives under.
    let pem = run_ok(
        dir,
        "openssl",
        &[
            "x509", "-inform", "DER", "-in", "ek.der", "-noout", "-pubkey",
        ],
    )?;
    std::fs::write(dir.join("ek.pem"), pem)?;
    let name = tpm_name(&tpm_ev.ak_public)?;
    let (blob, encrypted) =
        make_credential(dir, &["-u", "ek.pem", "-G", "rsa"], &name, b"rsa challenge")?;
    assert_eq!(
        proxy.activate_credential(&blob, &encrypted).await?,
        b"rsa challenge"
    );
    Ok(())
}

/// `dbus-send` as another uid (the daemon sees the bus-verified uid).
fn dbus_send_as(bus: &PrivateBus, uid: u32, method: &str, args: &[&str]) -> Result<(bool, String)> {
    require_tool("dbus-send", "dbus-bin")?;
    let output = Command::new("dbus-send")
        .args([
            "--system",
            "--print-reply",
            "--dest=org.enigm.Attestation1",
            "/org/enigm/Attestation1",
        ])
        .arg(format!("org.enigm.Attestation1.{method}"))
        .args(args)
        .env("DBUS_SYSTEM_BUS_ADDRESS", bus.address())
        .uid(uid)
        .output()?;
    Ok((
        output.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    ))
}

const NONCE_ARG: &str = "array:byte:1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16";
const POSTURE_ARG: &str =
    "array:byte:1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16";

#[tokio::test]
async fn only_allowed_uids_get_evidence() -> Result<()> {
    let nobody = uid_of("nobody").context("user nobody")?;
    let tpm = Swtpm::start()?;
    let setup = start(&tpm, |_| {}).await?;

    let (ok, out) = dbus_send_as(&setup.bus, nobody, "GetEvidence", &[NONCE_ARG, POSTURE_ARG])?;
    assert!(!ok, "{out}");
    // The standard error name itself (dbus-send prints `Error <name>: <message>`), not a
    // zbus wrapper that merely mentions it in its message.
    assert!(
        out.contains("Error org.freedesktop.DBus.Error.AccessDenied: GetEvidence is not allowed")
            && out.contains(&format!("GetEvidence is not allowed for uid {nobody}")),
        "{out}"
    );
    let (ok, out) = dbus_send_as(
        &setup.bus,
        nobody,
        "ActivateCredential",
        &[NONCE_ARG, NONCE_ARG],
    )?;
    assert!(!ok && out.contains("AccessDenied"), "{out}");
    // Reading the status is open to everyone by default.
    let (ok, out) = dbus_send_as(&setup.bus, nobody, "GetStatus", &[])?;
    assert!(ok && out.contains("AkName"), "{out}");
    let log = setup.daemon.stderr();
    assert!(
        log.contains("refused a D-Bus call") && log.contains("GetEvidence"),
        "{log}"
    );
    drop(setup);

    // Put on the allow-list, the same uid gets evidence.
    let allowed = start(&tpm, |command| {
        command.env(
            "ENIGM_ATTESTD__AUTHORIZATION__CHANGE",
            format!("[\"root\", \"{nobody}\"]"),
        );
    })
    .await?;
    let (ok, out) = dbus_send_as(
        &allowed.bus,
        nobody,
        "GetEvidence",
        &[NONCE_ARG, POSTURE_ARG],
    )?;
    assert!(ok && out.contains("array of bytes"), "{out}");
    Ok(())
}

#[tokio::test]
async fn the_daemon_runs_unprivileged_under_seccomp() -> Result<()> {
    let tpm = Swtpm::start()?;
    let setup = start(&tpm, |command| {
        command.arg("--seccomp-probe");
    })
    .await?;
    assert_eq!(setup.daemon.status_field("Seccomp")?, "2");
    let expected = uid_of("enigm-attestd").context("system user")?.to_string();
    let uids = setup.daemon.status_field("Uid")?;
    assert!(uids.split_whitespace().all(|uid| uid == expected), "{uids}");
    assert_eq!(setup.daemon.status_field("CapEff")?, "0000000000000000");
    assert_eq!(setup.daemon.status_field("CapPrm")?, "0000000000000000");
    assert_eq!(setup.daemon.status_field("NoNewPrivs")?, "1");
    let log = setup.daemon.stderr();
    assert!(
        log.contains("seccomp-probe: sysinfo refused: EPERM"),
        "{log}"
    );
    // Every thread is filtered, the TPM worker included.
    for task in std::fs::read_dir(format!("/proc/{}/task", setup.daemon.pid()))? {
        let status = std::fs::read_to_string(task?.path().join("status"))?;
        assert!(status.lines().any(|l| l == "Seccomp:\t2"), "{status}");
    }
    // And it still does its work under the filter.
    let connection = setup.bus.connect().await?;
    let proxy = AttestationProxy::new(&connection).await?;
    tpm_evidence(&proxy.get_evidence(&[5; 16], &[6; 32]).await?)?;
    Ok(())
}

#[tokio::test]
async fn a_lost_tpm_is_reported_and_found_again() -> Result<()> {
    let mut tpm = Swtpm::start()?;
    let setup = start(&tpm, |_| {}).await?;
    let connection = setup.bus.connect().await?;
    let proxy = AttestationProxy::new(&connection).await?;
    let signal = PostureSignalProxy::new(&connection).await?;
    let name = proxy.get_status().await?.ak_name;

    tpm.stop();
    let status = proxy.get_status().await?;
    assert!(!status.tpm_reachable && !status.ak_loaded, "{status:?}");
    assert!(status.last_error.contains("unreachable"), "{status:?}");
    let (result, observed) = signal.get_signal().await?;
    assert_eq!(result, "unavailable", "{observed}");
    let err = proxy.get_evidence(&[1; 16], &[2; 32]).await.unwrap_err();
    assert!(err.to_string().contains("TpmUnavailable"), "{err}");

    tpm.restart()?;
    let status = proxy.get_status().await?;
    assert!(status.tpm_reachable && status.ak_loaded, "{status:?}");
    assert_eq!(status.ak_name, name, "the same AK after the TPM came back");
    assert_eq!(signal.get_signal().await?.0, "pass");
    tpm_evidence(&proxy.get_evidence(&[1; 16], &[2; 32]).await?)?;
    Ok(())
}

#[tokio::test]
async fn tscd_reads_the_attestation_signal() -> Result<()> {
    use enigm_tscd::client::TrustSecurityCenterProxy;
    let tpm = Swtpm::start()?;
    let setup = start(&tpm, |_| {}).await?;
    let fixture = enigm_e2e::tscd_fixture("hardened")?;
    let mut tscd = Command::new(enigm_e2e::package_binary("enigm-tscd", "enigm-tscd")?);
    tscd.arg("--sysroot")
        .arg(fixture.path())
        .env("DBUS_SYSTEM_BUS_ADDRESS", setup.bus.address())
        .env("ENIGM_LOG_STDERR", "1")
        .env_remove("NOTIFY_SOCKET");
    let tscd = Daemon::spawn(tscd)?;
    if let Err(err) = setup
        .bus
        .wait_for_name("org.enigm.TrustSecurityCenter1", START)
        .await
    {
        bail!("{err}; tscd stderr:\n{}", tscd.stderr());
    }
    let connection = setup.bus.connect().await?;
    let posture = TrustSecurityCenterProxy::new(&connection)
        .await?
        .refresh()
        .await?;
    let check = posture
        .checks
        .iter()
        .find(|c| c.id == "signal.attestation")
        .context("signal.attestation check")?;
    assert_eq!(
        (check.result.as_str(), check.observed.as_str()),
        ("pass", "TPM reachable, AK loaded")
    );
    Ok(())
}

#[tokio::test]
async fn leftovers_of_a_dead_client_are_flushed() -> Result<()> {
    require_tpm2_tools()?;
    let tpm = Swtpm::start()?;
    // A TPM without a resource manager keeps what a client left loaded: fill every transient
    // object slot (swtpm has 3), as a client killed mid-request would. The daemon needs two
    // (EK and AK), so it only works if it flushes them.
    let work = tempfile::tempdir()?;
    for n in 0..3 {
        let output = Command::new("tpm2_createprimary")
            .args(["-C", "o", "-c", &format!("p{n}.ctx")])
            .env("TPM2TOOLS_TCTI", tpm.tcti())
            .current_dir(work.path())
            .output()?;
        ensure!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let setup = start(&tpm, |_| {}).await?;
    let connection = setup.bus.connect().await?;
    let proxy = AttestationProxy::new(&connection).await?;
    tpm_evidence(&proxy.get_evidence(&[1; 16], &[2; 32]).await?)?;
    let log = setup.daemon.stderr();
    assert_eq!(
        log.matches("flushing a leftover TPM handle").count(),
        3,
        "{log}"
    );
    Ok(())
}

#[tokio::test]
async fn malformed_config_exits_non_zero_naming_the_key() -> Result<()> {
    let bus = PrivateBus::start("")?;
    let cases: [(&str, &[&str]); 3] = [
        (
            "[tpm]\npcrs = \"sha256:0-99\"\n",
            &["tpm.pcrs", "attestd.toml"],
        ),
        (
            "[tpm]\nek_algorithm = \"dsa\"\n",
            &["tpm.ek_algorithm", "attestd.toml"],
        ),
        ("[tpm]\ntctl = \"device\"\n", &["tpm.tctl", "attestd.toml"]),
    ];
    for (config, needles) in cases {
        let root = sysroot()?;
        std::fs::create_dir_all(root.path().join("etc/enigm"))?;
        std::fs::write(root.path().join("etc/enigm/attestd.toml"), config)?;
        let mut command = attestd_command(&bus, root.path(), "swtpm:host=127.0.0.1,port=1")?;
        command.env_remove("ENIGM_ATTESTD__TPM__TCTI");
        let mut daemon = Daemon::spawn(command)?;
        let status = daemon.wait_exit(Duration::from_secs(10))?;
        let stderr = daemon.stderr();
        assert!(!status.success(), "{config:?} was accepted");
        for needle in needles {
            assert!(
                stderr.contains(needle),
                "{config:?}: {needle:?} in\n{stderr}"
            );
        }
    }
    Ok(())
}

// The systemd unit, rated by systemd's own scoring like tests/systemd_unit.rs does for tscd.

const UNIT_NAME: &str = "enigm-attestd.service";
const MAX_EXPOSURE: f64 = 2.0;

fn unit_path() -> PathBuf {
    enigm_e2e::workspace_root()
        .join("daemons/attestd/dist")
        .join(UNIT_NAME)
}

fn service_values(unit: &str, key: &str) -> Vec<String> {
    let mut section = "";
    let mut values = Vec::new();
    for line in unit.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name;
        } else if section == "Service"
            && !line.starts_with('#')
            && let Some((k, v)) = line.split_once('=')
            && k.trim() == key
        {
            values.push(v.trim().to_owned());
        }
    }
    values
}

#[test]
fn unit_sandbox_exposure_is_at_most_2() -> Result<()> {
    require_tool("systemd-analyze", "systemd")?;
    let root = tempfile::tempdir()?;
    let dir = root.path().join("etc/systemd/system");
    std::fs::create_dir_all(&dir)?;
    std::fs::copy(unit_path(), dir.join(UNIT_NAME))?;
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(format!("--root={}", root.path().display()))
        .arg(UNIT_NAME)
        .env("SYSTEMD_COLORS", "0")
        .output()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!text.contains("Invalid syntax"), "{text}");
    let exposure: f64 = text
        .lines()
        .find(|l| l.contains("Overall exposure level for"))
        .and_then(|l| l.rsplit_once(": "))
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no overall exposure in:\n{text}"))?;
    println!("{UNIT_NAME}: overall exposure {exposure} (limit {MAX_EXPOSURE:.1})");
    assert!(exposure <= MAX_EXPOSURE, "{text}");
    Ok(())
}

#[test]
fn unit_reaches_only_the_tpm_as_its_own_user() -> Result<()> {
    let unit = std::fs::read_to_string(unit_path())?;
    let value = |key: &str| service_values(&unit, key);
    assert_eq!(value("User"), ["enigm-attestd"]);
    assert_eq!(value("Group"), ["enigm-attestd"]);
    assert_eq!(value("SupplementaryGroups"), ["tss"]);
    assert_eq!(value("Type"), ["notify"]);
    assert_eq!(value("BusName"), [BUS_NAME]);
    assert_eq!(value("StateDirectory"), ["enigm/attestd"]);
    assert_eq!(value("DevicePolicy"), ["closed"]);
    assert_eq!(value("DeviceAllow"), ["/dev/tpmrm0 rw"]);
    assert_eq!(value("CapabilityBoundingSet"), [""]);
    assert_eq!(value("NoNewPrivileges"), ["yes"]);
    // PrivateDevices=yes would hide /dev/tpmrm0 from the daemon.
    assert!(value("PrivateDevices").iter().all(|v| v != "yes"));
    assert!(
        value("SystemCallFilter")
            .iter()
            .any(|v| !v.starts_with('~') && v.split_whitespace().any(|s| s == "seccomp")),
        "SystemCallFilter= must allow seccomp(2)"
    );
    assert!(
        value("LoadCredential")
            .iter()
            .any(|v| v == "tpm-event-log:/sys/kernel/security/tpm0/binary_bios_measurements")
    );
    Ok(())
}
