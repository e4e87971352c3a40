//! TUF metadata: the signed envelope and the four top-level roles plus delegated targets,
//! parsed from JSON into plain types. Unknown fields are ignored (the spec allows them), but
//! every field the client relies on is checked for presence and type.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::canonical;
use crate::error::TufError;
use crate::keys::Key;
use crate::time;

/// A signed metadata file: its `signed` part, canonically encoded for checking, and its
/// signatures (key ID, hex signature).
#[derive(Debug, Clone)]
pub struct Envelope {
    /// The `signed` object.
    pub signed: Value,
    /// Its canonical encoding: what the signatures cover.
    pub canonical: Vec<u8>,
    /// (key ID, signature hex).
    pub signatures: Vec<(String, String)>,
}

fn bad(what: impl Into<String>) -> TufError {
    TufError::Format(what.into())
}

fn str_field<'a>(v: &'a Value, name: &str, ctx: &str) -> Result<&'a str, TufError> {
    v.get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| bad(format!("{ctx}: {name} missing or not a string")))
}

fn u64_field(v: &Value, name: &str, ctx: &str) -> Result<u64, TufError> {
    v.get(name).and_then(Value::as_u64).ok_or_else(|| {
        bad(format!(
            "{ctx}: {name} missing or not a non-negative integer"
        ))
    })
}

fn object<'a>(
    v: &'a Value,
    name: &str,
    ctx: &str,
) -> Result<&'a serde_json::Map<String, Value>, TufError> {
    v.get(name)
        .and_then(Value::as_object)
        .ok_or_else(|| bad(format!("{ctx}: {name} missing or not an object")))
}

impl Envelope {
    /// Parses a metadata file.
    pub fn parse(bytes: &[u8], what: &str) -> Result<Self, TufError> {
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| bad(format!("{what}: not JSON: {e}")))?;
        let signed = value
            .get("signed")
            .filter(|s| s.is_object())
            .cloned()
            .ok_or_else(|| bad(format!("{what}: no signed object")))?;
        let signatures = value
            .get("signatures")
            .and_then(Value::as_array)
            .ok_or_else(|| bad(format!("{what}: no signatures array")))?
            .iter()
            .map(|s| {
                Ok((
                    str_field(s, "keyid", what)?.to_owned(),
                    str_field(s, "sig", what)?.to_owned(),
                ))
            })
            .collect::<Result<Vec<_>, TufError>>()?;
        // The specification: a keyid MUST be unique in the signatures array.
        let mut seen = std::collections::BTreeSet::new();
        if let Some((keyid, _)) = signatures.iter().find(|(id, _)| !seen.insert(id.as_str())) {
            return Err(bad(format!(
                "{what}: key {keyid} signs more than once (keyids must be unique)"
            )));
        }
        let canonical = canonical::encode(&signed)?;
        Ok(Self {
            signed,
            canonical,
            signatures,
        })
    }

    /// Checks that at least `threshold` distinct keys among `keyids` (looked up in `keys`)
    /// signed this file. Unknown key types and bad signatures simply do not count.
    pub fn verify(
        &self,
        role: &str,
        keys: &BTreeMap<String, Value>,
        role_keys: &RoleKeys,
    ) -> Result<(), TufError> {
        let mut counted_ids = Vec::new();
        let mut counted_keys: Vec<Vec<u8>> = Vec::new();
        for (keyid, sig) in &self.signatures {
            if !role_keys.keyids.contains(keyid) || counted_ids.contains(keyid) {
                continue;
            }
            let Some(key) = keys.get(keyid).and_then(|k| Key::parse(k).ok()) else {
                continue;
            };
            if counted_keys.contains(&key.fingerprint) || !key.verifies(&self.canonical, sig) {
                continue;
            }
            counted_ids.push(keyid.clone());
            counted_keys.push(key.fingerprint);
        }
        if (counted_ids.len() as u64) < role_keys.threshold {
            return Err(TufError::Threshold {
                role: role.to_owned(),
                valid: counted_ids.len(),
                threshold: role_keys.threshold,
            });
        }
        Ok(())
    }
}

/// The fields every role has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Common {
    /// Version.
    pub version: u64,
    /// Expiry, unix seconds.
    pub expires: i64,
    /// Expiry as written.
    pub expires_text: String,
}

impl Common {
    fn parse(signed: &Value, expected_type: &str) -> Result<Self, TufError> {
        let ty = str_field(signed, "_type", expected_type)?;
        if ty != expected_type {
            return Err(bad(format!("expected {expected_type} metadata, got {ty}")));
        }
        let spec = str_field(signed, "spec_version", expected_type)?;
        if !spec.starts_with("1.") {
            return Err(bad(format!(
                "{expected_type}: unsupported spec_version {spec}"
            )));
        }
        let version = u64_field(signed, "version", expected_type)?;
        if version == 0 {
            return Err(bad(format!("{expected_type}: version 0")));
        }
        let expires_text = str_field(signed, "expires", expected_type)?.to_owned();
        Ok(Self {
            version,
            expires: time::parse(&expires_text)?,
            expires_text,
        })
    }

    /// Refuses metadata expired at `now`.
    pub fn check_expiry(&self, role: &str, now: i64) -> Result<(), TufError> {
        if self.expires <= now {
            return Err(TufError::Expired {
                role: role.to_owned(),
                expires: self.expires_text.clone(),
                now: u64::try_from(now).unwrap_or(0),
            });
        }
        Ok(())
    }
}

/// The keys and threshold of a role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleKeys {
    /// Key IDs.
    pub keyids: Vec<String>,
    /// Distinct keys that must sign.
    pub threshold: u64,
}

impl RoleKeys {
    fn parse(v: &Value, ctx: &str) -> Result<Self, TufError> {
        let keyids = v
            .get("keyids")
            .and_then(Value::as_array)
            .ok_or_else(|| bad(format!("{ctx}: keyids missing")))?
            .iter()
            .map(|k| {
                k.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| bad(format!("{ctx}: keyid not a string")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let threshold = u64_field(v, "threshold", ctx)?;
        if threshold == 0 {
            return Err(bad(format!("{ctx}: threshold 0")));
        }
        Ok(Self { keyids, threshold })
    }
}

fn keys(v: &Value, ctx: &str) -> Result<BTreeMap<String, Value>, TufError> {
    Ok(object(v, "keys", ctx)?
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect())
}

/// Root metadata.
#[derive(Debug, Clone)]
pub struct Root {
    /// Version and expiry.
    pub common: Common,
    /// Whether files are fetched as `VERSION.name.json` and targets as `HASH.name`.
    pub consistent_snapshot: bool,
    /// The keys, by ID.
    pub keys: BTreeMap<String, Value>,
    /// `root`, `timestamp`, `snapshot`, `targets`.
    pub roles: BTreeMap<String, RoleKeys>,
}

impl Root {
    /// Parses the `signed` part of root metadata.
    pub fn parse(signed: &Value) -> Result<Self, TufError> {
        let common = Common::parse(signed, "root")?;
        let mut roles = BTreeMap::new();
        for name in ["root", "timestamp", "snapshot", "targets"] {
            let role = object(signed, "roles", "root")?
                .get(name)
                .ok_or_else(|| bad(format!("root: role {name} missing")))?;
            roles.insert(name.to_owned(), RoleKeys::parse(role, name)?);
        }
        Ok(Self {
            common,
            consistent_snapshot: signed
                .get("consistent_snapshot")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            keys: keys(signed, "root")?,
            roles,
        })
    }

    /// The keys and threshold of a top-level `role`.
    pub fn role(&self, role: &str) -> Result<&RoleKeys, TufError> {
        self.roles
            .get(role)
            .ok_or_else(|| bad(format!("root: role {role} missing")))
    }

    /// The key material of a top-level role (to notice rotations).
    pub fn role_key_set(&self, role: &str) -> Vec<Value> {
        self.roles
            .get(role)
            .map(|r| {
                r.keyids
                    .iter()
                    .filter_map(|k| self.keys.get(k).cloned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// A metadata file's entry in timestamp or snapshot metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaFile {
    /// Its version.
    pub version: u64,
    /// Its length, when given.
    pub length: Option<u64>,
    /// Its hashes (algorithm → hex), when given.
    pub hashes: BTreeMap<String, String>,
}

fn hashes(v: &Value, ctx: &str) -> Result<BTreeMap<String, String>, TufError> {
    match v.get("hashes") {
        None => Ok(BTreeMap::new()),
        Some(h) => h
            .as_object()
            .ok_or_else(|| bad(format!("{ctx}: hashes not an object")))?
            .iter()
            .map(|(k, v)| {
                Ok((
                    k.clone(),
                    v.as_str()
                        .ok_or_else(|| bad(format!("{ctx}: hash not a string")))?
                        .to_owned(),
                ))
            })
            .collect(),
    }
}

impl MetaFile {
    fn parse(v: &Value, ctx: &str) -> Result<Self, TufError> {
        let length = match v.get("length") {
            None => None,
            Some(l) => Some(l.as_u64().ok_or_else(|| bad(format!("{ctx}: length")))?),
        };
        Ok(Self {
            version: u64_field(v, "version", ctx)?,
            length,
            hashes: hashes(v, ctx)?,
        })
    }
}

/// Timestamp metadata.
#[derive(Debug, Clone)]
pub struct Timestamp {
    /// Version and expiry.
    pub common: Common,
    /// The snapshot it points at.
    pub snapshot: MetaFile,
}

impl Timestamp {
    /// Parses the `signed` part.
    pub fn parse(signed: &Value) -> Result<Self, TufError> {
        let meta = object(signed, "meta", "timestamp")?;
        let snapshot = meta
            .get("snapshot.json")
            .ok_or_else(|| bad("timestamp: meta has no snapshot.json"))?;
        Ok(Self {
            common: Common::parse(signed, "timestamp")?,
            snapshot: MetaFile::parse(snapshot, "timestamp snapshot.json")?,
        })
    }
}

/// Snapshot metadata.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Version and expiry.
    pub common: Common,
    /// Targets metadata files (`targets.json`, `ROLE.json`).
    pub meta: BTreeMap<String, MetaFile>,
}

impl Snapshot {
    /// Parses the `signed` part.
    pub fn parse(signed: &Value) -> Result<Self, TufError> {
        let meta = object(signed, "meta", "snapshot")?
            .iter()
            .map(|(k, v)| Ok((k.clone(), MetaFile::parse(v, k)?)))
            .collect::<Result<BTreeMap<_, _>, TufError>>()?;
        Ok(Self {
            common: Common::parse(signed, "snapshot")?,
            meta,
        })
    }
}

/// A target file's entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetFile {
    /// Its length.
    pub length: u64,
    /// Its hashes (algorithm → hex).
    pub hashes: BTreeMap<String, String>,
}

/// A delegation to another targets role.
#[derive(Debug, Clone)]
pub struct DelegatedRole {
    /// The role's name.
    pub name: String,
    /// Its keys and threshold.
    pub keys: RoleKeys,
    /// Whether a match stops the search of later delegations.
    pub terminating: bool,
    /// Path patterns it is trusted for.
    pub paths: Option<Vec<String>>,
    /// Or: prefixes of the target path's SHA-256 (hex).
    pub path_hash_prefixes: Option<Vec<String>>,
}

/// Delegations of a targets role.
#[derive(Debug, Clone, Default)]
pub struct Delegations {
    /// Delegated keys, by ID.
    pub keys: BTreeMap<String, Value>,
    /// Delegated roles, in priority order.
    pub roles: Vec<DelegatedRole>,
}

/// Targets metadata (top-level or delegated).
#[derive(Debug, Clone)]
pub struct Targets {
    /// Version and expiry.
    pub common: Common,
    /// Target files by path.
    pub targets: BTreeMap<String, TargetFile>,
    /// Delegations.
    pub delegations: Delegations,
}

fn string_list(v: &Value, ctx: &str) -> Result<Vec<String>, TufError> {
    v.as_array()
        .ok_or_else(|| bad(format!("{ctx}: not a list")))?
        .iter()
        .map(|s| {
            s.as_str()
                .map(str::to_owned)
                .ok_or_else(|| bad(format!("{ctx}: not a string")))
        })
        .collect()
}

impl Targets {
    /// Parses the `signed` part.
    pub fn parse(signed: &Value) -> Result<Self, TufError> {
        let common = Common::parse(signed, "targets")?;
        let targets = object(signed, "targets", "targets")?
            .iter()
            .map(|(path, v)| {
                Ok((
                    path.clone(),
                    TargetFile {
                        length: u64_field(v, "length", path)?,
                        hashes: hashes(v, path)?,
                    },
                ))
            })
            .collect::<Result<BTreeMap<_, _>, TufError>>()?;
        let delegations = match signed.get("delegations") {
            None => Delegations::default(),
            Some(d) => {
                let roles = d
                    .get("roles")
                    .and_then(Value::as_array)
                    .ok_or_else(|| bad("delegations: roles missing"))?
                    .iter()
                    .map(|r| {
                        let name = str_field(r, "name", "delegated role")?.to_owned();
                        let paths = r.get("paths").map(|p| string_list(p, &name)).transpose()?;
                        let prefixes = r
                            .get("path_hash_prefixes")
                            .map(|p| string_list(p, &name))
                            .transpose()?;
                        if paths.is_some() == prefixes.is_some() {
                            return Err(bad(format!(
                                "delegated role {name}: exactly one of paths and path_hash_prefixes"
                            )));
                        }
                        Ok(DelegatedRole {
                            keys: RoleKeys::parse(r, &name)?,
                            terminating: r
                                .get("terminating")
                                .and_then(Value::as_bool)
                                .unwrap_or(false),
                            paths,
                            path_hash_prefixes: prefixes,
                            name,
                        })
                    })
                    .collect::<Result<Vec<_>, TufError>>()?;
                Delegations {
                    keys: keys(d, "delegations")?,
                    roles,
                }
            }
        };
        Ok(Self {
            common,
            targets,
            delegations,
        })
    }
}
