//! Android's slots as an install target: the boot-control HAL for the slot flags and the
//! slots' partitions as block devices by name (`/dev/block/by-name/system_b` and the like).

use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use enigm_slots::policy::Slots;
use enigm_slots::{BootControl, Partition, Slot, SlotError, SlotStore};

use crate::BinderBootControl;

/// The directory Android links its partitions from, by name.
pub const BY_NAME: &str = "/dev/block/by-name";

/// The HAL plus the partitions by name.
#[derive(Debug)]
pub struct AndroidSlots {
    hal: BinderBootControl,
    by_name: PathBuf,
    root: String,
    verity: String,
}

impl AndroidSlots {
    /// Slots whose partitions are `by_name/root_a`, `by_name/verity_a`, … (the names the
    /// installer uses).
    pub fn new(hal: BinderBootControl, by_name: PathBuf) -> Self {
        Self {
            hal,
            by_name,
            root: "root".into(),
            verity: "verity".into(),
        }
    }

    /// The same with the device's own base names for the root and verity partitions (e.g.
    /// `system` and `system_verity`: the installer's `root_b` is then `by_name/system_b`).
    pub fn with_base_names(mut self, root: &str, verity: &str) -> Self {
        self.root = root.to_owned();
        self.verity = verity.to_owned();
        self
    }

    /// The HAL.
    pub fn hal(&mut self) -> &mut BinderBootControl {
        &mut self.hal
    }

    fn device_name(&self, name: &str) -> Option<String> {
        device_name(&self.root, &self.verity, name)
    }
}

/// The device file of the installer's partition `name` (`root_a`, `verity_b`, …) when the
/// device calls its root and verity partitions `root` and `verity`.
fn device_name(root: &str, verity: &str, name: &str) -> Option<String> {
    let (base, suffix) = name.rsplit_once('_')?;
    if !matches!(suffix, "a" | "b") {
        return None;
    }
    let base = match base {
        "root" => root,
        "verity" => verity,
        _ => return None,
    };
    Some(format!("{base}_{suffix}"))
}

impl BootControl for AndroidSlots {
    fn slots(&mut self) -> Result<Slots, SlotError> {
        self.hal.slots()
    }

    fn disable(&mut self, slot: Slot) -> Result<(), SlotError> {
        self.hal.disable(slot)
    }

    fn activate(&mut self, slot: Slot, tries: u8) -> Result<(), SlotError> {
        self.hal.activate(slot, tries)
    }

    fn mark_successful(&mut self, slot: Slot) -> Result<(), SlotError> {
        self.hal.mark_successful(slot)
    }
}

impl SlotStore for AndroidSlots {
    fn partition(&mut self, name: &str) -> Result<Box<dyn Partition + '_>, SlotError> {
        let path = self
            .device_name(name)
            .map(|device| self.by_name.join(device))
            .ok_or_else(|| SlotError::MissingPartition {
                name: name.to_owned(),
                path: self.by_name.display().to_string(),
            })?;
        let io = |op: &'static str| {
            let path = path.display().to_string();
            move |source| SlotError::Io { op, path, source }
        };
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io("opening"))?;
        // A block device's size is where seeking to its end lands.
        let capacity =
            std::io::Seek::seek(&mut &file, std::io::SeekFrom::End(0)).map_err(io("sizing"))?;
        Ok(Box::new(DevicePartition { file, capacity }))
    }
}

/// A partition's block device (or, in tests, a file).
struct DevicePartition {
    file: std::fs::File,
    capacity: u64,
}

fn check_range(offset: u64, len: usize, capacity: u64) -> std::io::Result<()> {
    if offset.saturating_add(len as u64) > capacity {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{len} bytes at {offset} run past the partition's {capacity} bytes"),
        ));
    }
    Ok(())
}

impl Partition for DevicePartition {
    fn capacity(&self) -> u64 {
        self.capacity
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        check_range(offset, buf.len(), self.capacity)?;
        self.file.read_exact_at(buf, offset)
    }

    fn write_at(&mut self, offset: u64, buf: &[u8]) -> std::io::Result<()> {
        check_range(offset, buf.len(), self.capacity)?;
        self.file.write_all_at(buf, offset)
    }

    fn sync(&mut self) -> std::io::Result<()> {
        self.file.sync_data()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn installer_names_map_to_device_names() {
        let cases = [
            ("root_a", Some("root_a"), Some("system_a")),
            ("verity_b", Some("verity_b"), Some("system_verity_b")),
            ("root_c", None, None),
            ("boot_a", None, None),
            ("root", None, None),
        ];
        for (name, plain_name, device_name) in cases {
            assert_eq!(
                super::device_name("root", "verity", name).as_deref(),
                plain_name,
                "{name}"
            );
            assert_eq!(
                super::device_name("system", "system_verity", name).as_deref(),
                device_name,
                "{name}"
            );
        }
    }
}
