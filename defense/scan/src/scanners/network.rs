//! Network connections from `/proc/net/{tcp,tcp6,udp,udp6}`: every remote IPv4 address
//! (including IPv4-mapped IPv6 ones) is matched against `ipv4-addr` indicators.

use std::net::Ipv4Addr;
use std::path::Path;

use enigm_ioc::Attribute;

use crate::context::Scan;
use crate::finding::{Category, Evidence};

/// One socket's remote end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remote {
    /// Remote IPv4 address.
    pub address: Ipv4Addr,
    /// Remote port.
    pub port: u16,
    /// Local port.
    pub local_port: u16,
}

/// Decodes the kernel's hex address: 8 digits (IPv4, host byte order as printed by a
/// little-endian kernel) or 32 digits (IPv6, four such words); only IPv4 and IPv4-mapped
/// addresses are returned.
pub fn decode_address(hex: &str) -> Option<Ipv4Addr> {
    let word = |text: &str| -> Option<[u8; 4]> {
        u32::from_str_radix(text, 16).ok().map(u32::to_le_bytes)
    };
    match hex.len() {
        8 => word(hex).map(Ipv4Addr::from),
        32 => {
            let words = [
                word(&hex[0..8])?,
                word(&hex[8..16])?,
                word(&hex[16..24])?,
                word(&hex[24..32])?,
            ];
            let mapped = words[0] == [0; 4] && words[1] == [0; 4] && words[2] == [0, 0, 0xff, 0xff];
            mapped.then(|| Ipv4Addr::from(words[3]))
        }
        _ => None,
    }
}

/// The remote IPv4 ends of the sockets of one `/proc/net` table (unconnected ones left out).
pub fn parse_table(text: &str) -> Vec<Remote> {
    let mut out = Vec::new();
    for line in text.lines().skip(1) {
        let mut fields = line.split_whitespace();
        let (Some(_slot), Some(local), Some(remote)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let (Some((_, local_port)), Some((remote_address, remote_port))) =
            (local.split_once(':'), remote.split_once(':'))
        else {
            continue;
        };
        let (Some(address), Ok(port), Ok(local_port)) = (
            decode_address(remote_address),
            u16::from_str_radix(remote_port, 16),
            u16::from_str_radix(local_port, 16),
        ) else {
            continue;
        };
        if address.is_unspecified() {
            continue;
        }
        out.push(Remote {
            address,
            port,
            local_port,
        });
    }
    out
}

/// Scans the socket tables.
pub fn scan(scan: &mut Scan<'_>) {
    scan.set_scanner("network");
    for table in ["tcp", "tcp6", "udp", "udp6"] {
        let path = Path::new("/proc/net").join(table);
        let Some(text) = scan.read_text(&path) else {
            continue;
        };
        for remote in parse_table(&text) {
            let address = remote.address.to_string();
            scan.observe_value(Category::Network, Attribute::Ipv4Addr, &address, || {
                Evidence::new("connection", format!("{table} {address}:{}", remote.port))
                    .detail(format!("local port {}", remote.local_port))
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_decode() {
        let cases = [
            ("0100007F", Some(Ipv4Addr::new(127, 0, 0, 1))),
            ("626DC979", Some(Ipv4Addr::new(121, 201, 109, 98))),
            (
                "0000000000000000FFFF0000626DC979",
                Some(Ipv4Addr::new(121, 201, 109, 98)),
            ),
            ("00000000000000000000000001000000", None),
            ("xyz", None),
        ];
        for (hex, expected) in cases {
            assert_eq!(decode_address(hex), expected, "{hex}");
        }
    }

    #[test]
    fn tables_parse_and_skip_listeners() {
        let text = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1\n\
   1: 0200000A:C350 626DC979:01BB 01 00000000:00000000 00:00000000 00000000  1000        0 2 1\n";
        assert_eq!(
            parse_table(text),
            [Remote {
                address: Ipv4Addr::new(121, 201, 109, 98),
                port: 443,
                local_port: 50000
            }]
        );
    }
}
