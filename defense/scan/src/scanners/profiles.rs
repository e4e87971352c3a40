//! Installed configuration profiles: the Enigm profile store holds one file per profile,
//! named by its id (`<UUID>.toml`, `.json` or `.mobileconfig`); ids are matched against
//! `configuration-profile:id` indicators. Profile contents are not read.

use enigm_ioc::Attribute;

use crate::context::Scan;
use crate::finding::{Category, Evidence};
use crate::fs::EntryKind;

/// The profile id a store entry name stands for (the name without its extension).
pub fn profile_id(file_name: &str) -> &str {
    file_name
        .rsplit_once('.')
        .map_or(file_name, |(stem, _)| stem)
}

/// Scans the configured profile stores.
pub fn scan(scan: &mut Scan<'_>) {
    scan.set_scanner("profiles");
    for dir in scan.config.profile_dirs.clone() {
        for entry in scan.list(&dir) {
            if !matches!(entry.kind, EntryKind::File | EntryKind::Dir) {
                continue;
            }
            let id = profile_id(&entry.name);
            scan.observe_value(
                Category::Profile,
                Attribute::ConfigurationProfileId,
                id,
                || Evidence::new("configuration-profile", entry.path.display().to_string()),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_file_stems() {
        assert_eq!(profile_id("76DAB334-7E17.toml"), "76DAB334-7E17");
        assert_eq!(profile_id("abc"), "abc");
        assert_eq!(profile_id("a.b.json"), "a.b");
    }
}
