//! The boot simulator: what a ChromeOS-style boot loader does with a disk, so tests can run
//! update → reboot → mark-good and update → failed health check → fallback cycles on an
//! image file. It reads the slot flags, picks a slot with [`policy::choose`], writes the used
//! try back (crash-safely) and says which slot it booted.

use crate::control::{BootControl, GptBootControl};
use crate::error::SlotError;
use crate::policy::{self, Slot};
use crate::table::Disk;

/// Boots `disk` once: the slot the boot loader starts.
pub fn boot<D: Disk>(disk: &mut GptBootControl<D>) -> Result<Slot, SlotError> {
    let slots = disk.slots()?;
    let decision = policy::choose(slots).map_err(SlotError::NoBootableSlot)?;
    if decision.after != slots {
        disk.set_slots(decision.after)?;
    }
    Ok(decision.slot)
}
