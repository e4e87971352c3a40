//! A bounds-checked reader for TPM wire structures (big-endian, `TPM2B_*` sized buffers).

/// Malformed TPM bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The input ended inside a structure.
    #[error("truncated {what}: needed {needed} more bytes at offset {offset}")]
    Truncated {
        /// The field being read.
        what: &'static str,
        /// How many bytes were missing.
        needed: usize,
        /// Where.
        offset: usize,
    },
    /// A field holds a value the structure does not allow.
    #[error("invalid {what}: {detail}")]
    Invalid {
        /// The field.
        what: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// Bytes were left over after the structure.
    #[error("{count} trailing bytes after {what}")]
    Trailing {
        /// The structure.
        what: &'static str,
        /// How many.
        count: usize,
    },
}

/// A cursor over big-endian TPM bytes.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, offset: 0 }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.offset
    }

    /// Current offset.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// Takes `n` bytes.
    pub fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], WireError> {
        let end = self
            .offset
            .checked_add(n)
            .filter(|end| *end <= self.bytes.len())
            .ok_or(WireError::Truncated {
                what,
                needed: n.saturating_sub(self.remaining()),
                offset: self.offset,
            })?;
        let slice = &self.bytes[self.offset..end];
        self.offset = end;
        Ok(slice)
    }

    /// A `u8`.
    pub fn u8(&mut self, what: &'static str) -> Result<u8, WireError> {
        Ok(self.take(1, what)?[0])
    }

    /// A big-endian `u16`.
    pub fn u16(&mut self, what: &'static str) -> Result<u16, WireError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    /// A big-endian `u32`.
    pub fn u32(&mut self, what: &'static str) -> Result<u32, WireError> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A big-endian `u64`.
    pub fn u64(&mut self, what: &'static str) -> Result<u64, WireError> {
        let b = self.take(8, what)?;
        let mut array = [0u8; 8];
        array.copy_from_slice(b);
        Ok(u64::from_be_bytes(array))
    }

    /// A `TPM2B_*`: a `u16` size, then that many bytes.
    pub fn sized(&mut self, what: &'static str) -> Result<&'a [u8], WireError> {
        let size = self.u16(what)? as usize;
        self.take(size, what)
    }

    /// Fails when bytes are left.
    pub fn finish(&self, what: &'static str) -> Result<(), WireError> {
        match self.remaining() {
            0 => Ok(()),
            count => Err(WireError::Trailing { what, count }),
        }
    }
}

/// Shorthand for an [`WireError::Invalid`].
pub fn invalid(what: &'static str, detail: impl Into<String>) -> WireError {
    WireError::Invalid {
        what,
        detail: detail.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_bounds_checks() {
        let mut reader = Reader::new(&[0x00, 0x02, 0xaa, 0xbb, 0x01]);
        assert_eq!(reader.sized("x").unwrap(), &[0xaa, 0xbb]);
        assert_eq!(reader.u8("y").unwrap(), 1);
        assert!(reader.finish("z").is_ok());
        assert!(matches!(reader.u8("w"), Err(WireError::Truncated { .. })));
        let mut short = Reader::new(&[0x00, 0x05, 1]);
        assert!(matches!(
            short.sized("s"),
            Err(WireError::Truncated { needed: 4, .. })
        ));
        let mut huge = Reader::new(&[0xff, 0xff]);
        assert!(huge.sized("h").is_err());
    }
}
