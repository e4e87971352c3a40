//! `enigm-verify android`: verify a key attestation chain and print the parsed record with the
//! field names and encodings of Google's reference verifier, plus the verdict.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use clap::Args;
use enigm_android_attestation::{
    RevocationList, TrustedRoots, VerifyOptions, key_description_from_certificate, parse_pem_chain,
    verify_chain,
};
use serde_json::json;

/// Where an installed system keeps Google's attestation roots.
pub const DEFAULT_ROOTS: &str = "/usr/share/enigm/android-attestation-roots.json";

#[derive(Args, Debug)]
pub struct AndroidArgs {
    /// The chain, PEM, leaf first.
    chain: PathBuf,
    /// Verify as of this time (RFC 3339, e.g. 2025-09-26T15:31:20Z); default now.
    #[arg(long)]
    at: Option<String>,
    /// Google's roots (JSON array of PEM strings, as published).
    #[arg(long, default_value = DEFAULT_ROOTS)]
    roots: PathBuf,
    /// Google's revocation status list (JSON).
    #[arg(long)]
    revocations: Option<PathBuf>,
    /// Appraise against a policy (TOML, `[android]` section) as well.
    #[arg(long)]
    policy: Option<PathBuf>,
    /// The challenge the device was sent (hex), for --policy.
    #[arg(long)]
    challenge: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`.
pub fn parse_rfc3339(text: &str) -> Result<SystemTime> {
    let bad =
        || anyhow::anyhow!("--at {text:?} is not an RFC 3339 time such as 2025-09-26T15:31:20Z");
    let (date, rest) = text.split_once(['T', 't', ' ']).ok_or_else(bad)?;
    let mut d = date.split('-').map(str::parse::<i64>);
    let (Some(Ok(year)), Some(Ok(month)), Some(Ok(day)), None) =
        (d.next(), d.next(), d.next(), d.next())
    else {
        return Err(bad());
    };
    let (clock, offset_secs) = if let Some(clock) = rest.strip_suffix(['Z', 'z']) {
        (clock, 0)
    } else {
        let at = rest.rfind(['+', '-']).ok_or_else(bad)?;
        let (clock, zone) = rest.split_at(at);
        let sign = if zone.starts_with('-') { -1 } else { 1 };
        let (h, m) = zone[1..].split_once(':').ok_or_else(bad)?;
        (
            clock,
            sign * (h.parse::<i64>().map_err(|_| bad())? * 3600
                + m.parse::<i64>().map_err(|_| bad())? * 60),
        )
    };
    let clock = clock.split('.').next().unwrap_or(clock);
    let mut c = clock.split(':').map(str::parse::<i64>);
    let (Some(Ok(h)), Some(Ok(mi)), Some(Ok(s)), None) = (c.next(), c.next(), c.next(), c.next())
    else {
        return Err(bad());
    };
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || h > 23 || mi > 59 || s > 60 {
        return Err(bad());
    }
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + s - offset_secs;
    let secs = u64::try_from(secs).map_err(|_| bad())?;
    Ok(UNIX_EPOCH + Duration::from_secs(secs))
}

/// Verifies; `Ok(false)` when the chain is rejected (reason printed).
pub fn run(args: &AndroidArgs) -> Result<bool> {
    let pem = std::fs::read_to_string(&args.chain)
        .with_context(|| format!("cannot read {}", args.chain.display()))?;
    let chain = parse_pem_chain(&pem).context("chain")?;
    let roots = TrustedRoots::from_roots_json_file(&args.roots)
        .with_context(|| format!("roots {} (use --roots roots.json)", args.roots.display()))?;
    let revocations = match &args.revocations {
        Some(path) => Some(RevocationList::from_file(path).context("revocation list")?),
        None => None,
    };
    let at = match &args.at {
        Some(text) => parse_rfc3339(text)?,
        None => SystemTime::now(),
    };
    let mut options = VerifyOptions::new(&roots, at);
    if let Some(list) = &revocations {
        options = options.with_revocations(list);
    }
    let outcome = verify_chain(&chain, &options);
    let appraisal = match (&outcome, &args.policy) {
        (Ok(verified), Some(path)) => {
            let policy = enigm_verifier::policy::Policy::load(path)?;
            let challenge = hex::decode(args.challenge.as_deref().unwrap_or(""))
                .context("--challenge is not hex")?;
            if args.challenge.is_none() {
                bail!("--policy needs --challenge (the challenge the device was sent)");
            }
            Some(enigm_verifier::android::appraise_android(
                verified,
                &challenge,
                &policy.android,
            ))
        }
        _ => None,
    };
    let passed = match &outcome {
        Ok(verified) => verified.verdict.passed(),
        Err(_) => false,
    } && appraisal
        .as_ref()
        .is_none_or(|a| a.first_refuted().is_none());

    let reasons: Vec<String> = match &outcome {
        Ok(verified) => verified.verdict.reasons().to_vec(),
        Err(err) => vec![err.to_string()],
    };
    let mut record = match &outcome {
        Ok(verified) => verified.key_description.to_reference_json(),
        Err(_) => chain
            .first()
            .and_then(|leaf| key_description_from_certificate(leaf).ok().flatten())
            .map(|description| description.to_reference_json())
            .unwrap_or_else(|| json!({})),
    };
    let verdict = match &outcome {
        Ok(verified) => json!({
            "passed": passed,
            "reasons": reasons,
            "hardwareBacked": verified.hardware_backed,
            "securityLevel": verified.security_level.as_str(),
            "root": verified.root,
            "provisioning": verified.provisioning,
            "appraisal": appraisal,
        }),
        Err(_) => json!({ "passed": false, "reasons": reasons, "hardwareBacked": false }),
    };
    if let Some(object) = record.as_object_mut() {
        object.insert("verdict".into(), verdict);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&record)?);
    } else if passed {
        println!(
            "chain verified: {}",
            record["verdict"]["securityLevel"].as_str().unwrap_or("?")
        );
    } else {
        println!("rejected: {}", rejection(&reasons, appraisal.as_ref()));
    }
    if !passed && args.json {
        eprintln!(
            "enigm-verify: rejected: {}",
            rejection(&reasons, appraisal.as_ref())
        );
    }
    Ok(passed)
}

/// One line saying why: the chain's reasons, else the first claim the policy refuted.
fn rejection(
    reasons: &[String],
    appraisal: Option<&enigm_verifier::appraisal::Appraisal>,
) -> String {
    if !reasons.is_empty() {
        return reasons.join("; ");
    }
    match appraisal.and_then(|a| a.first_refuted()) {
        Some(claim) => format!("policy: {}: {}", claim.name, claim.reason),
        None => "not verified".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_table() {
        let cases = [
            ("1970-01-01T00:00:00Z", Some(0)),
            ("2025-09-26T15:31:20Z", Some(1_758_900_680)),
            ("2025-09-26T17:31:20.964+02:00", Some(1_758_900_680)),
            ("2025-09-26 15:31:20z", Some(1_758_900_680)),
            ("2025-13-26T15:31:20Z", None),
            ("yesterday", None),
            ("2025-09-26", None),
        ];
        for (text, expected) in cases {
            let parsed = parse_rfc3339(text).ok().map(|t| {
                t.duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0)
            });
            assert_eq!(parsed, expected, "{text}");
        }
    }
}
