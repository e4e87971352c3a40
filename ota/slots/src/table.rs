//! A minimal GPT reader and a crash-safe writer of partition attributes.
//!
//! A GPT exists twice: the primary header at LBA 1 with its entry array, and the backup at the
//! end of the disk. Each header carries a CRC-32 of itself and of its entry array. Reading
//! checks both copies and uses the primary when it is valid, else the backup. Writing new
//! attributes goes backup first (entry array, sync, header, sync), then primary (same order):
//! a copy whose array changed but whose header did not yet fails its array checksum, so at
//! every instant at least one copy is valid and it holds either the old or the new state.
//! Rewriting also repairs a copy found damaged. 512-byte logical blocks.

use crate::crc32::crc32;
use crate::error::SlotError;

/// Logical block size.
pub const BLOCK: u64 = 512;
const SIGNATURE: &[u8; 8] = b"EFI PART";
const MIN_HEADER_SIZE: usize = 92;
const MIN_ENTRY_SIZE: usize = 128;
const MAX_ENTRIES_BYTES: usize = 1 << 20;
/// Offset of the attribute field inside an entry.
const ATTRIBUTES_AT: usize = 48;
const NAME_AT: usize = 56;
const NAME_LEN: usize = 72;

/// Random-access storage the table lives on: a disk image file or a block device (or, in
/// tests, a wrapper that cuts the power).
pub trait Disk {
    /// Reads exactly `buf.len()` bytes at `offset`.
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> std::io::Result<()>;
    /// Writes all of `buf` at `offset`.
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> std::io::Result<()>;
    /// Makes every write so far durable.
    fn sync(&mut self) -> std::io::Result<()>;
    /// Size in bytes.
    fn size(&mut self) -> std::io::Result<u64>;
}

impl Disk for std::fs::File {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(self, buf, offset)
    }
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> std::io::Result<()> {
        std::os::unix::fs::FileExt::write_all_at(self, buf, offset)
    }
    fn sync(&mut self) -> std::io::Result<()> {
        self.sync_data()
    }
    fn size(&mut self) -> std::io::Result<u64> {
        Ok(self.metadata()?.len())
    }
}

/// One copy of the table: its header and where its entries are.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Copy {
    header: Vec<u8>,
    header_lba: u64,
    entries_lba: u64,
    entries: Vec<u8>,
}

/// A partition entry, as far as slot control cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Index in the entry array.
    pub index: usize,
    /// The partition name.
    pub name: String,
    /// First and last LBA.
    pub first_lba: u64,
    /// Last LBA (inclusive).
    pub last_lba: u64,
    /// The attribute field.
    pub attributes: u64,
}

/// A disk's GPT as read.
#[derive(Debug, Clone)]
pub struct Table {
    primary: Result<Copy, String>,
    backup: Result<Copy, String>,
    entry_size: usize,
    entries: Vec<u8>,
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    let mut x = [0u8; 4];
    x.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(x)
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

fn io<'a>(op: &'static str, path: &'a str) -> impl FnOnce(std::io::Error) -> SlotError + 'a {
    move |source| SlotError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

/// Reads and checks the copy whose header is at `lba`.
fn read_copy(disk: &mut dyn Disk, lba: u64) -> Result<Copy, String> {
    let mut block = vec![0u8; BLOCK as usize];
    disk.read_at(lba * BLOCK, &mut block)
        .map_err(|e| format!("reading LBA {lba}: {e}"))?;
    if &block[..8] != SIGNATURE {
        return Err(format!("no GPT signature at LBA {lba}"));
    }
    let size = le_u32(&block, 12) as usize;
    if !(MIN_HEADER_SIZE..=BLOCK as usize).contains(&size) {
        return Err(format!("header size {size}"));
    }
    let mut header = block[..size].to_vec();
    let stored_crc = le_u32(&header, 16);
    header[16..20].fill(0);
    if crc32(&header) != stored_crc {
        return Err("header checksum mismatch".into());
    }
    header[16..20].copy_from_slice(&stored_crc.to_le_bytes());
    if le_u64(&header, 24) != lba {
        return Err(format!("header says it is at LBA {}", le_u64(&header, 24)));
    }
    let entries_lba = le_u64(&header, 72);
    let count = le_u32(&header, 80) as usize;
    let entry_size = le_u32(&header, 84) as usize;
    if entry_size < MIN_ENTRY_SIZE || !entry_size.is_multiple_of(8) {
        return Err(format!("entry size {entry_size}"));
    }
    let bytes = count
        .checked_mul(entry_size)
        .filter(|&b| b <= MAX_ENTRIES_BYTES)
        .ok_or_else(|| format!("{count} entries of {entry_size} bytes"))?;
    let mut entries = vec![0u8; bytes];
    disk.read_at(entries_lba * BLOCK, &mut entries)
        .map_err(|e| format!("reading the entries at LBA {entries_lba}: {e}"))?;
    if crc32(&entries) != le_u32(&header, 88) {
        return Err("entry array checksum mismatch".into());
    }
    Ok(Copy {
        header,
        header_lba: lba,
        entries_lba,
        entries,
    })
}

impl Table {
    /// Reads both copies of the table on `disk` (named `path` in errors).
    pub fn read(disk: &mut dyn Disk, path: &str) -> Result<Self, SlotError> {
        let primary = read_copy(disk, 1);
        let last = disk.size().map_err(io("sizing", path))? / BLOCK;
        let backup_lba = match &primary {
            Ok(p) => le_u64(&p.header, 32),
            Err(_) => last.saturating_sub(1),
        };
        let backup = read_copy(disk, backup_lba);
        let chosen = match (&primary, &backup) {
            (Ok(p), _) => p,
            (Err(_), Ok(b)) => b,
            (Err(p), Err(b)) => {
                return Err(SlotError::NoValidGpt {
                    path: path.to_owned(),
                    primary: p.clone(),
                    backup: b.clone(),
                });
            }
        };
        let entry_size = le_u32(&chosen.header, 84) as usize;
        let entries = chosen.entries.clone();
        Ok(Self {
            primary,
            backup,
            entry_size,
            entries,
        })
    }

    /// Whether both copies were valid when read.
    pub fn both_valid(&self) -> bool {
        self.primary.is_ok() && self.backup.is_ok()
    }

    /// The used entries.
    pub fn entries(&self) -> Vec<Entry> {
        self.entries
            .chunks_exact(self.entry_size)
            .enumerate()
            .filter(|(_, e)| e[..16].iter().any(|&b| b != 0))
            .map(|(index, e)| {
                let units: Vec<u16> = e[NAME_AT..NAME_AT + NAME_LEN]
                    .chunks_exact(2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]))
                    .take_while(|&u| u != 0)
                    .collect();
                Entry {
                    index,
                    name: String::from_utf16_lossy(&units),
                    first_lba: le_u64(e, 32),
                    last_lba: le_u64(e, 40),
                    attributes: le_u64(e, ATTRIBUTES_AT),
                }
            })
            .collect()
    }

    /// The entry named `name`.
    pub fn find(&self, name: &str) -> Option<Entry> {
        self.entries().into_iter().find(|e| e.name == name)
    }

    /// Writes new attribute values (`(entry index, attributes)`) crash-safely: backup copy,
    /// then primary, each as entry array, sync, header, sync.
    pub fn write_attributes(
        &mut self,
        disk: &mut dyn Disk,
        path: &str,
        updates: &[(usize, u64)],
    ) -> Result<(), SlotError> {
        for &(index, attributes) in updates {
            let at = index * self.entry_size + ATTRIBUTES_AT;
            let field = self
                .entries
                .get_mut(at..at + 8)
                .ok_or_else(|| SlotError::Invalid(format!("no entry {index}")))?;
            field.copy_from_slice(&attributes.to_le_bytes());
        }
        let array_crc = crc32(&self.entries);
        // A damaged copy is rebuilt from the valid one, at its standard place.
        let template = match (&self.primary, &self.backup) {
            (Ok(p), _) => p.clone(),
            (Err(_), Ok(b)) => b.clone(),
            (Err(_), Err(_)) => {
                return Err(SlotError::Invalid("no valid GPT copy to write".into()));
            }
        };
        let primary = self
            .primary
            .clone()
            .unwrap_or_else(|_| mirror(&template, 1, 2));
        let backup = self.backup.clone().unwrap_or_else(|_| {
            let header_lba = le_u64(&template.header, 32);
            let array_blocks = (self.entries.len() as u64).div_ceil(BLOCK);
            mirror(&template, header_lba, header_lba - array_blocks)
        });
        let mut write_copy = |copy: Copy| -> Result<Copy, SlotError> {
            let mut header = copy.header.clone();
            header[88..92].copy_from_slice(&array_crc.to_le_bytes());
            header[16..20].fill(0);
            let header_crc = crc32(&header);
            header[16..20].copy_from_slice(&header_crc.to_le_bytes());
            disk.write_at(copy.entries_lba * BLOCK, &self.entries)
                .map_err(io("writing the GPT entries of", path))?;
            disk.sync().map_err(io("syncing", path))?;
            disk.write_at(copy.header_lba * BLOCK, &header)
                .map_err(io("writing the GPT header of", path))?;
            disk.sync().map_err(io("syncing", path))?;
            Ok(Copy {
                header,
                entries: self.entries.clone(),
                ..copy
            })
        };
        let backup = write_copy(backup)?;
        let primary = write_copy(primary)?;
        self.backup = Ok(backup);
        self.primary = Ok(primary);
        Ok(())
    }
}

/// `template` moved to `header_lba` with its entries at `entries_lba` (the other copy's
/// place), its own and alternate LBA fields swapped accordingly.
fn mirror(template: &Copy, header_lba: u64, entries_lba: u64) -> Copy {
    let mut header = template.header.clone();
    header[24..32].copy_from_slice(&header_lba.to_le_bytes());
    header[32..40].copy_from_slice(&template.header_lba.to_le_bytes());
    header[72..80].copy_from_slice(&entries_lba.to_le_bytes());
    Copy {
        header,
        header_lba,
        entries_lba,
        entries: template.entries.clone(),
    }
}
