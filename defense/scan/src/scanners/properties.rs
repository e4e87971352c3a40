//! System properties: `build.prop`-style files (`name=value`) and `getprop` output
//! (`[name]: [value]`, as in extracted Android dumps). Property names are matched against
//! `android-property:name` indicators; values are never reported.

use enigm_ioc::Attribute;

use crate::context::Scan;
use crate::finding::{Category, Evidence};

/// The property names defined in a property file of either format.
pub fn property_names(text: &str) -> Vec<&str> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                return None;
            }
            if let Some(rest) = line.strip_prefix('[') {
                return rest.split_once(']').map(|(name, _)| name.trim());
            }
            line.split_once('=').map(|(name, _)| name.trim())
        })
        .filter(|name| !name.is_empty())
        .collect()
}

/// Scans the configured property files.
pub fn scan(scan: &mut Scan<'_>) {
    scan.set_scanner("properties");
    for path in scan.config.property_files.clone() {
        let Some(text) = scan.read_text(&path) else {
            continue;
        };
        for name in property_names(&text) {
            scan.observe_value(
                Category::Property,
                Attribute::AndroidPropertyName,
                name,
                || Evidence::new("property", name).detail(format!("in {}", path.display())),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_both_formats() {
        let text = "# comment\nro.build.type=user\n persist.x = 1 \n[ro.debuggable]: [0]\n=novalue\nnoequals\n";
        assert_eq!(
            property_names(text),
            ["ro.build.type", "persist.x", "ro.debuggable"]
        );
    }
}
