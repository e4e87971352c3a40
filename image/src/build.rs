//! `enigm-image build`: a root file system directory → an erofs image (`mkfs.erofs`, fixed
//! timestamps, all files owned by root) → its dm-verity hash area (`enigm-verity`, random salt
//! and UUID) → a manifest signed with the image key → optionally a GPT disk image with A/B
//! slots whose slot A holds the image and is active.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use enigm_manifest::{Manifest, VerityInfo};
use enigm_slots::disk::{AbLayout, create_ab_disk, root_name, verity_name};
use enigm_slots::table::{BLOCK, Disk, Table};
use enigm_verity::VerityParams;
use openssl::sha::Sha256;

use crate::keys;
use crate::repo::signed_document;

/// What to build.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// The root file system directory.
    pub rootfs: PathBuf,
    /// The output directory.
    pub out: PathBuf,
    /// The key directory (holding `image-1.pem`).
    pub keys: PathBuf,
    /// Human version.
    pub version: String,
    /// Rollback index.
    pub rollback_index: u64,
    /// Target hardware.
    pub hardware: String,
    /// The fixed file timestamp (unix seconds) for a reproducible image.
    pub timestamp: i64,
    /// Also write a disk image with slots of this size (bytes; 0: no disk image).
    pub slot_size: u64,
}

/// What was built.
#[derive(Debug, Clone)]
pub struct Built {
    /// The erofs image.
    pub image: PathBuf,
    /// The dm-verity hash area.
    pub verity: PathBuf,
    /// The signed manifest.
    pub manifest: PathBuf,
    /// The disk image, when asked for.
    pub disk: Option<PathBuf>,
    /// The manifest itself.
    pub signed: Manifest,
}

fn random(n: usize) -> Result<Vec<u8>> {
    let mut v = vec![0u8; n];
    openssl::rand::rand_bytes(&mut v)?;
    Ok(v)
}

fn mkfs_erofs(rootfs: &Path, image: &Path, timestamp: i64) -> Result<()> {
    let output = Command::new("mkfs.erofs")
        .arg(format!("-T{timestamp}"))
        .args(["--all-root", "--quiet"])
        .arg(image)
        .arg(rootfs)
        .output();
    let output = match output {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("mkfs.erofs not found: install erofs-utils (cargo xtask install-deps)")
        }
        Err(e) => return Err(e).context("running mkfs.erofs"),
    };
    if !output.status.success() {
        bail!(
            "mkfs.erofs failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// Builds the image, its verity tree and its signed manifest (and the disk image).
pub fn build(opts: &BuildOptions) -> Result<Built> {
    if !opts.rootfs.is_dir() {
        bail!("{} is not a directory", opts.rootfs.display());
    }
    std::fs::create_dir_all(&opts.out)
        .with_context(|| format!("creating {}", opts.out.display()))?;
    let image = opts.out.join("root.erofs");
    mkfs_erofs(&opts.rootfs, &image, opts.timestamp)?;
    // dm-verity covers whole 4 KiB blocks.
    let mut data = std::fs::read(&image).with_context(|| format!("reading {}", image.display()))?;
    data.resize(data.len().div_ceil(4096) * 4096, 0);
    std::fs::write(&image, &data)?;

    let (salt, uuid) = (random(32)?, random(16)?);
    let uuid_array: [u8; 16] = uuid
        .clone()
        .try_into()
        .map_err(|_| anyhow::anyhow!("uuid"))?;
    let tree = enigm_verity::build(&VerityParams::new(salt.clone(), uuid_array), &data[..])?;
    let verity = opts.out.join("root.verity");
    std::fs::write(&verity, &tree.hash_area)?;

    let digest = |bytes: &[u8]| {
        let mut h = Sha256::new();
        h.update(bytes);
        hex::encode(h.finish())
    };
    let manifest = Manifest {
        version: opts.version.clone(),
        rollback_index: opts.rollback_index,
        hardware: opts.hardware.clone(),
        root_size: data.len() as u64,
        root_sha256: digest(&data),
        verity: VerityInfo {
            root_hash: hex::encode(&tree.root_hash),
            salt: hex::encode(&salt),
            uuid: hex::encode(&uuid),
            data_block_size: 4096,
            hash_block_size: 4096,
            hash_size: tree.hash_area.len() as u64,
            hash_sha256: digest(&tree.hash_area),
        },
    };
    let manifest_path = opts.out.join("manifest.json");
    let signed = signed_document(manifest.to_json(), &keys::load(&opts.keys, keys::IMAGE)?)?;
    std::fs::write(&manifest_path, signed)?;

    let disk = if opts.slot_size > 0 {
        if opts.slot_size < data.len() as u64 {
            bail!(
                "--slot-size {} is smaller than the image ({} bytes)",
                opts.slot_size,
                data.len()
            );
        }
        let path = opts.out.join("disk.img");
        create_ab_disk(
            &path,
            AbLayout {
                root_size: opts.slot_size,
                verity_size: tree.hash_area.len() as u64,
            },
        )?;
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)?;
        let table = Table::read(&mut file, &path.display().to_string())?;
        for (name, bytes) in [
            (root_name(enigm_slots::Slot::A), &data),
            (verity_name(enigm_slots::Slot::A), &tree.hash_area),
        ] {
            let entry = table
                .find(&name)
                .with_context(|| format!("{name} missing"))?;
            file.write_at(entry.first_lba * BLOCK, bytes)
                .with_context(|| format!("writing {name}"))?;
        }
        file.sync_all()?;
        Some(path)
    } else {
        None
    };
    Ok(Built {
        image,
        verity,
        manifest: manifest_path,
        disk,
        signed: manifest,
    })
}
