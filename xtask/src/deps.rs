//! System dependencies: the Debian packages the project needs, and the daemons' system users.
//!
//! [`install`] is idempotent: it asks dpkg which of [`PACKAGES`] are installed and, only when
//! some are missing, runs `apt-get update` and `apt-get install` for those (through sudo when
//! not root). Then it creates the system users declared in `daemons/*/dist/*.sysusers.conf`
//! with `systemd-sysusers`. Anything it cannot do fails with a message naming what is missing.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::steps::{self, Cmd};

/// A Debian package and what in the project needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Package {
    /// The Debian (bookworm) package name.
    pub name: &'static str,
    /// Which test, tool or feature needs it.
    pub needed_by: &'static str,
}

/// Every Debian package the project needs on Debian 12. Add new ones here, each with the
/// test or feature that needs it (planned, per docs: nftables, iproute2, erofs-utils,
/// cryptsetup-bin, checkpolicy, secilc, setools, qemu-system-x86, postgresql, chromium).
pub const PACKAGES: &[Package] = &[
    // dbus-daemon: each end-to-end test starts a private bus; so does `cargo xtask demo`.
    Package {
        name: "dbus",
        needed_by: "dbus-daemon: private bus in end-to-end tests and the demo",
    },
    // systemd-analyze: tests/tests/systemd_unit.rs rates the unit's sandbox;
    // systemd-sysusers: creates the daemons' system users (below).
    Package {
        name: "systemd",
        needed_by: "systemd-analyze (unit sandbox test), systemd-sysusers (daemon users)",
    },
    // capsh, getpcaps, setcap: capability tooling for the runtime's privilege-drop tests.
    Package {
        name: "libcap2-bin",
        needed_by: "capsh/getpcaps/setcap: privilege-drop tests",
    },
    // The C compiler toolchain's pkg-config finds libtss2 and openssl for the -sys crates.
    Package {
        name: "pkg-config",
        needed_by: "building tss-esapi-sys and openssl-sys",
    },
    Package {
        name: "libssl-dev",
        needed_by: "openssl crate: attestation signatures, MakeCredential, chains",
    },
    Package {
        name: "openssl",
        needed_by: "`openssl speed`: the peer in the quote-verification benchmark",
    },
    Package {
        name: "libtss2-dev",
        needed_by: "tss-esapi: enigm-attestd's TPM access",
    },
    Package {
        name: "protobuf-compiler",
        needed_by: "protoc: the attestation evidence wire format (prost-build)",
    },
    Package {
        name: "swtpm",
        needed_by: "software TPM 2.0 in the attestation tests",
    },
    Package {
        name: "swtpm-tools",
        needed_by: "swtpm_setup: TPMs with EK certificates in the attestation tests",
    },
    Package {
        name: "tpm2-tools",
        needed_by: "tpm2_quote/tpm2_checkquote/tpm2_activatecredential: oracles in the TPM tests",
    },
    // initdb/pg_ctl/pg_dump: backend/storage's tests run every storage test on PostgreSQL too.
    Package {
        name: "postgresql",
        needed_by: "PostgreSQL server + pg_dump: the backend storage suite on PostgreSQL",
    },
    Package {
        name: "cryptsetup-bin",
        needed_by: "veritysetup: the oracle for our dm-verity hash trees",
    },
    Package {
        name: "erofs-utils",
        needed_by: "mkfs.erofs for enigm-image build; fsck.erofs checks the images",
    },
    Package {
        name: "gdisk",
        needed_by: "sgdisk -v: the oracle for our GPT writes (both copies, checksums)",
    },
    Package {
        name: "fdisk",
        needed_by: "sfdisk --json: the oracle for our A/B slot attribute bits",
    },
    Package {
        name: "libnftnl-dev",
        needed_by: "nftnl crate: enigm-privacyd's nftables batches over netlink",
    },
    Package {
        name: "libmnl-dev",
        needed_by: "nftnl-sys links libmnl: enigm-privacyd's nftables batches",
    },
    Package {
        name: "nftables",
        needed_by: "nft: the oracle for the tables enigm-privacyd writes (Privacy Mode tests)",
    },
    Package {
        name: "iproute2",
        needed_by: "ip netns / veth: the Privacy Mode network-namespace tests",
    },
    Package {
        name: "iputils-ping",
        needed_by: "ping: ICMP probes in the Privacy Mode network-namespace tests",
    },
    Package {
        name: "zstd",
        needed_by: "zstd --patch-from: the oracle and benchmark peer for delta updates",
    },
    Package {
        name: "mosquitto",
        needed_by: "MQTT broker: the peer (QoS 1, persistence) in the relay benchmark",
    },
];

/// Where the daemons keep their sysusers.d files, relative to the workspace root:
/// `daemons/<daemon>/dist/*.sysusers.conf`.
const SYSUSERS_SUFFIX: &str = ".sysusers.conf";

/// Installs missing packages, then creates the daemons' system users.
pub fn install(root: &Path) -> Result<()> {
    install_packages(PACKAGES)?;
    create_users(root)
}

fn install_packages(packages: &[Package]) -> Result<()> {
    let names: Vec<&str> = packages.iter().map(|p| p.name).collect();
    let missing = query_missing(&names)?;
    if missing.is_empty() {
        println!("xtask: all {} packages present", names.len());
        return Ok(());
    }
    println!(
        "xtask: installing {} missing of {} packages:",
        missing.len(),
        names.len()
    );
    for package in packages.iter().filter(|p| missing.contains(&p.name)) {
        println!("xtask:   {} ({})", package.name, package.needed_by);
    }
    let list = missing.join(" ");
    if steps::find_in_path("apt-get").is_none() {
        bail!(
            "apt-get not found: cannot install {list}; this needs Debian 12 (or install them yourself)"
        );
    }
    let apt = |args: &[&str]| {
        Cmd::new("apt-get")
            .args(args.iter().copied())
            .env("DEBIAN_FRONTEND", "noninteractive")
    };
    let update = privileged(apt(&["update"]))
        .with_context(|| format!("cannot install missing packages: {list}"))?;
    steps::run("apt-get update", &update)
        .with_context(|| format!("cannot install missing packages: {list}"))?;
    let mut install_args = vec!["install", "-y", "--no-install-recommends"];
    install_args.extend(missing.iter().copied());
    let install = privileged(apt(&install_args))?;
    steps::run("apt-get install", &install)
        .with_context(|| format!("cannot install missing packages: {list}"))?;

    let still_missing = query_missing(&missing)?;
    if !still_missing.is_empty() {
        bail!(
            "apt-get install finished but these packages are still not installed: {}",
            still_missing.join(" ")
        );
    }
    println!("xtask: installed {list}");
    Ok(())
}

/// The packages among `names` that dpkg does not report as installed.
fn query_missing<'a>(names: &[&'a str]) -> Result<Vec<&'a str>> {
    if steps::find_in_path("dpkg-query").is_none() {
        bail!(
            "dpkg-query not found: install-deps supports Debian 12 only; install these packages yourself: {}",
            names.join(" ")
        );
    }
    let query = Cmd::new("dpkg-query")
        .args(["-W", "-f", "${Package}\t${Status}\n"])
        .args(names.iter().copied());
    let out = query.output()?;
    // Exit status 1 only means some names are unknown to dpkg (never installed); they are
    // absent from stdout, so they count as missing. Anything else is a real failure.
    if !matches!(out.status.code(), Some(0 | 1)) {
        bail!(
            "`{query}` failed ({}): {}",
            out.status,
            steps::text(&out.stderr)
        );
    }
    Ok(missing(names, &String::from_utf8_lossy(&out.stdout)))
}

/// The names in `wanted` that are not installed according to the output of
/// `dpkg-query -W -f '${Package}\t${Status}\n'` (order of `wanted` kept).
pub fn missing<'a>(wanted: &[&'a str], dpkg_output: &str) -> Vec<&'a str> {
    let installed = installed(dpkg_output);
    wanted
        .iter()
        .copied()
        .filter(|name| !installed.contains(name))
        .collect()
}

/// Package names whose status is "install ok installed" in `dpkg-query` output.
/// A package listed for several architectures counts as installed if any of them is.
fn installed(dpkg_output: &str) -> BTreeSet<&str> {
    dpkg_output
        .lines()
        .filter_map(|line| line.split_once('\t'))
        .filter(|(_, status)| status.trim() == "install ok installed")
        .map(|(name, _)| name.trim())
        .collect()
}

/// `cmd` as it must run to change the system: as is when root, through sudo otherwise.
fn privileged(cmd: Cmd) -> Result<Cmd> {
    if is_root() {
        Ok(cmd)
    } else if steps::find_in_path("sudo").is_some() {
        Ok(cmd.with_sudo())
    } else {
        bail!(
            "`{cmd}` needs root: run xtask as root, or install sudo and use an account allowed to use it"
        )
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| effective_uid(&status))
        == Some(0)
}

/// The effective uid from the text of `/proc/self/status` (`Uid: real effective saved fs`).
fn effective_uid(proc_status: &str) -> Option<u32> {
    let line = proc_status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// Runs `systemd-sysusers` on every `daemons/*/dist/*.sysusers.conf`.
///
/// As root it always runs (it is idempotent and applies every kind of line). As another
/// user it runs (through sudo) only when a user or group the files declare does not exist
/// yet, so a developer's repeated `cargo xtask test` does not ask for a password each time.
fn create_users(root: &Path) -> Result<()> {
    let files = sysusers_files(&root.join("daemons"))?;
    if files.is_empty() {
        println!("xtask: no daemons/*/dist/*{SYSUSERS_SUFFIX} files; no system users to create");
        return Ok(());
    }
    let mut accounts = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        accounts.extend(declared_accounts(&text));
    }
    let names: Vec<&str> = accounts.iter().map(|a| a.name.as_str()).collect();
    if !is_root() {
        let absent: Vec<&Account> = accounts.iter().filter(|a| !a.exists()).collect();
        if absent.is_empty() {
            println!("xtask: system users present: {}", names.join(" "));
            return Ok(());
        }
    }
    if steps::find_in_path("systemd-sysusers").is_none() {
        bail!(
            "systemd-sysusers not found (package systemd): cannot create system users {}",
            names.join(" ")
        );
    }
    let cmd = Cmd::new("systemd-sysusers").args(files.iter().map(|f| f.display().to_string()));
    steps::run("create system users", &privileged(cmd)?)
        .with_context(|| format!("cannot create system users {}", names.join(" ")))?;
    println!("xtask: system users ready: {}", names.join(" "));
    Ok(())
}

/// Every `<daemons>/*/dist/*.sysusers.conf`, sorted.
fn sysusers_files(daemons: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let entries = match std::fs::read_dir(daemons) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(files),
        Err(e) => return Err(e).with_context(|| format!("cannot list {}", daemons.display())),
    };
    for entry in entries {
        let dist = entry?.path().join("dist");
        let Ok(dist_entries) = std::fs::read_dir(&dist) else {
            continue;
        };
        for file in dist_entries {
            let path = file?.path();
            if path.is_file()
                && path
                    .file_name()
                    .is_some_and(|n| steps::has_suffix(n, SYSUSERS_SUFFIX))
            {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// A user or group a sysusers.d file declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// `passwd` for `u` lines, `group` for `g` lines (the `getent` database).
    pub database: &'static str,
    /// The user or group name.
    pub name: String,
}

impl Account {
    fn exists(&self) -> bool {
        Cmd::new("getent")
            .args([self.database, self.name.as_str()])
            .output()
            .is_ok_and(|out| out.status.success())
    }
}

/// The users (`u` lines) and groups (`g` lines) declared in sysusers.d text.
pub fn declared_accounts(sysusers_conf: &str) -> Vec<Account> {
    sysusers_conf
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let database = match fields.next()? {
                "u" | "u!" => "passwd",
                "g" => "group",
                _ => return None,
            };
            let name = fields.next()?.to_owned();
            Some(Account { database, name })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_keeps_order_and_needs_install_ok_installed() {
        let out = "dbus\tinstall ok installed\n\
                   systemd\tdeinstall ok config-files\n\
                   libcap2-bin\tunknown ok not-installed\n";
        assert_eq!(
            missing(&["systemd", "dbus", "libcap2-bin"], out),
            vec!["systemd", "libcap2-bin"]
        );
    }

    #[test]
    fn names_unknown_to_dpkg_are_missing() {
        // dpkg-query prints nothing on stdout for a name it has never heard of.
        assert_eq!(
            missing(&["dbus", "swtpm"], "dbus\tinstall ok installed\n"),
            vec!["swtpm"]
        );
        assert_eq!(missing(&["dbus"], ""), vec!["dbus"]);
    }

    #[test]
    fn all_installed_means_nothing_missing() {
        let out = "dbus\tinstall ok installed\nsystemd\tinstall ok installed\n";
        assert!(missing(&["dbus", "systemd"], out).is_empty());
    }

    #[test]
    fn any_architecture_installed_counts() {
        let out = "libcap2-bin\tinstall ok installed\nlibcap2-bin\tunknown ok not-installed\n";
        assert!(missing(&["libcap2-bin"], out).is_empty());
    }

    #[test]
    fn half_installed_is_missing() {
        let out = "dbus\tinstall reinstreq half-installed\n";
        assert_eq!(missing(&["dbus"], out), vec!["dbus"]);
    }

    #[test]
    fn package_list_is_well_formed() {
        let mut seen = BTreeSet::new();
        for p in PACKAGES {
            assert!(seen.insert(p.name), "{} listed twice", p.name);
            assert!(!p.needed_by.is_empty(), "{} has no reason", p.name);
            assert!(
                p.name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c)),
                "{} is not a Debian package name",
                p.name
            );
        }
        for needed in ["dbus", "systemd", "libcap2-bin"] {
            assert!(seen.contains(needed), "{needed} missing from PACKAGES");
        }
    }

    #[test]
    fn effective_uid_is_the_second_uid_field() {
        let status = "Name:\tcat\nUid:\t1000\t0\t0\t0\nGid:\t1000\t1000\t1000\t1000\n";
        assert_eq!(effective_uid(status), Some(0));
        assert_eq!(effective_uid("Uid:\t0\t1000\t0\t0\n"), Some(1000));
        assert_eq!(effective_uid("Name:\tcat\n"), None);
    }

    #[test]
    fn parses_users_and_groups_from_sysusers_conf() {
        let conf = "# Enigm daemons\n\
                    u enigm-tscd - \"Enigm Trust Security Center\" - -\n\
                    \n\
                    g enigm-ops -\n\
                    m enigm-tscd enigm-ops\n\
                    r - 500-900\n";
        assert_eq!(
            declared_accounts(conf),
            vec![
                Account {
                    database: "passwd",
                    name: "enigm-tscd".to_owned()
                },
                Account {
                    database: "group",
                    name: "enigm-ops".to_owned()
                },
            ]
        );
    }

    #[test]
    fn finds_sysusers_files_under_each_daemon_dist() {
        let dir = std::env::temp_dir().join(format!("xtask-sysusers-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("b/dist")).unwrap();
        std::fs::create_dir_all(dir.join("a/dist")).unwrap();
        std::fs::create_dir_all(dir.join("c/src")).unwrap();
        std::fs::write(dir.join("b/dist/enigm-b.sysusers.conf"), "u enigm-b -\n").unwrap();
        std::fs::write(dir.join("a/dist/enigm-a.sysusers.conf"), "u enigm-a -\n").unwrap();
        std::fs::write(dir.join("a/dist/enigm-a.service"), "").unwrap();
        std::fs::write(dir.join("c/src/x.sysusers.conf"), "").unwrap();
        let found = sysusers_files(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            found,
            vec![
                dir.join("a/dist/enigm-a.sysusers.conf"),
                dir.join("b/dist/enigm-b.sysusers.conf"),
            ]
        );
        assert!(sysusers_files(&dir.join("none")).unwrap().is_empty());
    }
}
