//! The [`BootControl`] trait the installer and `enigm-updated` use, and its GPT
//! implementation. The operations mirror Android's boot-control HAL (`setSlotAsUnbootable`,
//! `setActiveBootSlot`, `markBootSuccessful`), so an Android implementation over Binder fits
//! behind the same trait.

use std::path::{Path, PathBuf};

use crate::disk::root_name;
use crate::error::SlotError;
use crate::flags::SlotFlags;
use crate::policy::{self, Slot, Slots};
use crate::table::{Disk, Table};

/// Slot control.
pub trait BootControl {
    /// Both slots' boot flags.
    fn slots(&mut self) -> Result<Slots, SlotError>;
    /// Make `slot` unbootable (before writing into it).
    fn disable(&mut self, slot: Slot) -> Result<(), SlotError>;
    /// Make `slot` the next to boot, with `tries` boots to prove itself.
    fn activate(&mut self, slot: Slot, tries: u8) -> Result<(), SlotError>;
    /// Record that `slot` booted and is healthy.
    fn mark_successful(&mut self, slot: Slot) -> Result<(), SlotError>;
}

/// Slot control through the GPT attributes of `root_a` and `root_b` on a disk.
pub struct GptBootControl<D: Disk> {
    disk: D,
    path: String,
}

impl GptBootControl<std::fs::File> {
    /// Opens the disk image or block device at `path` for reading and writing.
    pub fn open(path: &Path) -> Result<Self, SlotError> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|source| SlotError::Io {
                op: "opening",
                path: path.display().to_string(),
                source,
            })?;
        Ok(Self::new(file, path.to_path_buf()))
    }
}

impl<D: Disk> GptBootControl<D> {
    /// Slot control on `disk` (named `path` in errors).
    pub fn new(disk: D, path: PathBuf) -> Self {
        Self {
            disk,
            path: path.display().to_string(),
        }
    }

    /// The underlying disk.
    pub fn into_disk(self) -> D {
        self.disk
    }

    /// The underlying disk, to write partition contents.
    pub fn disk_mut(&mut self) -> &mut D {
        &mut self.disk
    }

    /// The disk's name in errors.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The partition table as it is now.
    pub fn table(&mut self) -> Result<Table, SlotError> {
        Table::read(&mut self.disk, &self.path)
    }

    fn read(&mut self) -> Result<(Table, [usize; 2], Slots), SlotError> {
        let table = Table::read(&mut self.disk, &self.path)?;
        let mut index = [0usize; 2];
        let mut slots = Slots::default();
        for (i, slot) in Slot::ALL.into_iter().enumerate() {
            let name = root_name(slot);
            let entry = table
                .find(&name)
                .ok_or_else(|| SlotError::MissingPartition {
                    name,
                    path: self.path.clone(),
                })?;
            index[i] = entry.index;
            slots = slots.with(slot, SlotFlags::from_attributes(entry.attributes));
        }
        Ok((table, index, slots))
    }

    /// Writes both slots' flags in one crash-safe table update (nothing when unchanged and
    /// both GPT copies are valid).
    pub fn set_slots(&mut self, slots: Slots) -> Result<(), SlotError> {
        let (mut table, index, current) = self.read()?;
        if current == slots && table.both_valid() {
            return Ok(());
        }
        let entries = table.entries();
        let mut updates = Vec::new();
        for (i, slot) in Slot::ALL.into_iter().enumerate() {
            let old = entries
                .iter()
                .find(|e| e.index == index[i])
                .map_or(0, |e| e.attributes);
            updates.push((index[i], slots.get(slot).apply(old)?));
        }
        table.write_attributes(&mut self.disk, &self.path, &updates)
    }

    fn change(&mut self, step: impl FnOnce(Slots) -> Slots) -> Result<(), SlotError> {
        let (_, _, slots) = self.read()?;
        self.set_slots(step(slots))
    }
}

impl<D: Disk> BootControl for GptBootControl<D> {
    fn slots(&mut self) -> Result<Slots, SlotError> {
        Ok(self.read()?.2)
    }

    fn disable(&mut self, slot: Slot) -> Result<(), SlotError> {
        self.change(|s| policy::disable(s, slot))
    }

    fn activate(&mut self, slot: Slot, tries: u8) -> Result<(), SlotError> {
        self.change(|s| policy::activate(s, slot, tries))
    }

    fn mark_successful(&mut self, slot: Slot) -> Result<(), SlotError> {
        self.change(|s| policy::mark_successful(s, slot))
    }
}
