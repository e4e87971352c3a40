//! The installer: an already verified [`Manifest`] and its image stream go into the inactive
//! slot, in an order that keeps every power cut harmless.
//!
//! 1. The target slot is made unbootable before anything is written into it.
//! 2. The image streams into the target's root partition (length capped, SHA-256 checked
//!    against the manifest); the partition is synced.
//! 3. The dm-verity tree is rebuilt from what is now on the partition (so the write itself
//!    is verified), checked against the manifest's root hash and hash-area digest, and written
//!    into the target's verity partition; synced.
//! 4. Only then is the target activated, with a few tries to prove itself.
//!
//! A cut before step 4 boots the old slot (the target is disabled); after it, the new slot
//! is complete. Rerunning the install starts over. After the new slot boots,
//! [`confirm`] marks it good when its health check passed and only then raises the device's
//! rollback index; otherwise its tries run out and the old slot boots again.
//!
//! [`install_delta`] installs from a delta against the running slot: it first checks that the
//! delta produces the manifest's image and that the running slot holds the delta's source,
//! and refuses before anything is written when either differs.
//!
//! Everything works on any [`SlotStore`]: the GPT disk (`enigm_slots::GptBootControl`) or
//! Android's boot-control HAL with its partitions by name (`enigm-android-boot`).

mod delta;
mod rollback;
mod rollback_tpm;

use std::io::Read;

use enigm_manifest::Manifest;
use enigm_slots::disk::{root_name, verity_name};
use enigm_slots::{BootControl, Partition, Slot, SlotError, SlotStore};
use enigm_verity::{VerityParams, build};
use openssl::sha::Sha256;

pub use delta::{install_delta, slot_image};
pub use rollback::{FileRollbackStore, RollbackStore};
pub use rollback_tpm::{ROLLBACK_NV_INDEX, TpmRollbackStore};

/// How many boots a new slot gets to pass its health check.
pub const DEFAULT_TRIES: u8 = 3;
const CHUNK: usize = 1 << 20;

/// Why an install failed. The target slot stays unbootable; the running slot is untouched.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// Slot control or the partition table.
    #[error(transparent)]
    Slots(#[from] SlotError),
    /// Reading the image stream.
    #[error("reading the image: {0}")]
    Source(std::io::Error),
    /// Writing or reading the disk.
    #[error("{op} {partition}: {source}")]
    Disk {
        /// What was being done.
        op: &'static str,
        /// The partition.
        partition: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The image does not fit its partition.
    #[error("{what} of {size} bytes does not fit {partition} ({capacity} bytes)")]
    TooLarge {
        /// What.
        what: &'static str,
        /// Its size.
        size: u64,
        /// The partition.
        partition: String,
        /// The partition's size.
        capacity: u64,
    },
    /// The image differs from the manifest.
    #[error("image does not match its manifest: {0}")]
    Mismatch(String),
    /// The verity tree.
    #[error("dm-verity: {0}")]
    Verity(#[from] enigm_verity::VerityError),
    /// A delta that does not fit the running image or the manifest, or does not decode.
    #[error(transparent)]
    Delta(#[from] enigm_delta::DeltaError),
    /// The rollback index store.
    #[error("rollback index: {0}")]
    Rollback(String),
}

/// Progress of the image write: (bytes written, total).
pub type Progress<'a> = &'a mut dyn FnMut(u64, u64);

fn disk_err<'a>(
    op: &'static str,
    partition: &'a str,
) -> impl FnOnce(std::io::Error) -> InstallError + 'a {
    move |source| InstallError::Disk {
        op,
        partition: partition.to_owned(),
        source,
    }
}

/// The capacity of partition `name`.
fn capacity<S: SlotStore>(store: &mut S, name: &str) -> Result<u64, InstallError> {
    Ok(store.partition(name)?.capacity())
}

/// Installs `image` (the root file system image `manifest` describes) into the slot that is
/// not `running`, and activates it. Returns the slot written.
pub fn install<S: SlotStore>(
    store: &mut S,
    running: Slot,
    manifest: &Manifest,
    mut image: impl Read,
    tries: u8,
    progress: Progress<'_>,
) -> Result<Slot, InstallError> {
    let target = running.other();
    let (root, verity) = (root_name(target), verity_name(target));
    for (what, size, part) in [
        ("root image", manifest.root_size, &root),
        ("verity hash area", manifest.verity.hash_size, &verity),
    ] {
        let capacity = capacity(store, part)?;
        if size > capacity {
            return Err(InstallError::TooLarge {
                what,
                size,
                partition: part.clone(),
                capacity,
            });
        }
    }
    // 1. Never boot a half-written slot.
    store.disable(target)?;

    // 2. Stream the image in, hashing it.
    {
        let mut part = store.partition(&root)?;
        let mut hasher = Sha256::new();
        let mut written = 0u64;
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = image.read(&mut buf).map_err(InstallError::Source)?;
            if n == 0 {
                break;
            }
            if written + n as u64 > manifest.root_size {
                return Err(InstallError::Mismatch(format!(
                    "the image is longer than the manifest's {} bytes",
                    manifest.root_size
                )));
            }
            part.write_at(written, &buf[..n])
                .map_err(disk_err("writing", &root))?;
            hasher.update(&buf[..n]);
            written += n as u64;
            progress(written, manifest.root_size);
        }
        if written != manifest.root_size {
            return Err(InstallError::Mismatch(format!(
                "the image is {written} bytes, the manifest says {}",
                manifest.root_size
            )));
        }
        if hex::encode(hasher.finish()) != manifest.root_sha256 {
            return Err(InstallError::Mismatch("the image's SHA-256 differs".into()));
        }
        part.sync().map_err(disk_err("syncing", &root))?;
    }

    // 3. The verity tree, from what the partition now holds.
    let params = verity_params(manifest)?;
    let tree = {
        let part = store.partition(&root)?;
        build(&params, PartitionReader::new(part, manifest.root_size))?
    };
    if hex::encode(&tree.root_hash) != manifest.verity.root_hash {
        return Err(InstallError::Mismatch(
            "the written slot's dm-verity root hash differs".into(),
        ));
    }
    let mut area_hash = Sha256::new();
    area_hash.update(&tree.hash_area);
    if tree.hash_area.len() as u64 != manifest.verity.hash_size
        || hex::encode(area_hash.finish()) != manifest.verity.hash_sha256
    {
        return Err(InstallError::Mismatch(
            "the dm-verity hash area differs".into(),
        ));
    }
    {
        let mut part = store.partition(&verity)?;
        part.write_at(0, &tree.hash_area)
            .map_err(disk_err("writing", &verity))?;
        part.sync().map_err(disk_err("syncing", &verity))?;
    }

    // 4. Boot it next, with `tries` chances.
    store.activate(target, tries)?;
    Ok(target)
}

/// Checks that `slot` holds exactly the image `manifest` describes: its root partition's
/// dm-verity tree, rebuilt from the partition, equals the hash area in its verity partition
/// and leads to the manifest's root hash. The health check after booting a new slot.
pub fn verify_slot<S: SlotStore>(
    store: &mut S,
    slot: Slot,
    manifest: &Manifest,
) -> Result<(), InstallError> {
    let (root, verity) = (root_name(slot), verity_name(slot));
    let mut area = vec![0u8; usize::try_from(manifest.verity.hash_size).unwrap_or(0)];
    store
        .partition(&verity)?
        .read_at(0, &mut area)
        .map_err(disk_err("reading", &verity))?;
    let params = verity_params(manifest)?;
    let root_hash = hex::decode(&manifest.verity.root_hash)
        .map_err(|_| InstallError::Mismatch("root hash is not hex".into()))?;
    let part = store.partition(&root)?;
    enigm_verity::verify(
        &params,
        &root_hash,
        &area,
        PartitionReader::new(part, manifest.root_size),
    )?;
    Ok(())
}

/// The verity parameters a manifest records.
pub fn verity_params(manifest: &Manifest) -> Result<VerityParams, InstallError> {
    let salt =
        hex::decode(&manifest.verity.salt).map_err(|_| InstallError::Mismatch("salt".into()))?;
    let uuid: [u8; 16] = hex::decode(&manifest.verity.uuid)
        .ok()
        .and_then(|u| u.try_into().ok())
        .ok_or_else(|| InstallError::Mismatch("verity UUID".into()))?;
    Ok(VerityParams {
        data_block_size: manifest.verity.data_block_size,
        hash_block_size: manifest.verity.hash_block_size,
        ..VerityParams::new(salt, uuid)
    })
}

/// After booting `booted`: when its health check passed, mark it good and raise the device's
/// rollback index to the manifest's; otherwise leave it, so its tries run out and the other
/// slot boots again.
pub fn confirm<C: BootControl>(
    control: &mut C,
    booted: Slot,
    healthy: bool,
    manifest: &Manifest,
    rollback: &mut dyn RollbackStore,
) -> Result<bool, InstallError> {
    if !healthy {
        return Ok(false);
    }
    control.mark_successful(booted)?;
    rollback.raise(manifest.rollback_index)?;
    Ok(true)
}

/// Reads the first `remaining` bytes of a partition, in order.
struct PartitionReader<'a> {
    part: Box<dyn Partition + 'a>,
    offset: u64,
    remaining: u64,
}

impl<'a> PartitionReader<'a> {
    fn new(part: Box<dyn Partition + 'a>, len: u64) -> Self {
        Self {
            part,
            offset: 0,
            remaining: len,
        }
    }
}

impl Read for PartitionReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        if n == 0 {
            return Ok(0);
        }
        self.part.read_at(self.offset, &mut buf[..n])?;
        self.offset += n as u64;
        self.remaining -= n as u64;
        Ok(n)
    }
}
