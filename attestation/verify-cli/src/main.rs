//! `enigm-verify`: a standalone verifier for auditors and operators.
//!
//! - `enigm-verify tpm-quote --ak AK.pem --message quote.msg --signature quote.sig
//!   [--pcrs quote.pcrs] [--nonce HEX] [--policy FILE] [--json]` checks the files
//!   `tpm2_quote -m -s -o` writes, so tpm2-tools' `tpm2_checkquote` is an oracle for it.
//!
//! - `enigm-verify android CHAIN.pem [--at RFC3339] [--roots roots.json] [--revocations FILE]
//!   [--policy FILE --challenge HEX] [--json]` verifies a key attestation chain and prints the
//!   parsed record with the field names of Google's reference verifier, plus the verdict.
//!
//! Exit status: 0 when the evidence verifies; 1 when it does not (with the reason) or an input
//! cannot be used (unreadable file, bad hex, `--policy` without what it needs); 2 when the
//! command line itself does not parse.

mod android;
mod tpm;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "enigm-verify",
    version,
    about = "Verify TPM quotes and Android key attestations"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Verify a TPM 2.0 quote (files as written by `tpm2_quote -m -s -o`).
    TpmQuote(tpm::TpmQuoteArgs),
    /// Verify an Android key attestation certificate chain.
    Android(android::AndroidArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::TpmQuote(args) => tpm::run(&args),
        Command::Android(args) => android::run(&args),
    };
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(err) => {
            eprintln!("enigm-verify: {err:#}");
            ExitCode::from(1)
        }
    }
}
