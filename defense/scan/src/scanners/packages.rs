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
    vec![Box::new(DpkgStatus), Box::new(AndroidPackagesList)]
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
