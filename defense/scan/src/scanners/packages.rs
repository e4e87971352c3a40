//! Installed packages and apps, from whichever inventories the device has: dpkg's status
//! database on Linux, Android's `packages.list`, or any other [`AppInventory`] (an Android
//! build supplies one backed by the package manager, with signing certificate digests). Each
//! app is matched by id and, where known, by certificate digest.

use std::path::Path;

use enigm_ioc::{Attribute, Observation};

use crate::context::Scan;
use crate::finding::{Category, Evidence};
use crate::fs::{FsError, ScanFs};

/// One installed app or package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct App {
    /// Package name / app id.
    pub id: String,
    /// Digests of its signing certificate(s): `AppCertMd5`, `AppCertSha1` or `AppCertSha256`
    /// with the hex digest.
    pub certificates: Vec<(Attribute, String)>,
}

/// A source of installed apps (shared with a daemon's scan thread).
pub trait AppInventory: Send + Sync {
    /// Its name (`dpkg`, `android-packages`).
    fn name(&self) -> &'static str;
    /// The installed apps; `Ok(None)` when this inventory does not exist on the device.
    fn apps(&self, fs: &ScanFs, limit: u64) -> Result<Option<Vec<App>>, FsError>;
}

/// dpkg's `/var/lib/dpkg/status`.
#[derive(Debug, Clone, Copy, Default)]
pub struct DpkgStatus;

impl AppInventory for DpkgStatus {
    fn name(&self) -> &'static str {
        "dpkg"
    }

    fn apps(&self, fs: &ScanFs, limit: u64) -> Result<Option<Vec<App>>, FsError> {
        Ok(fs
            .read_text_opt(Path::new("/var/lib/dpkg/status"), limit)?
            .map(|text| parse_dpkg_status(&text)))
    }
}

/// Android's `/data/system/packages.list` (no certificates in it).
#[derive(Debug, Clone, Copy, Default)]
pub struct AndroidPackagesList;

impl AppInventory for AndroidPackagesList {
    fn name(&self) -> &'static str {
        "android-packages"
    }

    fn apps(&self, fs: &ScanFs, limit: u64) -> Result<Option<Vec<App>>, FsError> {
        Ok(fs
            .read_text_opt(Path::new("/data/system/packages.list"), limit)?
            .map(|text| parse_packages_list(&text)))
    }
}

/// Android's `/data/system/packages.xml` in its text form (Android 11 and earlier, or a dump
/// converted with `abx2xml`): package names and the digests of their signing certificates.
/// The binary form (ABX) is reported as unreadable, so the scan says it is incomplete.
#[derive(Debug, Clone, Copy, Default)]
pub struct AndroidPackagesXml;

/// The magic of Android's binary XML.
const ABX_MAGIC: &[u8] = b"ABX";

impl AppInventory for AndroidPackagesXml {
    fn name(&self) -> &'static str {
        "android-packages-xml"
    }

    fn apps(&self, fs: &ScanFs, limit: u64) -> Result<Option<Vec<App>>, FsError> {
        let path = Path::new("/data/system/packages.xml");
        let bytes = match fs.read(path, limit) {
            Ok(bytes) => bytes,
            Err(error) if error.is_not_found() => return Ok(None),
            Err(error) => return Err(error),
        };
        if bytes.starts_with(ABX_MAGIC) {
            return Err(FsError::Io {
                path: path.to_owned(),
                error: std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "binary XML (ABX) is not read; convert it with abx2xml",
                ),
            });
        }
        Ok(Some(parse_packages_xml(&String::from_utf8_lossy(&bytes))))
    }
}

/// The value of `name="..."` in one XML start tag.
fn attribute<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let needle = format!(" {name}=\"");
    let start = tag.find(&needle)? + needle.len();
    let end = tag[start..].find('"')? + start;
    Some(&tag[start..end])
}

/// MD5, SHA-1 and SHA-256 of a certificate given as hex DER.
fn certificate_digests(hex_der: &str) -> Vec<(Attribute, String)> {
    let bytes: Option<Vec<u8>> = (0..hex_der.len() / 2)
        .map(|i| u8::from_str_radix(hex_der.get(2 * i..2 * i + 2)?, 16).ok())
        .collect();
    let Some(der) = bytes.filter(|b| !b.is_empty() && hex_der.len().is_multiple_of(2)) else {
        return Vec::new();
    };
    let hex = |digest: &[u8]| {
        digest
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let mut out = Vec::new();
    for (attribute, digest) in [
        (Attribute::AppCertMd5, openssl::hash::MessageDigest::md5()),
        (Attribute::AppCertSha1, openssl::hash::MessageDigest::sha1()),
        (
            Attribute::AppCertSha256,
            openssl::hash::MessageDigest::sha256(),
        ),
    ] {
        if let Ok(value) = openssl::hash::hash(digest, &der) {
            out.push((attribute, hex(&value)));
        }
    }
    out
}

/// Packages and certificate digests of a text `packages.xml`. A `<cert index="N" key="..."/>`
/// defines certificate N; later `<cert index="N"/>` refer back to it.
pub fn parse_packages_xml(text: &str) -> Vec<App> {
    let mut keys: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    let mut apps: Vec<App> = Vec::new();
    let mut in_package = false;
    for raw in text.split('<').skip(1) {
        let tag = raw.split('>').next().unwrap_or("");
        let tag_name = tag.split_whitespace().next().unwrap_or("");
        match tag_name {
            "package" => {
                if let Some(name) = attribute(tag, "name") {
                    apps.push(App {
                        id: name.to_owned(),
                        certificates: Vec::new(),
                    });
                    in_package = !tag.ends_with('/');
                }
            }
            "/package" => in_package = false,
            "cert" if in_package => {
                let index = attribute(tag, "index").unwrap_or("").to_owned();
                if let Some(key) = attribute(tag, "key") {
                    keys.insert(index.clone(), key.to_owned());
                }
                if let (Some(key), Some(app)) = (keys.get(&index), apps.last_mut()) {
                    for digest in certificate_digests(key) {
                        if !app.certificates.contains(&digest) {
                            app.certificates.push(digest);
                        }
                    }
                }
            }
            _ => {}
        }
    }
    apps
}

/// Installed packages of a dpkg status file.
pub fn parse_dpkg_status(text: &str) -> Vec<App> {
    let mut apps = Vec::new();
    for stanza in text.split("\n\n") {
        let mut package = None;
        let mut installed = false;
        for line in stanza.lines() {
            if let Some(name) = line.strip_prefix("Package:") {
                package = Some(name.trim());
            } else if let Some(status) = line.strip_prefix("Status:") {
                installed = status.trim().ends_with(" installed");
            }
        }
        if let (Some(id), true) = (package, installed) {
            apps.push(App {
                id: id.to_owned(),
                certificates: Vec::new(),
            });
        }
    }
    apps
}

/// Package names of an Android `packages.list`.
pub fn parse_packages_list(text: &str) -> Vec<App> {
    text.lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(|id| App {
            id: id.to_owned(),
            certificates: Vec::new(),
        })
        .collect()
}

/// The inventories a default scan reads.
pub fn default_inventories() -> Vec<Box<dyn AppInventory>> {
    vec![
        Box::new(DpkgStatus),
        Box::new(AndroidPackagesList),
        Box::new(AndroidPackagesXml),
    ]
}

/// Scans every inventory.
pub fn scan(scan: &mut Scan<'_>, inventories: &[Box<dyn AppInventory>]) {
    scan.set_scanner("packages");
    for inventory in inventories {
        let apps = match inventory.apps(scan.fs, scan.config.max_text_bytes) {
            Ok(Some(apps)) => apps,
            Ok(None) => continue,
            Err(error) => {
                scan.issue(&error);
                continue;
            }
        };
        for app in &apps {
            let mut observation = Observation::new().with(Attribute::AppId, &app.id);
            for (attribute, digest) in &app.certificates {
                observation.push(*attribute, digest);
            }
            let source = inventory.name();
            scan.observe(Category::Package, &observation, || {
                Evidence::new("package", app.id.clone()).detail(format!("from {source}"))
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dpkg_status_lists_installed_packages_only() {
        let text = "Package: bash\nStatus: install ok installed\nVersion: 5\n\n\
                    Package: gone\nStatus: deinstall ok config-files\n\n\
                    Package: held\nStatus: hold ok installed\n";
        let ids: Vec<String> = parse_dpkg_status(text).into_iter().map(|a| a.id).collect();
        assert_eq!(ids, ["bash", "held"]);
    }

    #[test]
    fn packages_xml_names_and_certificate_digests() {
        let text = r#"<?xml version='1.0' encoding='utf-8' standalone='yes' ?>
<packages>
<package name="com.vodaservices" codePath="/data/app/x" version="3">
<sigs count="1" schemeVersion="2">
<cert index="0" key="3082010a" />
</sigs>
</package>
<package name="com.other" codePath="/data/app/y">
<sigs count="1"><cert index="0" /></sigs>
</package>
<package name="com.unsigned" />
<shared-user name="android.uid.system" userId="1000"><sigs count="1"><cert index="1" key="ff" /></sigs></shared-user>
</packages>"#;
        let apps = parse_packages_xml(text);
        let ids: Vec<&str> = apps.iter().map(|a| a.id.as_str()).collect();
        assert_eq!(ids, ["com.vodaservices", "com.other", "com.unsigned"]);
        let expected = openssl::sha::sha256(&[0x30, 0x82, 0x01, 0x0a])
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>();
        for app in &apps[..2] {
            assert!(
                app.certificates
                    .contains(&(Attribute::AppCertSha256, expected.clone())),
                "{app:?}"
            );
            assert_eq!(app.certificates.len(), 3);
        }
        assert!(apps[2].certificates.is_empty());
        assert!(certificate_digests("zz").is_empty());
        assert!(certificate_digests("abc").is_empty());
    }

    #[test]
    fn packages_list_names() {
        let text = "com.android.shell 2000 0 /data/user_de/0/com.android.shell platform 3003\n\
                    com.vodaservices 10123 0 /data/user/0/com.vodaservices default:targetSdkVersion=30 none\n";
        let ids: Vec<String> = parse_packages_list(text)
            .into_iter()
            .map(|a| a.id)
            .collect();
        assert_eq!(ids, ["com.android.shell", "com.vodaservices"]);
    }
}
