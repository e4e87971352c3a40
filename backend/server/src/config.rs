//! The backend's configuration: built-in defaults → `/etc/enigm/backend.toml` under the
//! config root → `ENIGM_BACKEND__<SECTION>__<KEY>` environment overrides (the daemons'
//! layering, `enigm_runtime::config::load`). Every path, including an `sqlite://` database
//! URL's, is resolved under the same root, so tests run against a temporary tree.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use enigm_runtime::config::{ConfigError, load};
use enigm_runtime::sysroot::Sysroot;
use serde::Deserialize;

/// The name the config file and the override variables are derived from.
pub const DAEMON: &str = "backend";

/// The largest token lifetime the tokens crate accepts, in minutes.
pub const MAX_TOKEN_LIFETIME_MINUTES: u64 = 60;

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Listen addresses.
    pub listen: Listen,
    /// `sqlite://PATH?mode=rwc` (PATH under the config root) or `postgres://…`.
    pub database_url: String,
    /// The storage key file (lookup secret and sealing keys); generated, 0600, when absent.
    pub key_file: PathBuf,
    /// The token signing key (PEM, Ed25519); generated, 0600, when absent.
    pub token_key: PathBuf,
    /// TLS certificate and key.
    pub tls: Tls,
    /// How long a challenge nonce stays valid, seconds.
    pub challenge_ttl_secs: u64,
    /// Lifetime of an attestation result, minutes (at most 60).
    pub token_lifetime_minutes: u64,
    /// The appraisal policy (`enigm_verifier::policy::Policy` TOML); built-in default when
    /// unset.
    pub policy_file: Option<PathBuf>,
    /// Largest gRPC request accepted, bytes.
    pub max_request_bytes: usize,
    /// Argon2id costs for passwords and recovery phrases.
    pub argon2: Argon2,
    /// The admin API's bearer key (hex, one line); generated, 0600, when absent.
    pub admin_key_file: PathBuf,
    /// The name admin actions are recorded under (`Actor::Admin`).
    pub admin_name: String,
    /// Abuse limits on account creation, enrollment and challenges.
    pub rate_limit: RateLimit,
    /// Limits on sends into one relay queue (whoever sends).
    pub relay_rate_limit: RateLimit,
    /// How often the purge task deletes records past retention, seconds.
    pub purge_interval_secs: u64,
    /// Retention per record class (`challenges_secs`, `appraisals_secs`, `transitions_secs`,
    /// `connection_records_secs`).
    pub retention: enigm_backend_storage::Retention,
}

/// Token-bucket rate limits, applied separately per source IP address and per device handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimit {
    /// Sustained requests per minute per key.
    pub per_minute: u32,
    /// Requests allowed at once (the bucket size).
    pub burst: u32,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self {
            per_minute: 60,
            burst: 20,
        }
    }
}

/// Listen addresses.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Listen {
    /// The gRPC device API (TLS).
    pub grpc: SocketAddr,
    /// `/healthz` and `/metrics` (TLS).
    pub http: SocketAddr,
}

/// TLS material.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Tls {
    /// Certificate (PEM). With `key`, generated self-signed on first start when absent.
    pub cert: PathBuf,
    /// Private key (PEM).
    pub key: PathBuf,
    /// Extra DNS names or IP addresses for a generated certificate's SAN (localhost,
    /// 127.0.0.1 and ::1 are always included).
    pub names: Vec<String>,
}

/// Argon2id costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Argon2 {
    /// Memory, KiB.
    pub m_kib: u32,
    /// Iterations.
    pub t: u32,
    /// Lanes.
    pub p: u32,
}

impl Default for Argon2 {
    fn default() -> Self {
        let owasp = enigm_backend_lifecycle::Argon2Params::OWASP;
        Self {
            m_kib: owasp.m_kib,
            t: owasp.t,
            p: owasp.p,
        }
    }
}

impl Default for Listen {
    fn default() -> Self {
        Self {
            grpc: SocketAddr::from(([0, 0, 0, 0], 8443)),
            http: SocketAddr::from(([0, 0, 0, 0], 9443)),
        }
    }
}

impl Default for Tls {
    fn default() -> Self {
        Self {
            cert: PathBuf::from("/var/lib/enigm/backend-tls.crt"),
            key: PathBuf::from("/var/lib/enigm/backend-tls.key"),
            names: Vec::new(),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: Listen::default(),
            database_url: "sqlite:///var/lib/enigm/backend.db?mode=rwc".into(),
            key_file: PathBuf::from("/var/lib/enigm/backend-keys.toml"),
            token_key: PathBuf::from("/var/lib/enigm/backend-token.pem"),
            tls: Tls::default(),
            challenge_ttl_secs: 60,
            token_lifetime_minutes: 5,
            policy_file: None,
            max_request_bytes: 256 * 1024,
            argon2: Argon2::default(),
            admin_key_file: PathBuf::from("/var/lib/enigm/backend-admin.key"),
            admin_name: "command".into(),
            rate_limit: RateLimit::default(),
            relay_rate_limit: RateLimit {
                per_minute: 600,
                burst: 100,
            },
            purge_interval_secs: 3600,
            retention: enigm_backend_storage::Retention::default(),
        }
    }
}

/// A configuration value that loaded but makes no sense.
#[derive(Debug, thiserror::Error)]
pub enum InvalidConfig {
    /// Loading failed (file, syntax, unknown key, override).
    #[error(transparent)]
    Load(#[from] ConfigError),
    /// A value is out of range.
    #[error("config key `{key}`: {message}")]
    Range {
        /// The key.
        key: &'static str,
        /// Why.
        message: String,
    },
}

impl Config {
    /// Loads the configuration under `root` (`/` in production) with overrides from `env`.
    pub fn load(
        root: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, InvalidConfig> {
        let loaded = load::<Config>(DAEMON, &Sysroot::new(root), env)?;
        let config = loaded.config;
        config.validate()?;
        Ok(config)
    }

    /// Checks ranges the types do not express.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        let range = |key, message: &str| {
            Err(InvalidConfig::Range {
                key,
                message: message.to_owned(),
            })
        };
        if self.token_lifetime_minutes == 0
            || self.token_lifetime_minutes > MAX_TOKEN_LIFETIME_MINUTES
        {
            return range("token_lifetime_minutes", "must be 1 to 60");
        }
        if self.challenge_ttl_secs == 0 || self.challenge_ttl_secs > 3600 {
            return range("challenge_ttl_secs", "must be 1 to 3600");
        }
        if self.max_request_bytes < 1024 || self.max_request_bytes > 16 * 1024 * 1024 {
            return range("max_request_bytes", "must be 1 KiB to 16 MiB");
        }
        if self.rate_limit.per_minute == 0 || self.rate_limit.burst == 0 {
            return range("rate_limit", "per_minute and burst must be at least 1");
        }
        if self.relay_rate_limit.per_minute == 0 || self.relay_rate_limit.burst == 0 {
            return range(
                "relay_rate_limit",
                "per_minute and burst must be at least 1",
            );
        }
        if self.purge_interval_secs == 0 {
            return range("purge_interval_secs", "must be at least 1");
        }
        if self.admin_name.trim().is_empty() {
            return range("admin_name", "must not be empty");
        }
        Ok(())
    }

    /// The database URL with an `sqlite://` path resolved under `root`.
    pub fn resolved_database_url(&self, root: &Path) -> String {
        match self.database_url.strip_prefix("sqlite://") {
            Some(rest) => {
                let (path, query) = match rest.split_once('?') {
                    Some((path, query)) => (path, Some(query)),
                    None => (rest, None),
                };
                let path = Sysroot::new(root).path(path);
                match query {
                    Some(query) => format!("sqlite://{}?{query}", path.display()),
                    None => format!("sqlite://{}", path.display()),
                }
            }
            None => self.database_url.clone(),
        }
    }

    /// The SQLite file of the database URL, resolved under `root`, if it is SQLite.
    pub fn sqlite_path(&self, root: &Path) -> Option<PathBuf> {
        let rest = self.database_url.strip_prefix("sqlite://")?;
        let path = rest.split_once('?').map_or(rest, |(path, _)| path);
        Some(Sysroot::new(root).path(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_file_and_env_layer() {
        let dir = tempfile::tempdir().unwrap();
        let etc = dir.path().join("etc/enigm");
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::write(
            etc.join("backend.toml"),
            "challenge_ttl_secs = 5\n[listen]\ngrpc = \"127.0.0.1:0\"\n",
        )
        .unwrap();
        let env = [(
            "ENIGM_BACKEND__TOKEN_LIFETIME_MINUTES".to_owned(),
            "7".to_owned(),
        )];
        let config = Config::load(dir.path(), env).unwrap();
        assert_eq!(config.challenge_ttl_secs, 5);
        assert_eq!(config.token_lifetime_minutes, 7);
        assert_eq!(config.listen.grpc, "127.0.0.1:0".parse().unwrap());
        assert_eq!(config.listen.http, Listen::default().http);
        assert_eq!(
            config.resolved_database_url(dir.path()),
            format!(
                "sqlite://{}/var/lib/enigm/backend.db?mode=rwc",
                dir.path().display()
            )
        );
    }

    #[test]
    fn unknown_keys_and_bad_ranges_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let etc = dir.path().join("etc/enigm");
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::write(etc.join("backend.toml"), "no_such_key = 1\n").unwrap();
        assert!(Config::load(dir.path(), []).is_err());
        std::fs::write(etc.join("backend.toml"), "token_lifetime_minutes = 61\n").unwrap();
        assert!(matches!(
            Config::load(dir.path(), []),
            Err(InvalidConfig::Range { .. })
        ));
    }
}
