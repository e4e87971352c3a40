//! Oracle test: `enigm-verify tpm-quote` and tpm2-tools' `tpm2_checkquote` must agree on 200
//! quotes made by a real (software) TPM with `tpm2_quote` — ECC and RSA attestation keys,
//! random nonces, random PCR selections, half of them tampered with in different ways.

use std::path::Path;
use std::process::Command;

use anyhow::{Result, bail};
use enigm_e2e::{Swtpm, binary, require_tool};

const QUOTES: usize = 200;

/// A small deterministic generator (xorshift64*), so a failure is reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

fn tpm2(tpm: &Swtpm, dir: &Path, args: &[&str]) -> Result<()> {
    let output = Command::new(args[0])
        .args(&args[1..])
        .env("TPM2TOOLS_TCTI", tpm.tcti())
        .current_dir(dir)
        .output()?;
    if !output.status.success() {
        bail!(
            "{} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let flush = Command::new("tpm2_flushcontext")
        .arg("-t")
        .env("TPM2TOOLS_TCTI", tpm.tcti())
        .current_dir(dir)
        .output()?;
    if !flush.status.success() {
        bail!("tpm2_flushcontext failed");
    }
    Ok(())
}

#[derive(Debug, Clone, Copy)]
enum Tamper {
    None,
    MessageByte,
    SignatureByte,
    WrongNonce,
    PcrValue,
    OtherKey,
    TruncatedMessage,
}

const TAMPERS: [Tamper; 6] = [
    Tamper::MessageByte,
    Tamper::SignatureByte,
    Tamper::WrongNonce,
    Tamper::PcrValue,
    Tamper::OtherKey,
    Tamper::TruncatedMessage,
];

fn flip(path: &Path, rng: &mut Rng, skip: usize) -> Result<()> {
    let mut bytes = std::fs::read(path)?;
    let at = skip + rng.below((bytes.len() - skip) as u64) as usize;
    bytes[at] ^= 1 << rng.below(8);
    std::fs::write(path, bytes)?;
    Ok(())
}

#[test]
fn enigm_verify_agrees_with_tpm2_checkquote_on_200_quotes() -> Result<()> {
    require_tool("tpm2_quote", "tpm2-tools")?;
    let verify = binary("enigm-verify")?;
    let tpm = Swtpm::start()?;
    let work = tempfile::tempdir()?;
    let dir = work.path();
    tpm2(
        &tpm,
        dir,
        &["tpm2_createek", "-c", "ek.ctx", "-G", "ecc", "-u", "ek.pub"],
    )?;
    tpm2(
        &tpm,
        dir,
        &[
            "tpm2_createak",
            "-C",
            "ek.ctx",
            "-c",
            "ecc.ctx",
            "-G",
            "ecc",
            "-g",
            "sha256",
            "-s",
            "ecdsa",
            "-u",
            "ecc.pem",
            "-f",
            "pem",
        ],
    )?;
    tpm2(
        &tpm,
        dir,
        &["tpm2_createek", "-c", "ek.ctx", "-G", "ecc", "-u", "ek.pub"],
    )?;
    tpm2(
        &tpm,
        dir,
        &[
            "tpm2_createak",
            "-C",
            "ek.ctx",
            "-c",
            "rsa.ctx",
            "-G",
            "rsa",
            "-g",
            "sha256",
            "-s",
            "rsassa",
            "-u",
            "rsa.pem",
            "-f",
            "pem",
        ],
    )?;

    let mut rng = Rng(0x5eed_0fe1_9e00_u64);
    for pcr in [0u64, 1, 2, 7, 10, 16] {
        let value = hex::encode(rng.bytes(32));
        tpm2(
            &tpm,
            dir,
            &["tpm2_pcrextend", &format!("{pcr}:sha256={value}")],
        )?;
    }

    let mut disagreements = Vec::new();
    let mut rejected = 0;
    for n in 0..QUOTES {
        let key = if n % 2 == 0 { "ecc" } else { "rsa" };
        let other = if key == "ecc" { "rsa" } else { "ecc" };
        let nonce_len = 1 + rng.below(32) as usize;
        let nonce = hex::encode(rng.bytes(nonce_len));
        let mut banks = Vec::new();
        for bank in ["sha256", "sha1"] {
            if rng.below(3) == 0 {
                continue;
            }
            let mut pcrs: Vec<u64> = (0..24).filter(|_| rng.below(4) == 0).collect();
            if pcrs.is_empty() {
                pcrs.push(rng.below(24));
            }
            banks.push(format!(
                "{bank}:{}",
                pcrs.iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            ));
        }
        let selection = if banks.is_empty() {
            "sha256:0".to_owned()
        } else {
            banks.join("+")
        };
        let (msg, sig, pcrs) = (
            format!("q{n}.msg"),
            format!("q{n}.sig"),
            format!("q{n}.pcrs"),
        );
        tpm2(
            &tpm,
            dir,
            &[
                "tpm2_quote",
                "-c",
                &format!("{key}.ctx"),
                "-l",
                &selection,
                "-q",
                &nonce,
                "-m",
                &msg,
                "-s",
                &sig,
                "-o",
                &pcrs,
                "-g",
                "sha256",
            ],
        )?;

        // Every other quote is tampered with, cycling through the kinds of tampering.
        let tamper = if n % 2 == 1 {
            TAMPERS[(n / 2) % TAMPERS.len()]
        } else {
            Tamper::None
        };
        let mut expected_nonce = nonce.clone();
        let mut ak = format!("{key}.pem");
        match tamper {
            Tamper::None => {}
            Tamper::MessageByte => flip(&dir.join(&msg), &mut rng, 0)?,
            Tamper::SignatureByte => flip(&dir.join(&sig), &mut rng, 4)?,
            Tamper::WrongNonce => expected_nonce = hex::encode(rng.bytes(16)),
            Tamper::PcrValue => {
                // Flip a byte inside the first digest of the first TPML_DIGEST.
                let mut bytes = std::fs::read(dir.join(&pcrs))?;
                let at = 132 + 4 + 4 + 2 + rng.below(20) as usize;
                bytes[at] ^= 0x80;
                std::fs::write(dir.join(&pcrs), bytes)?;
            }
            Tamper::OtherKey => ak = format!("{other}.pem"),
            Tamper::TruncatedMessage => {
                let bytes = std::fs::read(dir.join(&msg))?;
                let cut = 1 + rng.below(8) as usize;
                std::fs::write(dir.join(&msg), &bytes[..bytes.len() - cut])?;
            }
        }

        let oracle = Command::new("tpm2_checkquote")
            .args([
                "-u",
                &ak,
                "-m",
                &msg,
                "-s",
                &sig,
                "-f",
                &pcrs,
                "-g",
                "sha256",
                "-q",
                &expected_nonce,
            ])
            .current_dir(dir)
            .output()?;
        let ours = Command::new(&verify)
            .args([
                "tpm-quote",
                "--ak",
                &ak,
                "--message",
                &msg,
                "--signature",
                &sig,
                "--pcrs",
                &pcrs,
                "--nonce",
                &expected_nonce,
            ])
            .current_dir(dir)
            .output()?;
        let (oracle_ok, ours_ok) = (oracle.status.success(), ours.status.success());
        if !oracle_ok {
            rejected += 1;
        }
        if oracle_ok != ours_ok || oracle_ok != matches!(tamper, Tamper::None) {
            disagreements.push(format!(
                "quote {n} ({key}, {selection}, {tamper:?}): tpm2_checkquote {} / enigm-verify {}: {}",
                if oracle_ok { "accepts" } else { "rejects" },
                if ours_ok { "accepts" } else { "rejects" },
                String::from_utf8_lossy(&ours.stdout).trim()
            ));
        }
    }
    eprintln!("{QUOTES} quotes, {rejected} rejected by both");
    if !disagreements.is_empty() {
        bail!(
            "{} disagreements:\n{}",
            disagreements.len(),
            disagreements.join("\n")
        );
    }
    assert_eq!(
        rejected,
        QUOTES / 2,
        "exactly the tampered half is rejected"
    );
    Ok(())
}

/// tpm2-tools' credential file: magic, version, TPM2B_ID_OBJECT, TPM2B_ENCRYPTED_SECRET.
fn credential_file(credential: &enigm_verifier::credential::Credential) -> Vec<u8> {
    let mut bytes = 0xBADC_C0DEu32.to_be_bytes().to_vec();
    bytes.extend(1u32.to_be_bytes());
    bytes.extend(&credential.credential_blob);
    bytes.extend(&credential.encrypted_secret);
    bytes
}

#[test]
fn our_make_credential_is_activated_by_a_real_tpm() -> Result<()> {
    use enigm_tpm_evidence::public::PublicArea;
    use enigm_verifier::credential::make_credential;

    require_tool("tpm2_activatecredential", "tpm2-tools")?;
    for ek_alg in ["ecc", "rsa"] {
        let tpm = Swtpm::start()?;
        let work = tempfile::tempdir()?;
        let dir = work.path();
        tpm2(
            &tpm,
            dir,
            &[
                "tpm2_createek",
                "-c",
                "ek.ctx",
                "-G",
                ek_alg,
                "-u",
                "ek.pub",
            ],
        )?;
        tpm2(
            &tpm,
            dir,
            &[
                "tpm2_createak",
                "-C",
                "ek.ctx",
                "-c",
                "ak.ctx",
                "-G",
                "ecc",
                "-g",
                "sha256",
                "-s",
                "ecdsa",
                "-u",
                "ak.pub",
                "-n",
                "ak.name",
            ],
        )?;
        let ek = PublicArea::parse_tpm2b(&std::fs::read(dir.join("ek.pub"))?)?;
        let ak = PublicArea::parse_tpm2b(&std::fs::read(dir.join("ak.pub"))?)?;
        assert_eq!(
            ak.name()?,
            std::fs::read(dir.join("ak.name"))?,
            "{ek_alg}: our AK Name equals the TPM's"
        );

        let activate = |name: &[u8], secret: &[u8]| -> Result<Option<Vec<u8>>> {
            let credential = make_credential(&ek, name, secret)?;
            std::fs::write(dir.join("cred"), credential_file(&credential))?;
            let _ = std::fs::remove_file(dir.join("out"));
            tpm2(
                &tpm,
                dir,
                &[
                    "tpm2_startauthsession",
                    "--policy-session",
                    "-S",
                    "session.ctx",
                ],
            )?;
            tpm2(
                &tpm,
                dir,
                &["tpm2_policysecret", "-S", "session.ctx", "-c", "e"],
            )?;
            let result = tpm2(
                &tpm,
                dir,
                &[
                    "tpm2_activatecredential",
                    "-c",
                    "ak.ctx",
                    "-C",
                    "ek.ctx",
                    "-i",
                    "cred",
                    "-o",
                    "out",
                    "-P",
                    "session:session.ctx",
                ],
            );
            let _ = tpm2(&tpm, dir, &["tpm2_flushcontext", "session.ctx"]);
            Ok(match result {
                Ok(()) => Some(std::fs::read(dir.join("out"))?),
                Err(_) => None,
            })
        };
        let secret = b"enrollment secret 0123456789abcd".to_vec();
        assert_eq!(
            activate(&ak.name()?, &secret)?,
            Some(secret.clone()),
            "{ek_alg}: the TPM recovers our secret"
        );
        let mut other_name = ak.name()?;
        let last = other_name.len() - 1;
        other_name[last] ^= 1;
        assert_eq!(
            activate(&other_name, &secret)?,
            None,
            "{ek_alg}: a credential for another key's name is refused"
        );
    }
    Ok(())
}
