//! Privacy profiles: what a profile switches off, the built-in ones, and their validation.
//!
//! A profile is plain data read from the `[profiles.NAME]` tables of the configuration (or one
//! of the built-ins, [`lockdown`] and [`travel`]). [`Profile::validate`] refuses anything the
//! daemon could not enforce exactly, naming the profile and the key.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Longest interface name the kernel accepts (IFNAMSIZ less the terminating NUL).
pub const IFNAME_MAX: usize = 15;

/// What the network may still do while a profile is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NetworkMode {
    /// No firewall table: the network is not restricted.
    Open,
    /// Only loopback, the tunnel interfaces (VPN) and, when set, the Tor daemon's own traffic;
    /// minimal DHCPv4 and neighbour discovery so the links can come up; DNS only through the
    /// tunnel.
    TunnelOnly,
    /// Only loopback.
    Offline,
}

/// A radio that rfkill can block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Radio {
    /// Wi-Fi.
    Wlan,
    /// Bluetooth.
    Bluetooth,
    /// Cellular modem.
    Wwan,
    /// Satellite positioning receiver.
    Gps,
    /// Near-field communication.
    Nfc,
}

impl Radio {
    /// Every radio, in a fixed order.
    pub const ALL: [Radio; 5] = [
        Radio::Wlan,
        Radio::Bluetooth,
        Radio::Wwan,
        Radio::Gps,
        Radio::Nfc,
    ];

    /// The name rfkill uses for the type (`/sys/class/rfkill/*/type`).
    pub fn name(self) -> &'static str {
        match self {
            Radio::Wlan => "wlan",
            Radio::Bluetooth => "bluetooth",
            Radio::Wwan => "wwan",
            Radio::Gps => "gps",
            Radio::Nfc => "nfc",
        }
    }

    /// The radio with rfkill type name `name`.
    pub fn from_name(name: &str) -> Option<Radio> {
        Radio::ALL.into_iter().find(|radio| radio.name() == name)
    }
}

/// One profile: what it switches off. The owner turns a profile on with `Enable(name)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// What the network may do.
    pub network: NetworkMode,
    /// Tunnel (VPN) interface names traffic may use (`tunnel-only`); a trailing `*` matches a
    /// prefix (`wg*`). Empty: the `[privacy] tunnels` list.
    #[serde(default)]
    pub tunnels: Vec<String>,
    /// Let the local Tor daemon's own traffic out (`tunnel-only`; its uid is `[privacy]
    /// tor_user`).
    #[serde(default)]
    pub tor: bool,
    /// Radios blocked through rfkill.
    #[serde(default)]
    pub radios: Vec<Radio>,
    /// Cameras de-authorized.
    #[serde(default)]
    pub camera_off: bool,
    /// Microphones (audio capture devices) de-authorized.
    #[serde(default)]
    pub microphone_off: bool,
    /// Location off: the GPS radio blocked and satellite receivers (GNSS devices)
    /// de-authorized.
    #[serde(default)]
    pub location_off: bool,
}

/// A profile that cannot be enforced as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProfileError {
    /// No profile has this name.
    #[error("no privacy profile named `{0}`")]
    Unknown(String),
    /// The profile's name is not a plain word.
    #[error("profile name `{0}` must be 1-32 characters of a-z, 0-9, `-` or `_`")]
    BadName(String),
    /// A tunnel interface name the kernel would never use.
    #[error(
        "profile `{profile}`: tunnels: `{name}` is not an interface name (1-15 characters, no `/`, space or `*` but a trailing one)"
    )]
    BadInterface {
        /// The profile.
        profile: String,
        /// The name.
        name: String,
    },
    /// `tunnel-only` with neither a tunnel nor Tor: say `offline` instead.
    #[error(
        "profile `{0}`: network = \"tunnel-only\" needs a tunnel interface or tor = true (or use \"offline\")"
    )]
    NoPath(String),
    /// Tor allowed but no Tor user configured.
    #[error("profile `{0}`: tor = true but [privacy] tor_user is not set")]
    NoTorUser(String),
    /// Keys that only make sense with `tunnel-only`.
    #[error("profile `{0}`: tunnels and tor apply only to network = \"tunnel-only\"")]
    PathWithoutTunnelMode(String),
}

/// Whether `name` can be a Linux interface name or prefix pattern (`wg*`).
pub fn valid_interface(name: &str) -> bool {
    let base = name.strip_suffix('*').unwrap_or(name);
    !base.is_empty()
        && base.len() <= IFNAME_MAX
        && base
            .chars()
            .all(|c| c.is_ascii_graphic() && c != '/' && c != '*' && c != ':')
}

/// Whether `name` is an acceptable profile name.
pub fn valid_profile_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

impl Profile {
    /// Checks the profile named `name` against what the daemon can enforce, with `tor_user`
    /// the configured Tor user (empty when none).
    pub fn validate(&self, name: &str, tor_user: &str) -> Result<(), ProfileError> {
        if !valid_profile_name(name) {
            return Err(ProfileError::BadName(name.to_owned()));
        }
        if let Some(bad) = self.tunnels.iter().find(|t| !valid_interface(t)) {
            return Err(ProfileError::BadInterface {
                profile: name.to_owned(),
                name: bad.clone(),
            });
        }
        match self.network {
            NetworkMode::TunnelOnly => {
                if self.tor && tor_user.is_empty() {
                    return Err(ProfileError::NoTorUser(name.to_owned()));
                }
            }
            NetworkMode::Open | NetworkMode::Offline => {
                if self.tor || !self.tunnels.is_empty() {
                    return Err(ProfileError::PathWithoutTunnelMode(name.to_owned()));
                }
            }
        }
        Ok(())
    }

    /// The profile with the default tunnels filled in when it names none, checked for a way
    /// out (`tunnel-only` needs a tunnel or Tor).
    pub fn resolve(&self, name: &str, default_tunnels: &[String]) -> Result<Profile, ProfileError> {
        let mut resolved = self.clone();
        if resolved.network == NetworkMode::TunnelOnly && resolved.tunnels.is_empty() {
            resolved.tunnels = default_tunnels.to_vec();
        }
        if resolved.network == NetworkMode::TunnelOnly
            && resolved.tunnels.is_empty()
            && !resolved.tor
        {
            return Err(ProfileError::NoPath(name.to_owned()));
        }
        if let Some(bad) = resolved.tunnels.iter().find(|t| !valid_interface(t)) {
            return Err(ProfileError::BadInterface {
                profile: name.to_owned(),
                name: bad.clone(),
            });
        }
        resolved.radios.sort();
        resolved.radios.dedup();
        if resolved.location_off && !resolved.radios.contains(&Radio::Gps) {
            resolved.radios.push(Radio::Gps);
            resolved.radios.sort();
        }
        Ok(resolved)
    }
}

/// The built-in *lockdown* profile: network only through the tunnel (and Tor when
/// configured), Bluetooth, NFC and GPS off, camera, microphone and location off. Wi-Fi and the
/// cellular modem stay on: they carry the tunnel.
pub fn lockdown() -> Profile {
    Profile {
        network: NetworkMode::TunnelOnly,
        tunnels: Vec::new(),
        tor: false,
        radios: vec![Radio::Bluetooth, Radio::Gps, Radio::Nfc],
        camera_off: true,
        microphone_off: true,
        location_off: true,
    }
}

/// The built-in *travel* profile: network only through the tunnel, Bluetooth and NFC off,
/// location off; camera and microphone stay usable.
pub fn travel() -> Profile {
    Profile {
        network: NetworkMode::TunnelOnly,
        tunnels: Vec::new(),
        tor: false,
        radios: vec![Radio::Bluetooth, Radio::Nfc],
        camera_off: false,
        microphone_off: false,
        location_off: true,
    }
}

/// The built-in profiles by name; configured profiles of the same name replace them.
pub fn built_in() -> BTreeMap<String, Profile> {
    BTreeMap::from([
        ("lockdown".to_owned(), lockdown()),
        ("travel".to_owned(), travel()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn custom(network: NetworkMode, tunnels: &[&str], tor: bool) -> Profile {
        Profile {
            network,
            tunnels: tunnels.iter().map(|s| s.to_string()).collect(),
            tor,
            radios: vec![],
            camera_off: false,
            microphone_off: false,
            location_off: false,
        }
    }

    #[test]
    fn validation_names_the_profile_and_the_problem() {
        use NetworkMode::*;
        let cases: [(&str, Profile, &str, Option<&str>); 8] = [
            ("ok", custom(TunnelOnly, &["wg0"], false), "", None),
            ("ok", custom(TunnelOnly, &["wg*"], true), "debian-tor", None),
            ("ok", custom(Offline, &[], false), "", None),
            (
                "Bad Name",
                custom(Offline, &[], false),
                "",
                Some("Bad Name"),
            ),
            (
                "long",
                custom(TunnelOnly, &["a-very-long-interface-name"], false),
                "",
                Some("profile `long`: tunnels: `a-very-long-interface-name`"),
            ),
            (
                "slash",
                custom(TunnelOnly, &["wg/0"], false),
                "",
                Some("`wg/0`"),
            ),
            (
                "tor",
                custom(TunnelOnly, &[], true),
                "",
                Some("profile `tor`: tor = true"),
            ),
            (
                "open",
                custom(Open, &["wg0"], false),
                "",
                Some("profile `open`: tunnels and tor"),
            ),
        ];
        for (name, profile, tor_user, expected) in cases {
            let result = profile.validate(name, tor_user);
            match expected {
                None => assert_eq!(result, Ok(()), "{name}"),
                Some(text) => {
                    let message = result.unwrap_err().to_string();
                    assert!(message.contains(text), "{name}: {message}");
                }
            }
        }
    }

    #[test]
    fn resolution_fills_default_tunnels_and_needs_a_path() {
        let defaults = vec!["wg0".to_owned()];
        let resolved = lockdown().resolve("lockdown", &defaults).unwrap();
        assert_eq!(resolved.tunnels, defaults);
        assert_eq!(
            resolved.radios,
            [Radio::Bluetooth, Radio::Gps, Radio::Nfc],
            "sorted, gps once"
        );
        assert_eq!(
            lockdown().resolve("lockdown", &[]).unwrap_err(),
            ProfileError::NoPath("lockdown".into())
        );
        let mut travel = travel();
        travel.radios.clear();
        let resolved = travel.resolve("travel", &defaults).unwrap();
        assert_eq!(resolved.radios, [Radio::Gps], "location off blocks gps");
    }

    #[test]
    fn interface_names() {
        let cases = [
            ("wg0", true),
            ("wg*", true),
            ("tun-vpn.1", true),
            ("", false),
            ("*", false),
            ("w*g", false),
            ("sixteen-chars-xx", false),
            ("fifteen-chars-x", true),
            ("a b", false),
        ];
        for (name, ok) in cases {
            assert_eq!(valid_interface(name), ok, "{name}");
        }
    }
}
