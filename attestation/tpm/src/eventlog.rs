//! The TCG PC Client crypto-agile binary event log (`binary_bios_measurements`): parsing,
//! replay into PCR values, and a writer for tests and simulators.
//!
//! Layout (little-endian): a first event in the SHA-1 format whose data is the
//! `Spec ID Event03` header listing the digest algorithms and sizes, then `TCG_PCR_EVENT2`
//! records, each with one digest per algorithm. `EV_NO_ACTION` events are not extended, except
//! that a `StartupLocality` event sets PCR 0's initial value.

use std::collections::BTreeMap;

use crate::hash::HashAlg;
use crate::pcr::PcrValues;
use crate::wire::{WireError, invalid};

/// EV_NO_ACTION.
pub const EV_NO_ACTION: u32 = 0x0000_0003;
/// Signature of the header event.
const SPEC_ID: &[u8; 16] = b"Spec ID Event03\0";
/// Signature of the startup-locality event.
const STARTUP_LOCALITY: &[u8; 16] = b"StartupLocality\0";
/// Upper bound on one event's data, to refuse absurd sizes early.
const MAX_EVENT_DATA: usize = 16 * 1024 * 1024;

/// One measurement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The PCR extended.
    pub pcr: u32,
    /// The event type (EV_*).
    pub event_type: u32,
    /// Digests by TPM_ALG_ID, in log order.
    pub digests: Vec<(u16, Vec<u8>)>,
    /// The event data.
    pub data: Vec<u8>,
}

/// A parsed log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventLog {
    /// Digest sizes the header declares, by TPM_ALG_ID.
    pub algorithms: BTreeMap<u16, u16>,
    /// The events after the header.
    pub events: Vec<Event>,
}

struct Le<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Le<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], WireError> {
        let end = self
            .offset
            .checked_add(n)
            .filter(|end| *end <= self.bytes.len())
            .ok_or(WireError::Truncated {
                what,
                needed: n.saturating_sub(self.bytes.len() - self.offset),
                offset: self.offset,
            })?;
        let slice = &self.bytes[self.offset..end];
        self.offset = end;
        Ok(slice)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, WireError> {
        Ok(self.take(1, what)?[0])
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, WireError> {
        let b = self.take(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, WireError> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn done(&self) -> bool {
        self.offset == self.bytes.len()
    }
}

impl EventLog {
    /// Parses a whole crypto-agile log.
    pub fn parse(bytes: &[u8]) -> Result<Self, WireError> {
        let mut r = Le { bytes, offset: 0 };
        // Header: TCG_PCClientPCREvent with a SHA-1-sized digest.
        let _pcr = r.u32("header pcrIndex")?;
        if r.u32("header eventType")? != EV_NO_ACTION {
            return Err(invalid(
                "event log",
                "first event is not EV_NO_ACTION (not a crypto-agile log)",
            ));
        }
        r.take(20, "header digest")?;
        let size = r.u32("header eventSize")? as usize;
        let header = r.take(size, "Spec ID event")?;
        let algorithms = parse_spec_id(header)?;
        let mut events = Vec::new();
        while !r.done() {
            let pcr = r.u32("pcrIndex")?;
            if pcr > 31 {
                return Err(invalid("pcrIndex", format!("{pcr}")));
            }
            let event_type = r.u32("eventType")?;
            let count = r.u32("digest count")?;
            if count as usize > algorithms.len() {
                return Err(invalid(
                    "digest count",
                    format!("{count} digests for {} algorithms", algorithms.len()),
                ));
            }
            let mut digests = Vec::with_capacity(count as usize);
            for _ in 0..count {
                let alg = r.u16("digest algorithm")?;
                let size = *algorithms.get(&alg).ok_or_else(|| {
                    invalid(
                        "digest algorithm",
                        format!("{alg:#06x} not declared in the header"),
                    )
                })?;
                digests.push((alg, r.take(size as usize, "digest")?.to_vec()));
            }
            let size = r.u32("eventSize")? as usize;
            if size > MAX_EVENT_DATA {
                return Err(invalid("eventSize", format!("{size} bytes")));
            }
            let data = r.take(size, "event data")?.to_vec();
            events.push(Event {
                pcr,
                event_type,
                digests,
                data,
            });
        }
        Ok(Self { algorithms, events })
    }

    /// Replays the log: the PCR values it implies for every PCR it touches, in `bank`.
    pub fn replay(&self, bank: HashAlg) -> PcrValues {
        let mut pcrs: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
        for event in &self.events {
            if event.event_type == EV_NO_ACTION {
                if event.pcr == 0
                    && event.data.len() >= 17
                    && event.data.starts_with(STARTUP_LOCALITY)
                {
                    let mut initial = vec![0u8; bank.size()];
                    if let Some(last) = initial.last_mut() {
                        *last = event.data[16];
                    }
                    pcrs.insert(0, initial);
                }
                continue;
            }
            let Some((_, digest)) = event.digests.iter().find(|(alg, _)| *alg == bank.id()) else {
                continue;
            };
            let current = pcrs
                .entry(event.pcr)
                .or_insert_with(|| vec![0u8; bank.size()]);
            if let Ok(next) = bank.digest(&[current, digest]) {
                *current = next;
            }
        }
        let mut values = PcrValues::default();
        for (pcr, value) in pcrs {
            values.insert(bank, pcr, value);
        }
        values
    }
}

fn parse_spec_id(header: &[u8]) -> Result<BTreeMap<u16, u16>, WireError> {
    let mut r = Le {
        bytes: header,
        offset: 0,
    };
    if r.take(16, "Spec ID signature")? != SPEC_ID {
        return Err(invalid(
            "event log",
            "header is not a Spec ID Event03 (not a crypto-agile log)",
        ));
    }
    let _platform_class = r.u32("platformClass")?;
    let _minor = r.u8("specVersionMinor")?;
    let _major = r.u8("specVersionMajor")?;
    let _errata = r.u8("specErrata")?;
    let _uintn = r.u8("uintnSize")?;
    let count = r.u32("numberOfAlgorithms")?;
    if count == 0 || count > 16 {
        return Err(invalid("numberOfAlgorithms", format!("{count}")));
    }
    let mut algorithms = BTreeMap::new();
    for _ in 0..count {
        let alg = r.u16("algorithmId")?;
        let size = r.u16("digestSize")?;
        if size == 0 || size > 64 {
            return Err(invalid("digestSize", format!("{size} for {alg:#06x}")));
        }
        if let Ok(known) = HashAlg::from_id(alg)
            && known.size() != size as usize
        {
            return Err(invalid("digestSize", format!("{size} for {known:?}")));
        }
        algorithms.insert(alg, size);
    }
    let vendor = r.u8("vendorInfoSize")? as usize;
    r.take(vendor, "vendorInfo")?;
    Ok(algorithms)
}

/// Writes crypto-agile logs (tests, simulators, the benchmark attester).
#[derive(Debug, Clone)]
pub struct EventLogWriter {
    banks: Vec<HashAlg>,
    bytes: Vec<u8>,
}

impl EventLogWriter {
    /// A log with a header declaring `banks`.
    pub fn new(banks: &[HashAlg]) -> Self {
        let mut header = Vec::new();
        header.extend_from_slice(SPEC_ID);
        header.extend_from_slice(&0u32.to_le_bytes()); // platform class: client
        header.extend_from_slice(&[0, 2, 0, 2]); // version 2.0, errata 0, uintn 8 bytes
        header.extend_from_slice(&(banks.len() as u32).to_le_bytes());
        for bank in banks {
            header.extend_from_slice(&bank.id().to_le_bytes());
            header.extend_from_slice(&(bank.size() as u16).to_le_bytes());
        }
        header.push(0);
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&0u32.to_le_bytes());
        bytes.extend_from_slice(&EV_NO_ACTION.to_le_bytes());
        bytes.extend_from_slice(&[0u8; 20]);
        bytes.extend_from_slice(&(header.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&header);
        Self {
            banks: banks.to_vec(),
            bytes,
        }
    }

    /// Appends an event measuring `data` (its digest in every bank) into `pcr`; returns the
    /// per-bank digests, which is what the TPM must be extended with.
    pub fn measure(
        &mut self,
        pcr: u32,
        event_type: u32,
        data: &[u8],
    ) -> Result<Vec<(HashAlg, Vec<u8>)>, openssl::error::ErrorStack> {
        let mut digests = Vec::new();
        for bank in &self.banks {
            digests.push((*bank, bank.digest(&[data])?));
        }
        self.bytes.extend_from_slice(&pcr.to_le_bytes());
        self.bytes.extend_from_slice(&event_type.to_le_bytes());
        self.bytes
            .extend_from_slice(&(digests.len() as u32).to_le_bytes());
        for (bank, digest) in &digests {
            self.bytes.extend_from_slice(&bank.id().to_le_bytes());
            self.bytes.extend_from_slice(digest);
        }
        self.bytes
            .extend_from_slice(&(data.len() as u32).to_le_bytes());
        self.bytes.extend_from_slice(data);
        Ok(digests)
    }

    /// The log so far.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_logs_parse_and_replay_like_extends() {
        let mut writer = EventLogWriter::new(&[HashAlg::Sha1, HashAlg::Sha256]);
        writer.measure(0, 0x8, b"firmware").unwrap();
        writer.measure(4, 0x80000003, b"bootloader").unwrap();
        writer.measure(0, 0x8, b"config").unwrap();
        let log = EventLog::parse(writer.bytes()).unwrap();
        assert_eq!(log.events.len(), 3);
        let replayed = log.replay(HashAlg::Sha256);
        let extend = |pcr: &[u8], data: &[u8]| {
            let digest = HashAlg::Sha256.digest(&[data]).unwrap();
            HashAlg::Sha256.digest(&[pcr, &digest]).unwrap()
        };
        let pcr0 = extend(&extend(&[0; 32], b"firmware"), b"config");
        assert_eq!(replayed.get(HashAlg::Sha256, 0), Some(pcr0.as_slice()));
        assert_eq!(
            replayed.get(HashAlg::Sha256, 4),
            Some(extend(&[0; 32], b"bootloader").as_slice())
        );
        assert_eq!(replayed.get(HashAlg::Sha256, 7), None);
    }

    #[test]
    fn malformed_logs_are_errors() {
        let mut writer = EventLogWriter::new(&[HashAlg::Sha256]);
        writer.measure(0, 0x8, b"x").unwrap();
        let good = writer.bytes().to_vec();
        let header_only = EventLogWriter::new(&[HashAlg::Sha256]).bytes().len();
        for cut in 0..good.len() {
            let result = EventLog::parse(&good[..cut]);
            assert_eq!(result.is_ok(), cut == header_only, "prefix of {cut} bytes");
        }
        let mut wrong_alg = good.clone();
        let n = wrong_alg.len();
        // the event's digest algorithm id sits 4+4+4 bytes into the last event
        let event_start = n - (4 + 4 + 4 + 2 + 32 + 4 + 1);
        wrong_alg[event_start + 12] = 0x0c;
        assert!(EventLog::parse(&wrong_alg).is_err());
        assert!(EventLog::parse(b"garbage that is not an event log at all").is_err());
    }
}
