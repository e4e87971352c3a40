//! A/B cycles on a real disk image file, crash safety of the attribute writes under a power
//! cut at every write and sync (and half-way through each write), and damaged tables.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use enigm_slots::disk::{AbLayout, create_ab_disk};
use enigm_slots::fault::PowerCut;
use enigm_slots::policy::Slots;
use enigm_slots::simulator::boot;
use enigm_slots::table::{BLOCK, Table};
use enigm_slots::{BootControl, GptBootControl, Slot, SlotError, SlotFlags};

const LAYOUT: AbLayout = AbLayout {
    root_size: 2 << 20,
    verity_size: 1 << 20,
};

fn disk(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("disk.img");
    create_ab_disk(&path, LAYOUT).unwrap();
    path
}

fn f(priority: u8, tries: u8, successful: bool) -> SlotFlags {
    SlotFlags {
        priority,
        tries,
        successful,
    }
}

#[test]
fn fresh_disk_boots_a_and_lists_the_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let path = disk(dir.path());
    let mut file = std::fs::File::open(&path).unwrap();
    let table = Table::read(&mut file, "disk").unwrap();
    assert!(table.both_valid());
    let names: Vec<String> = table.entries().into_iter().map(|e| e.name).collect();
    assert_eq!(names, ["root_a", "verity_a", "root_b", "verity_b"]);
    let mut control = GptBootControl::open(&path).unwrap();
    assert_eq!(
        control.slots().unwrap(),
        Slots {
            a: f(1, 0, true),
            b: f(0, 0, false)
        }
    );
    assert_eq!(boot(&mut control).unwrap(), Slot::A);
}

#[test]
fn update_then_mark_good_and_update_then_fallback() {
    let dir = tempfile::tempdir().unwrap();
    let path = disk(dir.path());
    let mut control = GptBootControl::open(&path).unwrap();
    // Update into B, healthy.
    control.disable(Slot::B).unwrap();
    assert_eq!(boot(&mut control).unwrap(), Slot::A);
    control.activate(Slot::B, 3).unwrap();
    assert_eq!(boot(&mut control).unwrap(), Slot::B);
    assert_eq!(control.slots().unwrap().b, f(2, 2, false));
    control.mark_successful(Slot::B).unwrap();
    for _ in 0..3 {
        assert_eq!(boot(&mut control).unwrap(), Slot::B);
    }
    // Update into A, never healthy: two tries, then B again.
    control.disable(Slot::A).unwrap();
    control.activate(Slot::A, 2).unwrap();
    assert_eq!(boot(&mut control).unwrap(), Slot::A);
    assert_eq!(boot(&mut control).unwrap(), Slot::A);
    assert_eq!(boot(&mut control).unwrap(), Slot::B);
    assert_eq!(boot(&mut control).unwrap(), Slot::B);
    let slots = control.slots().unwrap();
    assert_eq!(slots.a, f(3, 0, false));
    assert!(slots.b.successful);
    // Nothing bootable: a clear error.
    control.disable(Slot::B).unwrap();
    let err = boot(&mut control).unwrap_err();
    assert!(matches!(err, SlotError::NoBootableSlot(_)), "{err}");
}

#[test]
fn a_power_cut_anywhere_leaves_the_old_or_the_new_state() {
    let dir = tempfile::tempdir().unwrap();
    let pristine = std::fs::read(disk(dir.path())).unwrap();
    let path = dir.path().join("cut.img");
    let old = Slots {
        a: f(1, 0, true),
        b: f(0, 0, false),
    };
    let new = Slots {
        a: f(1, 0, true),
        b: f(2, 3, false),
    };
    // One attribute write is two arrays of 16 KiB and two 92-byte headers: cut at every
    // sector boundary and inside each header.
    let total = 2 * (128 * 128 + 92);
    let mut cuts: Vec<usize> = (0..=total).step_by(512).collect();
    cuts.extend([128 * 128 + 40, total - 40, total]);
    let mut seen_old = 0;
    let mut seen_new = 0;
    for cut in cuts {
        std::fs::write(&path, &pristine).unwrap();
        let mut control =
            GptBootControl::new(PowerCut::open(&path, cut as u64).unwrap(), path.clone());
        let _ = control.activate(Slot::B, 3);
        // Power back: whatever the cut left must read as old or new, and boot a slot.
        let mut control = GptBootControl::open(&path).unwrap();
        let slots = control
            .slots()
            .unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
        if slots == old {
            seen_old += 1;
        } else if slots == new {
            seen_new += 1;
        } else {
            panic!("cut at {cut}: neither old nor new: {slots:?}");
        }
        // Rerunning completes, and repairs a damaged copy.
        control.activate(Slot::B, 3).unwrap();
        assert_eq!(control.slots().unwrap(), new, "cut at {cut}");
        let mut file = std::fs::File::open(&path).unwrap();
        assert!(
            Table::read(&mut file, "disk").unwrap().both_valid(),
            "cut at {cut}"
        );
    }
    assert!(
        seen_old > 0 && seen_new > 0,
        "old {seen_old}, new {seen_new}"
    );
}

#[test]
fn damaged_copies_are_survived_and_repaired_or_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = disk(dir.path());
    let size = std::fs::metadata(&path).unwrap().len();
    let flip = |at: u64| {
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[at as usize] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
    };
    // Primary header damaged: the backup is used; the next write repairs the primary.
    flip(BLOCK + 40);
    let mut file = std::fs::File::open(&path).unwrap();
    let table = Table::read(&mut file, "disk").unwrap();
    assert!(!table.both_valid());
    let mut control = GptBootControl::open(&path).unwrap();
    assert_eq!(control.slots().unwrap().a, f(1, 0, true));
    control.mark_successful(Slot::A).unwrap();
    let mut file = std::fs::File::open(&path).unwrap();
    assert!(Table::read(&mut file, "disk").unwrap().both_valid());
    // Both headers damaged: a clear error naming both.
    flip(BLOCK + 40);
    flip(size - BLOCK + 40);
    let err = GptBootControl::open(&path).unwrap().slots().unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("no valid GPT") && text.contains("primary") && text.contains("backup"),
        "{text}"
    );
}
