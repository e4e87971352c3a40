//! ChromeOS-style boot attributes in a GPT partition entry's attribute field: bits 48–51
//! priority (0 = never boot), 52–55 tries left, 56 successful. Other bits are kept as they are.

use crate::error::SlotError;

const PRIORITY_SHIFT: u32 = 48;
const TRIES_SHIFT: u32 = 52;
const SUCCESSFUL_BIT: u32 = 56;
const NIBBLE: u64 = 0xF;
/// The highest priority and the most tries the four-bit fields hold.
pub const MAX_FIELD: u8 = 15;

/// A slot's boot attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SlotFlags {
    /// Boot priority, 0 to 15; 0 means the slot never boots.
    pub priority: u8,
    /// Boots left before an unconfirmed slot is given up, 0 to 15.
    pub tries: u8,
    /// The slot booted and passed its health check.
    pub successful: bool,
}

impl SlotFlags {
    /// Reads the fields out of a GPT attribute value.
    pub fn from_attributes(attributes: u64) -> Self {
        // Each field is masked to four bits, so the casts cannot truncate.
        Self {
            priority: ((attributes >> PRIORITY_SHIFT) & NIBBLE) as u8,
            tries: ((attributes >> TRIES_SHIFT) & NIBBLE) as u8,
            successful: (attributes >> SUCCESSFUL_BIT) & 1 == 1,
        }
    }

    /// Writes the fields into `attributes`, keeping every other bit.
    pub fn apply(self, attributes: u64) -> Result<u64, SlotError> {
        if self.priority > MAX_FIELD || self.tries > MAX_FIELD {
            return Err(SlotError::Invalid(format!(
                "priority {} and tries {} must each be 0 to {MAX_FIELD}",
                self.priority, self.tries
            )));
        }
        let cleared = attributes
            & !(NIBBLE << PRIORITY_SHIFT)
            & !(NIBBLE << TRIES_SHIFT)
            & !(1 << SUCCESSFUL_BIT);
        Ok(cleared
            | u64::from(self.priority) << PRIORITY_SHIFT
            | u64::from(self.tries) << TRIES_SHIFT
            | u64::from(self.successful) << SUCCESSFUL_BIT)
    }

    /// Whether a boot loader may pick this slot.
    pub fn bootable(self) -> bool {
        self.priority > 0 && (self.successful || self.tries > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (attributes, flags): the bit positions written out.
    const CASES: &[(u64, SlotFlags)] = &[
        (
            0,
            SlotFlags {
                priority: 0,
                tries: 0,
                successful: false,
            },
        ),
        (
            1 << 48,
            SlotFlags {
                priority: 1,
                tries: 0,
                successful: false,
            },
        ),
        (
            0xF << 48,
            SlotFlags {
                priority: 15,
                tries: 0,
                successful: false,
            },
        ),
        (
            3 << 52,
            SlotFlags {
                priority: 0,
                tries: 3,
                successful: false,
            },
        ),
        (
            1 << 56,
            SlotFlags {
                priority: 0,
                tries: 0,
                successful: true,
            },
        ),
        (
            (2 << 48) | (1 << 56),
            SlotFlags {
                priority: 2,
                tries: 0,
                successful: true,
            },
        ),
    ];

    #[test]
    fn bits_both_ways() {
        for &(bits, flags) in CASES {
            assert_eq!(SlotFlags::from_attributes(bits), flags, "{bits:#x}");
            assert_eq!(flags.apply(0).unwrap(), bits, "{flags:?}");
        }
    }

    #[test]
    fn other_bits_are_kept_and_ranges_checked() {
        let other = 1 | (1 << 2) | (1 << 60) | (1 << 47) | (1 << 57);
        let flags = SlotFlags {
            priority: 5,
            tries: 7,
            successful: true,
        };
        let bits = flags.apply(other | (0xFF << 48)).unwrap();
        assert_eq!(bits & other, other);
        assert_eq!(SlotFlags::from_attributes(bits), flags);
        assert!(
            SlotFlags {
                priority: 16,
                ..flags
            }
            .apply(0)
            .is_err()
        );
        assert!(SlotFlags { tries: 16, ..flags }.apply(0).is_err());
    }

    #[test]
    fn bootable_needs_priority_and_success_or_tries() {
        assert!(
            !SlotFlags {
                priority: 0,
                tries: 3,
                successful: true
            }
            .bootable()
        );
        assert!(
            !SlotFlags {
                priority: 2,
                tries: 0,
                successful: false
            }
            .bootable()
        );
        assert!(
            SlotFlags {
                priority: 2,
                tries: 1,
                successful: false
            }
            .bootable()
        );
        assert!(
            SlotFlags {
                priority: 1,
                tries: 0,
                successful: true
            }
            .bootable()
        );
    }
}
