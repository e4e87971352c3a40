//! Installing from a delta: the running slot's image is the source the delta refers back to.
//!
//! Everything that can refuse a delta does so before the target slot is touched: the header
//! must produce exactly the image the signed manifest names, and the running slot must hold
//! exactly the image the delta was made against (size and SHA-256, read back from the disk).
//! Only then does [`install`](crate::install) run, streaming the decoded image in with the
//! same checks and ordering as a full image.

use std::io::Read;

use enigm_delta::{DeltaError, Header, ImageId};
use enigm_manifest::Manifest;
use enigm_slots::disk::{root_name, verity_name};
use enigm_slots::{Slot, SlotStore};
use enigm_verity::{SUPERBLOCK_SIZE, Superblock};
use openssl::sha::Sha256;

use crate::{InstallError, PartitionReader, Progress, disk_err, install};

/// Installs the image `manifest` describes from `delta` (header + frame) against the image in
/// `running`'s root partition, into the other slot, and activates it. Returns the slot
/// written. A delta for another image, or against another source, changes nothing.
pub fn install_delta<S: SlotStore>(
    store: &mut S,
    running: Slot,
    manifest: &Manifest,
    mut delta: impl Read,
    tries: u8,
    progress: Progress<'_>,
) -> Result<Slot, InstallError> {
    let header = Header::read_from(&mut delta)?;
    if header.target.size != manifest.root_size
        || header.target.sha256_hex() != manifest.root_sha256
    {
        return Err(InstallError::Mismatch(format!(
            "the delta produces image {} ({} bytes), the manifest names {} ({} bytes)",
            header.target.sha256_hex(),
            header.target.size,
            manifest.root_sha256,
            manifest.root_size
        )));
    }
    let source = read_source(store, running, header.source.size)?;
    let verified = header.verify_source(&source)?;
    let image = header.decoder(verified, delta)?;
    install(store, running, manifest, image, tries, progress)
}

/// The first `size` bytes of `slot`'s root partition.
fn read_source<S: SlotStore>(
    store: &mut S,
    slot: Slot,
    size: u64,
) -> Result<Vec<u8>, InstallError> {
    let name = root_name(slot);
    let mut part = store.partition(&name)?;
    if size > part.capacity() {
        return Err(InstallError::Delta(DeltaError::WrongSource {
            expected: "an image".into(),
            expected_size: size,
            found: format!("partition {name}"),
            found_size: part.capacity(),
        }));
    }
    let len = usize::try_from(size).map_err(|_| InstallError::TooLarge {
        what: "delta source",
        size,
        partition: name.clone(),
        capacity: part.capacity(),
    })?;
    let mut source = vec![0u8; len];
    part.read_at(0, &mut source)
        .map_err(disk_err("reading", &name))?;
    Ok(source)
}

/// The identity (size and SHA-256) of the image in `slot`, its size taken from the dm-verity
/// superblock in the slot's verity partition and its hash read from the root partition; `None`
/// when the verity partition holds no superblock (a slot never written by an image build or
/// an update). Which delta to ask for follows from it; [`install_delta`] checks it again.
pub fn slot_image<S: SlotStore>(
    store: &mut S,
    slot: Slot,
) -> Result<Option<ImageId>, InstallError> {
    let (root, verity) = (root_name(slot), verity_name(slot));
    let mut block = [0u8; SUPERBLOCK_SIZE];
    store
        .partition(&verity)?
        .read_at(0, &mut block)
        .map_err(disk_err("reading", &verity))?;
    let Ok(superblock) = Superblock::parse(&block) else {
        return Ok(None);
    };
    let size = superblock
        .data_blocks
        .saturating_mul(u64::from(superblock.params.data_block_size));
    let part = store.partition(&root)?;
    if size > part.capacity() {
        return Ok(None);
    }
    let mut reader = PartitionReader::new(part, size);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = reader.read(&mut buf).map_err(disk_err("reading", &root))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(Some(ImageId {
        size,
        sha256: hasher.finish(),
    }))
}
