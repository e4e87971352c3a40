//! The kernel: the taint mask (`/proc/sys/kernel/tainted`) and the loaded modules
//! (`/proc/modules`). A forced, out-of-tree or unsigned module is a heuristic finding; module
//! names are matched against file-name indicators as `<name>.ko`.

use std::path::Path;

use enigm_ioc::Attribute;

use crate::context::Scan;
use crate::finding::{Category, Evidence, Severity};

/// Taint bits that suggest a module the image did not ship, with their letters.
const SUSPICIOUS_TAINTS: [(u32, &str); 4] = [
    (1, "F: module force-loaded"),
    (3, "R: module force-unloaded"),
    (12, "O: out-of-tree module"),
    (13, "E: unsigned module"),
];

/// The suspicious taint reasons set in a taint mask.
pub fn taint_reasons(mask: u64) -> Vec<&'static str> {
    SUSPICIOUS_TAINTS
        .iter()
        .filter(|(bit, _)| mask & (1 << bit) != 0)
        .map(|(_, reason)| *reason)
        .collect()
}

/// A loaded module: its name and whether it is out-of-tree or unsigned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module<'a> {
    /// Name.
    pub name: &'a str,
    /// The taint flags shown after it (`(OE)`), if any.
    pub flags: &'a str,
}

/// Parses `/proc/modules`.
pub fn parse_modules(text: &str) -> Vec<Module<'_>> {
    text.lines()
        .filter_map(|line| {
            let name = line.split_whitespace().next()?;
            let flags = line
                .rsplit_once('(')
                .and_then(|(_, rest)| rest.strip_suffix(')'))
                .unwrap_or("");
            Some(Module { name, flags })
        })
        .collect()
}

/// Scans the kernel's state.
pub fn scan(scan: &mut Scan<'_>) {
    scan.set_scanner("kernel");
    match scan
        .fs
        .read_text_opt(Path::new("/proc/sys/kernel/tainted"), 64)
    {
        Ok(Some(text)) => {
            scan.count();
            let mask = text.trim().parse::<u64>().unwrap_or(0);
            let reasons = taint_reasons(mask);
            if !reasons.is_empty() {
                scan.heuristic(
                    "kernel-taint",
                    Severity::Medium,
                    Category::Kernel,
                    format!("the kernel is tainted ({})", reasons.join("; ")),
                    Evidence::new("kernel-taint", reasons.join("; "))
                        .detail(format!("mask {mask}")),
                );
            }
        }
        Ok(None) => {}
        Err(error) => scan.issue(&error),
    }
    let Some(text) = scan.read_text(Path::new("/proc/modules")) else {
        return;
    };
    for module in parse_modules(&text) {
        let file_name = format!("{}.ko", module.name);
        scan.observe_value(Category::Kernel, Attribute::FileName, &file_name, || {
            Evidence::new("kernel-module", module.name)
        });
        if module.flags.contains('O') || module.flags.contains('E') {
            scan.heuristic(
                "untrusted-kernel-module",
                Severity::Medium,
                Category::Kernel,
                format!("kernel module {} is out-of-tree or unsigned", module.name),
                Evidence::new("kernel-module", module.name)
                    .detail(format!("flags {}", module.flags)),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taints_and_modules() {
        assert!(taint_reasons(0).is_empty());
        assert!(taint_reasons(1 << 9).is_empty());
        assert_eq!(
            taint_reasons((1 << 12) | (1 << 13)),
            ["O: out-of-tree module", "E: unsigned module"]
        );
        let text = "ext4 1015808 2 - Live 0x0000000000000000\nrootkit 16384 0 - Live 0x0000000000000000 (OE)\n";
        assert_eq!(
            parse_modules(text),
            [
                Module {
                    name: "ext4",
                    flags: ""
                },
                Module {
                    name: "rootkit",
                    flags: "OE"
                }
            ]
        );
    }
}
