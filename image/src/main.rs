//! `enigm-image`: TUF role keys and update publishing for OEM integrators.
//!
//! ```text
//! enigm-image keys generate --keys DIR [--root-keys N]
//! enigm-image keys rotate --keys DIR --repo REPO --role ROLE [--count N --threshold M]
//! enigm-image keys export --keys DIR --out FILE [--role image]
//! enigm-image repo init --keys DIR --repo REPO [--root-threshold N]
//! enigm-image build --rootfs DIR --out OUT --keys DIR --version V --rollback-index N \
//!     --hardware H [--disk-slot-mib M]
//! enigm-image publish --keys DIR --repo REPO [--build OUT [--delta-from OLD_OUT]...] [NAME=FILE]...
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use enigm_image::{keys, release, repo};

#[derive(Parser)]
#[command(
    name = "enigm-image",
    about = "OEM tool: TUF keys and update publishing"
)]
struct Cli {
    /// Print what was done as JSON.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Role keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// The repository.
    Repo {
        #[command(subcommand)]
        command: RepoCommand,
    },
    /// Build a slot image: rootfs → erofs → dm-verity → signed manifest (→ A/B disk image).
    Build {
        /// The root file system directory.
        #[arg(long)]
        rootfs: PathBuf,
        /// The output directory (root.erofs, root.verity, manifest.json, disk.img).
        #[arg(long)]
        out: PathBuf,
        /// The key directory (image-1.pem signs the manifest).
        #[arg(long)]
        keys: PathBuf,
        /// The human version.
        #[arg(long)]
        version: String,
        /// The rollback index (devices refuse images below what they run).
        #[arg(long)]
        rollback_index: u64,
        /// The target hardware.
        #[arg(long)]
        hardware: String,
        /// The fixed file timestamp (unix seconds; default: SOURCE_DATE_EPOCH or 0).
        #[arg(long, env = "SOURCE_DATE_EPOCH", default_value_t = 0)]
        timestamp: i64,
        /// Also write disk.img with A/B slots of this many MiB (slot A holds the image).
        #[arg(long)]
        disk_slot_mib: Option<u64>,
    },
    /// Add a build (its manifest, full image and deltas from earlier builds) and/or other
    /// targets (NAME=FILE), and sign new targets, snapshot and timestamp versions.
    Publish {
        /// The key directory.
        #[arg(long)]
        keys: PathBuf,
        /// The repository directory.
        #[arg(long)]
        repo: PathBuf,
        /// A build's output directory: publishes HARDWARE/manifest.json and HARDWARE/root.erofs.
        #[arg(long)]
        build: Option<PathBuf>,
        /// An earlier build's output directory: also publish a delta from its image
        /// (repeatable; needs --build).
        #[arg(long, requires = "build")]
        delta_from: Vec<PathBuf>,
        /// zstd level for deltas (1-22).
        #[arg(long, default_value_t = 19, value_parser = clap::value_parser!(i32).range(1..=22))]
        delta_level: i32,
        /// Further targets as NAME=FILE.
        #[arg(required_unless_present = "build")]
        targets: Vec<String>,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Generate ed25519 keys for root, targets, snapshot and timestamp.
    Generate {
        /// Where to write them (created; existing keys are never overwritten).
        #[arg(long)]
        keys: PathBuf,
        /// How many root keys.
        #[arg(long, default_value_t = 1)]
        root_keys: usize,
    },
    /// Replace a role's keys with new ones in a new root version (signed by the old root
    /// keys and, for root, the new ones too); re-signs the other metadata.
    Rotate {
        /// The key directory (new keys are added; old ones stay for the record).
        #[arg(long)]
        keys: PathBuf,
        /// The repository directory.
        #[arg(long)]
        repo: PathBuf,
        /// root, targets, snapshot or timestamp.
        #[arg(long)]
        role: String,
        /// How many new keys.
        #[arg(long, default_value_t = 1)]
        count: usize,
        /// How many of them must sign.
        #[arg(long, default_value_t = 1)]
        threshold: u64,
    },
    /// Write the public keys of a role as the JSON object a device trusts (for the image
    /// role: enigm-updated's image_keys_file, /etc/enigm/image-keys.json).
    Export {
        /// The key directory.
        #[arg(long)]
        keys: PathBuf,
        /// The file to write.
        #[arg(long)]
        out: PathBuf,
        /// The role.
        #[arg(long, default_value = "image")]
        role: String,
    },
}

#[derive(Subcommand)]
enum RepoCommand {
    /// Create a repository: root v1 and empty targets, snapshot, timestamp.
    Init {
        /// The key directory.
        #[arg(long)]
        keys: PathBuf,
        /// The repository directory.
        #[arg(long)]
        repo: PathBuf,
        /// Root keys that must sign a new root.
        #[arg(long, default_value_t = 1)]
        root_threshold: u64,
    },
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn run(cli: Cli) -> Result<serde_json::Value> {
    match cli.command {
        Command::Keys {
            command:
                KeysCommand::Generate {
                    keys: dir,
                    root_keys,
                },
        } => {
            if root_keys == 0 {
                bail!("--root-keys must be at least 1");
            }
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            let mut ids = serde_json::Map::new();
            for role in keys::ROLES.into_iter().chain([keys::IMAGE]) {
                let count = if role == "root" { root_keys } else { 1 };
                let mut role_ids = Vec::new();
                for index in 1..=count {
                    role_ids.push(keys::generate(&dir, role, index)?.keyid);
                }
                ids.insert(role.into(), role_ids.into());
            }
            Ok(serde_json::json!({"keys": dir, "keyids": ids}))
        }
        Command::Keys {
            command:
                KeysCommand::Rotate {
                    keys,
                    repo: path,
                    role,
                    count,
                    threshold,
                },
        } => {
            let version = repo::rotate(
                &path,
                &keys,
                &role,
                count,
                threshold,
                now(),
                repo::Expiries::default(),
            )?;
            Ok(serde_json::json!({"repo": path, "role": role, "root_version": version}))
        }
        Command::Keys {
            command:
                KeysCommand::Export {
                    keys: dir,
                    out,
                    role,
                },
        } => {
            if !keys::ROLES.contains(&role.as_str()) && role != keys::IMAGE {
                bail!("unknown role {role:?}");
            }
            let map = keys::public_map(&dir, &role)?;
            if map.is_empty() {
                bail!("{} holds no {role} keys", dir.display());
            }
            let mut bytes = serde_json::to_vec_pretty(&map)?;
            bytes.push(b'\n');
            enigm_tuf::client::write_atomic(&out, &bytes)
                .with_context(|| format!("writing {}", out.display()))?;
            Ok(
                serde_json::json!({"out": out, "role": role, "keyids": map.keys().collect::<Vec<_>>()}),
            )
        }
        Command::Repo {
            command:
                RepoCommand::Init {
                    keys,
                    repo: path,
                    root_threshold,
                },
        } => {
            repo::init(
                &path,
                &keys,
                root_threshold,
                now(),
                repo::Expiries::default(),
            )?;
            Ok(serde_json::json!({"repo": path, "root_version": 1}))
        }
        Command::Build {
            rootfs,
            out,
            keys,
            version,
            rollback_index,
            hardware,
            timestamp,
            disk_slot_mib,
        } => {
            let built = enigm_image::build::build(&enigm_image::build::BuildOptions {
                rootfs,
                out,
                keys,
                version,
                rollback_index,
                hardware,
                timestamp,
                slot_size: disk_slot_mib.unwrap_or(0) << 20,
            })?;
            Ok(serde_json::json!({
                "image": built.image,
                "verity": built.verity,
                "manifest": built.manifest,
                "disk": built.disk,
                "root_size": built.signed.root_size,
                "verity_root_hash": built.signed.verity.root_hash,
                "rollback_index": built.signed.rollback_index,
            }))
        }
        Command::Publish {
            keys,
            repo: path,
            build,
            delta_from,
            delta_level,
            targets,
        } => {
            let mut files = Vec::new();
            let mut deltas = Vec::new();
            if let Some(build) = build {
                if !delta_from.is_empty() {
                    eprintln!(
                        "enigm-image: making {} delta(s) at zstd level {delta_level} (minutes for large images)",
                        delta_from.len()
                    );
                }
                let made = release::release(&build, &delta_from, delta_level)?;
                files.extend(made.files);
                deltas = made
                    .deltas
                    .iter()
                    .map(|d| serde_json::json!({"name": d.name, "from_version": d.from_version, "size": d.size}))
                    .collect();
            }
            for t in &targets {
                let (name, file) = t
                    .split_once('=')
                    .with_context(|| format!("{t:?} is not NAME=FILE"))?;
                files.push((name.to_owned(), PathBuf::from(file)));
            }
            let done = repo::publish(&path, &keys, &files, now(), repo::Expiries::default())?;
            Ok(serde_json::json!({
                "repo": path,
                "targets_version": done.targets_version,
                "snapshot_version": done.snapshot_version,
                "timestamp_version": done.timestamp_version,
                "targets": files.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(),
                "deltas": deltas,
            }))
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.json;
    match run(cli) {
        Ok(report) => {
            if json {
                println!("{report}");
            } else if let Some(obj) = report.as_object() {
                for (k, v) in obj {
                    println!("{k}: {v}");
                }
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("enigm-image: {err:#}");
            ExitCode::FAILURE
        }
    }
}
