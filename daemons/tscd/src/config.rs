//! `enigm-tscd` configuration (`/etc/enigm/tscd.toml`, overridable by `ENIGM_TSCD__*`).

use std::num::NonZeroU64;

use enigm_runtime::authz::AuthorizationConfig;
use enigm_runtime::privileges::PrivilegeConfig;
use serde::{Deserialize, Deserializer};

/// The daemon's name in config paths and variables.
pub const DAEMON: &str = "tscd";

/// The system user the daemon runs as.
pub const SYSTEM_USER: &str = "enigm-tscd";

/// The whole configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TscdConfig {
    /// User and group to drop to (default: the `enigm-tscd` system user).
    pub privileges: PrivilegeConfig,
    /// Who may read the posture and who may force a refresh.
    pub authorization: AuthorizationConfig,
    /// Check settings.
    pub posture: PostureConfig,
    /// Re-evaluation timing.
    pub refresh: RefreshConfig,
}

/// Settings of individual checks.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PostureConfig {
    /// Oldest acceptable security patch level, in days.
    pub max_patch_age_days: u32,
    /// The path whose filesystem must be encrypted (Linux).
    #[serde(deserialize_with = "absolute_path")]
    pub data_path: String,
    /// The Android system-properties snapshot (`getprop` format); absent on Linux.
    #[serde(deserialize_with = "absolute_path")]
    pub properties_file: String,
}

impl Default for PostureConfig {
    fn default() -> Self {
        Self {
            max_patch_age_days: 90,
            data_path: "/home".to_owned(),
            properties_file: "/run/enigm/system-properties".to_owned(),
        }
    }
}

/// When the posture is re-evaluated besides on file changes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RefreshConfig {
    /// Period of the timer that re-reads everything (sysfs and procfs do not notify).
    pub interval_secs: NonZeroU64,
    /// How long to wait for a burst of file changes to settle.
    pub debounce_ms: u64,
}

impl Default for RefreshConfig {
    fn default() -> Self {
        Self {
            interval_secs: NonZeroU64::MIN.saturating_add(59),
            debounce_ms: 100,
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

#[cfg(test)]
mod tests {
    use super::*;
    use enigm_runtime::sysroot::Sysroot;

    #[test]
    fn defaults_and_validation() {
        let dir = tempfile::tempdir().unwrap();
        let root = Sysroot::new(dir.path());
        let loaded = enigm_runtime::config::load::<TscdConfig>(DAEMON, &root, Vec::new()).unwrap();
        assert_eq!(loaded.config, TscdConfig::default());
        assert_eq!(loaded.config.refresh.interval_secs.get(), 60);

        let bad = [
            (
                "ENIGM_TSCD__POSTURE__DATA_PATH",
                "home",
                "posture.data_path",
            ),
            (
                "ENIGM_TSCD__REFRESH__INTERVAL_SECS",
                "0",
                "refresh.interval_secs",
            ),
            (
                "ENIGM_TSCD__POSTURE__MAX_PATCH_AGE_DAYS",
                "-3",
                "posture.max_patch_age_days",
            ),
        ];
        for (name, value, key) in bad {
            let err = enigm_runtime::config::load::<TscdConfig>(
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
