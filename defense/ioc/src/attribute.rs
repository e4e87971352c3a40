//! The observable attributes an indicator can name (`domain-name:value`, `file:hashes.sha256`,
//! ...) and how each one's values are normalized before they are compared.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};

/// One observable attribute, as named by a STIX object path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Attribute {
    /// `domain-name:value`: matches the domain itself and every sub-domain of it.
    DomainName,
    /// `ipv4-addr:value`: an address, or a CIDR block.
    Ipv4Addr,
    /// `url:value`: the exact URL (its host is also checked against domain indicators).
    Url,
    /// `email-addr:value`, case-insensitive.
    EmailAddr,
    /// `process:name`, exact (a kernel-truncated name matches by prefix).
    ProcessName,
    /// `file:name`, exact.
    FileName,
    /// `file:path`: the path itself or anything under it.
    FilePath,
    /// `file:hashes.md5`.
    FileMd5,
    /// `file:hashes.sha1` (also `'SHA-1'`).
    FileSha1,
    /// `file:hashes.sha256` (also `'SHA-256'`).
    FileSha256,
    /// `app:id`, an application (package) identifier, case-insensitive.
    AppId,
    /// `app:cert.md5`, the digest of an app's signing certificate.
    AppCertMd5,
    /// `app:cert.sha1`.
    AppCertSha1,
    /// `app:cert.sha256`.
    AppCertSha256,
    /// `android-property:name`, a system property's name, case-insensitive.
    AndroidPropertyName,
    /// `configuration-profile:id`, an installed configuration profile's identifier.
    ConfigurationProfileId,
}

impl Attribute {
    /// Every attribute, in a stable order (the index of each is [`Attribute::index`]).
    pub const ALL: [Attribute; 16] = [
        Attribute::DomainName,
        Attribute::Ipv4Addr,
        Attribute::Url,
        Attribute::EmailAddr,
        Attribute::ProcessName,
        Attribute::FileName,
        Attribute::FilePath,
        Attribute::FileMd5,
        Attribute::FileSha1,
        Attribute::FileSha256,
        Attribute::AppId,
        Attribute::AppCertMd5,
        Attribute::AppCertSha1,
        Attribute::AppCertSha256,
        Attribute::AndroidPropertyName,
        Attribute::ConfigurationProfileId,
    ];

    /// Position of this attribute in [`Attribute::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// Parses a STIX object path such as `file:hashes.'SHA-256'`. `None` for a path this engine
    /// does not know (counted as an unknown type by the loader).
    pub fn from_object_path(path: &str) -> Option<Self> {
        let (object, property) = path.split_once(':')?;
        let property = normalize_hash_property(property);
        Some(match (object, property.as_ref()) {
            ("domain-name", "value") => Attribute::DomainName,
            ("ipv4-addr", "value") => Attribute::Ipv4Addr,
            ("url", "value") => Attribute::Url,
            ("email-addr", "value") => Attribute::EmailAddr,
            ("process", "name") => Attribute::ProcessName,
            ("file", "name") => Attribute::FileName,
            ("file", "path") => Attribute::FilePath,
            ("file", "hashes.md5") => Attribute::FileMd5,
            ("file", "hashes.sha1") => Attribute::FileSha1,
            ("file", "hashes.sha256") => Attribute::FileSha256,
            ("app", "id") => Attribute::AppId,
            ("app", "cert.md5") => Attribute::AppCertMd5,
            ("app", "cert.sha1") => Attribute::AppCertSha1,
            ("app", "cert.sha256") => Attribute::AppCertSha256,
            ("android-property", "name") => Attribute::AndroidPropertyName,
            ("configuration-profile", "id") => Attribute::ConfigurationProfileId,
            _ => return None,
        })
    }

    /// The canonical STIX object path of this attribute.
    pub fn object_path(self) -> &'static str {
        match self {
            Attribute::DomainName => "domain-name:value",
            Attribute::Ipv4Addr => "ipv4-addr:value",
            Attribute::Url => "url:value",
            Attribute::EmailAddr => "email-addr:value",
            Attribute::ProcessName => "process:name",
            Attribute::FileName => "file:name",
            Attribute::FilePath => "file:path",
            Attribute::FileMd5 => "file:hashes.md5",
            Attribute::FileSha1 => "file:hashes.sha1",
            Attribute::FileSha256 => "file:hashes.sha256",
            Attribute::AppId => "app:id",
            Attribute::AppCertMd5 => "app:cert.md5",
            Attribute::AppCertSha1 => "app:cert.sha1",
            Attribute::AppCertSha256 => "app:cert.sha256",
            Attribute::AndroidPropertyName => "android-property:name",
            Attribute::ConfigurationProfileId => "configuration-profile:id",
        }
    }

    /// Whether values of this attribute compare without regard to ASCII case.
    pub fn case_insensitive(self) -> bool {
        !matches!(
            self,
            Attribute::Url | Attribute::ProcessName | Attribute::FileName | Attribute::FilePath
        )
    }

    /// The form a value is stored and compared in: trimmed, lower case where the attribute is
    /// case-insensitive, domains without a trailing dot, paths without a trailing slash.
    pub fn normalize(self, value: &str) -> Cow<'_, str> {
        let value = value.trim();
        let value = match self {
            Attribute::DomainName => value.trim_end_matches('.'),
            Attribute::FilePath if value.len() > 1 => value.trim_end_matches('/'),
            _ => value,
        };
        if self.case_insensitive() && value.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(value.to_ascii_lowercase())
        } else {
            Cow::Borrowed(value)
        }
    }
}

impl fmt::Display for Attribute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.object_path())
    }
}

/// `hashes.'SHA-256'` → `hashes.sha256`; other properties unchanged.
fn normalize_hash_property(property: &str) -> Cow<'_, str> {
    for prefix in ["hashes.", "cert."] {
        if let Some(algorithm) = property.strip_prefix(prefix) {
            let algorithm: String = algorithm
                .chars()
                .filter(|c| *c != '\'' && *c != '-')
                .map(|c| c.to_ascii_lowercase())
                .collect();
            return Cow::Owned(format!("{prefix}{algorithm}"));
        }
    }
    Cow::Borrowed(property)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_paths_parse_including_quoted_hash_names() {
        let cases = [
            ("domain-name:value", Some(Attribute::DomainName)),
            ("file:hashes.sha256", Some(Attribute::FileSha256)),
            ("file:hashes.'SHA-256'", Some(Attribute::FileSha256)),
            ("file:hashes.'SHA-1'", Some(Attribute::FileSha1)),
            ("file:hashes.MD5", Some(Attribute::FileMd5)),
            ("app:cert.'SHA-256'", Some(Attribute::AppCertSha256)),
            (
                "configuration-profile:id",
                Some(Attribute::ConfigurationProfileId),
            ),
            (
                "android-property:name",
                Some(Attribute::AndroidPropertyName),
            ),
            ("mutex:name", None),
            ("file:size", None),
            ("no-colon", None),
        ];
        for (path, expected) in cases {
            assert_eq!(Attribute::from_object_path(path), expected, "{path}");
        }
        for attribute in Attribute::ALL {
            assert_eq!(
                Attribute::from_object_path(attribute.object_path()),
                Some(attribute)
            );
            assert_eq!(Attribute::ALL[attribute.index()], attribute);
        }
    }

    #[test]
    fn values_normalize_per_attribute() {
        let cases = [
            (Attribute::DomainName, " Evil.COM. ", "evil.com"),
            (Attribute::EmailAddr, "Bad@Mail.com", "bad@mail.com"),
            (Attribute::FileSha256, "ABCDEF", "abcdef"),
            (
                Attribute::FilePath,
                "/data/local/tmp/wd/",
                "/data/local/tmp/wd",
            ),
            (Attribute::FilePath, "/", "/"),
            (Attribute::ProcessName, "BridgeHead", "BridgeHead"),
            (Attribute::Url, "https://A.com/X", "https://A.com/X"),
            (Attribute::AppId, "Com.Evil.App", "com.evil.app"),
        ];
        for (attribute, input, expected) in cases {
            assert_eq!(attribute.normalize(input), expected, "{attribute} {input}");
        }
    }
}
