//! The fixed-size header in front of a delta's zstd frame: which image it applies to, which
//! image it produces, and the window the decoder needs.

use std::io::Read;

use openssl::memcmp;
use openssl::sha::sha256;

use crate::{DeltaError, MAX_WINDOW_LOG};

/// The first bytes of every delta file (format version 1).
pub const MAGIC: &[u8; 8] = b"ENIGMDL1";
/// The header's length in bytes.
pub const HEADER_LEN: usize = 8 + 8 + 32 + 8 + 32 + 1;

/// An image, named by its size and SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageId {
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the whole image.
    pub sha256: [u8; 32],
}

impl ImageId {
    /// The identity of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self {
            size: bytes.len() as u64,
            sha256: sha256(bytes),
        }
    }

    /// The SHA-256 in lower-case hex.
    pub fn sha256_hex(&self) -> String {
        hex::encode(self.sha256)
    }

    /// Whether both name the same image (the digest compared in constant time).
    pub fn same_as(&self, other: &ImageId) -> bool {
        self.size == other.size && memcmp::eq(&self.sha256, &other.sha256)
    }
}

/// What a delta applies to and produces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The image the delta refers back to (the running slot's).
    pub source: ImageId,
    /// The image it decodes to.
    pub target: ImageId,
    /// log2 of the zstd window the frame was written with.
    pub window_log: u32,
}

impl Header {
    /// The header's bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[..8].copy_from_slice(MAGIC);
        out[8..16].copy_from_slice(&self.source.size.to_le_bytes());
        out[16..48].copy_from_slice(&self.source.sha256);
        out[48..56].copy_from_slice(&self.target.size.to_le_bytes());
        out[56..88].copy_from_slice(&self.target.sha256);
        out[88] = u8::try_from(self.window_log).unwrap_or(u8::MAX);
        out
    }

    /// Parses a header.
    pub fn decode(bytes: &[u8; HEADER_LEN]) -> Result<Self, DeltaError> {
        if &bytes[..8] != MAGIC {
            return Err(DeltaError::Format(
                "not an Enigm delta (bad magic bytes)".into(),
            ));
        }
        let u64_at = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[at..at + 8]);
            u64::from_le_bytes(b)
        };
        let digest_at = |at: usize| {
            let mut d = [0u8; 32];
            d.copy_from_slice(&bytes[at..at + 32]);
            d
        };
        let window_log = u32::from(bytes[88]);
        if !(10..=MAX_WINDOW_LOG).contains(&window_log) {
            return Err(DeltaError::Format(format!(
                "window log {window_log} is outside 10..={MAX_WINDOW_LOG}"
            )));
        }
        Ok(Self {
            source: ImageId {
                size: u64_at(8),
                sha256: digest_at(16),
            },
            target: ImageId {
                size: u64_at(48),
                sha256: digest_at(56),
            },
            window_log,
        })
    }

    /// Reads and parses the header at the start of `reader`, leaving it at the frame.
    pub fn read_from(reader: &mut impl Read) -> Result<Self, DeltaError> {
        let mut bytes = [0u8; HEADER_LEN];
        reader.read_exact(&mut bytes).map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => {
                DeltaError::Format(format!("shorter than its {HEADER_LEN}-byte header"))
            }
            _ => DeltaError::Io(e),
        })?;
        Self::decode(&bytes)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn header() -> Header {
        Header {
            source: ImageId::of(b"old"),
            target: ImageId::of(b"new image"),
            window_log: 27,
        }
    }

    #[test]
    fn round_trips() {
        let bytes = header().encode();
        assert_eq!(&bytes[..8], MAGIC);
        assert_eq!(Header::decode(&bytes).unwrap(), header());
        assert_eq!(Header::read_from(&mut &bytes[..]).unwrap(), header());
    }

    #[test]
    fn malformed_headers_are_refused_with_the_reason() {
        let good = header().encode();
        let mut magic = good;
        magic[0] = b'X';
        let mut window = good;
        window[88] = 40;
        let mut tiny = good;
        tiny[88] = 3;
        for (bytes, needle) in [
            (magic, "magic"),
            (window, "window log 40"),
            (tiny, "window log 3"),
        ] {
            let err = Header::decode(&bytes).unwrap_err().to_string();
            assert!(err.contains(needle), "{err}");
        }
        let err = Header::read_from(&mut &good[..40]).unwrap_err().to_string();
        assert!(err.contains("header"), "{err}");
    }

    #[test]
    fn identities_compare_size_and_digest() {
        let a = ImageId::of(b"abc");
        assert!(a.same_as(&ImageId::of(b"abc")));
        assert!(!a.same_as(&ImageId::of(b"abd")));
        let mut resized = a.clone();
        resized.size = 4;
        assert!(!a.same_as(&resized));
    }
}
