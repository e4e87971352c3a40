//! TPM wire-format reading: big-endian integers, `TPM2B_*` size-prefixed buffers, and the parts
//! of `TPMS_ATTEST` the daemon checks before it hands a quote out.

use crate::pcrs::PcrAlgorithm;

/// `TPM_GENERATED_VALUE`: every TPMS_ATTEST the TPM signs starts with it.
pub const TPM_GENERATED_VALUE: u32 = 0xff54_4347;
/// `TPM_ST_ATTEST_QUOTE`.
pub const TPM_ST_ATTEST_QUOTE: u16 = 0x8018;

/// Bytes that do not parse as the expected TPM structure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The input ended early.
    #[error("{0}: truncated")]
    Truncated(&'static str),
    /// Bytes were left over after the structure.
    #[error("{what}: {extra} bytes after the end of the structure")]
    Trailing {
        /// The structure.
        what: &'static str,
        /// How many bytes were left.
        extra: usize,
    },
    /// A field has a value the structure does not allow.
    #[error("{0}")]
    Invalid(String),
}

/// A cursor over TPM-marshalled bytes.
#[derive(Debug)]
pub struct Reader<'a> {
    bytes: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    /// Reads `bytes`, naming the structure `what` in errors.
    pub fn new(bytes: &'a [u8], what: &'static str) -> Self {
        Self { bytes, what }
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.bytes.len() < n {
            return Err(WireError::Truncated(self.what));
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    /// A big-endian `u8`.
    pub fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?.first().copied().unwrap_or_default())
    }

    /// A big-endian `u16`.
    pub fn u16(&mut self) -> Result<u16, WireError> {
        let mut raw = [0u8; 2];
        raw.copy_from_slice(self.take(2)?);
        Ok(u16::from_be_bytes(raw))
    }

    /// A big-endian `u32`.
    pub fn u32(&mut self) -> Result<u32, WireError> {
        let mut raw = [0u8; 4];
        raw.copy_from_slice(self.take(4)?);
        Ok(u32::from_be_bytes(raw))
    }

    /// A big-endian `u64`.
    pub fn u64(&mut self) -> Result<u64, WireError> {
        let mut raw = [0u8; 8];
        raw.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(raw))
    }

    /// The contents of a `TPM2B_*` (a `u16` size, then that many bytes).
    pub fn tpm2b(&mut self) -> Result<&'a [u8], WireError> {
        let size = self.u16()?;
        self.take(usize::from(size))
    }

    /// Fails unless every byte was read.
    pub fn finish(self) -> Result<(), WireError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(WireError::Trailing {
                what: self.what,
                extra: self.bytes.len(),
            })
        }
    }
}

/// The contents of a whole `TPM2B_*` buffer, which must be exactly its size prefix plus data.
pub fn tpm2b_contents<'a>(bytes: &'a [u8], what: &'static str) -> Result<&'a [u8], WireError> {
    let mut reader = Reader::new(bytes, what);
    let contents = reader.tpm2b()?;
    reader.finish()?;
    Ok(contents)
}

/// Marshals `contents` as a `TPM2B_*` (size prefix, then the bytes).
pub fn tpm2b(contents: &[u8]) -> Result<Vec<u8>, WireError> {
    let size = u16::try_from(contents.len())
        .map_err(|_| WireError::Invalid(format!("{} bytes do not fit a TPM2B", contents.len())))?;
    let mut out = Vec::with_capacity(contents.len() + 2);
    out.extend_from_slice(&size.to_be_bytes());
    out.extend_from_slice(contents);
    Ok(out)
}

/// One `TPMS_PCR_SELECTION` of a quote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotedBank {
    /// The bank, or `None` for an algorithm this daemon does not know.
    pub algorithm: Option<PcrAlgorithm>,
    /// The raw `TPM_ALG_ID`.
    pub algorithm_id: u16,
    /// Selected indices, ascending.
    pub indices: Vec<u8>,
}

/// The fields of a quote's `TPMS_ATTEST` the daemon checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuoteAttest {
    /// `extraData`: the qualifying data.
    pub extra_data: Vec<u8>,
    /// `attested.quote.pcrSelect`, in order.
    pub pcr_select: Vec<QuotedBank>,
    /// `attested.quote.pcrDigest`.
    pub pcr_digest: Vec<u8>,
}

/// Parses a quote's `TPMS_ATTEST` (the signed message).
pub fn parse_quote_attest(bytes: &[u8]) -> Result<QuoteAttest, WireError> {
    let mut r = Reader::new(bytes, "TPMS_ATTEST");
    let magic = r.u32()?;
    if magic != TPM_GENERATED_VALUE {
        return Err(WireError::Invalid(format!(
            "TPMS_ATTEST magic is {magic:#x}, not TPM_GENERATED_VALUE"
        )));
    }
    let kind = r.u16()?;
    if kind != TPM_ST_ATTEST_QUOTE {
        return Err(WireError::Invalid(format!(
            "TPMS_ATTEST type is {kind:#x}, not TPM_ST_ATTEST_QUOTE"
        )));
    }
    let _qualified_signer = r.tpm2b()?;
    let extra_data = r.tpm2b()?.to_vec();
    // clockInfo: clock, resetCount, restartCount, safe; then firmwareVersion.
    r.take(8 + 4 + 4 + 1 + 8)?;
    let count = r.u32()?;
    if count > 16 {
        return Err(WireError::Invalid(format!(
            "TPML_PCR_SELECTION count {count} exceeds 16"
        )));
    }
    let mut pcr_select = Vec::new();
    for _ in 0..count {
        let algorithm_id = r.u16()?;
        let size = r.u8()?;
        let bitmap = r.take(usize::from(size))?;
        let indices = bitmap
            .iter()
            .enumerate()
            .flat_map(|(octet, bits)| {
                (0..8u8)
                    .filter(move |bit| bits & (1 << bit) != 0)
                    .filter_map(move |bit| u8::try_from(octet * 8).ok().map(|base| base + bit))
            })
            .collect();
        pcr_select.push(QuotedBank {
            algorithm: PcrAlgorithm::from_tpm_alg_id(algorithm_id),
            algorithm_id,
            indices,
        });
    }
    let pcr_digest = r.tpm2b()?.to_vec();
    r.finish()?;
    Ok(QuoteAttest {
        extra_data,
        pcr_select,
        pcr_digest,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Marshals a quote TPMS_ATTEST the way a TPM does (for fakes).
    pub(crate) fn quote_attest(
        extra_data: &[u8],
        banks: &[(u16, [u8; 3])],
        pcr_digest: &[u8],
    ) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&TPM_GENERATED_VALUE.to_be_bytes());
        out.extend_from_slice(&TPM_ST_ATTEST_QUOTE.to_be_bytes());
        out.extend_from_slice(&tpm2b(&[0x00, 0x0b, 0xaa, 0xbb]).unwrap());
        out.extend_from_slice(&tpm2b(extra_data).unwrap());
        out.extend_from_slice(&[0u8; 25]);
        out.extend_from_slice(&(banks.len() as u32).to_be_bytes());
        for (alg, bitmap) in banks {
            out.extend_from_slice(&alg.to_be_bytes());
            out.push(3);
            out.extend_from_slice(bitmap);
        }
        out.extend_from_slice(&tpm2b(pcr_digest).unwrap());
        out
    }

    #[test]
    fn parses_a_quote() {
        let bytes = quote_attest(b"qualifying", &[(0x000b, [0x81, 0x00, 0x80])], &[7; 32]);
        let quote = parse_quote_attest(&bytes).unwrap();
        assert_eq!(quote.extra_data, b"qualifying");
        assert_eq!(
            quote.pcr_select,
            [QuotedBank {
                algorithm: Some(PcrAlgorithm::Sha256),
                algorithm_id: 0x000b,
                indices: vec![0, 7, 23]
            }]
        );
        assert_eq!(quote.pcr_digest, [7; 32]);
    }

    #[test]
    fn rejects_what_is_not_a_whole_quote() {
        let good = quote_attest(b"q", &[(0x000b, [1, 0, 0])], &[0; 32]);
        let mut trailing = good.clone();
        trailing.push(0);
        let mut magic = good.clone();
        magic[0] = 0;
        let mut kind = good.clone();
        kind[5] = 0x17; // TPM_ST_ATTEST_CERTIFY
        for (bytes, needle) in [
            (&good[..good.len() - 1], "truncated"),
            (&trailing[..], "after the end"),
            (&magic[..], "magic"),
            (&kind[..], "not TPM_ST_ATTEST_QUOTE"),
        ] {
            let err = parse_quote_attest(bytes).unwrap_err().to_string();
            assert!(err.contains(needle), "{err}");
        }
    }

    #[test]
    fn tpm2b_framing() {
        assert_eq!(tpm2b(b"ab").unwrap(), [0, 2, b'a', b'b']);
        assert_eq!(tpm2b_contents(&[0, 2, 1, 2], "x").unwrap(), [1, 2]);
        assert!(tpm2b_contents(&[0, 3, 1, 2], "x").is_err());
        assert!(tpm2b_contents(&[0, 1, 1, 2], "x").is_err());
        assert!(tpm2b(&vec![0; 70_000]).is_err());
    }
}
