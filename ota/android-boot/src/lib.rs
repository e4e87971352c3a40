//! Slot control on Android: the boot-control HAL (`android.hardware.boot.IBootControl`, stable
//! AIDL) reached over Binder, behind the same [`BootControl`] trait as the GPT implementation,
//! so the update engine's moves (disable the target, activate it, mark the running slot good)
//! mean the same on both.
//!
//! The HAL keeps retry counts and priorities to the bootloader; what it shows is whether each
//! slot is bootable, marked successful and the active one. [`flags_from_hal`] maps that onto
//! [`SlotFlags`] (the active slot gets priority 15, another bootable slot 14, an unbootable
//! one 0; an unconfirmed bootable slot shows one try), and `activate` cannot choose the number
//! of tries: the bootloader's own count applies.
//!
//! [`AndroidSlots`] adds the slots' partitions as block devices by name, so the installer and
//! the update engine run on Android unchanged ([`enigm_slots::SlotStore`]).
//!
//! Transports: [`BinderBootControl::connect_rpc`] (binder over a Unix socket, rsbinder's RPC
//! transport, what the tests use); on a device, [`BinderBootControl::from_hal`] takes the HAL
//! from the service manager (`android.hardware.boot.IBootControl/default`).

mod slots;

pub use slots::{AndroidSlots, BY_NAME};

use enigm_aidl::IBootControl::IBootControl;
use enigm_slots::policy::Slots;
use enigm_slots::{BootControl, Slot, SlotError, SlotFlags};
use rsbinder::{FromIBinder, Strong};

/// The service name of the HAL on a device.
pub const SERVICE_NAME: &str = "android.hardware.boot.IBootControl/default";

/// The HAL's slot number of `slot` (A is 0, B is 1).
pub fn hal_slot(slot: Slot) -> i32 {
    match slot {
        Slot::A => 0,
        Slot::B => 1,
    }
}

/// The slot the HAL numbers `n`, if it is A or B.
pub fn slot_of(n: i32) -> Option<Slot> {
    match n {
        0 => Some(Slot::A),
        1 => Some(Slot::B),
        _ => None,
    }
}

/// The [`SlotFlags`] that stand for what the HAL reports of a slot.
pub fn flags_from_hal(bootable: bool, successful: bool, active: bool) -> SlotFlags {
    let priority = match (bootable, active) {
        (false, _) => 0,
        (true, true) => 15,
        (true, false) => 14,
    };
    SlotFlags {
        priority,
        tries: u8::from(bootable && !successful),
        successful: bootable && successful,
    }
}

fn hal_err(call: &str) -> impl FnOnce(rsbinder::Status) -> SlotError + '_ {
    move |status| SlotError::Invalid(format!("boot-control HAL {call}: {status}"))
}

/// The boot-control HAL as a [`BootControl`].
pub struct BinderBootControl {
    hal: Strong<dyn IBootControl>,
    // Keeps an RPC connection open for as long as the HAL is used.
    _session: Option<rsbinder::rpc::RpcSession>,
}

impl std::fmt::Debug for BinderBootControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BinderBootControl").finish_non_exhaustive()
    }
}

impl BinderBootControl {
    /// The HAL served at the root of the binder RPC socket at `path`.
    pub fn connect_rpc(path: &std::path::Path) -> Result<Self, SlotError> {
        let failed = |what: &str, e: rsbinder::StatusCode| {
            SlotError::Invalid(format!(
                "boot-control HAL at {}: {what}: {e}",
                path.display()
            ))
        };
        let session = rsbinder::rpc::RpcSession::setup_unix_client(path)
            .map_err(|e| failed("connecting", e))?;
        let root = session.get_root().map_err(|e| failed("root object", e))?;
        let hal = <dyn IBootControl as FromIBinder>::try_from(root)
            .map_err(|e| failed("not an IBootControl", e))?;
        Ok(Self {
            hal,
            _session: Some(session),
        })
    }

    /// The HAL from a binder already obtained (e.g. from the service manager).
    pub fn from_hal(hal: Strong<dyn IBootControl>) -> Self {
        Self {
            hal,
            _session: None,
        }
    }

    /// The slot running now, as the HAL reports it.
    pub fn current_slot(&mut self) -> Result<Slot, SlotError> {
        let n = self
            .hal
            .getCurrentSlot()
            .map_err(hal_err("getCurrentSlot"))?;
        slot_of(n).ok_or_else(|| SlotError::Invalid(format!("the HAL runs slot {n}, not A or B")))
    }

    fn check_two_slots(&mut self) -> Result<(), SlotError> {
        let n = self
            .hal
            .getNumberSlots()
            .map_err(hal_err("getNumberSlots"))?;
        if n != 2 {
            return Err(SlotError::Invalid(format!(
                "the HAL has {n} slots; A/B updates need 2"
            )));
        }
        Ok(())
    }
}

impl BootControl for BinderBootControl {
    fn slots(&mut self) -> Result<Slots, SlotError> {
        self.check_two_slots()?;
        let active = self
            .hal
            .getActiveBootSlot()
            .map_err(hal_err("getActiveBootSlot"))?;
        let mut flags = [SlotFlags::default(); 2];
        for slot in [Slot::A, Slot::B] {
            let n = hal_slot(slot);
            let bootable = self
                .hal
                .isSlotBootable(n)
                .map_err(hal_err("isSlotBootable"))?;
            let successful = self
                .hal
                .isSlotMarkedSuccessful(n)
                .map_err(hal_err("isSlotMarkedSuccessful"))?;
            flags[usize::from(slot == Slot::B)] = flags_from_hal(bootable, successful, active == n);
        }
        Ok(Slots {
            a: flags[0],
            b: flags[1],
        })
    }

    fn disable(&mut self, slot: Slot) -> Result<(), SlotError> {
        self.hal
            .setSlotAsUnbootable(hal_slot(slot))
            .map_err(hal_err("setSlotAsUnbootable"))
    }

    fn activate(&mut self, slot: Slot, _tries: u8) -> Result<(), SlotError> {
        self.hal
            .setActiveBootSlot(hal_slot(slot))
            .map_err(hal_err("setActiveBootSlot"))
    }

    fn mark_successful(&mut self, slot: Slot) -> Result<(), SlotError> {
        let current = self.current_slot()?;
        if current != slot {
            return Err(SlotError::Invalid(format!(
                "the HAL marks only the running slot ({current}) successful, not {slot}"
            )));
        }
        self.hal
            .markBootSuccessful()
            .map_err(hal_err("markBootSuccessful"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hal_state_as_slot_flags() {
        let cases = [
            // (bootable, successful, active) → (priority, tries, successful)
            ((true, true, true), (15, 0, true)),
            ((true, false, true), (15, 1, false)),
            ((true, true, false), (14, 0, true)),
            ((true, false, false), (14, 1, false)),
            ((false, true, true), (0, 0, false)),
            ((false, false, false), (0, 0, false)),
        ];
        for ((bootable, successful, active), (priority, tries, good)) in cases {
            let flags = flags_from_hal(bootable, successful, active);
            assert_eq!(
                (flags.priority, flags.tries, flags.successful),
                (priority, tries, good),
                "{bootable} {successful} {active}"
            );
        }
    }

    #[test]
    fn slot_numbers() {
        for slot in [Slot::A, Slot::B] {
            assert_eq!(slot_of(hal_slot(slot)), Some(slot));
        }
        assert_eq!(slot_of(2), None);
        assert_eq!(slot_of(-1), None);
    }
}
