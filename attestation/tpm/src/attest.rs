//! TPMS_ATTEST of a quote (TPM 2.0 Part 2, 10.12.12).

use crate::pcr::PcrSelection;
use crate::wire::{Reader, WireError, invalid};

/// TPM_GENERATED_VALUE: every structure the TPM signs starts with it.
pub const TPM_GENERATED: u32 = 0xff54_4347;
/// TPM_ST_ATTEST_QUOTE.
pub const ST_ATTEST_QUOTE: u16 = 0x8018;

/// TPMS_CLOCK_INFO.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ClockInfo {
    /// Milliseconds the TPM has been powered (monotonic unless reset by the owner).
    pub clock: u64,
    /// TPM resets since the last clear: every TPM2_Startup(CLEAR), so every ordinary reboot.
    pub reset_count: u32,
    /// TPM restarts/resumes since the last reset.
    pub restart_count: u32,
    /// Whether `clock` is known not to have gone backwards.
    pub safe: bool,
}

/// A parsed quote attestation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attest {
    /// Name of the signing key.
    pub qualified_signer: Vec<u8>,
    /// The caller's qualifying data (nonce).
    pub extra_data: Vec<u8>,
    /// Clock state when quoted.
    pub clock_info: ClockInfo,
    /// TPM firmware version.
    pub firmware_version: u64,
    /// The quoted PCR selection.
    pub pcr_selection: PcrSelection,
    /// Digest of the selected PCR values.
    pub pcr_digest: Vec<u8>,
}

impl Attest {
    /// Parses the whole of `bytes` as a quote's TPMS_ATTEST.
    pub fn parse(bytes: &[u8]) -> Result<Self, WireError> {
        let mut reader = Reader::new(bytes);
        let magic = reader.u32("magic")?;
        if magic != TPM_GENERATED {
            return Err(invalid(
                "magic",
                format!("{magic:#010x} is not TPM_GENERATED_VALUE: not made by a TPM"),
            ));
        }
        let kind = reader.u16("type")?;
        if kind != ST_ATTEST_QUOTE {
            return Err(invalid(
                "type",
                format!("{kind:#06x} is not TPM_ST_ATTEST_QUOTE"),
            ));
        }
        let qualified_signer = reader.sized("qualifiedSigner")?.to_vec();
        let extra_data = reader.sized("extraData")?.to_vec();
        let clock_info = ClockInfo {
            clock: reader.u64("clock")?,
            reset_count: reader.u32("resetCount")?,
            restart_count: reader.u32("restartCount")?,
            safe: match reader.u8("safe")? {
                0 => false,
                1 => true,
                other => return Err(invalid("safe", format!("{other} is not a TPMI_YES_NO"))),
            },
        };
        let firmware_version = reader.u64("firmwareVersion")?;
        let pcr_selection = PcrSelection::read(&mut reader)?;
        let pcr_digest = reader.sized("pcrDigest")?.to_vec();
        reader.finish("TPMS_ATTEST")?;
        Ok(Self {
            qualified_signer,
            extra_data,
            clock_info,
            firmware_version,
            pcr_selection,
            pcr_digest,
        })
    }
}
