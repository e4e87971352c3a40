//! `enigm-updated` configuration (`/etc/enigm/updated.toml`, overridable by
//! `ENIGM_UPDATED__*`).
//!
//! Sections: `[privileges]` (the `enigm-updated` system user by default), `[authorization]`
//! (`read` may call `Check` and `GetStatus`; `change` may `Download` and `Apply`) and
//! `[update]`: where the repository is, what the device trusts, which disk holds its slots.

use enigm_runtime::authz::AuthorizationConfig;
use enigm_runtime::privileges::PrivilegeConfig;
use serde::Deserialize;

/// The daemon's name in config paths and variables.
pub const DAEMON: &str = "updated";

/// The system user the daemon runs as.
pub const SYSTEM_USER: &str = "enigm-updated";

/// The whole configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpdatedConfig {
    /// User and group to drop to.
    pub privileges: PrivilegeConfig,
    /// Who may check (`read`) and who may download and apply (`change`).
    pub authorization: AuthorizationConfig,
    /// The update source and the device.
    pub update: UpdateConfig,
}

/// The `[update]` section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpdateConfig {
    /// TUF metadata base URL (`http://…/metadata`).
    pub metadata_url: String,
    /// TUF targets base URL (`http://…/targets`).
    pub targets_url: String,
    /// State directory: `tuf/root.json` (the trusted root, installed with the image),
    /// `downloads/`, `rollback-index`.
    pub state_dir: String,
    /// This device's hardware name.
    pub hardware: String,
    /// JSON object of the image keys manifests must be signed with (key ID → public key).
    pub image_keys_file: String,
    /// How many image keys must sign.
    pub image_threshold: u64,
    /// The disk holding the A/B slots (a block device, or an image file in tests).
    pub disk: String,
    /// The running slot: `a`, `b`, or `auto` (`enigm.slot=` on the kernel command line).
    pub running_slot: String,
    /// Boots a new slot gets to pass its health check.
    pub tries: u8,
    /// Where the rollback index lives: a TCTI (`device:/dev/tpmrm0`, `swtpm:port=2321`) for a
    /// TPM NV index; `file` for `STATE_DIR/rollback-index`; `auto` (default): the TPM at
    /// `/dev/tpmrm0` when the device has one, else the file.
    pub rollback_store: String,
    /// The health check of a newly booted slot: D-Bus names that must be owned on the system
    /// bus (the services that must have come up) before it is marked good. Empty: only the
    /// slot's dm-verity check.
    pub health_bus_names: Vec<String>,
    /// How long the health check waits for them, in seconds.
    pub health_timeout_secs: u64,
    /// Check the repository every this many seconds (0: only when asked).
    pub check_interval_secs: u64,
    /// For `https://` repositories: trust only the CA certificates in this PEM file (empty:
    /// the system's trust store).
    pub tls_ca_file: String,
}

impl Default for UpdateConfig {
    fn default() -> Self {
        Self {
            metadata_url: String::new(),
            targets_url: String::new(),
            state_dir: "/var/lib/enigm/updated".into(),
            hardware: String::new(),
            image_keys_file: "/etc/enigm/image-keys.json".into(),
            image_threshold: 1,
            disk: String::new(),
            running_slot: "auto".into(),
            tries: 3,
            rollback_store: "auto".into(),
            health_bus_names: Vec::new(),
            health_timeout_secs: 120,
            check_interval_secs: 86_400,
            tls_ca_file: String::new(),
        }
    }
}

impl UpdateConfig {
    /// The keys that must be set, named when they are not.
    pub fn missing(&self) -> Vec<&'static str> {
        [
            ("update.metadata_url", &self.metadata_url),
            ("update.targets_url", &self.targets_url),
            ("update.hardware", &self.hardware),
            ("update.disk", &self.disk),
        ]
        .into_iter()
        .filter(|(_, v)| v.is_empty())
        .map(|(k, _)| k)
        .collect()
    }
}

/// Where the rollback index is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RollbackLocation {
    /// A TPM NV index, through this TCTI.
    Tpm(String),
    /// `STATE_DIR/rollback-index`.
    File,
}

/// The TPM resource manager device the `auto` setting looks for.
pub const TPM_DEVICE: &str = "/dev/tpmrm0";

/// The rollback store `setting` names; `tpm_present` says whether [`TPM_DEVICE`] exists.
pub fn rollback_location(setting: &str, tpm_present: bool) -> RollbackLocation {
    match setting {
        "file" => RollbackLocation::File,
        "auto" | "" if tpm_present => RollbackLocation::Tpm(format!("device:{TPM_DEVICE}")),
        "auto" | "" => RollbackLocation::File,
        tcti => RollbackLocation::Tpm(tcti.to_owned()),
    }
}

/// The running slot from a kernel command line (`enigm.slot=a` or `b`).
pub fn slot_from_cmdline(cmdline: &str) -> Option<enigm_slots::Slot> {
    cmdline
        .split_whitespace()
        .find_map(|arg| arg.strip_prefix("enigm.slot="))
        .and_then(parse_slot)
}

/// `a` or `b`.
pub fn parse_slot(text: &str) -> Option<enigm_slots::Slot> {
    match text {
        "a" | "A" => Some(enigm_slots::Slot::A),
        "b" | "B" => Some(enigm_slots::Slot::B),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use enigm_slots::Slot;

    #[test]
    fn slots_from_the_command_line() {
        let cases = [
            ("root=/dev/dm-0 enigm.slot=b quiet", Some(Slot::B)),
            ("enigm.slot=a", Some(Slot::A)),
            ("enigm.slot=c", None),
            ("quiet", None),
        ];
        for (cmdline, slot) in cases {
            assert_eq!(slot_from_cmdline(cmdline), slot, "{cmdline}");
        }
    }

    #[test]
    fn rollback_store_settings() {
        let tpm = |t: &str| RollbackLocation::Tpm(t.to_owned());
        let cases = [
            ("auto", true, tpm("device:/dev/tpmrm0")),
            ("auto", false, RollbackLocation::File),
            ("", true, tpm("device:/dev/tpmrm0")),
            ("file", true, RollbackLocation::File),
            ("swtpm:port=2321", false, tpm("swtpm:port=2321")),
        ];
        for (setting, present, expected) in cases {
            assert_eq!(rollback_location(setting, present), expected, "{setting}");
        }
    }

    #[test]
    fn missing_keys_are_named() {
        let config = UpdateConfig::default();
        assert_eq!(
            config.missing(),
            [
                "update.metadata_url",
                "update.targets_url",
                "update.hardware",
                "update.disk"
            ]
        );
    }
}
