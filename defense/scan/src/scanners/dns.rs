//! DNS logs, when the device keeps any (dnsmasq, resolver query logs): every hostname in them
//! that an indicator domain could match is found with one automaton pass per line and
//! matched like any observed domain. Only hostnames are taken from the logs.

use std::collections::HashSet;

use enigm_ioc::Attribute;

use crate::context::Scan;
use crate::finding::{Category, Evidence};

/// Scans the configured DNS logs.
pub fn scan(scan: &mut Scan<'_>) {
    scan.set_scanner("dns");
    for path in scan.config.dns_logs.clone() {
        let text = match scan.fs.read_prefix(&path, scan.config.max_text_bytes) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(error) => {
                scan.issue(&error);
                continue;
            }
        };
        let mut seen = HashSet::new();
        let db = scan.db;
        for line in text.lines() {
            scan.count();
            for domain in db.domains_in_text(line) {
                let domain = domain.to_ascii_lowercase();
                if !seen.insert(domain.clone()) {
                    continue;
                }
                let log = path.display().to_string();
                scan.observe_value(Category::Dns, Attribute::DomainName, &domain, || {
                    Evidence::new("dns-query", domain.clone()).detail(format!("in {log}"))
                });
            }
        }
    }
}
