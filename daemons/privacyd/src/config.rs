//! `enigm-privacyd` configuration (`/etc/enigm/privacyd.toml`, overridable by
//! `ENIGM_PRIVACYD__*`).
//!
//! Sections: `[privileges]` (the `enigm-privacyd` system user by default), `[authorization]`
//! (`read` may call `Status`; `change` — the device owner's user and the admin — may `Enable`
//! and `Disable`), `[privacy]` (state file, default tunnels, the Tor user) and
//! `[profiles.NAME]`, which add to or replace the built-in `lockdown` and `travel`.

use std::collections::BTreeMap;

use enigm_runtime::authz::AuthorizationConfig;
use enigm_runtime::privileges::PrivilegeConfig;
use serde::Deserialize;

use crate::profile::{Profile, ProfileError, built_in};

/// The daemon's name in config paths and variables.
pub const DAEMON: &str = "privacyd";

/// The system user the daemon runs as.
pub const SYSTEM_USER: &str = "enigm-privacyd";

/// The whole configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PrivacydConfig {
    /// User and group to drop to.
    pub privileges: PrivilegeConfig,
    /// Who may read the status (`read`) and who may switch the mode (`change`).
    pub authorization: AuthorizationConfig,
    /// Where the state lives, the tunnels, Tor.
    pub privacy: PrivacySection,
    /// Profiles by name (added to the built-ins, replacing one of the same name).
    pub profiles: BTreeMap<String, Profile>,
}

/// The `[privacy]` section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PrivacySection {
    /// The persisted state (what the owner chose and what the daemon switched off).
    pub state_file: String,
    /// Tunnel (VPN) interfaces for profiles that name none; `wg*` matches a prefix.
    pub tunnels: Vec<String>,
    /// The Tor daemon's user, for profiles with `tor = true` (empty: none).
    pub tor_user: String,
    /// The profile `Enable("")` and `enigmctl privacy on` use.
    pub default_profile: String,
    /// While a profile is on, how often the kernel is read back and anything that drifted (a
    /// radio unblocked, a camera plugged in, the table changed) switched back; 0: never.
    pub enforce_interval_secs: u64,
}

impl Default for PrivacySection {
    fn default() -> Self {
        Self {
            state_file: "/var/lib/enigm/privacyd/state.json".into(),
            tunnels: vec!["wg*".into(), "tun*".into()],
            tor_user: String::new(),
            default_profile: "lockdown".into(),
            enforce_interval_secs: 5,
        }
    }
}

impl PrivacydConfig {
    /// Every profile (built-ins, then the configured ones over them), each validated and
    /// resolved against the `[privacy]` defaults. The first bad one is named in the error.
    pub fn profiles(&self) -> Result<BTreeMap<String, Profile>, ProfileError> {
        let mut all = built_in();
        all.extend(self.profiles.clone());
        let mut out = BTreeMap::new();
        for (name, profile) in all {
            profile.validate(&name, &self.privacy.tor_user)?;
            let resolved = profile.resolve(&name, &self.privacy.tunnels)?;
            out.insert(name, resolved);
        }
        if !out.contains_key(&self.privacy.default_profile) {
            return Err(ProfileError::Unknown(self.privacy.default_profile.clone()));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::{NetworkMode, Radio};

    fn parse(text: &str) -> Result<PrivacydConfig, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    #[test]
    fn built_ins_and_custom_profiles() {
        let config = parse(
            r#"
            [privacy]
            tunnels = ["wg0"]
            [profiles.airplane]
            network = "offline"
            radios = ["wlan", "bluetooth", "wwan", "gps", "nfc"]
            camera_off = true
            microphone_off = true
            "#,
        )
        .unwrap();
        let profiles = config.profiles().unwrap();
        assert_eq!(
            profiles.keys().collect::<Vec<_>>(),
            ["airplane", "lockdown", "travel"]
        );
        assert_eq!(profiles["lockdown"].tunnels, ["wg0"]);
        assert_eq!(profiles["airplane"].network, NetworkMode::Offline);
        assert_eq!(profiles["airplane"].radios.len(), Radio::ALL.len());
    }

    #[test]
    fn malformed_profiles_are_named() {
        let cases = [
            (
                "[profiles.broken]\nnetwork = \"tunnel-only\"\ntunnels = [\"wg/0\"]\n",
                "profile `broken`",
            ),
            (
                "[profiles.lockdown]\nnetwork = \"tunnel-only\"\ntor = true\n",
                "profile `lockdown`: tor = true",
            ),
            (
                "[privacy]\ntunnels = []\n[profiles.x]\nnetwork = \"tunnel-only\"\n",
                "profile `lockdown`",
            ),
            ("[privacy]\ndefault_profile = \"nope\"\n", "`nope`"),
        ];
        for (text, expected) in cases {
            let config = parse(text).unwrap();
            let err = config.profiles().unwrap_err().to_string();
            assert!(err.contains(expected), "{text}: {err}");
        }
        // Unknown keys and values fail when the file is read (the runtime names the key).
        assert!(parse("[profiles.x]\nnetwork = \"sometimes\"\n").is_err());
        assert!(parse("[profiles.x]\nnetwork = \"open\"\nradio = [\"wlan\"]\n").is_err());
        assert!(
            parse("[profiles.x]\nradios = [\"wlan\"]\n").is_err(),
            "network is required"
        );
    }
}
