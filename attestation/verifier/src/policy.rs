//! The appraisal policy file (TOML).
//!
//! ```toml
//! [tpm]
//! bank = "sha256"                 # the PCR bank appraised
//! require_event_log = true        # the log must replay to the quoted PCRs
//! [tpm.pcrs]                      # golden values; several alternatives allowed per PCR
//! 0 = ["3d45…", "a1b2…"]
//! 7 = ["65ca…"]
//!
//! [android]
//! require_locked_bootloader = true
//! allowed_verified_boot_states = ["VERIFIED"]
//! allowed_boot_keys = []          # hex SHA-256 of the verified-boot key; empty = any
//! min_os_patch_level = 202501     # YYYYMM
//! min_vendor_patch_level = 20250101
//! min_boot_patch_level = 20250101
//! allowed_application_ids = ["org.enigm.app"]  # empty = any
//! allowed_signing_digests = []    # base64 SHA-256 of the app signing certificate; empty = any
//! required_security_level = "TRUSTED_ENVIRONMENT"  # or STRONG_BOX
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use enigm_tpm_evidence::hash::HashAlg;
use enigm_tpm_evidence::pcr::PcrValues;
use serde::Deserialize;

/// A policy that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// Unreadable file.
    #[error("cannot read policy {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Not valid TOML or a bad value; names the key.
    #[error("policy {path}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
}

/// The whole policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Policy {
    /// TPM quote requirements.
    pub tpm: TpmPolicy,
    /// Android key attestation requirements.
    pub android: AndroidPolicy,
}

/// TPM requirements.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TpmPolicy {
    /// The bank appraised (`sha256`).
    pub bank: String,
    /// Whether an event log that replays to the quoted PCRs is required.
    pub require_event_log: bool,
    /// Golden values (hex) per PCR index; any alternative matches.
    pub pcrs: BTreeMap<String, Vec<String>>,
}

impl Default for TpmPolicy {
    fn default() -> Self {
        Self {
            bank: "sha256".into(),
            require_event_log: true,
            pcrs: BTreeMap::new(),
        }
    }
}

/// Android requirements.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AndroidPolicy {
    /// The bootloader must be locked.
    pub require_locked_bootloader: bool,
    /// Accepted verified-boot states (`VERIFIED`, `SELF_SIGNED`, …).
    pub allowed_verified_boot_states: Vec<String>,
    /// Accepted verified-boot keys (hex); empty accepts any.
    pub allowed_boot_keys: Vec<String>,
    /// Minimum OS patch level, YYYYMM.
    pub min_os_patch_level: u32,
    /// Minimum vendor patch level, YYYYMMDD.
    pub min_vendor_patch_level: u32,
    /// Minimum boot patch level, YYYYMMDD.
    pub min_boot_patch_level: u32,
    /// Accepted attestation application package names; empty accepts any.
    pub allowed_application_ids: Vec<String>,
    /// Accepted app signing certificate digests (base64); empty accepts any.
    pub allowed_signing_digests: Vec<String>,
    /// `TRUSTED_ENVIRONMENT` or `STRONG_BOX`.
    pub required_security_level: String,
}

impl Default for AndroidPolicy {
    fn default() -> Self {
        Self {
            require_locked_bootloader: true,
            allowed_verified_boot_states: vec!["VERIFIED".into()],
            allowed_boot_keys: Vec::new(),
            min_os_patch_level: 0,
            min_vendor_patch_level: 0,
            min_boot_patch_level: 0,
            allowed_application_ids: Vec::new(),
            allowed_signing_digests: Vec::new(),
            required_security_level: "TRUSTED_ENVIRONMENT".into(),
        }
    }
}

/// One golden-value comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcrCheck {
    /// Whether it matched.
    pub ok: bool,
    /// For a human.
    pub reason: String,
}

impl Policy {
    /// Reads and validates a policy file.
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: shown.clone(),
            source,
        })?;
        Self::parse(&text).map_err(|message| PolicyError::Invalid {
            path: shown,
            message,
        })
    }

    /// Parses and validates policy text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let policy: Policy = toml::from_str(text).map_err(|err| err.to_string())?;
        policy.bank()?;
        let level = policy.android.required_security_level.as_str();
        if !matches!(level, "TRUSTED_ENVIRONMENT" | "STRONG_BOX") {
            return Err(format!(
                "android.required_security_level: {level:?} is neither TRUSTED_ENVIRONMENT nor STRONG_BOX"
            ));
        }
        for (index, values) in &policy.tpm.pcrs {
            let index: u32 = index
                .parse()
                .map_err(|_| format!("tpm.pcrs: {index:?} is not a PCR index"))?;
            for value in values {
                let bytes = hex::decode(value)
                    .map_err(|_| format!("tpm.pcrs.{index}: {value:?} is not hex"))?;
                if bytes.len() != policy.bank()?.size() {
                    return Err(format!(
                        "tpm.pcrs.{index}: {value} is not a {} digest",
                        policy.tpm.bank
                    ));
                }
            }
        }
        Ok(policy)
    }

    /// The appraised bank.
    pub fn bank(&self) -> Result<HashAlg, String> {
        HashAlg::from_name(&self.tpm.bank)
            .ok_or_else(|| format!("tpm.bank: unknown bank {:?}", self.tpm.bank))
    }

    /// Compares `values` with the golden values, one check per PCR in the policy.
    pub fn check_pcrs(&self, values: &PcrValues) -> Vec<PcrCheck> {
        let Ok(bank) = self.bank() else {
            return vec![PcrCheck {
                ok: false,
                reason: format!("unknown bank {:?}", self.tpm.bank),
            }];
        };
        let mut checks = Vec::new();
        for (index, golden) in &self.tpm.pcrs {
            let Ok(index) = index.parse::<u32>() else {
                continue;
            };
            let check = match values.get(bank, index) {
                None => PcrCheck {
                    ok: false,
                    reason: format!("PCR {index} was not quoted"),
                },
                Some(value) => {
                    let value = hex::encode(value);
                    if golden.iter().any(|g| g.eq_ignore_ascii_case(&value)) {
                        PcrCheck {
                            ok: true,
                            reason: format!("PCR {index} matches a golden value"),
                        }
                    } else {
                        PcrCheck {
                            ok: false,
                            reason: format!("PCR {index} is {value}, not a golden value"),
                        }
                    }
                }
            };
            checks.push(check);
        }
        checks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_values_with_alternatives() {
        let a = "aa".repeat(32);
        let b = "bb".repeat(32);
        let policy = Policy::parse(&format!(
            "[tpm.pcrs]\n0 = [\"{a}\", \"{b}\"]\n7 = [\"{a}\"]\n"
        ))
        .unwrap();
        let mut values = PcrValues::default();
        values.insert(HashAlg::Sha256, 0, vec![0xbb; 32]);
        values.insert(HashAlg::Sha256, 7, vec![0xcc; 32]);
        let checks = policy.check_pcrs(&values);
        assert_eq!(
            checks.iter().map(|c| c.ok).collect::<Vec<_>>(),
            vec![true, false]
        );
        assert!(checks[1].reason.contains("PCR 7"));
        let missing = policy.check_pcrs(&PcrValues::default());
        assert!(
            missing
                .iter()
                .all(|c| !c.ok && c.reason.contains("not quoted"))
        );
    }

    #[test]
    fn invalid_policies_name_the_key() {
        for (text, needle) in [
            ("[tpm]\nbank = \"md5\"\n", "tpm.bank"),
            ("[tpm.pcrs]\nx = []\n", "tpm.pcrs"),
            ("[tpm.pcrs]\n0 = [\"zz\"]\n", "tpm.pcrs.0"),
            ("[tpm.pcrs]\n0 = [\"aa\"]\n", "tpm.pcrs.0"),
            ("[android]\nrequire_locked = true\n", "require_locked"),
            (
                "[android]\nrequired_security_level = \"TEE\"\n",
                "android.required_security_level",
            ),
        ] {
            let err = Policy::parse(text).unwrap_err();
            assert!(err.contains(needle), "{text:?}: {err}");
        }
    }
}
