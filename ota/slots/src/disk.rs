//! Creating an A/B disk image: protective MBR, GPT, and the partitions `root_a`, `verity_a`,
//! `root_b`, `verity_b` (1 MiB aligned). Slot A starts active and successful (priority 1);
//! slot B starts disabled. Written with the `gpt` crate; the slot code reads it back with its
//! own checks.

use std::path::Path;
use std::str::FromStr;

use gpt::disk::LogicalBlockSize;
use gpt::mbr::ProtectiveMBR;
use gpt::partition_types::{OperatingSystem, Type};

use crate::error::SlotError;
use crate::flags::SlotFlags;
use crate::policy::Slot;

/// Alignment of every partition, and the space left at each end for the GPT copies.
pub const ALIGN: u64 = 1 << 20;
/// "Linux root (x86-64)", the discoverable-partitions type of a root file system.
pub const ROOT_TYPE: &str = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709";
/// "Linux root verity (x86-64)": the dm-verity hash partition for the root.
pub const VERITY_TYPE: &str = "2C7357ED-EBD2-46D9-AEC1-23D437EC2BF5";

/// Partition sizes of one slot (both slots are the same).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbLayout {
    /// Size of each root partition, bytes (rounded up to [`ALIGN`]).
    pub root_size: u64,
    /// Size of each verity partition, bytes (rounded up to [`ALIGN`]).
    pub verity_size: u64,
}

impl AbLayout {
    /// The disk size this layout needs.
    pub fn disk_size(&self) -> u64 {
        let slot =
            self.root_size.div_ceil(ALIGN) * ALIGN + self.verity_size.div_ceil(ALIGN) * ALIGN;
        2 * ALIGN + 2 * slot
    }
}

/// The name of `slot`'s root partition.
pub fn root_name(slot: Slot) -> String {
    format!("root_{}", slot.suffix())
}

/// The name of `slot`'s verity partition.
pub fn verity_name(slot: Slot) -> String {
    format!("verity_{}", slot.suffix())
}

fn custom(guid: &str, name: &str) -> Result<Type, SlotError> {
    Ok(Type {
        guid: uuid::Uuid::from_str(guid).map_err(|e| SlotError::Create(e.to_string()))?,
        os: OperatingSystem::Custom(name.into()),
    })
}

/// Creates (or overwrites) the disk image at `path` with the A/B layout.
pub fn create_ab_disk(path: &Path, layout: AbLayout) -> Result<(), SlotError> {
    let shown = path.display().to_string();
    let create_err = |e: &dyn std::fmt::Display| SlotError::Create(format!("{shown}: {e}"));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(path)
        .map_err(|source| SlotError::Io {
            op: "creating",
            path: shown.clone(),
            source,
        })?;
    file.set_len(layout.disk_size())
        .map_err(|source| SlotError::Io {
            op: "sizing",
            path: shown.clone(),
            source,
        })?;
    let mut file = file;
    let blocks = u32::try_from(layout.disk_size() / 512 - 1).unwrap_or(u32::MAX);
    ProtectiveMBR::with_lb_size(blocks)
        .overwrite_lba0(&mut file)
        .map_err(|e| create_err(&e))?;
    let mut disk = gpt::GptConfig::new()
        .writable(true)
        .logical_block_size(LogicalBlockSize::Lb512)
        .create_from_device(file, None)
        .map_err(|e| create_err(&e))?;
    let root = custom(ROOT_TYPE, "Linux root (x86-64)")?;
    let verity = custom(VERITY_TYPE, "Linux root verity (x86-64)")?;
    let active = SlotFlags {
        priority: 1,
        tries: 0,
        successful: true,
    }
    .apply(0)?;
    for slot in Slot::ALL {
        let flags = if slot == Slot::A { active } else { 0 };
        disk.add_partition(
            &root_name(slot),
            layout.root_size,
            root.clone(),
            flags,
            Some(ALIGN / 512),
        )
        .map_err(|e| create_err(&e))?;
        disk.add_partition(
            &verity_name(slot),
            layout.verity_size,
            verity.clone(),
            0,
            Some(ALIGN / 512),
        )
        .map_err(|e| create_err(&e))?;
    }
    let file = disk.write().map_err(|e| create_err(&e))?;
    file.sync_all().map_err(|source| SlotError::Io {
        op: "syncing",
        path: shown,
        source,
    })
}
