//! Fault injection for tests of crash safety: a [`Disk`] that loses power after a byte
//! budget. Whole sectors of the write in flight reach the disk, the rest does not, and every
//! later write or sync fails. With an unlimited budget it counts the bytes written.

use crate::table::{BLOCK, Disk};

/// A file-backed disk that cuts the power after `budget` bytes.
#[derive(Debug)]
pub struct PowerCut {
    file: std::fs::File,
    budget: u64,
    /// Bytes written so far.
    pub written: u64,
    dead: bool,
}

impl PowerCut {
    /// Opens `path` for reading and writing, with `budget` bytes to write (`u64::MAX`: never
    /// cut, just count).
    pub fn open(path: &std::path::Path, budget: u64) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)?;
        Ok(Self {
            file,
            budget,
            written: 0,
            dead: false,
        })
    }
}

impl Disk for PowerCut {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        self.file.read_at(offset, buf)
    }

    fn write_at(&mut self, offset: u64, buf: &[u8]) -> std::io::Result<()> {
        if self.dead {
            return Err(std::io::Error::other("power cut"));
        }
        let left = self.budget.saturating_sub(self.written);
        if buf.len() as u64 > left {
            let kept = usize::try_from(left / BLOCK * BLOCK).unwrap_or(0);
            self.file.write_at(offset, &buf[..kept])?;
            self.dead = true;
            return Err(std::io::Error::other("power cut"));
        }
        self.written += buf.len() as u64;
        self.file.write_at(offset, buf)
    }

    fn sync(&mut self) -> std::io::Result<()> {
        if self.dead {
            return Err(std::io::Error::other("power cut"));
        }
        Ok(())
    }

    fn size(&mut self) -> std::io::Result<u64> {
        self.file.size()
    }
}
