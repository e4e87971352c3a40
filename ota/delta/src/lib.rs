//! Delta updates: the new root image as one zstd frame that refers back to the image the
//! device already runs (the way `zstd --patch-from` works), bound to both images' hashes.
//!
//! A delta file is a fixed [`Header`] followed by the zstd frame:
//!
//! ```text
//! "ENIGMDL1" | source size (u64 LE) | source SHA-256 | target size (u64 LE) | target SHA-256
//!            | window log (u8) | zstd frame (ref prefix = the source image)
//! ```
//!
//! The frame is a plain zstd frame: `zstd -d --patch-from=SOURCE --long=W` decodes it, and
//! the tests check that it does.
//!
//! Applying is fail-closed by construction: the only way to get a decoder is through a
//! [`VerifiedSource`], which exists only when the source bytes hash to what the header names.
//! Callers check that before writing anything; the installer then checks the decoded output
//! against the signed manifest while it streams it in.

mod header;

use std::io::{BufReader, Read, Write};

pub use header::{HEADER_LEN, Header, ImageId, MAGIC};

/// The repository target name of the delta from the image with SHA-256 `source_sha256` to
/// the one with `target_sha256` (both hex), for `hardware`: a device names the delta it can
/// use from what it runs and what the manifest offers.
pub fn target_name(hardware: &str, source_sha256: &str, target_sha256: &str) -> String {
    format!("{hardware}/delta/{source_sha256}-{target_sha256}.zst")
}

/// The largest window a delta may ask for (2 GiB): the decoder keeps that much of the output.
pub const MAX_WINDOW_LOG: u32 = 31;
/// The smallest window zstd accepts.
const MIN_WINDOW_LOG: u32 = 10;

/// Why a delta could not be made or applied.
#[derive(Debug, thiserror::Error)]
pub enum DeltaError {
    /// The delta file is malformed.
    #[error("delta: {0}")]
    Format(String),
    /// The delta was made against another image than the one offered as its source.
    #[error(
        "delta is against the image {expected} ({expected_size} bytes); the source is {found} ({found_size} bytes)"
    )]
    WrongSource {
        /// SHA-256 of the source the delta needs (hex).
        expected: String,
        /// Its size.
        expected_size: u64,
        /// SHA-256 of the source offered (hex).
        found: String,
        /// Its size.
        found_size: u64,
    },
    /// The images are too large for one delta window.
    #[error("source and target together ({0} bytes) exceed the 2 GiB delta window")]
    TooLarge(u64),
    /// Reading or writing.
    #[error("delta I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// The zstd window (log2 bytes) that lets every byte of the target refer back to any byte of
/// the source.
pub fn window_log_for(source_len: u64, target_len: u64) -> Result<u32, DeltaError> {
    let span = source_len.saturating_add(target_len);
    let log = u64::BITS - span.saturating_sub(1).leading_zeros();
    if log > MAX_WINDOW_LOG {
        return Err(DeltaError::TooLarge(span));
    }
    Ok(log.max(MIN_WINDOW_LOG))
}

/// Writes the delta from `source` to `target` into `out` at zstd `level` (1–22; 19 is what
/// `zstd --patch-from -19` uses). Returns its header.
pub fn create(
    source: &[u8],
    target: &[u8],
    level: i32,
    out: &mut impl Write,
) -> Result<Header, DeltaError> {
    let header = Header {
        source: ImageId::of(source),
        target: ImageId::of(target),
        window_log: window_log_for(source.len() as u64, target.len() as u64)?,
    };
    out.write_all(&header.encode())?;
    let mut encoder = zstd::stream::write::Encoder::with_ref_prefix(out, level, source)?;
    // libzstd's multi-threaded mode runs long-distance matching serially over the source and
    // the target; in single-threaded mode it does not reach into a ref prefix, and the delta
    // of a real package upgrade came out 7x larger (docs/benchmarks.md).
    encoder.multithread(compression_workers())?;
    encoder.long_distance_matching(true)?;
    encoder.window_log(header.window_log)?;
    encoder.include_checksum(true)?;
    encoder.set_pledged_src_size(Some(target.len() as u64))?;
    encoder.write_all(target)?;
    encoder.finish()?;
    Ok(header)
}

/// Worker threads for compressing: the machine's cores, at most 4.
fn compression_workers() -> u32 {
    std::thread::available_parallelism()
        .map_or(1, |n| u32::try_from(n.get()).unwrap_or(1))
        .clamp(1, 4)
}

/// Source bytes whose size and SHA-256 are the ones a delta's header names.
#[derive(Debug, Clone, Copy)]
pub struct VerifiedSource<'a> {
    bytes: &'a [u8],
}

impl Header {
    /// Checks that `source` is the image this delta was made against.
    pub fn verify_source<'a>(&self, source: &'a [u8]) -> Result<VerifiedSource<'a>, DeltaError> {
        let found = ImageId::of(source);
        if !found.same_as(&self.source) {
            return Err(DeltaError::WrongSource {
                expected: self.source.sha256_hex(),
                expected_size: self.source.size,
                found: found.sha256_hex(),
                found_size: found.size,
            });
        }
        Ok(VerifiedSource { bytes: source })
    }

    /// A reader of the target image, decoded from the delta `body` (what follows the header)
    /// against the verified source. The frame's own checksum is checked at its end; the
    /// caller still checks the output's length and hash.
    pub fn decoder<'a, R: Read + 'a>(
        &self,
        source: VerifiedSource<'a>,
        body: R,
    ) -> Result<impl Read + 'a, DeltaError> {
        let mut decoder =
            zstd::stream::read::Decoder::with_ref_prefix(BufReader::new(body), source.bytes)?;
        decoder.window_log_max(self.window_log)?;
        Ok(decoder.single_frame())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn sample(len: usize, seed: u32) -> Vec<u8> {
        let mut x = seed;
        (0..len)
            .map(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                (x >> 16) as u8
            })
            .collect()
    }

    fn apply(delta: &[u8], source: &[u8]) -> Result<Vec<u8>, DeltaError> {
        let mut reader = delta;
        let header = Header::read_from(&mut reader)?;
        let verified = header.verify_source(source)?;
        let mut out = Vec::new();
        header.decoder(verified, reader)?.read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn window_covers_source_and_target() {
        for (source, target, log) in [
            (0, 0, MIN_WINDOW_LOG),
            (1, 1, MIN_WINDOW_LOG),
            (1 << 20, 1 << 20, 21),
            ((1 << 20) + 1, 1 << 20, 22),
            (1 << 30, 1 << 30, 31),
        ] {
            assert_eq!(
                window_log_for(source, target).unwrap(),
                log,
                "{source}+{target}"
            );
        }
        assert!(matches!(
            window_log_for(1 << 30, (1 << 30) + 1),
            Err(DeltaError::TooLarge(_))
        ));
    }

    #[test]
    fn a_small_change_gives_a_small_delta_that_reproduces_the_target() {
        let source = sample(1 << 20, 7);
        let mut target = source.clone();
        target[1000..1100].copy_from_slice(&sample(100, 9));
        target.extend_from_slice(&sample(4096, 11));
        let mut delta = Vec::new();
        let header = create(&source, &target, 3, &mut delta).unwrap();
        assert_eq!(header.target, ImageId::of(&target));
        assert!(delta.len() < 8 * 1024, "delta is {} bytes", delta.len());
        assert_eq!(apply(&delta, &source).unwrap(), target);
    }

    #[test]
    fn the_wrong_source_is_refused_before_decoding() {
        let source = sample(64 * 1024, 1);
        let target = sample(64 * 1024, 2);
        let mut delta = Vec::new();
        create(&source, &target, 3, &mut delta).unwrap();
        let mut other = source.clone();
        other[5] ^= 1;
        assert!(matches!(
            apply(&delta, &other),
            Err(DeltaError::WrongSource { .. })
        ));
        assert!(matches!(
            apply(&delta, &source[1..]),
            Err(DeltaError::WrongSource { .. })
        ));
    }

    #[test]
    fn a_corrupted_frame_is_an_error_not_wrong_output() {
        let source = sample(64 * 1024, 3);
        let mut target = source.clone();
        target.reverse();
        let mut delta = Vec::new();
        create(&source, &target, 3, &mut delta).unwrap();
        for at in [HEADER_LEN + 8, delta.len() / 2, delta.len() - 2] {
            let mut bad = delta.clone();
            bad[at] ^= 0x40;
            assert!(
                matches!(apply(&bad, &source), Err(DeltaError::Io(_))),
                "flip at {at} went unnoticed"
            );
        }
    }
}
