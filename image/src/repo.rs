//! Publishing updates as a TUF repository (consistent snapshots): `metadata/` holds
//! `N.root.json` (and `root.json`), `timestamp.json`, `N.snapshot.json`, `N.targets.json`;
//! `targets/` holds each target as `SHA256.name`. Every publish signs a new targets,
//! snapshot and timestamp version with fresh expiries; nothing already published changes.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use enigm_tuf::client::write_atomic;
use openssl::hash::{MessageDigest, hash};
use serde_json::{Map, Value, json};

use crate::keys::{self, RoleKey};

/// The spec version written.
const SPEC_VERSION: &str = "1.0.31";
const DAY: i64 = 86_400;

/// Expiries, in days from now, per role.
#[derive(Debug, Clone, Copy)]
pub struct Expiries {
    /// Root.
    pub root: i64,
    /// Targets.
    pub targets: i64,
    /// Snapshot.
    pub snapshot: i64,
    /// Timestamp.
    pub timestamp: i64,
}

impl Default for Expiries {
    fn default() -> Self {
        Self {
            root: 365,
            targets: 90,
            snapshot: 7,
            timestamp: 1,
        }
    }
}

/// What a publish wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The new targets version.
    pub targets_version: u64,
    /// The new snapshot version.
    pub snapshot_version: u64,
    /// The new timestamp version.
    pub timestamp_version: u64,
}

fn metadata_dir(repo: &Path) -> PathBuf {
    repo.join("metadata")
}

/// `signed` with signatures by `keys` over its canonical JSON, as a pretty-printed document.
pub fn signed_document(signed: Value, keys: &[RoleKey]) -> Result<Vec<u8>> {
    let message = enigm_tuf::canonical::encode(&signed)?;
    let signatures = keys
        .iter()
        .map(|k| Ok(json!({"keyid": k.keyid, "sig": k.sign(&message)?})))
        .collect::<Result<Vec<_>>>()?;
    let mut bytes =
        serde_json::to_vec_pretty(&json!({"signatures": signatures, "signed": signed}))?;
    bytes.push(b'\n');
    Ok(bytes)
}

fn write(repo: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let path = metadata_dir(repo).join(name);
    write_atomic(&path, bytes).with_context(|| format!("writing {}", path.display()))
}

fn role_entry(keys: &[RoleKey], threshold: u64) -> Value {
    json!({"keyids": keys.iter().map(|k| k.keyid.clone()).collect::<Vec<_>>(), "threshold": threshold})
}

/// Creates the repository at `repo`: root v1 (every root key in `keys_dir`, `root_threshold`
/// of them required), and empty targets, snapshot and timestamp v1.
pub fn init(
    repo: &Path,
    keys_dir: &Path,
    root_threshold: u64,
    now: i64,
    expiries: Expiries,
) -> Result<()> {
    let meta = metadata_dir(repo);
    if meta.join("1.root.json").exists() {
        bail!("{} already holds a repository", repo.display());
    }
    std::fs::create_dir_all(&meta).with_context(|| format!("creating {}", meta.display()))?;
    std::fs::create_dir_all(repo.join("targets"))?;
    let mut all_keys = Map::new();
    let mut roles = Map::new();
    for role in keys::ROLES {
        let role_keys = keys::load(keys_dir, role)?;
        let threshold = if role == "root" { root_threshold } else { 1 };
        if threshold == 0 || threshold > role_keys.len() as u64 {
            bail!(
                "{role}: threshold {threshold} with {} key(s)",
                role_keys.len()
            );
        }
        for k in &role_keys {
            all_keys.insert(k.keyid.clone(), k.public.clone());
        }
        roles.insert(role.to_owned(), role_entry(&role_keys, threshold));
    }
    let root = json!({
        "_type": "root", "spec_version": SPEC_VERSION, "version": 1,
        "expires": enigm_tuf::time::format(now + expiries.root * DAY),
        "consistent_snapshot": true, "keys": all_keys, "roles": roles,
    });
    let bytes = signed_document(root, &keys::load(keys_dir, "root")?)?;
    write(repo, "1.root.json", &bytes)?;
    write(repo, "root.json", &bytes)?;
    publish(repo, keys_dir, &[], now, expiries).map(|_| ())
}

/// The trusted root's `signed` part (`metadata/root.json`).
fn latest_root(repo: &Path) -> Result<Value> {
    let path = metadata_dir(repo).join("root.json");
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok(enigm_tuf::metadata::Envelope::parse(&bytes, "root.json")?.signed)
}

/// The signing keys the latest root lists for `role`, from `keys_dir`.
fn role_keys(
    root: &Value,
    all: &mut std::collections::BTreeMap<String, RoleKey>,
    role: &str,
) -> Result<Vec<RoleKey>> {
    let ids = root["roles"][role]["keyids"]
        .as_array()
        .with_context(|| format!("root lists no {role} keys"))?;
    ids.iter()
        .map(|id| {
            let id = id.as_str().unwrap_or_default();
            all.remove(id)
                .with_context(|| format!("the {role} key {id} is not in the key directory"))
        })
        .collect()
}

/// Rotates `role`'s keys: `count` new keys (written to `keys_dir`) with `threshold`, in a new
/// root version signed by the current root keys (the old threshold) and, for the root role,
/// by the new ones (the new threshold) too; then re-signs targets, snapshot and timestamp
/// with the keys now current. Returns the new root version.
pub fn rotate(
    repo: &Path,
    keys_dir: &Path,
    role: &str,
    count: usize,
    threshold: u64,
    now: i64,
    expiries: Expiries,
) -> Result<u64> {
    if !keys::ROLES.contains(&role) {
        bail!("unknown role {role:?} ({})", keys::ROLES.join(", "));
    }
    if count == 0 || threshold == 0 || threshold > count as u64 {
        bail!("{role}: threshold {threshold} with {count} new key(s)");
    }
    let mut root = latest_root(repo)?;
    let version = root["version"].as_u64().context("root has no version")?;
    let mut all = keys::load_all(keys_dir)?;
    let old_root_keys = role_keys(&root, &mut all, "root")?;
    let first = keys::next_index(keys_dir, role);
    let new_keys = (first..first + count)
        .map(|i| keys::generate(keys_dir, role, i))
        .collect::<Result<Vec<_>>>()?;
    root["roles"][role] = role_entry(&new_keys, threshold);
    for k in &new_keys {
        root["keys"][&k.keyid] = k.public.clone();
    }
    // Keep only keys some role still lists.
    let listed: std::collections::BTreeSet<String> = keys::ROLES
        .iter()
        .flat_map(|r| {
            root["roles"][*r]["keyids"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    if let Some(map) = root["keys"].as_object_mut() {
        map.retain(|id, _| listed.contains(id));
    }
    let new_version = version + 1;
    root["version"] = json!(new_version);
    root["expires"] = json!(enigm_tuf::time::format(now + expiries.root * DAY));
    let mut signers = old_root_keys;
    if role == "root" {
        signers.extend(new_keys);
    }
    let bytes = signed_document(root, &signers)?;
    write(repo, &format!("{new_version}.root.json"), &bytes)?;
    write(repo, "root.json", &bytes)?;
    publish(repo, keys_dir, &[], now, expiries)?;
    Ok(new_version)
}

/// The newest version of `role` in the repository (from timestamp → snapshot), 0 if none.
fn current(repo: &Path) -> Result<(u64, u64, u64, Map<String, Value>)> {
    let meta = metadata_dir(repo);
    let Ok(ts_bytes) = std::fs::read(meta.join("timestamp.json")) else {
        return Ok((0, 0, 0, Map::new()));
    };
    let ts = enigm_tuf::metadata::Envelope::parse(&ts_bytes, "timestamp.json")?;
    let ts_version = ts.signed["version"].as_u64().unwrap_or(0);
    let snap_version = ts.signed["meta"]["snapshot.json"]["version"]
        .as_u64()
        .unwrap_or(0);
    let snap_bytes = std::fs::read(meta.join(format!("{snap_version}.snapshot.json")))
        .with_context(|| format!("reading snapshot {snap_version}"))?;
    let snap = enigm_tuf::metadata::Envelope::parse(&snap_bytes, "snapshot")?;
    let targets_version = snap.signed["meta"]["targets.json"]["version"]
        .as_u64()
        .unwrap_or(0);
    let targets_bytes = std::fs::read(meta.join(format!("{targets_version}.targets.json")))
        .with_context(|| format!("reading targets {targets_version}"))?;
    let targets = enigm_tuf::metadata::Envelope::parse(&targets_bytes, "targets")?;
    let files = targets.signed["targets"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    Ok((ts_version, snap_version, targets_version, files))
}

/// Adds `files` (`(target name, local path)`) and signs new targets, snapshot and timestamp
/// versions.
pub fn publish(
    repo: &Path,
    keys_dir: &Path,
    files: &[(String, PathBuf)],
    now: i64,
    expiries: Expiries,
) -> Result<Published> {
    let (ts_version, snap_version, targets_version, mut targets) = current(repo)?;
    for (name, path) in files {
        if name.is_empty()
            || name.starts_with('/')
            || name.split('/').any(|p| p == ".." || p.is_empty())
        {
            bail!("target name {name:?} must be a relative path without empty or .. parts");
        }
        let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let sha256 = hex::encode(hash(MessageDigest::sha256(), &data)?);
        let (dir, base) = name
            .rsplit_once('/')
            .map_or(("", name.as_str()), |(d, b)| (d, b));
        let target_dir = repo.join("targets").join(dir);
        std::fs::create_dir_all(&target_dir)?;
        write_atomic(&target_dir.join(format!("{sha256}.{base}")), &data)?;
        targets.insert(
            name.clone(),
            json!({"length": data.len(), "hashes": {"sha256": sha256}}),
        );
    }
    let expires = |days: i64| enigm_tuf::time::format(now + days * DAY);
    let (tv, sv, tsv) = (targets_version + 1, snap_version + 1, ts_version + 1);
    let root = latest_root(repo)?;
    let mut all = keys::load_all(keys_dir)?;
    let targets_keys = role_keys(&root, &mut all, "targets")?;
    let snapshot_keys = role_keys(&root, &mut all, "snapshot")?;
    let timestamp_keys = role_keys(&root, &mut all, "timestamp")?;
    let targets_doc = signed_document(
        json!({"_type": "targets", "spec_version": SPEC_VERSION, "version": tv,
               "expires": expires(expiries.targets), "targets": targets}),
        &targets_keys,
    )?;
    write(repo, &format!("{tv}.targets.json"), &targets_doc)?;
    let snapshot_doc = signed_document(
        json!({"_type": "snapshot", "spec_version": SPEC_VERSION, "version": sv,
               "expires": expires(expiries.snapshot),
               "meta": {"targets.json": {"version": tv}}}),
        &snapshot_keys,
    )?;
    write(repo, &format!("{sv}.snapshot.json"), &snapshot_doc)?;
    let snapshot_hash = hex::encode(hash(MessageDigest::sha256(), &snapshot_doc)?);
    let timestamp_doc = signed_document(
        json!({"_type": "timestamp", "spec_version": SPEC_VERSION, "version": tsv,
               "expires": expires(expiries.timestamp),
               "meta": {"snapshot.json": {"version": sv, "length": snapshot_doc.len(),
                                          "hashes": {"sha256": snapshot_hash}}}}),
        &timestamp_keys,
    )?;
    // The timestamp last: until it is replaced, clients see the previous complete version.
    write(repo, "timestamp.json", &timestamp_doc)?;
    Ok(Published {
        targets_version: tv,
        snapshot_version: sv,
        timestamp_version: tsv,
    })
}
