//! Android system properties, read from a properties source.
//!
//! On Android the source is a snapshot in `getprop` format (`[key]: [value]`) that the device's
//! init writes for the daemon; `build.prop` lines (`key=value`) are accepted too. On Linux
//! there is no source and every Android check reports not applicable.

use std::collections::BTreeMap;

/// A parsed set of system properties.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Properties {
    values: BTreeMap<String, String>,
    unreadable: bool,
}

impl Properties {
    /// Parses `getprop` output or `build.prop` text; comments and malformed lines are skipped.
    pub fn parse(text: &str) -> Self {
        let values = text
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .filter_map(parse_line)
            .collect();
        Self {
            values,
            unreadable: false,
        }
    }

    /// A source that exists but cannot be read: the device counts as Android with no property
    /// known, so every Android check is undetermined rather than "not applicable".
    pub fn unreadable() -> Self {
        Self {
            values: BTreeMap::new(),
            unreadable: true,
        }
    }

    /// Whether this is an Android device (a property source exists).
    pub fn is_android(&self) -> bool {
        self.unreadable || !self.values.is_empty()
    }

    /// A property's value.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }
}

fn parse_line(line: &str) -> Option<(String, String)> {
    if let Some(rest) = line.strip_prefix('[') {
        let (key, rest) = rest.split_once("]:")?;
        let value = rest.trim().strip_prefix('[')?.strip_suffix(']')?;
        return Some((key.to_owned(), value.to_owned()));
    }
    let (key, value) = line.split_once('=')?;
    let key = key.trim();
    (!key.is_empty()).then(|| (key.to_owned(), value.trim().to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_getprop_and_build_prop_lines() {
        let props = Properties::parse(
            "[ro.boot.verifiedbootstate]: [orange]\n\
             [ro.boot.flash.locked]: [0]\n\
             # comment\n\
             ro.build.version.security_patch=2026-10-05\n\
             [broken\n\
             [empty.value]: []\n",
        );
        assert!(props.is_android());
        assert_eq!(props.get("ro.boot.verifiedbootstate"), Some("orange"));
        assert_eq!(props.get("ro.boot.flash.locked"), Some("0"));
        assert_eq!(
            props.get("ro.build.version.security_patch"),
            Some("2026-10-05")
        );
        assert_eq!(props.get("empty.value"), Some(""));
        assert_eq!(props.get("broken"), None);
        assert!(!Properties::parse("").is_android());
        assert!(Properties::unreadable().is_android());
        assert_eq!(
            Properties::unreadable().get("ro.boot.verifiedbootstate"),
            None
        );
    }
}
