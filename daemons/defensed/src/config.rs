//! `enigm-defensed` configuration (`/etc/enigm/defensed.toml`, overridable by
//! `ENIGM_DEFENSED__*`).
//!
//! Sections: `[privileges]` (the `enigm-defensed` system user by default), `[authorization]`
//! (`read` may call `Findings`; `change` may start a `Scan`), `[defense]` (indicators, the
//! signed feed and its key, the state directory, the scan interval) and `[scan]` (the content
//! boundary, locations and limits of `enigm_defense_scan::ScanConfig`).

use enigm_defense_scan::ScanConfig;
use enigm_runtime::authz::AuthorizationConfig;
use enigm_runtime::privileges::PrivilegeConfig;
use serde::Deserialize;

/// The daemon's name in config paths and variables.
pub const DAEMON: &str = "defensed";

/// The system user the daemon runs as.
pub const SYSTEM_USER: &str = "enigm-defensed";

/// The whole configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DefensedConfig {
    /// User and group to drop to.
    pub privileges: PrivilegeConfig,
    /// Who may read findings (`read`) and who may start a scan (`change`).
    pub authorization: AuthorizationConfig,
    /// Indicators, state and schedule.
    pub defense: DefenseConfig,
    /// What a scan reads and where it stops.
    pub scan: ScanConfig,
}

/// The `[defense]` section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DefenseConfig {
    /// STIX bundle files or directories installed with the image (system paths).
    pub ioc_paths: Vec<String>,
    /// The signed feed the backend delivers (system path; its signature is `<feed>.sig`);
    /// used when it exists.
    pub feed: String,
    /// The Ed25519 public key (PEM) the feed must be signed with (system path).
    pub feed_key: String,
    /// Where the last report is kept (host path).
    pub state_dir: String,
    /// Seconds between scheduled scans; 0 disables them (a scan still runs at start).
    pub scan_interval_secs: u64,
}

impl Default for DefenseConfig {
    fn default() -> Self {
        Self {
            ioc_paths: vec!["/etc/enigm/defense/iocs".into()],
            feed: "/var/lib/enigm/defensed/feed/iocs.feed".into(),
            feed_key: "/etc/enigm/defense/feed-key.pem".into(),
            state_dir: "/var/lib/enigm/defensed".into(),
            scan_interval_secs: 6 * 3600,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides_parse() {
        let config: DefensedConfig = toml::from_str(
            "[defense]\nscan_interval_secs = 60\n[scan]\ncontent_boundary = [\"/home\"]\n",
        )
        .unwrap();
        assert_eq!(config.defense.scan_interval_secs, 60);
        assert_eq!(config.defense.ioc_paths, ["/etc/enigm/defense/iocs"]);
        assert_eq!(
            config.scan.content_boundary,
            [std::path::PathBuf::from("/home")]
        );
        assert!(toml::from_str::<DefensedConfig>("[defense]\nnope = 1\n").is_err());
    }
}
