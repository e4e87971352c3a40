//! What a scan looks at and where it stops: the content boundary, the system locations each
//! scanner reads, and the limits that bound a scan on a hostile or huge tree. The defaults
//! cover a Debian-based Enigm OS device and Android layouts (and an extracted dump of either).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

fn paths(list: &[&str]) -> Vec<PathBuf> {
    list.iter().map(PathBuf::from).collect()
}

/// Scan configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScanConfig {
    /// User-content locations never opened or listed, whatever an indicator says.
    pub content_boundary: Vec<PathBuf>,
    /// Directories walked for files by name, path and hash.
    pub file_roots: Vec<PathBuf>,
    /// Directories walked for setuid / setgid binaries.
    pub setuid_roots: Vec<PathBuf>,
    /// Property files (`build.prop` style `name=value`, or `getprop` output `[name]: [value]`).
    pub property_files: Vec<PathBuf>,
    /// DNS query logs (dnsmasq, resolver logs): any hostname in them is checked.
    pub dns_logs: Vec<PathBuf>,
    /// systemd unit directories.
    pub unit_dirs: Vec<PathBuf>,
    /// Crontab files and directories of crontabs.
    pub cron_paths: Vec<PathBuf>,
    /// Directories of installed configuration profiles (file stem = profile id).
    pub profile_dirs: Vec<PathBuf>,
    /// Mount points of the system partitions, which must not be writable.
    pub system_mounts: Vec<PathBuf>,
    /// Deepest directory level a walk descends to.
    pub max_depth: usize,
    /// Most entries one walk visits.
    pub max_entries: usize,
    /// Largest file hashed.
    pub max_hash_bytes: u64,
    /// Largest configuration or log file read.
    pub max_text_bytes: u64,
}

impl Default for ScanConfig {
    fn default() -> Self {
        Self {
            content_boundary: paths(&[
                "/home",
                "/root",
                "/var/mail",
                "/var/spool/mail",
                "/sdcard",
                "/storage",
                "/mnt/sdcard",
                "/data/media",
                "/data/data",
                "/data/user",
                "/data/user_de",
                "/data/system_ce",
                "/data/misc_ce",
                "/data/mediadrm",
            ]),
            file_roots: paths(&[
                "/tmp",
                "/var/tmp",
                "/dev/shm",
                "/etc",
                "/usr/local",
                "/opt",
                "/usr/bin",
                "/usr/sbin",
                "/usr/lib/systemd",
                "/var/lib/enigm",
                "/data/local",
                "/system/bin",
                "/system/xbin",
                "/system/lib",
                "/system/lib64",
                "/vendor/bin",
                "/private/var/tmp",
            ]),
            setuid_roots: paths(&[
                "/bin",
                "/sbin",
                "/usr/bin",
                "/usr/sbin",
                "/usr/local/bin",
                "/usr/local/sbin",
                "/usr/lib",
                "/usr/libexec",
                "/opt",
                "/system/bin",
                "/system/xbin",
                "/vendor/bin",
            ]),
            property_files: paths(&[
                "/system/build.prop",
                "/system/default.prop",
                "/vendor/build.prop",
                "/vendor/default.prop",
                "/product/build.prop",
                "/system_ext/build.prop",
                "/odm/build.prop",
                "/default.prop",
                "/data/local.prop",
                "/getprop.txt",
            ]),
            dns_logs: paths(&[
                "/var/log/dnsmasq.log",
                "/var/log/enigm/dns.log",
                "/var/log/named/query.log",
                "/data/misc/net/dns.log",
            ]),
            unit_dirs: paths(&[
                "/etc/systemd/system",
                "/run/systemd/system",
                "/usr/local/lib/systemd/system",
                "/usr/lib/systemd/system",
                "/lib/systemd/system",
            ]),
            cron_paths: paths(&[
                "/etc/crontab",
                "/etc/cron.d",
                "/var/spool/cron/crontabs",
                "/var/spool/cron",
            ]),
            profile_dirs: paths(&["/etc/enigm/profiles", "/data/system/enigm/profiles"]),
            system_mounts: paths(&[
                "/",
                "/usr",
                "/boot",
                "/efi",
                "/system",
                "/vendor",
                "/product",
                "/system_ext",
                "/odm",
            ]),
            max_depth: 12,
            max_entries: 500_000,
            max_hash_bytes: 64 * 1024 * 1024,
            max_text_bytes: 16 * 1024 * 1024,
        }
    }
}
