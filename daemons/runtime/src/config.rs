//! Daemon configuration: built-in defaults → `/etc/enigm/<daemon>.toml` (under the sysroot) → env.
//!
//! Each daemon declares its configuration as a serde struct with `#[serde(default,
//! deny_unknown_fields)]`, so a missing key takes its built-in default and an unknown key is an
//! error. Environment variables `ENIGM_<DAEMON>__<SECTION>__<KEY>=<toml value>` override the file
//! (a value that is not valid TOML is taken as a string). Every error names the key and the file
//! or variable it came from, and the daemon refuses to start.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::de::DeserializeOwned;

use crate::sysroot::Sysroot;

/// Where a configuration value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The TOML file at this (sysroot-resolved) path.
    File(PathBuf),
    /// The environment variable with this name.
    Env(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File(path) => write!(f, "{}", path.display()),
            Origin::Env(name) => write!(f, "environment variable {name}"),
        }
    }
}

/// A configuration that could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file exists but cannot be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("config file {path} is not valid TOML: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// What the parser said, with line and column.
        message: String,
    },
    /// A key is unknown or its value is not acceptable.
    #[error("config error in {origin}: key `{key}`: {message}")]
    Value {
        /// The file or variable the value came from.
        origin: Origin,
        /// The dotted key path, e.g. `authorization.change`.
        key: String,
        /// What is wrong with it.
        message: String,
    },
}

/// A loaded configuration and where it was read from.
#[derive(Debug, Clone)]
pub struct Loaded<T> {
    /// The configuration.
    pub config: T,
    /// The file it was read from, if it existed.
    pub file: Option<PathBuf>,
    /// The environment variables that overrode it.
    pub env_overrides: Vec<String>,
}

/// The system path of a daemon's config file, e.g. `/etc/enigm/tscd.toml`.
pub fn system_path(daemon: &str) -> PathBuf {
    PathBuf::from(format!("/etc/enigm/{daemon}.toml"))
}

/// The prefix of a daemon's override variables, e.g. `ENIGM_TSCD__`.
pub fn env_prefix(daemon: &str) -> String {
    format!("ENIGM_{}__", daemon.to_ascii_uppercase().replace('-', "_"))
}

/// Loads `T` for `daemon`: defaults, then the file under `sysroot`, then the overrides in `env`.
pub fn load<T: DeserializeOwned>(
    daemon: &str,
    sysroot: &Sysroot,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Loaded<T>, ConfigError> {
    let path = sysroot.path(system_path(daemon));
    let (mut table, file) = match std::fs::read_to_string(&path) {
        Ok(text) => {
            let table: toml::Table = toml::from_str(&text).map_err(|err| ConfigError::Syntax {
                path: path.clone(),
                message: err.to_string().trim().to_owned(),
            })?;
            (table, Some(path.clone()))
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => (toml::Table::new(), None),
        Err(source) => return Err(ConfigError::Read { path, source }),
    };
    // Validate the file on its own first, so its errors name the file.
    decode::<T>(table.clone(), |_| Origin::File(path.clone()))?;

    let overrides = env_overrides(daemon, env);
    for (key_path, (_, value)) in &overrides {
        insert_path(&mut table, key_path, value.clone());
    }
    let origin_of = |key: &str| {
        overrides
            .iter()
            .find(|(key_path, _)| {
                key == key_path.join(".") || key.starts_with(&format!("{}.", key_path.join(".")))
            })
            .map(|(_, (name, _))| Origin::Env(name.clone()))
            .unwrap_or_else(|| Origin::File(path.clone()))
    };
    let config = decode::<T>(table, origin_of)?;
    Ok(Loaded {
        config,
        file,
        env_overrides: overrides.into_values().map(|(name, _)| name).collect(),
    })
}

type Overrides = BTreeMap<Vec<String>, (String, toml::Value)>;

/// Picks the daemon's override variables out of `env` and parses their values.
fn env_overrides(daemon: &str, env: impl IntoIterator<Item = (String, String)>) -> Overrides {
    let prefix = env_prefix(daemon);
    env.into_iter()
        .filter_map(|(name, raw)| {
            let rest = name.strip_prefix(&prefix)?;
            let key_path: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
            if key_path.iter().any(String::is_empty) {
                return None;
            }
            Some((key_path, (name.clone(), parse_env_value(&raw))))
        })
        .collect()
}

/// An override's value: TOML if it parses as one (`3`, `true`, `[0, 1000]`, `"x"`), else a string.
fn parse_env_value(raw: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut table| table.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()))
}

fn insert_path(table: &mut toml::Table, key_path: &[String], value: toml::Value) {
    let Some((last, parents)) = key_path.split_last() else {
        return;
    };
    let mut current = table;
    for part in parents {
        let entry = current
            .entry(part.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        let toml::Value::Table(next) = entry else {
            return;
        };
        current = next;
    }
    current.insert(last.clone(), value);
}

fn decode<T: DeserializeOwned>(
    table: toml::Table,
    origin_of: impl Fn(&str) -> Origin,
) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(table).map_err(|err| {
        let message = err.inner().message().to_owned();
        let key = err.path().to_string();
        ConfigError::Value {
            origin: origin_of(&key),
            key,
            message,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    struct Example {
        interval_secs: u64,
        authorization: Auth,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    struct Auth {
        change: Vec<u32>,
        mode: String,
    }

    impl Default for Example {
        fn default() -> Self {
            Self {
                interval_secs: 60,
                authorization: Auth::default(),
            }
        }
    }

    impl Default for Auth {
        fn default() -> Self {
            Self {
                change: vec![0],
                mode: "strict".into(),
            }
        }
    }

    fn root_with(file: Option<&str>) -> (tempfile::TempDir, Sysroot) {
        let dir = tempfile::tempdir().unwrap();
        if let Some(text) = file {
            std::fs::create_dir_all(dir.path().join("etc/enigm")).unwrap();
            std::fs::write(dir.path().join("etc/enigm/example.toml"), text).unwrap();
        }
        let root = Sysroot::new(dir.path());
        (dir, root)
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    #[allow(clippy::type_complexity)]
    fn layers_apply_in_order() {
        let cases: &[(Option<&str>, &[(&str, &str)], Example)] = &[
            (None, &[], Example::default()),
            (
                Some("interval_secs = 5\n[authorization]\nchange = [0, 1000]\n"),
                &[],
                Example {
                    interval_secs: 5,
                    authorization: Auth {
                        change: vec![0, 1000],
                        mode: "strict".into(),
                    },
                },
            ),
            (
                Some("interval_secs = 5\n"),
                &[
                    ("ENIGM_EXAMPLE__INTERVAL_SECS", "7"),
                    ("ENIGM_EXAMPLE__AUTHORIZATION__MODE", "relaxed"),
                    ("OTHER", "x"),
                ],
                Example {
                    interval_secs: 7,
                    authorization: Auth {
                        change: vec![0],
                        mode: "relaxed".into(),
                    },
                },
            ),
            (
                None,
                &[("ENIGM_EXAMPLE__AUTHORIZATION__CHANGE", "[42]")],
                Example {
                    interval_secs: 60,
                    authorization: Auth {
                        change: vec![42],
                        mode: "strict".into(),
                    },
                },
            ),
        ];
        for (file, vars, expected) in cases {
            let (_dir, root) = root_with(*file);
            let loaded = load::<Example>("example", &root, env(vars)).unwrap();
            assert_eq!(&loaded.config, expected, "file {file:?} env {vars:?}");
            assert_eq!(loaded.file.is_some(), file.is_some());
        }
    }

    #[test]
    #[allow(clippy::type_complexity)]
    fn errors_name_the_key_and_the_source() {
        let cases: &[(Option<&str>, &[(&str, &str)], &str, bool)] = &[
            (Some("bogus = 1\n"), &[], "key `bogus`", true),
            (
                Some("[authorization]\nchnage = [1]\n"),
                &[],
                "key `authorization.chnage`",
                true,
            ),
            (
                Some("interval_secs = \"soon\"\n"),
                &[],
                "key `interval_secs`",
                true,
            ),
            (
                Some("[authorization]\nchange = [-1]\n"),
                &[],
                "key `authorization.change",
                true,
            ),
            (
                None,
                &[("ENIGM_EXAMPLE__INTERVAL_SECS", "often")],
                "ENIGM_EXAMPLE__INTERVAL_SECS",
                false,
            ),
            (None, &[("ENIGM_EXAMPLE__NOPE", "1")], "key `nope`", false),
        ];
        for (file, vars, needle, names_file) in cases {
            let (_dir, root) = root_with(*file);
            let err = load::<Example>("example", &root, env(vars))
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{err:?} should contain {needle:?}");
            assert_eq!(err.contains("example.toml"), *names_file, "{err}");
        }
    }

    #[test]
    fn syntax_errors_name_the_file_and_line() {
        let (_dir, root) = root_with(Some("interval_secs = = 3\n"));
        let err = load::<Example>("example", &root, Vec::new())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("example.toml") && err.contains("line 1"),
            "{err}"
        );
    }
}
