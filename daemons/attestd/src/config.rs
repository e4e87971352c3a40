//! `enigm-attestd` configuration (`/etc/enigm/attestd.toml`, overridable by `ENIGM_ATTESTD__*`).
//!
//! Sections: `[privileges]` (the `enigm-attestd` system user by default), `[authorization]`
//! (`read` may call `GetStatus`; `change` is the allow-list of uids that may ask for evidence
//! and activate credentials) and `[tpm]` (how to reach the TPM, which endorsement key, which
//! PCRs, where the attestation key is kept).

use std::str::FromStr;

use enigm_runtime::authz::AuthorizationConfig;
use enigm_runtime::privileges::PrivilegeConfig;
use serde::{Deserialize, Deserializer};

use crate::pcrs::PcrSpec;

/// The daemon's name in config paths and variables.
pub const DAEMON: &str = "attestd";

/// The system user the daemon runs as.
pub const SYSTEM_USER: &str = "enigm-attestd";

/// The whole configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AttestdConfig {
    /// User and group to drop to (default: the `enigm-attestd` system user).
    pub privileges: PrivilegeConfig,
    /// Who may read the status (`read`) and who may get evidence or activate credentials
    /// (`change`).
    pub authorization: AuthorizationConfig,
    /// The TPM.
    pub tpm: TpmConfig,
}

/// The algorithm of the endorsement key (TCG default templates, low range).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EkAlgorithm {
    /// ECC NIST P-256 (template L-2, certificate at NV index 0x01c0000a); the AK is ECDSA
    /// P-256 with SHA-256.
    #[default]
    Ecc,
    /// RSA 2048 (template L-1, certificate at NV index 0x01c00002); the AK is RSASSA 2048
    /// with SHA-256.
    Rsa,
}

impl EkAlgorithm {
    /// The configuration word (`ecc`, `rsa`).
    pub fn as_str(self) -> &'static str {
        match self {
            EkAlgorithm::Ecc => "ecc",
            EkAlgorithm::Rsa => "rsa",
        }
    }

    /// The NV index of the TCG EK certificate for this algorithm.
    pub fn certificate_nv_index(self) -> u32 {
        match self {
            EkAlgorithm::Ecc => 0x01c0_000a,
            EkAlgorithm::Rsa => 0x01c0_0002,
        }
    }
}

/// The `[tpm]` section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TpmConfig {
    /// The TCTI: `device:/dev/tpmrm0` (the kernel's resource manager), or
    /// `swtpm:host=127.0.0.1,port=2321` (a software TPM, in tests).
    #[serde(deserialize_with = "tcti")]
    pub tcti: String,
    /// The endorsement key's algorithm.
    pub ek_algorithm: EkAlgorithm,
    /// The quoted PCRs, tpm2-tools syntax: `sha256:0,1,2,3,4,5,6,7`, `sha256:0-7`,
    /// `sha1:0-7+sha256:0-7`.
    #[serde(deserialize_with = "pcr_spec")]
    pub pcrs: PcrSpec,
    /// Where the attestation key's public and private blobs are kept across restarts.
    #[serde(deserialize_with = "absolute_path")]
    pub state_dir: String,
    /// The TCG binary event log (read under the sysroot; empty evidence field when absent).
    #[serde(deserialize_with = "absolute_path")]
    pub event_log: String,
}

/// The default TCTI: the kernel resource manager.
pub const DEFAULT_TCTI: &str = "device:/dev/tpmrm0";

/// The default quoted PCRs: the firmware and boot-loader registers of the SHA-256 bank.
pub const DEFAULT_PCRS: &str = "sha256:0,1,2,3,4,5,6,7";

/// Where the kernel exposes the firmware's event log.
pub const DEFAULT_EVENT_LOG: &str = "/sys/kernel/security/tpm0/binary_bios_measurements";

impl Default for TpmConfig {
    fn default() -> Self {
        Self {
            tcti: DEFAULT_TCTI.to_owned(),
            ek_algorithm: EkAlgorithm::default(),
            pcrs: PcrSpec::sha256_boot(),
            state_dir: "/var/lib/enigm/attestd".to_owned(),
            event_log: DEFAULT_EVENT_LOG.to_owned(),
        }
    }
}

fn absolute_path<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let path = String::deserialize(deserializer)?;
    if path.starts_with('/') {
        Ok(path)
    } else {
        Err(serde::de::Error::custom(format!(
            "{path:?} is not an absolute path"
        )))
    }
}

fn tcti<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let text = String::deserialize(deserializer)?;
    tss_esapi::tcti_ldr::TctiNameConf::from_str(&text)
        .map(|_| text.clone())
        .map_err(|_| {
            serde::de::Error::custom(format!(
                "{text:?} is not a TCTI (expected device:PATH, swtpm:host=H,port=P, mssim:... or tabrmd:...)"
            ))
        })
}

fn pcr_spec<'de, D: Deserializer<'de>>(deserializer: D) -> Result<PcrSpec, D::Error> {
    let text = String::deserialize(deserializer)?;
    text.parse().map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;
    use enigm_runtime::sysroot::Sysroot;

    #[test]
    fn defaults() {
        let dir = tempfile::tempdir().unwrap();
        let root = Sysroot::new(dir.path());
        let loaded =
            enigm_runtime::config::load::<AttestdConfig>(DAEMON, &root, Vec::new()).unwrap();
        assert_eq!(loaded.config, AttestdConfig::default());
        let tpm = &loaded.config.tpm;
        assert_eq!(tpm.tcti, "device:/dev/tpmrm0");
        assert_eq!(tpm.ek_algorithm, EkAlgorithm::Ecc);
        assert_eq!(tpm.pcrs.to_string(), DEFAULT_PCRS);
        assert_eq!(tpm.state_dir, "/var/lib/enigm/attestd");
        assert_eq!(loaded.config.authorization.change, ["root"]);
        assert_eq!(loaded.config.authorization.read, ["*"]);
    }

    #[test]
    fn file_and_environment_values() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc/enigm")).unwrap();
        std::fs::write(
            dir.path().join("etc/enigm/attestd.toml"),
            "[tpm]\ntcti = \"swtpm:host=127.0.0.1,port=2321\"\nek_algorithm = \"rsa\"\npcrs = \"sha256:0-3+sha1:7\"\n[authorization]\nchange = [\"0\", \"1000\"]\n",
        )
        .unwrap();
        let root = Sysroot::new(dir.path());
        let env = vec![(
            "ENIGM_ATTESTD__TPM__STATE_DIR".to_owned(),
            "/tmp/ak".to_owned(),
        )];
        let config = enigm_runtime::config::load::<AttestdConfig>(DAEMON, &root, env)
            .unwrap()
            .config;
        assert_eq!(config.tpm.tcti, "swtpm:host=127.0.0.1,port=2321");
        assert_eq!(config.tpm.ek_algorithm, EkAlgorithm::Rsa);
        assert_eq!(config.tpm.pcrs.to_string(), "sha256:0,1,2,3+sha1:7");
        assert_eq!(config.tpm.state_dir, "/tmp/ak");
        assert_eq!(config.authorization.change, ["0", "1000"]);
    }

    #[test]
    fn bad_values_name_their_key() {
        let dir = tempfile::tempdir().unwrap();
        let root = Sysroot::new(dir.path());
        let bad = [
            ("ENIGM_ATTESTD__TPM__TCTI", "bluetooth:x", "tpm.tcti"),
            (
                "ENIGM_ATTESTD__TPM__EK_ALGORITHM",
                "dsa",
                "tpm.ek_algorithm",
            ),
            ("ENIGM_ATTESTD__TPM__PCRS", "sha256:0-40", "tpm.pcrs"),
            ("ENIGM_ATTESTD__TPM__PCRS", "md5:0", "tpm.pcrs"),
            ("ENIGM_ATTESTD__TPM__STATE_DIR", "var/lib", "tpm.state_dir"),
        ];
        for (name, value, key) in bad {
            let err = enigm_runtime::config::load::<AttestdConfig>(
                DAEMON,
                &root,
                vec![(name.into(), value.into())],
            )
            .unwrap_err();
            assert!(
                err.to_string().contains(key) && err.to_string().contains(name),
                "{err}"
            );
        }
    }
}
