//! `enigm-verify tpm-quote`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use enigm_tpm_evidence::pcr::{PcrValues, parse_tpm2_tools_pcrs};
use enigm_tpm_evidence::public::load_public_key;
use enigm_tpm_evidence::signature::Signature;
use enigm_tpm_evidence::{VerifiedQuote, verify_quote};
use serde_json::json;

#[derive(Args, Debug)]
pub struct TpmQuoteArgs {
    /// The attestation key: PEM public key, or TPM2B_PUBLIC as tpm2-tools writes it.
    #[arg(long)]
    ak: PathBuf,
    /// The quote message (TPMS_ATTEST), `tpm2_quote -m`.
    #[arg(long)]
    message: PathBuf,
    /// The signature (TPMT_SIGNATURE), `tpm2_quote -s`.
    #[arg(long)]
    signature: PathBuf,
    /// The PCR values, `tpm2_quote -o` (serialized format).
    #[arg(long)]
    pcrs: Option<PathBuf>,
    /// The expected qualifying data (nonce), hex.
    #[arg(long)]
    nonce: Option<String>,
    /// An appraisal policy (TOML) the PCR values must satisfy.
    #[arg(long)]
    policy: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

fn read(path: &PathBuf) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Verifies; `Ok(false)` when the quote is rejected (reason printed).
pub fn run(args: &TpmQuoteArgs) -> Result<bool> {
    let ak = load_public_key(&read(&args.ak)?).context("attestation key")?;
    let message = read(&args.message)?;
    let signature = read(&args.signature)?;
    let nonce = match &args.nonce {
        Some(text) => {
            Some(hex::decode(text.trim_start_matches("0x")).context("--nonce is not hex")?)
        }
        None => None,
    };
    let pcrs = match &args.pcrs {
        Some(path) => Some(parse_tpm2_tools_pcrs(&read(path)?).context("PCR file")?),
        None => None,
    };
    let values: Option<&PcrValues> = pcrs.as_ref().map(|(_, values)| values);
    let result = verify_quote(&ak, &message, &signature, nonce.as_deref(), values);
    let policy_result = match (&result, &args.policy, values) {
        (Ok(_), Some(path), Some(values)) => {
            Some(enigm_verifier::policy::Policy::load(path)?.check_pcrs(values))
        }
        (Ok(_), Some(_), None) => anyhow::bail!("--policy needs --pcrs"),
        _ => None,
    };
    let verified = result.is_ok()
        && policy_result
            .as_ref()
            .is_none_or(|checks| checks.iter().all(|c| c.ok));
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report(&result, policy_result.as_deref(), values))?
        );
    } else {
        match &result {
            Ok(quote) => {
                println!("quote verified: {}", describe(quote));
                for check in policy_result.iter().flatten() {
                    println!(
                        "  policy {}: {}",
                        if check.ok { "ok  " } else { "FAIL" },
                        check.reason
                    );
                }
            }
            Err(err) => println!("quote rejected: {err}"),
        }
    }
    if let (Err(err), true) = (&result, args.json) {
        eprintln!("enigm-verify: quote rejected: {err}");
    }
    Ok(verified)
}

fn scheme(signature: &Signature) -> &'static str {
    match signature {
        Signature::Ecdsa { .. } => "ecdsa",
        Signature::RsaSsa { .. } => "rsassa",
        Signature::RsaPss { .. } => "rsapss",
    }
}

fn describe(quote: &VerifiedQuote) -> String {
    format!(
        "{} over {}, clock {} ms, resets {}, restarts {}",
        scheme(&quote.signature),
        selection_text(quote),
        quote.attest.clock_info.clock,
        quote.attest.clock_info.reset_count,
        quote.attest.clock_info.restart_count
    )
}

fn selection_text(quote: &VerifiedQuote) -> String {
    quote
        .attest
        .pcr_selection
        .banks
        .iter()
        .map(|(alg, pcrs)| {
            let list: Vec<String> = pcrs.iter().map(u32::to_string).collect();
            format!(
                "{}:{}",
                serde_json::to_value(alg)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                list.join(",")
            )
        })
        .collect::<Vec<_>>()
        .join("+")
}

fn report(
    result: &Result<VerifiedQuote, enigm_tpm_evidence::QuoteError>,
    policy: Option<&[enigm_verifier::policy::PcrCheck]>,
    values: Option<&PcrValues>,
) -> serde_json::Value {
    match result {
        Err(err) => json!({ "verified": false, "error": err.to_string() }),
        Ok(quote) => {
            let pcrs: serde_json::Map<String, serde_json::Value> = values
                .map(|values| {
                    values
                        .values
                        .iter()
                        .map(|((alg, index), digest)| {
                            let bank = serde_json::to_value(alg)
                                .ok()
                                .and_then(|v| v.as_str().map(str::to_owned))
                                .unwrap_or_default();
                            (format!("{bank}:{index}"), json!(hex::encode(digest)))
                        })
                        .collect()
                })
                .unwrap_or_default();
            let policy_ok = policy.is_none_or(|checks| checks.iter().all(|c| c.ok));
            json!({
                "verified": policy_ok,
                "signature": { "scheme": scheme(&quote.signature), "hash": quote.signature.hash() },
                "qualifying_data": hex::encode(&quote.attest.extra_data),
                "qualified_signer": hex::encode(&quote.attest.qualified_signer),
                "clock": quote.attest.clock_info,
                "firmware_version": quote.attest.firmware_version,
                "pcr_selection": selection_text(quote),
                "pcr_digest": hex::encode(&quote.attest.pcr_digest),
                "pcrs": pcrs,
                "policy": policy.map(|checks| checks.iter().map(|c| json!({"ok": c.ok, "reason": c.reason})).collect::<Vec<_>>()),
            })
        }
    }
}
