//! Arbitrary bytes into the IOC engine's readers: as a STIX pattern, as a bundle, and — when a
//! bundle parses — compiled and matched against observations made of the same bytes. None may
//! panic.

#![no_main]

use enigm_ioc::pattern::Pattern;
use enigm_ioc::stix::parse_bundle;
use enigm_ioc::{Attribute, IocDbBuilder, Observation};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(pattern) = Pattern::parse(&text) {
        for comparison in pattern.comparisons() {
            let _ = comparison.matches(&text);
        }
    }
    if let Ok(bundle) = parse_bundle("fuzz", data) {
        let mut builder = IocDbBuilder::new();
        builder.add_bundle("fuzz", bundle);
        let db = builder.build();
        let mut hits = Vec::new();
        for attribute in Attribute::ALL {
            db.match_observation(&Observation::single(attribute, &text), &mut hits);
            db.match_value(attribute, &text, &mut hits);
        }
        let _ = db.resolve(&hits);
        let _ = db.domains_in_text(&text);
    }
});
