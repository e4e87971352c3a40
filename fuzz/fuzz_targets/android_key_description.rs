//! Arbitrary bytes into the Android KeyDescription parser, both as the raw extension contents and
//! as a whole certificate (the extension-extraction path). Neither may panic, whatever the input;
//! whatever parses must also encode to the reference JSON.

#![no_main]

use enigm_android_attestation::{KeyDescription, key_description_from_certificate, x509};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(kd) = KeyDescription::parse(data) {
        let _ = kd.to_reference_json();
        let _ = kd.creation_time();
    }
    if let Ok(Some(kd)) = key_description_from_certificate(data) {
        let _ = kd.to_reference_json();
    }
    let _ = x509::basic_constraints(data);
});
