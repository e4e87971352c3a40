//! Appraisal of a verified Android key attestation against the `[android]` policy: the chain
//! verdict, hardware backing and security level, the challenge, the root of trust (bootloader
//! lock, verified-boot state and key), patch levels, and the attesting application.

use base64::Engine;
use enigm_android_attestation::{PatchLevel, SecurityLevel, VerifiedAttestation};

use crate::appraisal::Appraisal;
use crate::policy::AndroidPolicy;

/// A patch level as a comparable number: `YYYYMM` scaled to `YYYYMM00`, `YYYYMMDD` as is.
fn patch_number(level: Option<&PatchLevel>) -> Option<u32> {
    match level? {
        PatchLevel::Date { year, month, day } => {
            Some(u32::from(*year) * 10_000 + u32::from(*month) * 100 + u32::from(day.unwrap_or(0)))
        }
        PatchLevel::Unparsed(_) => None,
    }
}

fn check_patch(
    appraisal: &mut Appraisal,
    what: &str,
    level: Option<&PatchLevel>,
    minimum: u32,
    minimum_is_month: bool,
) {
    if minimum == 0 {
        return;
    }
    let minimum = if minimum_is_month {
        minimum * 100
    } else {
        minimum
    };
    match patch_number(level) {
        Some(value) if value >= minimum => appraisal.affirm(
            "patch-level",
            format!("{what} patch level {value} ≥ {minimum}"),
        ),
        Some(value) => appraisal.refute(
            "patch-level",
            format!("{what} patch level {value} is older than {minimum}"),
        ),
        None => appraisal.refute("patch-level", format!("no readable {what} patch level")),
    }
}

/// Appraises `verified` (from `verify_chain`) for a device that was sent `challenge`.
pub fn appraise_android(
    verified: &VerifiedAttestation,
    challenge: &[u8],
    policy: &AndroidPolicy,
) -> Appraisal {
    let mut appraisal = Appraisal::default();
    if verified.verdict.passed() {
        appraisal.affirm("chain", "chain verifies to a pinned Google root");
    } else {
        appraisal.refute("chain", verified.verdict.reasons().join("; "));
    }
    if verified.hardware_backed {
        appraisal.affirm("hardware", "key attested by secure hardware");
    } else {
        appraisal.refute(
            "hardware",
            "software-rooted attestation never counts as hardware-backed",
        );
    }
    let level = verified.security_level;
    let level_ok = match policy.required_security_level.as_str() {
        "STRONG_BOX" => level == SecurityLevel::StrongBox,
        _ => matches!(
            level,
            SecurityLevel::TrustedEnvironment | SecurityLevel::StrongBox
        ),
    };
    if level_ok {
        appraisal.affirm(
            "security-level",
            format!(
                "{} meets {}",
                level.as_str(),
                policy.required_security_level
            ),
        );
    } else {
        appraisal.refute(
            "security-level",
            format!(
                "{} does not meet {}",
                level.as_str(),
                policy.required_security_level
            ),
        );
    }
    let description = &verified.key_description;
    let sent = &description.attestation_challenge;
    if sent.len() == challenge.len() && openssl::memcmp::eq(sent, challenge) {
        appraisal.affirm("challenge", "the attestation answers this challenge");
    } else {
        appraisal.refute(
            "challenge",
            "the attestation answers another challenge (replayed?)",
        );
    }
    let hardware = &description.hardware_enforced;
    match &hardware.root_of_trust {
        None => appraisal.refute("root-of-trust", "no hardware-enforced root of trust"),
        Some(root) => {
            if policy.require_locked_bootloader && !root.device_locked {
                appraisal.refute("bootloader", "the bootloader is unlocked");
            } else {
                appraisal.affirm(
                    "bootloader",
                    if root.device_locked {
                        "locked"
                    } else {
                        "unlocked (allowed by policy)"
                    },
                );
            }
            let state = root.verified_boot_state.as_str();
            if policy
                .allowed_verified_boot_states
                .iter()
                .any(|allowed| allowed == state)
            {
                appraisal.affirm("boot-state", format!("verified boot state {state}"));
            } else {
                appraisal.refute(
                    "boot-state",
                    format!("verified boot state {state} is not allowed"),
                );
            }
            let key = hex::encode(&root.verified_boot_key);
            if policy.allowed_boot_keys.is_empty()
                || policy
                    .allowed_boot_keys
                    .iter()
                    .any(|k| k.eq_ignore_ascii_case(&key))
            {
                appraisal.affirm("boot-key", "verified boot key accepted");
            } else {
                appraisal.refute(
                    "boot-key",
                    format!("verified boot key {key} is not an allowed OS signing key"),
                );
            }
        }
    }
    check_patch(
        &mut appraisal,
        "OS",
        hardware.os_patch_level.as_ref(),
        policy.min_os_patch_level,
        true,
    );
    check_patch(
        &mut appraisal,
        "vendor",
        hardware.vendor_patch_level.as_ref(),
        policy.min_vendor_patch_level,
        false,
    );
    check_patch(
        &mut appraisal,
        "boot",
        hardware.boot_patch_level.as_ref(),
        policy.min_boot_patch_level,
        false,
    );
    let application = description
        .software_enforced
        .attestation_application_id
        .as_ref()
        .or(hardware.attestation_application_id.as_ref());
    if !policy.allowed_application_ids.is_empty() {
        let ok = application.is_some_and(|app| {
            app.packages
                .iter()
                .any(|p| policy.allowed_application_ids.contains(&p.name))
        });
        if ok {
            appraisal.affirm("application", "attested by an allowed application");
        } else {
            appraisal.refute("application", "not attested by an allowed application id");
        }
    }
    if !policy.allowed_signing_digests.is_empty() {
        let engine = base64::engine::general_purpose::STANDARD;
        let ok = application.is_some_and(|app| {
            app.signature_digests
                .iter()
                .any(|d| policy.allowed_signing_digests.contains(&engine.encode(d)))
        });
        if ok {
            appraisal.affirm(
                "application-signer",
                "application signed by an allowed certificate",
            );
        } else {
            appraisal.refute(
                "application-signer",
                "application signing certificate is not allowed",
            );
        }
    }
    appraisal
}
