//! Arbitrary bytes into the TPM structure parsers a verifier reads from a device: TPMS_ATTEST,
//! TPMT_SIGNATURE, TPM2B_PUBLIC / TPMT_PUBLIC, and tpm2-tools' PCR file. None may panic;
//! whatever parses as a public area must also yield a Name.

#![no_main]

use enigm_tpm_evidence::attest::Attest;
use enigm_tpm_evidence::pcr::parse_tpm2_tools_pcrs;
use enigm_tpm_evidence::public::PublicArea;
use enigm_tpm_evidence::signature::Signature;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(attest) = Attest::parse(data) {
        let _ = attest.pcr_selection.slots().count();
    }
    let _ = Signature::parse(data);
    if let Ok(public) = PublicArea::parse_tpm2b(data) {
        let _ = public.name();
    }
    let _ = PublicArea::parse_tpmt(data);
    let _ = parse_tpm2_tools_pcrs(data);
});
