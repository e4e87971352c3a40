//! The slots' partitions by name (`root_a`, `verity_b`, …), as the installer writes and reads
//! them: ranges of one GPT disk here, block devices by name on Android
//! (`enigm-android-boot`).

use crate::table::{BLOCK, Disk};
use crate::{BootControl, GptBootControl, SlotError};

/// One partition's bytes.
pub trait Partition {
    /// Its size in bytes.
    fn capacity(&self) -> u64;
    /// Reads exactly `buf.len()` bytes at `offset` (from the partition's start).
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> std::io::Result<()>;
    /// Writes all of `buf` at `offset`.
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> std::io::Result<()>;
    /// Makes every write so far durable.
    fn sync(&mut self) -> std::io::Result<()>;
}

/// Slot control plus the slots' partitions: everything an install needs.
pub trait SlotStore: BootControl {
    /// Partition `name`, for reading and writing.
    fn partition(&mut self, name: &str) -> Result<Box<dyn Partition + '_>, SlotError>;
}

/// A partition of a GPT disk: a byte range of it.
struct DiskRange<'a, D: Disk> {
    disk: &'a mut D,
    start: u64,
    capacity: u64,
}

fn out_of_range(offset: u64, len: usize, capacity: u64) -> std::io::Result<()> {
    if offset.saturating_add(len as u64) > capacity {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{len} bytes at {offset} run past the partition's {capacity} bytes"),
        ));
    }
    Ok(())
}

impl<D: Disk> Partition for DiskRange<'_, D> {
    fn capacity(&self) -> u64 {
        self.capacity
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        out_of_range(offset, buf.len(), self.capacity)?;
        self.disk.read_at(self.start + offset, buf)
    }

    fn write_at(&mut self, offset: u64, buf: &[u8]) -> std::io::Result<()> {
        out_of_range(offset, buf.len(), self.capacity)?;
        self.disk.write_at(self.start + offset, buf)
    }

    fn sync(&mut self) -> std::io::Result<()> {
        self.disk.sync()
    }
}

impl<D: Disk> SlotStore for GptBootControl<D> {
    fn partition(&mut self, name: &str) -> Result<Box<dyn Partition + '_>, SlotError> {
        let entry = self
            .table()?
            .find(name)
            .ok_or_else(|| SlotError::MissingPartition {
                name: name.to_owned(),
                path: self.path().to_owned(),
            })?;
        Ok(Box::new(DiskRange {
            start: entry.first_lba * BLOCK,
            capacity: (entry.last_lba + 1 - entry.first_lba) * BLOCK,
            disk: self.disk_mut(),
        }))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::disk::{AbLayout, create_ab_disk};

    #[test]
    fn partitions_are_ranges_that_cannot_be_overrun() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk.img");
        create_ab_disk(
            &path,
            AbLayout {
                root_size: 1 << 20,
                verity_size: 1 << 20,
            },
        )
        .unwrap();
        let mut control = GptBootControl::open(&path).unwrap();
        let mut root_b = control.partition("root_b").unwrap();
        assert_eq!(root_b.capacity(), 1 << 20);
        root_b.write_at(0, b"slot b").unwrap();
        assert!(root_b.write_at((1 << 20) - 2, b"abc").is_err());
        let mut back = [0u8; 6];
        root_b.read_at(0, &mut back).unwrap();
        assert_eq!(&back, b"slot b");
        drop(root_b);
        let mut root_a = control.partition("root_a").unwrap();
        root_a.read_at(0, &mut back).unwrap();
        assert_ne!(&back, b"slot b");
        drop(root_a);
        assert!(matches!(
            control.partition("system_c"),
            Err(SlotError::MissingPartition { .. })
        ));
    }
}
