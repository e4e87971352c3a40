//! Arbitrary bytes into the TCG crypto-agile event log parser, and whatever parses through
//! replay in every bank. Neither may panic.

#![no_main]

use enigm_tpm_evidence::eventlog::EventLog;
use enigm_tpm_evidence::hash::HashAlg;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(log) = EventLog::parse(data) {
        for bank in [HashAlg::Sha1, HashAlg::Sha256, HashAlg::Sha384, HashAlg::Sha512] {
            let _ = log.replay(bank);
        }
    }
});
