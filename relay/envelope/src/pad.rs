//! Fixed-size padding: a message is framed as its length (u32, big-endian) and its bytes, then
//! zero-padded to the smallest bucket that holds it, so sealed envelopes come in a few sizes
//! only.

use crate::EnvelopeError;
use crate::hpke::{ENC_LEN, TAG_LEN};

/// The padded sizes, smallest first.
pub const BUCKETS: [usize; 4] = [1024, 4096, 16 * 1024, 64 * 1024];
/// The sizes of sealed envelopes on the wire (a bucket plus the HPKE overhead).
pub const WIRE_SIZES: [usize; 4] = [
    BUCKETS[0] + ENC_LEN + TAG_LEN,
    BUCKETS[1] + ENC_LEN + TAG_LEN,
    BUCKETS[2] + ENC_LEN + TAG_LEN,
    BUCKETS[3] + ENC_LEN + TAG_LEN,
];
/// The longest message that fits the largest bucket.
pub const MAX_MESSAGE: usize = BUCKETS[3] - 4;

/// `message` framed and padded to its bucket.
pub fn pad(message: &[u8]) -> Result<Vec<u8>, EnvelopeError> {
    let needed = message.len() + 4;
    let bucket = BUCKETS
        .iter()
        .copied()
        .find(|b| *b >= needed)
        .ok_or(EnvelopeError::TooLarge {
            size: message.len(),
            max: MAX_MESSAGE,
        })?;
    let length = u32::try_from(message.len()).map_err(|_| EnvelopeError::TooLarge {
        size: message.len(),
        max: MAX_MESSAGE,
    })?;
    let mut out = Vec::with_capacity(bucket);
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(message);
    out.resize(bucket, 0);
    Ok(out)
}

/// The message inside a padded buffer; refuses sizes that are not a bucket, lengths past the
/// end and padding that is not zero.
pub fn unpad(padded: &[u8]) -> Result<&[u8], EnvelopeError> {
    if !BUCKETS.contains(&padded.len()) {
        return Err(EnvelopeError::Format(format!(
            "{} bytes is not a bucket size",
            padded.len()
        )));
    }
    let mut length = [0u8; 4];
    length.copy_from_slice(&padded[..4]);
    let length = u32::from_be_bytes(length) as usize;
    let end = length
        .checked_add(4)
        .filter(|end| *end <= padded.len())
        .ok_or_else(|| EnvelopeError::Format("length past the padding".into()))?;
    if padded[end..].iter().any(|b| *b != 0) {
        return Err(EnvelopeError::Format("padding is not zero".into()));
    }
    Ok(&padded[4..end])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn messages_pad_to_the_smallest_bucket_that_holds_them() {
        for (len, bucket) in [
            (0, 1024),
            (1020, 1024),
            (1021, 4096),
            (4092, 4096),
            (5000, 16384),
            (MAX_MESSAGE, 65536),
        ] {
            let message = vec![7u8; len];
            let padded = pad(&message).unwrap();
            assert_eq!(padded.len(), bucket, "{len}");
            assert_eq!(unpad(&padded).unwrap(), &message[..]);
        }
        assert!(matches!(
            pad(&vec![0u8; MAX_MESSAGE + 1]),
            Err(EnvelopeError::TooLarge { .. })
        ));
    }

    #[test]
    fn malformed_padding_is_refused() {
        let good = pad(b"hi").unwrap();
        let mut long = good.clone();
        long[..4].copy_from_slice(&5000u32.to_be_bytes());
        let mut dirty = good.clone();
        dirty[100] = 1;
        for bad in [&good[..1000], &long[..], &dirty[..]] {
            assert!(unpad(bad).is_err());
        }
    }
}
