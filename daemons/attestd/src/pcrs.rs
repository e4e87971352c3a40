//! PCR selections: the configured set of banks and registers a quote covers.
//!
//! The text form is tpm2-tools' (`sha256:0,1,2,3`, ranges `sha256:0-7`, banks joined by `+`).
//! Banks keep the order they were written in, which is the order the TPM hashes them into the
//! quote's `pcrDigest`; registers within a bank are in ascending order.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use enigm_evidence::v1::HashAlgorithm;

/// The highest PCR index of a PC-client TPM.
pub const MAX_PCR: u8 = 23;

/// A PCR bank's hash algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PcrAlgorithm {
    /// SHA-1.
    Sha1,
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
}

impl PcrAlgorithm {
    const ALL: [PcrAlgorithm; 4] = [
        PcrAlgorithm::Sha1,
        PcrAlgorithm::Sha256,
        PcrAlgorithm::Sha384,
        PcrAlgorithm::Sha512,
    ];

    /// The tpm2-tools name (`sha256`).
    pub fn name(self) -> &'static str {
        match self {
            PcrAlgorithm::Sha1 => "sha1",
            PcrAlgorithm::Sha256 => "sha256",
            PcrAlgorithm::Sha384 => "sha384",
            PcrAlgorithm::Sha512 => "sha512",
        }
    }

    /// The `TPM_ALG_ID`.
    pub fn tpm_alg_id(self) -> u16 {
        match self {
            PcrAlgorithm::Sha1 => 0x0004,
            PcrAlgorithm::Sha256 => 0x000b,
            PcrAlgorithm::Sha384 => 0x000c,
            PcrAlgorithm::Sha512 => 0x000d,
        }
    }

    /// The algorithm with this `TPM_ALG_ID`.
    pub fn from_tpm_alg_id(id: u16) -> Option<Self> {
        Self::ALL.into_iter().find(|alg| alg.tpm_alg_id() == id)
    }

    /// The digest size in bytes.
    pub fn digest_len(self) -> usize {
        match self {
            PcrAlgorithm::Sha1 => 20,
            PcrAlgorithm::Sha256 => 32,
            PcrAlgorithm::Sha384 => 48,
            PcrAlgorithm::Sha512 => 64,
        }
    }

    /// The evidence wire format's name for it.
    pub fn to_proto(self) -> HashAlgorithm {
        match self {
            PcrAlgorithm::Sha1 => HashAlgorithm::Sha1,
            PcrAlgorithm::Sha256 => HashAlgorithm::Sha256,
            PcrAlgorithm::Sha384 => HashAlgorithm::Sha384,
            PcrAlgorithm::Sha512 => HashAlgorithm::Sha512,
        }
    }
}

/// One bank's selected registers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BankSelection {
    /// The bank.
    pub algorithm: PcrAlgorithm,
    /// The registers, ascending.
    pub indices: BTreeSet<u8>,
}

/// A PCR selection over one or more banks, in a fixed bank order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcrSpec {
    banks: Vec<BankSelection>,
}

/// A selection that cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PcrSpecError {
    /// Nothing selected.
    #[error("empty PCR selection")]
    Empty,
    /// `bank:indices` was expected.
    #[error("`{0}` is not of the form bank:indices (e.g. sha256:0-7)")]
    Syntax(String),
    /// The bank's algorithm is not supported.
    #[error("unknown PCR bank `{0}` (expected sha1, sha256, sha384 or sha512)")]
    Algorithm(String),
    /// A bank appears twice.
    #[error("PCR bank `{0}` is selected twice")]
    DuplicateBank(String),
    /// An index is not a number from 0 to 23, or a range is reversed.
    #[error("`{0}` is not a PCR index or range within 0-23")]
    Index(String),
}

impl PcrSpec {
    /// `sha256:0,1,2,3,4,5,6,7`.
    pub fn sha256_boot() -> Self {
        Self {
            banks: vec![BankSelection {
                algorithm: PcrAlgorithm::Sha256,
                indices: (0..=7).collect(),
            }],
        }
    }

    /// Builds a selection from banks (none empty, no bank twice).
    pub fn new(banks: Vec<BankSelection>) -> Result<Self, PcrSpecError> {
        if banks.is_empty() {
            return Err(PcrSpecError::Empty);
        }
        let mut seen = BTreeSet::new();
        for bank in &banks {
            if bank.indices.is_empty() {
                return Err(PcrSpecError::Empty);
            }
            if let Some(bad) = bank.indices.iter().find(|index| **index > MAX_PCR) {
                return Err(PcrSpecError::Index(bad.to_string()));
            }
            if !seen.insert(bank.algorithm) {
                return Err(PcrSpecError::DuplicateBank(
                    bank.algorithm.name().to_owned(),
                ));
            }
        }
        Ok(Self { banks })
    }

    /// The banks in quote order.
    pub fn banks(&self) -> &[BankSelection] {
        &self.banks
    }

    /// Every `(bank, index)` pair in quote order.
    pub fn pairs(&self) -> Vec<(PcrAlgorithm, u8)> {
        self.banks
            .iter()
            .flat_map(|bank| bank.indices.iter().map(|index| (bank.algorithm, *index)))
            .collect()
    }

    /// The `TPMS_PCR_SELECTION.pcrSelect` bitmap of a bank (3 octets, PCR 0 is bit 0 of
    /// octet 0).
    pub fn bitmap(indices: &BTreeSet<u8>) -> [u8; 3] {
        let mut octets = [0u8; 3];
        for index in indices {
            if let Some(octet) = octets.get_mut(usize::from(index / 8)) {
                *octet |= 1 << (index % 8);
            }
        }
        octets
    }
}

impl FromStr for PcrSpec {
    type Err = PcrSpecError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if text.is_empty() {
            return Err(PcrSpecError::Empty);
        }
        let mut banks = Vec::new();
        for part in text.split('+') {
            let (name, list) = part
                .split_once(':')
                .ok_or_else(|| PcrSpecError::Syntax(part.to_owned()))?;
            let algorithm = PcrAlgorithm::ALL
                .into_iter()
                .find(|alg| alg.name() == name.trim())
                .ok_or_else(|| PcrSpecError::Algorithm(name.trim().to_owned()))?;
            let mut indices = BTreeSet::new();
            for item in list.split(',').map(str::trim) {
                let (low, high) = item.split_once('-').unwrap_or((item, item));
                let parse = |s: &str| {
                    s.trim()
                        .parse::<u8>()
                        .ok()
                        .filter(|index| *index <= MAX_PCR)
                        .ok_or_else(|| PcrSpecError::Index(item.to_owned()))
                };
                let (low, high) = (parse(low)?, parse(high)?);
                if low > high {
                    return Err(PcrSpecError::Index(item.to_owned()));
                }
                indices.extend(low..=high);
            }
            banks.push(BankSelection { algorithm, indices });
        }
        Self::new(banks)
    }
}

impl fmt::Display for PcrSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, bank) in self.banks.iter().enumerate() {
            if n > 0 {
                f.write_str("+")?;
            }
            let list: Vec<String> = bank.indices.iter().map(u8::to_string).collect();
            write!(f, "{}:{}", bank.algorithm.name(), list.join(","))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lists_ranges_and_banks_in_order() {
        let cases = [
            ("sha256:0,1,2,3,4,5,6,7", "sha256:0,1,2,3,4,5,6,7"),
            ("sha256:0-7", "sha256:0,1,2,3,4,5,6,7"),
            ("sha256:7,0-2", "sha256:0,1,2,7"),
            ("sha1:23+sha256:0", "sha1:23+sha256:0"),
            (" sha384:10 - 11 ", "sha384:10,11"),
        ];
        for (input, canonical) in cases {
            let spec: PcrSpec = input.parse().unwrap();
            assert_eq!(spec.to_string(), canonical, "{input}");
        }
        let spec: PcrSpec = "sha1:1+sha256:0".parse().unwrap();
        assert_eq!(
            spec.pairs(),
            [(PcrAlgorithm::Sha1, 1), (PcrAlgorithm::Sha256, 0)]
        );
    }

    #[test]
    fn rejects_what_a_tpm_could_not_quote() {
        let cases = [
            ("", PcrSpecError::Empty),
            ("sha256", PcrSpecError::Syntax("sha256".into())),
            ("md5:0", PcrSpecError::Algorithm("md5".into())),
            ("sha256:24", PcrSpecError::Index("24".into())),
            ("sha256:5-2", PcrSpecError::Index("5-2".into())),
            ("sha256:x", PcrSpecError::Index("x".into())),
            ("sha256:", PcrSpecError::Index("".into())),
            (
                "sha256:0+sha256:1",
                PcrSpecError::DuplicateBank("sha256".into()),
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(input.parse::<PcrSpec>().unwrap_err(), expected, "{input}");
        }
    }

    #[test]
    fn bitmaps_follow_the_tpm_layout() {
        let set = |v: &[u8]| v.iter().copied().collect::<BTreeSet<u8>>();
        assert_eq!(PcrSpec::bitmap(&set(&[0, 1, 2])), [0x07, 0, 0]);
        assert_eq!(PcrSpec::bitmap(&set(&[8, 23])), [0, 0x01, 0x80]);
        assert_eq!(
            PcrAlgorithm::from_tpm_alg_id(0x000b),
            Some(PcrAlgorithm::Sha256)
        );
        assert_eq!(PcrAlgorithm::from_tpm_alg_id(0x0010), None);
    }
}
