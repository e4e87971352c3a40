//! A/B slot control for verified updates.
//!
//! Each slot (A, B) is a pair of GPT partitions, `root_a` + `verity_a` and `root_b` +
//! `verity_b`. The root partition's GPT attribute bits carry the boot state the way ChromeOS
//! does it ([`SlotFlags`]: priority, tries left, successful), and a ChromeOS-style boot loader
//! picks the slot ([`policy::choose`]).
//!
//! - [`flags`]: the attribute bits (pure);
//! - [`policy`]: boot choice, activating an updated slot, marking it good (pure);
//! - [`crc32`]: the GPT checksum (pure);
//! - [`table`]: reads a disk's GPT (primary and backup, checksums checked) and rewrites the
//!   slot attributes crash-safely: backup copy first, then primary, each synced, so a power
//!   cut at any point leaves at least one complete copy, old or new;
//! - [`disk`]: creates an A/B disk image (with the `gpt` crate) for the image tool and tests;
//! - [`control`]: the [`BootControl`] trait and its GPT implementation;
//! - [`partitions`]: the slots' partitions by name ([`SlotStore`]), for the installer;
//! - [`simulator`]: boots a disk image the way the boot loader would;
//! - [`fault`]: a disk that loses power after N bytes, for crash-safety tests.

pub mod control;
pub mod crc32;
pub mod disk;
pub mod fault;
pub mod flags;
pub mod partitions;
pub mod policy;
pub mod simulator;
pub mod table;

mod error;

pub use control::{BootControl, GptBootControl};
pub use error::SlotError;
pub use flags::SlotFlags;
pub use partitions::{Partition, SlotStore};
pub use policy::Slot;
