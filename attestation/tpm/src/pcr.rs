//! PCR selections (TPML_PCR_SELECTION), PCR values, the quote's PCR digest, and the PCR file
//! that `tpm2_quote -o` writes (tpm2-tools' "serialized" format).

use std::collections::BTreeMap;

use crate::hash::HashAlg;
use crate::wire::{Reader, WireError, invalid};

/// The highest PCR index a selection may name (TPM_PCR_SELECT_MAX bytes × 8).
const MAX_PCRS: u32 = 32;

/// Banks and the PCR indices selected in each, in the order the TPM lists them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PcrSelection {
    /// (bank, ascending indices).
    pub banks: Vec<(HashAlg, Vec<u32>)>,
}

impl PcrSelection {
    /// Reads a marshalled TPML_PCR_SELECTION.
    pub fn read(reader: &mut Reader<'_>) -> Result<Self, WireError> {
        let count = reader.u32("TPML_PCR_SELECTION.count")?;
        if count > 16 {
            return Err(invalid(
                "TPML_PCR_SELECTION.count",
                format!("{count} banks"),
            ));
        }
        let mut banks = Vec::new();
        for _ in 0..count {
            let alg = HashAlg::from_id(reader.u16("pcrSelection.hash")?)?;
            let size = reader.u8("sizeofSelect")?;
            if size > 4 {
                return Err(invalid("sizeofSelect", format!("{size} bytes")));
            }
            let bitmap = reader.take(size as usize, "pcrSelect")?;
            banks.push((alg, indices(bitmap)));
        }
        Ok(Self { banks })
    }

    /// Parses `sha256:0,1,2+sha1:7` (tpm2-tools' syntax; `all` is not accepted).
    pub fn parse(text: &str) -> Result<Self, WireError> {
        let mut banks = Vec::new();
        for bank in text.split('+') {
            let (alg, list) = bank
                .split_once(':')
                .ok_or_else(|| invalid("PCR list", format!("{bank:?} has no ':'")))?;
            let alg = HashAlg::from_name(alg.trim())
                .ok_or_else(|| invalid("PCR list", format!("unknown bank {alg:?}")))?;
            let mut pcrs = Vec::new();
            for item in list.split(',').filter(|item| !item.trim().is_empty()) {
                let index: u32 = item
                    .trim()
                    .parse()
                    .map_err(|_| invalid("PCR list", format!("{item:?} is not a PCR index")))?;
                if index >= MAX_PCRS {
                    return Err(invalid("PCR list", format!("PCR {index} out of range")));
                }
                pcrs.push(index);
            }
            pcrs.sort_unstable();
            pcrs.dedup();
            banks.push((alg, pcrs));
        }
        Ok(Self { banks })
    }

    /// Every selected (bank, index), in digest order.
    pub fn slots(&self) -> impl Iterator<Item = (HashAlg, u32)> + '_ {
        self.banks
            .iter()
            .flat_map(|(alg, pcrs)| pcrs.iter().map(move |pcr| (*alg, *pcr)))
    }
}

fn indices(bitmap: &[u8]) -> Vec<u32> {
    (0..bitmap.len() as u32 * 8)
        .filter(|i| bitmap[(i / 8) as usize] & (1 << (i % 8)) != 0)
        .collect()
}

/// PCR values by bank and index.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PcrValues {
    /// (bank, index) → digest.
    pub values: BTreeMap<(HashAlg, u32), Vec<u8>>,
}

impl PcrValues {
    /// A value.
    pub fn get(&self, alg: HashAlg, index: u32) -> Option<&[u8]> {
        self.values.get(&(alg, index)).map(Vec::as_slice)
    }

    /// Sets a value.
    pub fn insert(&mut self, alg: HashAlg, index: u32, digest: Vec<u8>) {
        self.values.insert((alg, index), digest);
    }

    /// The quote's pcrDigest over `selection`: `hash(values in selection order)`. Fails when a
    /// selected value is missing or has the wrong size.
    pub fn digest(&self, selection: &PcrSelection, hash: HashAlg) -> Result<Vec<u8>, PcrError> {
        let mut parts = Vec::new();
        for (alg, index) in selection.slots() {
            let value = self
                .get(alg, index)
                .ok_or(PcrError::Missing { alg, index })?;
            if value.len() != alg.size() {
                return Err(PcrError::WrongSize {
                    alg,
                    index,
                    size: value.len(),
                });
            }
            parts.push(value);
        }
        hash.digest(&parts)
            .map_err(|err| PcrError::Crypto(err.to_string()))
    }
}

/// PCR values that do not fit a selection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PcrError {
    /// A selected PCR has no value.
    #[error("no value for PCR {alg:?}:{index}")]
    Missing {
        /// Bank.
        alg: HashAlg,
        /// Index.
        index: u32,
    },
    /// A value's size does not match its bank.
    #[error("PCR {alg:?}:{index} has {size} bytes")]
    WrongSize {
        /// Bank.
        alg: HashAlg,
        /// Index.
        index: u32,
        /// Its size.
        size: usize,
    },
    /// The hash failed.
    #[error("hashing failed: {0}")]
    Crypto(String),
}

/// Size of the C struct TPMS_PCR_SELECTION as tpm2-tools writes it (hash u16, sizeofSelect u8,
/// pcrSelect[4], one pad byte).
const RAW_SELECTION: usize = 8;
/// TPM2_NUM_PCR_BANKS entries in a raw TPML_PCR_SELECTION.
const RAW_BANKS: usize = 16;
/// A raw TPM2B_DIGEST: size u16 + 64-byte buffer.
const RAW_DIGEST: usize = 66;
/// A raw TPML_DIGEST: count u32 + 8 digests.
const RAW_DIGEST_LIST: usize = 4 + 8 * RAW_DIGEST;

/// Parses the PCR file `tpm2_quote -o FILE` writes by default (`-F serialized`): the C structs
/// TPML_PCR_SELECTION, a u32 count, then that many TPML_DIGEST, little-endian. Returns the
/// selection and the values.
pub fn parse_tpm2_tools_pcrs(bytes: &[u8]) -> Result<(PcrSelection, PcrValues), WireError> {
    let le16 = |b: &[u8]| u16::from_le_bytes([b[0], b[1]]);
    let le32 = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let mut reader = Reader::new(bytes);
    let raw = reader.take(4 + RAW_BANKS * RAW_SELECTION, "TPML_PCR_SELECTION")?;
    let count = le32(raw) as usize;
    if count > RAW_BANKS {
        return Err(invalid(
            "TPML_PCR_SELECTION.count",
            format!("{count} banks"),
        ));
    }
    let mut selection = PcrSelection::default();
    for bank in 0..count {
        let entry = &raw[4 + bank * RAW_SELECTION..4 + (bank + 1) * RAW_SELECTION];
        let alg = HashAlg::from_id(le16(entry))?;
        let size = (entry[2] as usize).min(4);
        selection.banks.push((alg, indices(&entry[3..3 + size])));
    }
    let lists = le32(reader.take(4, "digest list count")?) as usize;
    let mut digests = Vec::new();
    for _ in 0..lists {
        let list = reader.take(RAW_DIGEST_LIST, "TPML_DIGEST")?;
        let n = le32(list) as usize;
        if n > 8 {
            return Err(invalid("TPML_DIGEST.count", format!("{n} digests")));
        }
        for d in 0..n {
            let raw = &list[4 + d * RAW_DIGEST..4 + (d + 1) * RAW_DIGEST];
            let size = le16(raw) as usize;
            if size > 64 {
                return Err(invalid("TPM2B_DIGEST.size", format!("{size}")));
            }
            digests.push(raw[2..2 + size].to_vec());
        }
    }
    reader.finish("PCR file")?;
    let slots: Vec<(HashAlg, u32)> = selection.slots().collect();
    if slots.len() != digests.len() {
        return Err(invalid(
            "PCR file",
            format!("{} PCRs selected but {} values", slots.len(), digests.len()),
        ));
    }
    let mut values = PcrValues::default();
    for ((alg, index), digest) in slots.into_iter().zip(digests) {
        values.insert(alg, index, digest);
    }
    Ok((selection, values))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_text_and_wire_agree() {
        let parsed = PcrSelection::parse("sha256:7,0,1+sha1:16").unwrap();
        assert_eq!(
            parsed.banks,
            vec![(HashAlg::Sha256, vec![0, 1, 7]), (HashAlg::Sha1, vec![16])]
        );
        let wire = [
            0,
            0,
            0,
            2,
            0x00,
            0x0B,
            3,
            0b1000_0011,
            0,
            0,
            0x00,
            0x04,
            3,
            0,
            0,
            1,
        ];
        let mut reader = Reader::new(&wire);
        assert_eq!(PcrSelection::read(&mut reader).unwrap(), parsed);
        for bad in ["sha256", "md5:1", "sha256:x", "sha256:40"] {
            assert!(PcrSelection::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn digest_needs_every_selected_value() {
        let selection = PcrSelection::parse("sha256:0,1").unwrap();
        let mut values = PcrValues::default();
        values.insert(HashAlg::Sha256, 0, vec![0; 32]);
        assert!(matches!(
            values.digest(&selection, HashAlg::Sha256),
            Err(PcrError::Missing { index: 1, .. })
        ));
        values.insert(HashAlg::Sha256, 1, vec![0; 31]);
        assert!(matches!(
            values.digest(&selection, HashAlg::Sha256),
            Err(PcrError::WrongSize { .. })
        ));
        values.insert(HashAlg::Sha256, 1, vec![1; 32]);
        let expected = HashAlg::Sha256.digest(&[&[0; 32], &[1; 32]]).unwrap();
        assert_eq!(
            values.digest(&selection, HashAlg::Sha256).unwrap(),
            expected
        );
    }
}
