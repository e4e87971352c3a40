//! The messaging part of `cargo xtask demo`: two devices of two accounts, each a software
//! TPM (swtpm) served by its own `enigm-attestd` on its own private bus, enroll with the
//! running backend; each creates a mailbox and publishes its message keys, bound to its
//! TPM's attestation key, with `enigmctl message setup`; Alice sends Bob a message with
//! `enigmctl message send`, the demo shows the backend's database holding only ciphertext,
//! and Bob reads the message with `enigmctl message receive`.

use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::enigmctl;
use crate::messaging::{BackendAccess, MessagingDevice};

/// Whether `needle` occurs in any file directly under `dir`; also how many bytes were read.
fn found_in_files(dir: &Path, needle: &[u8]) -> Result<(bool, u64)> {
    let (mut found, mut read) = (false, 0);
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_file() {
            let bytes = std::fs::read(&path)?;
            read += bytes.len() as u64;
            found |= bytes.windows(needle.len()).any(|w| w == needle);
        }
    }
    Ok((found, read))
}

/// `enigmctl … --json` output on one line.
fn one_line(stdout: &[u8]) -> Result<String> {
    let json: serde_json::Value =
        serde_json::from_slice(stdout).context("enigmctl --json output")?;
    Ok(json.to_string())
}

/// Runs the messaging demo against `backend`, whose database files are in `database_dir`,
/// announcing each step with `step`.
pub async fn run(backend: &BackendAccess, database_dir: &Path, step: fn(&str)) -> Result<()> {
    step("two more devices, alice and bob: each its own bus, swtpm and enigm-attestd");
    let alice = MessagingDevice::start("alice", enigmctl).await?;
    let bob = MessagingDevice::start("bob", enigmctl).await?;
    let result = exchange(&alice, &bob, backend, database_dir, step);
    alice.stop()?;
    bob.stop()?;
    result
}

fn exchange(
    alice: &MessagingDevice,
    bob: &MessagingDevice,
    backend: &BackendAccess,
    database_dir: &Path,
    step: fn(&str),
) -> Result<()> {
    step("enigmctl enroll --create-account, on each device (two accounts)");
    alice.enroll(backend)?;
    bob.enroll(backend)?;

    step(
        "enigmctl message setup --json: a mailbox and message keys, published bound to the TPM's AK",
    );
    for device in [alice, bob] {
        let output = device.run(&["message", "setup", "--json"], backend)?;
        let json: serde_json::Value = serde_json::from_slice(&output.stdout)
            .context("enigmctl message setup --json output")?;
        println!(
            "    {}: device {} · keys {} · mailbox {}",
            device.name,
            json["handle"].as_str().unwrap_or("?"),
            json["keys"].as_str().unwrap_or("?"),
            json["mailbox"].as_str().unwrap_or("?"),
        );
    }

    let text = format!(
        "Hello Bob, this is Alice (demo message {})",
        std::process::id()
    );
    step("alice: enigmctl message send --to bob --text …");
    let output = alice.run(
        &["message", "send", "--to", "bob", "--text", &text, "--json"],
        backend,
    )?;
    println!("    {}", one_line(&output.stdout)?);

    step("the backend holds only ciphertext: the text is nowhere in its database files");
    let (found, read) = found_in_files(database_dir, text.as_bytes())?;
    println!(
        "    {} bytes of database files in {}: plaintext {}",
        read,
        database_dir.display(),
        if found { "FOUND" } else { "not found" }
    );
    if found {
        bail!("the message's plaintext is in the backend's database files");
    }

    step("bob: enigmctl message receive --json");
    let output = bob.run(&["message", "receive", "--json"], backend)?;
    let stdout = one_line(&output.stdout)?;
    println!("    {stdout}");
    if !stdout.contains(&text) {
        bail!("bob did not receive the message");
    }
    Ok(())
}
