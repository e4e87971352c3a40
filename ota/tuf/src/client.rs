//! The client workflow of the TUF specification (§5): update root through every intermediate
//! version, then timestamp, snapshot and targets, each checked for signatures over a threshold
//! of distinct keys, versions (rollback), expiry against one fixed update start time, lengths
//! and hashes; then the target's delegation walk and its download, checked the same way.
//! Trusted metadata is kept in a directory and replaced only after every check passed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use openssl::hash::{MessageDigest, hash};
use openssl::memcmp;

use crate::error::TufError;
use crate::fetch::{FetchError, Fetcher, encode_segment};
use crate::metadata::{
    DelegatedRole, Envelope, MetaFile, RoleKeys, Root, Snapshot, TargetFile, Targets, Timestamp,
};

/// Limits and switches.
#[derive(Debug, Clone)]
pub struct Config {
    /// Most root versions fetched in one update.
    pub max_root_rotations: u64,
    /// Caps for metadata whose length no trusted metadata states.
    pub root_max_length: u64,
    /// Timestamp cap.
    pub timestamp_max_length: u64,
    /// Snapshot cap (when timestamp gives no length).
    pub snapshot_max_length: u64,
    /// Targets cap (when snapshot gives no length).
    pub targets_max_length: u64,
    /// Most delegated roles visited when looking a target up.
    pub max_delegations: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_root_rotations: 256,
            root_max_length: 512_000,
            timestamp_max_length: 16_384,
            snapshot_max_length: 2_000_000,
            targets_max_length: 5_000_000,
            max_delegations: 32,
        }
    }
}

/// A verified role and the bytes it came from.
#[derive(Debug, Clone)]
struct Trusted<T> {
    role: T,
    bytes: Vec<u8>,
}

/// The TUF client.
pub struct Updater<F: Fetcher> {
    dir: PathBuf,
    metadata_url: String,
    fetcher: F,
    now: i64,
    config: Config,
    root: Trusted<Root>,
    timestamp: Option<Trusted<Timestamp>>,
    snapshot: Option<Trusted<Snapshot>>,
    targets: BTreeMap<String, Trusted<Targets>>,
    /// For each trusted targets role, the role whose delegation it was verified against.
    targets_delegator: BTreeMap<String, String>,
}

fn read_file(path: &Path) -> Result<Option<Vec<u8>>, TufError> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(TufError::Io {
            op: "reading",
            path: path.display().to_string(),
            source,
        }),
    }
}

/// Writes `bytes` to `path` atomically (temporary file, sync, rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), TufError> {
    let io = |op: &'static str| {
        move |source| TufError::Io {
            op,
            path: path.display().to_string(),
            source,
        }
    };
    let tmp = path.with_extension("tmp");
    {
        use std::io::Write;
        let mut file = std::fs::File::create(&tmp).map_err(io("creating"))?;
        file.write_all(bytes).map_err(io("writing"))?;
        file.sync_all().map_err(io("syncing"))?;
    }
    std::fs::rename(&tmp, path).map_err(io("renaming"))
}

/// Checks `bytes` against a stated length and hashes (sha256, sha512). With `require_hash`,
/// at least one supported hash must be given.
fn check_file(
    what: &str,
    bytes: &[u8],
    length: Option<u64>,
    hashes: &BTreeMap<String, String>,
    require_hash: bool,
) -> Result<(), TufError> {
    let mismatch = |detail: String| TufError::Mismatch {
        what: what.to_owned(),
        detail,
    };
    if let Some(l) = length
        && bytes.len() as u64 != l
    {
        return Err(mismatch(format!("length {} instead of {l}", bytes.len())));
    }
    let mut checked = 0;
    for (alg, expected) in hashes {
        let md = match alg.as_str() {
            "sha256" => MessageDigest::sha256(),
            "sha512" => MessageDigest::sha512(),
            _ => continue,
        };
        let digest = hash(md, bytes)?;
        let expected = hex::decode(expected).map_err(|_| mismatch(format!("{alg} is not hex")))?;
        if expected.len() != digest.len() || !memcmp::eq(&digest, &expected) {
            return Err(mismatch(format!("{alg} hash differs")));
        }
        checked += 1;
    }
    if require_hash && checked == 0 {
        return Err(mismatch(
            "no supported hash (sha256, sha512) to check".into(),
        ));
    }
    Ok(())
}

fn fetch_error(url: &str, e: FetchError, what: &str, limit: u64) -> TufError {
    match e {
        FetchError::TooLong => TufError::TooLong {
            what: what.to_owned(),
            limit,
        },
        other => TufError::Fetch {
            url: url.to_owned(),
            detail: other.to_string(),
        },
    }
}

/// Whether `target` matches a delegation's path pattern: same number of `/`-separated parts,
/// each matched with `*` (any run of characters) and `?` (one character).
pub fn path_matches(pattern: &str, target: &str) -> bool {
    let p: Vec<&str> = pattern.split('/').collect();
    let t: Vec<&str> = target.split('/').collect();
    p.len() == t.len()
        && p.iter()
            .zip(&t)
            .all(|(p, t)| glob(p.as_bytes(), t.as_bytes()))
}

fn glob(p: &[u8], t: &[u8]) -> bool {
    match (p.first(), t.first()) {
        (None, None) => true,
        (Some(b'*'), _) => glob(&p[1..], t) || (!t.is_empty() && glob(p, &t[1..])),
        (Some(b'?'), Some(_)) => glob(&p[1..], &t[1..]),
        (Some(a), Some(b)) if a == b => glob(&p[1..], &t[1..]),
        _ => false,
    }
}

fn role_trusted_for(role: &DelegatedRole, target: &str) -> Result<bool, TufError> {
    if let Some(paths) = &role.paths {
        return Ok(paths.iter().any(|p| path_matches(p, target)));
    }
    let digest = hex::encode(hash(MessageDigest::sha256(), target.as_bytes())?);
    Ok(role
        .path_hash_prefixes
        .iter()
        .flatten()
        .any(|prefix| digest.starts_with(prefix.as_str())))
}

impl<F: Fetcher> Updater<F> {
    /// A client on the trusted metadata in `dir` (which must hold `root.json`), fetching
    /// from `metadata_url`, with `now` (unix seconds) as the fixed update start time.
    pub fn new(
        dir: &Path,
        metadata_url: &str,
        fetcher: F,
        now: i64,
        config: Config,
    ) -> Result<Self, TufError> {
        let root_path = dir.join("root.json");
        let bytes = read_file(&root_path)?.ok_or_else(|| TufError::Io {
            op: "reading the trusted root",
            path: root_path.display().to_string(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        })?;
        let envelope = Envelope::parse(&bytes, "trusted root")?;
        let root = Root::parse(&envelope.signed)?;
        envelope.verify("root", &root.keys, root.role("root")?)?;
        let mut updater = Self {
            dir: dir.to_path_buf(),
            metadata_url: metadata_url.trim_end_matches('/').to_owned(),
            fetcher,
            now,
            config,
            root: Trusted { role: root, bytes },
            timestamp: None,
            snapshot: None,
            targets: BTreeMap::new(),
            targets_delegator: BTreeMap::new(),
        };
        updater.load_local();
        Ok(updater)
    }

    /// Trusted local timestamp and snapshot (for rollback checks), when they still verify
    /// under the trusted root; anything that does not is ignored.
    fn load_local(&mut self) {
        if let Ok(Some(bytes)) = read_file(&self.dir.join("timestamp.json"))
            && let Ok(env) = Envelope::parse(&bytes, "local timestamp")
            && let Ok(role) = Timestamp::parse(&env.signed)
            && let Ok(keys) = self.root.role.role("timestamp")
            && env.verify("timestamp", &self.root.role.keys, keys).is_ok()
        {
            self.timestamp = Some(Trusted { role, bytes });
        }
        if let Ok(Some(bytes)) = read_file(&self.dir.join("snapshot.json"))
            && let Ok(env) = Envelope::parse(&bytes, "local snapshot")
            && let Ok(role) = Snapshot::parse(&env.signed)
            && let Ok(keys) = self.root.role.role("snapshot")
            && env.verify("snapshot", &self.root.role.keys, keys).is_ok()
        {
            self.snapshot = Some(Trusted { role, bytes });
        }
    }

    /// The trusted root.
    pub fn root(&self) -> &Root {
        &self.root.role
    }

    fn fetch(&mut self, file: &str, what: &str, limit: u64) -> Result<Vec<u8>, TufError> {
        let url = format!("{}/{file}", self.metadata_url);
        self.fetcher
            .fetch(&url, limit)
            .map_err(|e| fetch_error(&url, e, what, limit))
    }

    fn persist(&self, name: &str, bytes: &[u8]) -> Result<(), TufError> {
        write_atomic(&self.dir.join(name), bytes)
    }

    /// Refreshes the top-level metadata: root, timestamp, snapshot, targets.
    pub fn refresh(&mut self) -> Result<(), TufError> {
        self.update_root()?;
        self.update_timestamp()?;
        self.update_snapshot()?;
        self.update_targets("targets", "root")?;
        Ok(())
    }

    fn update_root(&mut self) -> Result<(), TufError> {
        let old_timestamp_keys = self.root.role.role_key_set("timestamp");
        let old_snapshot_keys = self.root.role.role_key_set("snapshot");
        let first = self.root.role.common.version;
        for version in first + 1..=first + self.config.max_root_rotations {
            let file = format!("{version}.root.json");
            let url = format!("{}/{file}", self.metadata_url);
            let limit = self.config.root_max_length;
            let bytes = match self.fetcher.fetch(&url, limit) {
                Ok(b) => b,
                Err(FetchError::NotFound) => break,
                Err(e) => return Err(fetch_error(&url, e, &file, limit)),
            };
            let env = Envelope::parse(&bytes, &file)?;
            let new = Root::parse(&env.signed)?;
            // Signed by the trusted root's threshold, then by the new root's own.
            env.verify(
                "root (by the previous root's keys)",
                &self.root.role.keys,
                self.root.role.role("root")?,
            )?;
            env.verify("root (by its own keys)", &new.keys, new.role("root")?)?;
            if new.common.version != version {
                return Err(TufError::Version {
                    role: "root".into(),
                    detail: format!("{file} says version {}", new.common.version),
                });
            }
            self.persist("root.json", &bytes)?;
            self.root = Trusted { role: new, bytes };
        }
        self.root.role.common.check_expiry("root", self.now)?;
        // A rotated timestamp or snapshot key drops what the old keys signed (recovery from
        // a fast-forward attack).
        if self.root.role.role_key_set("timestamp") != old_timestamp_keys
            || self.root.role.role_key_set("snapshot") != old_snapshot_keys
        {
            self.timestamp = None;
            self.snapshot = None;
            for name in ["timestamp.json", "snapshot.json"] {
                let _ = std::fs::remove_file(self.dir.join(name));
            }
        }
        Ok(())
    }

    fn update_timestamp(&mut self) -> Result<(), TufError> {
        let limit = self.config.timestamp_max_length;
        let bytes = self.fetch("timestamp.json", "timestamp.json", limit)?;
        let env = Envelope::parse(&bytes, "timestamp.json")?;
        let new = Timestamp::parse(&env.signed)?;
        env.verify(
            "timestamp",
            &self.root.role.keys,
            self.root.role.role("timestamp")?,
        )?;
        if let Some(old) = &self.timestamp {
            let (o, n) = (old.role.common.version, new.common.version);
            if n < o {
                return Err(TufError::Version {
                    role: "timestamp".into(),
                    detail: format!("version {n} is older than the trusted {o} (rollback)"),
                });
            }
            if n == o {
                // Nothing new; the trusted one stays (its expiry is still checked).
                old.role.common.check_expiry("timestamp", self.now)?;
                return Ok(());
            }
            let (os, ns) = (old.role.snapshot.version, new.snapshot.version);
            if ns < os {
                return Err(TufError::Version {
                    role: "timestamp".into(),
                    detail: format!(
                        "snapshot version {ns} is older than the trusted {os} (rollback)"
                    ),
                });
            }
        }
        new.common.check_expiry("timestamp", self.now)?;
        self.persist("timestamp.json", &bytes)?;
        self.timestamp = Some(Trusted { role: new, bytes });
        Ok(())
    }

    fn update_snapshot(&mut self) -> Result<(), TufError> {
        let meta = self
            .timestamp
            .as_ref()
            .map(|t| t.role.snapshot.clone())
            .ok_or_else(|| TufError::Format("no trusted timestamp".into()))?;
        // The trusted snapshot is kept when it is the one the timestamp names.
        if let Some(old) = &self.snapshot
            && old.role.common.version == meta.version
            && check_file(
                "snapshot.json",
                &old.bytes,
                meta.length,
                &meta.hashes,
                false,
            )
            .is_ok()
        {
            return old.role.common.check_expiry("snapshot", self.now);
        }
        let file = if self.root.role.consistent_snapshot {
            format!("{}.snapshot.json", meta.version)
        } else {
            "snapshot.json".to_owned()
        };
        let limit = meta.length.unwrap_or(self.config.snapshot_max_length);
        let bytes = self.fetch(&file, "snapshot.json", limit)?;
        check_file("snapshot.json", &bytes, meta.length, &meta.hashes, false)?;
        let env = Envelope::parse(&bytes, "snapshot.json")?;
        let new = Snapshot::parse(&env.signed)?;
        env.verify(
            "snapshot",
            &self.root.role.keys,
            self.root.role.role("snapshot")?,
        )?;
        if new.common.version != meta.version {
            return Err(TufError::Version {
                role: "snapshot".into(),
                detail: format!(
                    "version {} but the timestamp names {} (mix-and-match)",
                    new.common.version, meta.version
                ),
            });
        }
        if let Some(old) = &self.snapshot {
            for (name, old_meta) in &old.role.meta {
                match new.meta.get(name) {
                    None => {
                        return Err(TufError::Version {
                            role: "snapshot".into(),
                            detail: format!("{name} disappeared (rollback)"),
                        });
                    }
                    Some(m) if m.version < old_meta.version => {
                        return Err(TufError::Version {
                            role: "snapshot".into(),
                            detail: format!(
                                "{name} version {} is older than the trusted {} (rollback)",
                                m.version, old_meta.version
                            ),
                        });
                    }
                    Some(_) => {}
                }
            }
        }
        new.common.check_expiry("snapshot", self.now)?;
        self.persist("snapshot.json", &bytes)?;
        self.snapshot = Some(Trusted { role: new, bytes });
        self.targets.clear();
        Ok(())
    }

    /// Loads targets role `role` (top-level `targets` or a delegated one), delegated by
    /// `delegator`, from the local copy when it is the version snapshot names, else fetched.
    fn update_targets(&mut self, role: &str, delegator: &str) -> Result<(), TufError> {
        if self.targets.contains_key(role) {
            // A role reached through another delegator (a "diamond") earns no trust from
            // the first path: it is verified again against this delegator's keys.
            if self.targets_delegator.get(role).map(String::as_str) == Some(delegator) {
                return Ok(());
            }
            self.targets.remove(role);
        }
        let meta_name = format!("{role}.json");
        let meta: MetaFile = self
            .snapshot
            .as_ref()
            .and_then(|s| s.role.meta.get(&meta_name).cloned())
            .ok_or_else(|| TufError::Format(format!("snapshot does not list {meta_name}")))?;
        let (keys, role_keys): (BTreeMap<String, serde_json::Value>, RoleKeys) =
            if delegator == "root" {
                (
                    self.root.role.keys.clone(),
                    self.root.role.role("targets")?.clone(),
                )
            } else {
                let parent = self.targets.get(delegator).ok_or_else(|| {
                    TufError::Format(format!("delegating role {delegator} not loaded"))
                })?;
                let delegated = parent
                    .role
                    .delegations
                    .roles
                    .iter()
                    .find(|r| r.name == role)
                    .ok_or_else(|| {
                        TufError::Format(format!("{delegator} does not delegate to {role}"))
                    })?;
                (parent.role.delegations.keys.clone(), delegated.keys.clone())
            };
        let local_name = format!("{}.json", encode_segment(role));
        let local = read_file(&self.dir.join(&local_name))?;
        let now = self.now;
        let verify_parse = |bytes: &[u8]| -> Result<Targets, TufError> {
            check_file(&meta_name, bytes, meta.length, &meta.hashes, false)?;
            let env = Envelope::parse(bytes, &meta_name)?;
            let new = Targets::parse(&env.signed)?;
            env.verify(role, &keys, &role_keys)?;
            if new.common.version != meta.version {
                return Err(TufError::Version {
                    role: role.to_owned(),
                    detail: format!(
                        "version {} but the snapshot names {} (mix-and-match)",
                        new.common.version, meta.version
                    ),
                });
            }
            new.common.check_expiry(role, now)?;
            Ok(new)
        };
        if let Some(bytes) = local
            && let Ok(targets) = verify_parse(&bytes)
        {
            self.targets.insert(
                role.to_owned(),
                Trusted {
                    role: targets,
                    bytes,
                },
            );
            self.targets_delegator
                .insert(role.to_owned(), delegator.to_owned());
            return Ok(());
        }
        let file = if self.root.role.consistent_snapshot {
            format!("{}.{}", meta.version, local_name)
        } else {
            local_name.clone()
        };
        let limit = meta.length.unwrap_or(self.config.targets_max_length);
        let bytes = self.fetch(&file, &meta_name, limit)?;
        let targets = verify_parse(&bytes)?;
        self.persist(&local_name, &bytes)?;
        self.targets.insert(
            role.to_owned(),
            Trusted {
                role: targets,
                bytes,
            },
        );
        self.targets_delegator
            .insert(role.to_owned(), delegator.to_owned());
        Ok(())
    }

    /// Finds `target` by the delegation walk (pre-order, depth first, terminating
    /// delegations respected, at most `max_delegations` roles visited).
    pub fn target_info(&mut self, target: &str) -> Result<TargetFile, TufError> {
        if !self.targets.contains_key("targets") {
            self.update_targets("targets", "root")?;
        }
        let mut stack: Vec<(String, String)> = vec![("targets".into(), "root".into())];
        let mut visited = BTreeSet::new();
        while let Some((role, delegator)) = stack.pop() {
            if visited.len() > self.config.max_delegations {
                break;
            }
            if !visited.insert(role.clone()) {
                continue;
            }
            self.update_targets(&role, &delegator)?;
            let Some(trusted) = self.targets.get(&role) else {
                continue;
            };
            if let Some(info) = trusted.role.targets.get(target) {
                return Ok(info.clone());
            }
            let mut children = Vec::new();
            for child in &trusted.role.delegations.roles {
                if role_trusted_for(child, target)? {
                    children.push((child.name.clone(), role.clone()));
                    if child.terminating {
                        stack.clear();
                        break;
                    }
                }
            }
            stack.extend(children.into_iter().rev());
        }
        Err(TufError::UnknownTarget(target.to_owned()))
    }

    /// Downloads `target` from `target_base_url` (hash-prefixed file name when the repository
    /// uses consistent snapshots), checked against its trusted length and hashes, into
    /// `out` (written atomically). A file already there with the trusted length and hashes is
    /// kept and not fetched again. Returns the path.
    pub fn download(
        &mut self,
        target: &str,
        target_base_url: &str,
        out_dir: &Path,
    ) -> Result<PathBuf, TufError> {
        let info = self.target_info(target)?;
        let out = out_dir.join(encode_segment(target));
        if let Ok(Some(cached)) = read_file(&out)
            && check_file(target, &cached, Some(info.length), &info.hashes, true).is_ok()
        {
            return Ok(out);
        }
        let path = if self.root.role.consistent_snapshot {
            let prefix = info
                .hashes
                .get("sha256")
                .or_else(|| info.hashes.values().next())
                .ok_or_else(|| TufError::Mismatch {
                    what: target.to_owned(),
                    detail: "no hash to name the file by".into(),
                })?;
            match target.rsplit_once('/') {
                Some((dir, base)) => format!("{dir}/{prefix}.{base}"),
                None => format!("{prefix}.{target}"),
            }
        } else {
            target.to_owned()
        };
        let url = format!("{}/{path}", target_base_url.trim_end_matches('/'));
        let bytes = self
            .fetcher
            .fetch(&url, info.length)
            .map_err(|e| fetch_error(&url, e, target, info.length))?;
        check_file(target, &bytes, Some(info.length), &info.hashes, true)?;
        write_atomic(&out, &bytes)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_patterns() {
        let cases = [
            ("*", "file.txt", true),
            ("*", "dir/file.txt", false),
            ("dir/*", "dir/file.txt", true),
            ("dir/*.txt", "dir/file.tgz", false),
            ("*/file?.txt", "a/file1.txt", true),
            ("targets/*.tgz", "targets/x/y.tgz", false),
            ("exact", "exact", true),
        ];
        for (pattern, target, expected) in cases {
            assert_eq!(
                path_matches(pattern, target),
                expected,
                "{pattern} {target}"
            );
        }
    }

    #[test]
    fn length_and_hash_checks() {
        let body = b"hello";
        let sha = hex::encode(hash(MessageDigest::sha256(), body).unwrap());
        let hashes = BTreeMap::from([("sha256".to_owned(), sha)]);
        assert!(check_file("t", body, Some(5), &hashes, true).is_ok());
        assert!(check_file("t", body, Some(6), &hashes, true).is_err());
        assert!(check_file("t", b"hellO", Some(5), &hashes, true).is_err());
        let unknown = BTreeMap::from([("md5".to_owned(), "00".to_owned())]);
        assert!(check_file("t", body, Some(5), &unknown, true).is_err());
        assert!(check_file("t", body, None, &BTreeMap::new(), false).is_ok());
    }
}
