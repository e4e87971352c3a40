//! The boot choice and the updater's moves, as pure functions over the two slots' flags.
//!
//! - Boot ([`choose`]): among slots with priority > 0 that are successful or have tries
//!   left, the highest priority wins (A on a tie); booting an unconfirmed slot uses up one
//!   try, written before the boot.
//! - Update: [`disable`] the inactive slot before writing into it (so a half-written slot
//!   can never boot), then [`activate`] it: highest priority, `tries` tries, not successful.
//! - After a healthy boot, [`mark_successful`]. If the new slot never gets there, its tries
//!   run out and the old slot, still successful, boots again.

use crate::flags::{MAX_FIELD, SlotFlags};

/// One of the two slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Slot {
    /// Slot A (`root_a`, `verity_a`).
    A,
    /// Slot B (`root_b`, `verity_b`).
    B,
}

impl Slot {
    /// Both slots, A first.
    pub const ALL: [Slot; 2] = [Slot::A, Slot::B];

    /// The other slot.
    pub fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }

    /// The partition-name suffix: `a` or `b`.
    pub fn suffix(self) -> &'static str {
        match self {
            Slot::A => "a",
            Slot::B => "b",
        }
    }
}

impl std::fmt::Display for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Slot::A => "A",
            Slot::B => "B",
        })
    }
}

/// Both slots' flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Slots {
    /// Slot A.
    pub a: SlotFlags,
    /// Slot B.
    pub b: SlotFlags,
}

impl Slots {
    /// The flags of `slot`.
    pub fn get(&self, slot: Slot) -> SlotFlags {
        match slot {
            Slot::A => self.a,
            Slot::B => self.b,
        }
    }

    /// These slots with `slot`'s flags replaced.
    pub fn with(mut self, slot: Slot, flags: SlotFlags) -> Self {
        match slot {
            Slot::A => self.a = flags,
            Slot::B => self.b = flags,
        }
        self
    }
}

/// What the boot loader decided: the slot, and the flags to write before booting it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootDecision {
    /// The slot to boot.
    pub slot: Slot,
    /// The flags after this boot (one try used when the slot is not yet successful).
    pub after: Slots,
}

/// The boot loader's choice, or why nothing can boot.
pub fn choose(slots: Slots) -> Result<BootDecision, String> {
    let best = Slot::ALL
        .into_iter()
        .filter(|&s| slots.get(s).bootable())
        // max_by_key keeps the last of equal keys; iterate so that A wins ties.
        .rev()
        .max_by_key(|&s| slots.get(s).priority);
    let Some(slot) = best else {
        return Err(format!(
            "A: {}; B: {}",
            describe(slots.a),
            describe(slots.b)
        ));
    };
    let mut flags = slots.get(slot);
    if !flags.successful {
        flags.tries -= 1;
    }
    Ok(BootDecision {
        slot,
        after: slots.with(slot, flags),
    })
}

fn describe(flags: SlotFlags) -> String {
    if flags.priority == 0 {
        "disabled (priority 0)".into()
    } else if !flags.successful && flags.tries == 0 {
        format!(
            "priority {} but no tries left and never successful",
            flags.priority
        )
    } else {
        format!("{flags:?}")
    }
}

/// Make `slot` unbootable (before writing into it).
pub fn disable(slots: Slots, slot: Slot) -> Slots {
    slots.with(slot, SlotFlags::default())
}

/// Make `slot` the one to boot next, with `tries` tries to prove itself: a priority above the
/// other slot's (lowering the other's when it is already at the top), not successful.
pub fn activate(slots: Slots, slot: Slot, tries: u8) -> Slots {
    let other = slots.get(slot.other());
    let (mine, other_priority) = if other.priority >= MAX_FIELD {
        (MAX_FIELD, MAX_FIELD - 1)
    } else {
        (other.priority + 1, other.priority)
    };
    slots
        .with(
            slot.other(),
            SlotFlags {
                priority: other_priority,
                ..other
            },
        )
        .with(
            slot,
            SlotFlags {
                priority: mine,
                tries: tries.min(MAX_FIELD),
                successful: false,
            },
        )
}

/// Record that `slot` booted and passed its health check.
pub fn mark_successful(slots: Slots, slot: Slot) -> Slots {
    let flags = slots.get(slot);
    slots.with(
        slot,
        SlotFlags {
            tries: 0,
            successful: true,
            ..flags
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(priority: u8, tries: u8, successful: bool) -> SlotFlags {
        SlotFlags {
            priority,
            tries,
            successful,
        }
    }

    /// (A, B, expected slot or None, expected flags after).
    #[test]
    fn choose_table() {
        let cases = [
            (
                f(1, 0, true),
                f(0, 0, false),
                Some(Slot::A),
                f(1, 0, true),
                f(0, 0, false),
            ),
            (
                f(1, 0, true),
                f(2, 3, false),
                Some(Slot::B),
                f(1, 0, true),
                f(2, 2, false),
            ),
            (
                f(1, 0, true),
                f(2, 0, false),
                Some(Slot::A),
                f(1, 0, true),
                f(2, 0, false),
            ),
            (
                f(2, 0, true),
                f(2, 0, true),
                Some(Slot::A),
                f(2, 0, true),
                f(2, 0, true),
            ),
            (
                f(0, 5, true),
                f(1, 1, false),
                Some(Slot::B),
                f(0, 5, true),
                f(1, 0, false),
            ),
            (
                f(3, 0, true),
                f(1, 0, true),
                Some(Slot::A),
                f(3, 0, true),
                f(1, 0, true),
            ),
        ];
        for (a, b, slot, a_after, b_after) in cases {
            let d = choose(Slots { a, b }).unwrap();
            assert_eq!(Some(d.slot), slot, "{a:?} {b:?}");
            assert_eq!(
                d.after,
                Slots {
                    a: a_after,
                    b: b_after
                },
                "{a:?} {b:?}"
            );
        }
        let none = choose(Slots {
            a: f(0, 0, true),
            b: f(2, 0, false),
        })
        .unwrap_err();
        assert!(none.contains("no tries left"), "{none}");
    }

    #[test]
    fn update_cycle_success_and_fallback() {
        let start = Slots {
            a: f(1, 0, true),
            b: f(0, 0, false),
        };
        // Update into B.
        let writing = disable(start, Slot::B);
        assert_eq!(
            choose(writing).unwrap().slot,
            Slot::A,
            "B never boots mid-write"
        );
        let ready = activate(writing, Slot::B, 2);
        assert_eq!(ready.b, f(2, 2, false));
        // Healthy: boot B once, mark it good; it keeps booting.
        let booted = choose(ready).unwrap();
        assert_eq!(booted.slot, Slot::B);
        let good = mark_successful(booted.after, Slot::B);
        assert_eq!(good.b, f(2, 0, true));
        assert_eq!(choose(good).unwrap().slot, Slot::B);
        // Unhealthy: two tries, then A again.
        let mut slots = ready;
        for _ in 0..2 {
            let d = choose(slots).unwrap();
            assert_eq!(d.slot, Slot::B);
            slots = d.after;
        }
        assert_eq!(choose(slots).unwrap().slot, Slot::A);
    }

    #[test]
    fn activate_at_the_top_lowers_the_other() {
        let slots = Slots {
            a: f(15, 0, true),
            b: f(0, 0, false),
        };
        let next = activate(slots, Slot::B, 20);
        assert_eq!(next.a, f(14, 0, true));
        assert_eq!(next.b, f(15, 15, false));
    }
}
