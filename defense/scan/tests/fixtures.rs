//! Full scans of fixture device trees: every artefact planted for an indicator type of the
//! shared MVT bundles is found and attributed to its collection, each heuristic fires on its
//! planted artefact, a clean tree gives no finding, and nothing under the content boundary is
//! opened, listed or stat'ed even when indicators name paths inside it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use enigm_defense_scan::fs::{Access, AccessLog};
use enigm_defense_scan::scanners::packages::default_inventories;
use enigm_defense_scan::{ContentBoundary, ScanConfig, ScanFs, ScanOutcome, run};
use enigm_ioc::{IocDb, IocDbBuilder, load_paths};
use enigm_runtime::sysroot::Sysroot;

const STIX: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/testdata/stix2"
);

struct Tree(PathBuf);

impl Tree {
    fn file(&self, path: &str, contents: impl AsRef<[u8]>) -> &Self {
        let full = self.0.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, contents).unwrap();
        self
    }

    fn link(&self, path: &str, target: &str) -> &Self {
        let full = self.0.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(target, full).unwrap();
        self
    }

    fn mode(&self, path: &str, mode: u32) -> &Self {
        let full = self.0.join(path.trim_start_matches('/'));
        std::fs::set_permissions(full, std::fs::Permissions::from_mode(mode)).unwrap();
        self
    }

    fn process(&self, pid: u32, comm: &str, exe: &str, environ: &str) -> &Self {
        let dir = format!("/proc/{pid}");
        self.file(&format!("{dir}/comm"), format!("{comm}\n"))
            .file(&format!("{dir}/cmdline"), format!("{exe}\0--flag\0"))
            .file(&format!("{dir}/environ"), environ)
            .link(&format!("{dir}/exe"), exe)
    }
}

const TCP_HEADER: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n";

/// A device tree with nothing suspicious in it.
fn clean_tree(root: &Path) -> Tree {
    let tree = Tree(root.to_owned());
    tree.process(1, "systemd", "/usr/lib/systemd/systemd", "HOME=/\0")
        .process(
            812,
            "bash",
            "/usr/bin/bash",
            "HOME=/home/alice\0SECRET_TOKEN=hunter2\0",
        )
        .file("/proc/2/comm", "kthreadd\n")
        .file(
            "/proc/net/tcp",
            format!(
                "{TCP_HEADER}   0: 0200000A:C350 01010101:01BB 01 00000000:00000000 00:00000000 00000000  1000 0 2 1\n"
            ),
        )
        .file("/proc/net/udp", TCP_HEADER)
        .file(
            "/proc/mounts",
            "/dev/dm-0 / erofs ro,relatime 0 0\n/dev/sda3 /data ext4 rw,nosuid 0 0\n",
        )
        .file("/proc/sys/kernel/tainted", "0\n")
        .file("/proc/modules", "ext4 1015808 2 - Live 0x0\n")
        .file(
            "/var/lib/dpkg/status",
            "Package: bash\nStatus: install ok installed\n\nPackage: login\nStatus: install ok installed\n",
        )
        .file("/var/lib/dpkg/info/login.list", "/usr\n/usr/bin\n/bin/su\n")
        .file("/usr/bin/su", "ELF")
        .mode("/usr/bin/su", 0o4755)
        .file("/usr/bin/bash", "ELF bash")
        .file(
            "/data/system/packages.list",
            "com.android.shell 2000 0 /data/user_de/0/com.android.shell platform 3003\n",
        )
        .file(
            "/system/build.prop",
            "ro.build.type=user\nro.debuggable=0\n",
        )
        .file("/etc/enigm/profiles/0F0E0D0C-0000-4000-8000-000000000001.toml", "")
        .file(
            "/var/log/dnsmasq.log",
            "query[A] example.org from 10.0.0.2\nreply example.org is 93.184.216.34\n",
        )
        .file(
            "/etc/systemd/system/enigm-tscd.service",
            "[Service]\nExecStart=/usr/bin/enigm-tscd\n",
        )
        .file(
            "/etc/cron.d/logrotate",
            "MAILTO=root\n0 3 * * * root /usr/sbin/logrotate /etc/logrotate.conf\n",
        )
        .file("/etc/aliases", "postmaster: root\n")
        .file("/home/alice/Pictures/holiday.jpg", "private pixels")
        .file("/data/media/0/DCIM/IMG_0001.jpg", "private pixels")
        .file("/data/data/org.thoughtcrime.securesms/databases/signal.db", "messages");
    tree
}

fn shared_db() -> IocDb {
    load_paths(&[PathBuf::from(STIX)]).unwrap()
}

/// The shared bundles plus one more bundle (built from JSON objects) in a temp dir.
fn db_with(extra_objects: &[String]) -> IocDb {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("extra.stix2"),
        format!(
            r#"{{"type":"bundle","id":"bundle--x","objects":[{}]}}"#,
            extra_objects.join(",")
        ),
    )
    .unwrap();
    let mut builder = IocDbBuilder::new();
    enigm_ioc::load::add_paths(&mut builder, &[PathBuf::from(STIX), dir.path().to_owned()])
        .unwrap();
    builder.build()
}

fn test_collection(name: &str, patterns: &[&str]) -> Vec<String> {
    let mut objects = vec![format!(
        r#"{{"type":"malware","id":"malware--{name}","name":"{name}"}}"#
    )];
    for (n, pattern) in patterns.iter().enumerate() {
        objects.push(format!(
            r#"{{"type":"indicator","id":"indicator--{name}-{n}","pattern":{}}}"#,
            serde_json::Value::String((*pattern).to_owned())
        ));
        objects.push(format!(
            r#"{{"type":"relationship","id":"relationship--{name}-{n}","source_ref":"indicator--{name}-{n}","target_ref":"malware--{name}"}}"#
        ));
    }
    objects
}

fn scan(
    root: &Path,
    db: &IocDb,
    config: &ScanConfig,
    log: Option<Arc<dyn AccessLog>>,
) -> ScanOutcome {
    let mut fs = ScanFs::new(
        Sysroot::new(root),
        ContentBoundary::new(config.content_boundary.iter()),
    );
    if let Some(log) = log {
        fs = fs.with_access_log(log);
    }
    run(&fs, db, config, &default_inventories())
}

/// (collection, evidence subject) of every indicator finding, and the rules of the others.
/// (collection or rule, evidence subject) pairs.
type Pairs = BTreeSet<(String, String)>;

fn summarize(outcome: &ScanOutcome) -> (Pairs, Pairs) {
    let mut iocs = BTreeSet::new();
    let mut heuristics = BTreeSet::new();
    for finding in &outcome.findings {
        let subject = finding.evidence[0].subject.clone();
        match &finding.indicator {
            Some(indicator) => {
                for collection in &indicator.collections {
                    iocs.insert((collection.clone(), subject.clone()));
                }
            }
            None => {
                heuristics.insert((finding.rule.clone(), subject));
            }
        }
    }
    (iocs, heuristics)
}

#[test]
fn a_clean_tree_gives_no_finding_and_a_complete_scan() {
    let dir = tempfile::tempdir().unwrap();
    clean_tree(dir.path());
    let outcome = scan(dir.path(), &shared_db(), &ScanConfig::default(), None);
    assert!(outcome.findings.is_empty(), "{:#?}", outcome.findings);
    assert!(outcome.issues.is_empty(), "{:#?}", outcome.issues);
    for scanner in [
        "processes",
        "packages",
        "files",
        "network",
        "dns",
        "persistence",
    ] {
        assert!(
            outcome.observed.get(scanner).copied().unwrap_or(0) > 0,
            "{scanner}"
        );
    }
}

#[test]
fn every_planted_artefact_is_found_and_attributed() {
    let dir = tempfile::tempdir().unwrap();
    let tree = clean_tree(dir.path());
    let planted_hash_file = "not malware, a stand-in whose digest the test bundle names";
    let digest = openssl::sha::sha256(planted_hash_file.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>();
    tree
        // Pegasus: process:name, domain-name, email-addr, file:name
        .process(4242, "fservernetd", "/usr/libexec/fservernetd", "")
        .file(
            "/var/log/dnsmasq.log",
            "query[A] example.org from 10.0.0.2\nquery[A] cdn.weather4free.com from 10.0.0.2\n\
             query[AAAA] shortenurls.me from 10.0.0.2\nquery[A] www.119-tim.info from 10.0.0.3\n\
             query[A] dns.win10micros0ft.com from 10.0.0.3\n",
        )
        .file(
            "/etc/cron.d/sync",
            "MAILTO=bogaardlisa803@gmail.com\n*/10 * * * * root /usr/bin/true\n",
        )
        .file("/var/tmp/roleaccountd.plist", "")
        // Predator (cytrox): file:path, configuration-profile:id
        .file("/data/local/tmp/wd/fs.db", "")
        .file(
            "/etc/enigm/profiles/76DAB334-7E17-475D-A5D6-0794EB5818A5.toml",
            "",
        )
        // RCSLab: app:id (Android package list); WyrmSpy: app:id (dpkg) and ipv4-addr
        .file(
            "/data/system/packages.list",
            "com.android.shell 2000 0 /data/user_de/0/com.android.shell platform 3003\n\
             com.vodaservices 10123 0 /data/user/0/com.vodaservices default none\n",
        )
        .file(
            "/var/lib/dpkg/status",
            "Package: bash\nStatus: install ok installed\n\nPackage: login\nStatus: install ok installed\n\n\
             Package: com.adobe.flash.jni\nStatus: install ok installed\n",
        )
        .file(
            "/proc/net/tcp6",
            format!(
                "{TCP_HEADER}   0: 00000000000000000000000001000000:C350 0000000000000000FFFF0000626DC979:01BB 01 0 0 0 0 0 1 1\n"
            ),
        )
        // file:hashes.sha256 and android-property:name through a test bundle (the shared
        // bundles' digests are of real malware, which a fixture cannot contain).
        .file("/opt/vendor/payload.bin", planted_hash_file)
        .file(
            "/data/system/packages.xml",
            "<packages>\n<package name=\"com.example.flashlight\" codePath=\"/data/app/f\">\n\
             <sigs count=\"1\"><cert index=\"3\" key=\"30820122300d06\" /></sigs>\n</package>\n</packages>\n",
        )
        .file("/system/build.prop", "ro.build.type=user\npersist.sys.implant=1\n");

    let cert_digest = openssl::sha::sha256(&[0x30, 0x82, 0x01, 0x22, 0x30, 0x0d, 0x06])
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>();
    let db = db_with(&test_collection(
        "TestKit",
        &[
            &format!("[file:hashes.'SHA-256' = '{}']", digest.to_uppercase()),
            "[android-property:name = 'persist.sys.implant']",
            &format!("[app:cert.sha256 = '{cert_digest}']"),
        ],
    ));
    let outcome = scan(dir.path(), &db, &ScanConfig::default(), None);
    assert!(outcome.issues.is_empty(), "{:#?}", outcome.issues);
    let (iocs, heuristics) = summarize(&outcome);
    let expected: BTreeSet<(String, String)> = [
        ("Pegasus", "/usr/libexec/fservernetd"),
        ("Pegasus", "cdn.weather4free.com"),
        ("Pegasus", "/etc/cron.d/sync"),
        ("Pegasus", "/var/tmp/roleaccountd.plist"),
        ("Predator", "shortenurls.me"),
        ("Predator", "/data/local/tmp/wd"),
        ("Predator", "/data/local/tmp/wd/fs.db"),
        (
            "Predator",
            "/etc/enigm/profiles/76DAB334-7E17-475D-A5D6-0794EB5818A5.toml",
        ),
        ("RCSLab", "www.119-tim.info"),
        ("RCSLab", "com.vodaservices"),
        ("WyrmSpy_DragonEgg", "dns.win10micros0ft.com"),
        ("WyrmSpy_DragonEgg", "com.adobe.flash.jni"),
        ("WyrmSpy_DragonEgg", "tcp6 121.201.109.98:443"),
        ("TestKit", "/opt/vendor/payload.bin"),
        ("TestKit", "persist.sys.implant"),
        ("TestKit", "com.example.flashlight"),
    ]
    .into_iter()
    .map(|(c, s)| (c.to_owned(), s.to_owned()))
    .collect();
    assert_eq!(iocs, expected);
    assert!(heuristics.is_empty(), "{heuristics:?}");

    // Each finding carries a stable id, the indicator and an action; JSON round-trips.
    let process = outcome
        .findings
        .iter()
        .find(|f| f.evidence[0].subject == "/usr/libexec/fservernetd")
        .unwrap();
    assert_eq!(process.severity, enigm_defense_scan::Severity::Critical);
    assert_eq!(
        process.indicator.as_ref().unwrap().pattern,
        "[process:name='fservernetd']"
    );
    assert!(!process.action.is_empty());
    let again = scan(dir.path(), &db, &ScanConfig::default(), None);
    let ids = |o: &ScanOutcome| o.findings.iter().map(|f| f.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&outcome), ids(&again));
    let json = serde_json::to_string(&outcome.findings).unwrap();
    let back: Vec<enigm_defense_scan::Finding> = serde_json::from_str(&json).unwrap();
    assert_eq!(back, outcome.findings);
    // Evidence is minimized: no process arguments, no environment, no file contents.
    assert!(!json.contains("--flag"));
    assert!(!json.contains(planted_hash_file));
}

#[test]
fn heuristics_fire_on_their_artefacts() {
    let dir = tempfile::tempdir().unwrap();
    let tree = clean_tree(dir.path());
    tree.process(900, "kworker", "/memfd:x (deleted)", "")
        .process(901, "updater", "/tmp/updater (deleted)", "")
        .process(
            902,
            "chrome",
            "/usr/bin/chrome",
            "HOME=/home/alice\0LD_PRELOAD=/dev/shm/hook.so\0PASSWORD=x\0",
        )
        .file("/etc/ld.so.preload", "/usr/lib/libhook.so\n")
        .file(
            "/etc/systemd/system/helper.service",
            "[Service]\nExecStart=/var/tmp/.helper --daemon\n",
        )
        .file("/usr/local/bin/rootshell", "ELF")
        .mode("/usr/local/bin/rootshell", 0o4755)
        .file(
            "/proc/mounts",
            "/dev/dm-0 / erofs ro 0 0\n/dev/sda5 /system ext4 rw,relatime 0 0\n",
        )
        .file("/proc/sys/kernel/tainted", "12288\n")
        .file(
            "/proc/modules",
            "ext4 1 2 - Live 0x0\nhidemod 16384 0 - Live 0x0 (OE)\n",
        );
    let outcome = scan(dir.path(), &shared_db(), &ScanConfig::default(), None);
    let (iocs, heuristics) = summarize(&outcome);
    assert!(iocs.is_empty(), "{iocs:?}");
    let expected: BTreeSet<(String, String)> = [
        ("memfd-executable", "kworker"),
        ("deleted-executable", "/tmp/updater"),
        ("preload-injection", "/usr/bin/chrome"),
        ("ld-so-preload", "/usr/lib/libhook.so"),
        (
            "persistence-from-temporary-directory",
            "/etc/systemd/system/helper.service",
        ),
        ("unowned-setuid", "/usr/local/bin/rootshell"),
        ("writable-system-partition", "/system"),
        ("kernel-taint", "O: out-of-tree module; E: unsigned module"),
        ("untrusted-kernel-module", "hidemod"),
    ]
    .into_iter()
    .map(|(r, s)| (r.to_owned(), s.to_owned()))
    .collect();
    assert_eq!(heuristics, expected);
    let json = serde_json::to_string(&outcome.findings).unwrap();
    assert!(!json.contains("PASSWORD"));
    assert!(!json.contains("/home/alice"));
}

#[derive(Default)]
struct Recorder(Mutex<Vec<(PathBuf, Access)>>);

impl AccessLog for Recorder {
    fn record(&self, host_path: &Path, access: Access) {
        self.0.lock().unwrap().push((host_path.to_owned(), access));
    }
}

#[test]
fn nothing_under_the_content_boundary_is_touched_even_when_indicators_name_it() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let tree = clean_tree(&root);
    tree.file("/home/alice/Documents/report.pdf", "private")
        .file("/home/alice/.config/autostart.sh", "private")
        .link(
            "/etc/innocent",
            &root
                .join("home/alice/Pictures/holiday.jpg")
                .display()
                .to_string(),
        )
        .link(
            "/tmp/media",
            &root.join("data/media/0").display().to_string(),
        )
        .link("/var/tmp/relative", "../../home/alice/Documents/report.pdf");
    let db = db_with(&test_collection(
        "Snoop",
        &[
            "[file:path = '/home/alice/Pictures/holiday.jpg']",
            "[file:path = '/data/data/org.thoughtcrime.securesms/databases/signal.db']",
            "[file:path = '/data/media/0/DCIM']",
            "[file:path = '/etc/innocent']",
            "[file:path = '/tmp/media/DCIM/IMG_0001.jpg']",
            "[file:name = 'holiday.jpg']",
            &format!(
                "[file:hashes.sha256 = '{}']",
                openssl::sha::sha256(b"private pixels")
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<String>()
            ),
        ],
    ));
    // Walk the whole tree, so only the boundary stands between the scan and the content.
    let config = ScanConfig {
        file_roots: vec![PathBuf::from("/")],
        ..ScanConfig::default()
    };
    let recorder = Arc::new(Recorder::default());
    let outcome = scan(&root, &db, &config, Some(recorder.clone()));

    let accesses = recorder.0.lock().unwrap();
    assert!(
        accesses.len() > 50,
        "the log sees the scan: {}",
        accesses.len()
    );
    let forbidden: Vec<PathBuf> = config
        .content_boundary
        .iter()
        .map(|p| root.join(p.strip_prefix("/").unwrap()))
        .collect();
    for (path, access) in accesses.iter() {
        assert!(
            !forbidden.iter().any(|f| path.starts_with(f)),
            "{access:?} {} is inside the content boundary",
            path.display()
        );
    }
    // The links themselves may be seen as links (lstat), never opened through.
    for (path, access) in accesses.iter() {
        if path.ends_with("etc/innocent") || path.ends_with("tmp/media") {
            assert_eq!(*access, Access::Stat, "{}", path.display());
        }
    }
    assert!(outcome.issues.is_empty(), "{:#?}", outcome.issues);
    let json = serde_json::to_string(&outcome.findings).unwrap();
    assert!(!json.contains("holiday"), "{json}");
    assert!(!json.contains("signal.db"), "{json}");
    assert!(!json.contains("DCIM"), "{json}");
    assert!(
        outcome
            .findings
            .iter()
            .all(|f| f.indicator.is_none() || f.evidence[0].subject.starts_with("/etc/innocent"))
    );
}

#[test]
fn a_walk_cut_short_makes_the_scan_incomplete() {
    let dir = tempfile::tempdir().unwrap();
    clean_tree(dir.path());
    let config = ScanConfig {
        max_entries: 3,
        ..ScanConfig::default()
    };
    let outcome = scan(dir.path(), &shared_db(), &config, None);
    assert!(outcome.findings.is_empty());
    assert!(
        outcome
            .issues
            .iter()
            .any(|i| i.problem.contains("entry budget exhausted")),
        "{:#?}",
        outcome.issues
    );
}

#[test]
fn a_binary_package_database_is_reported_not_skipped() {
    let dir = tempfile::tempdir().unwrap();
    clean_tree(dir.path()).file("/data/system/packages.xml", b"ABX\0\x01\x02binary");
    let outcome = scan(dir.path(), &shared_db(), &ScanConfig::default(), None);
    assert!(outcome.findings.is_empty());
    assert!(
        outcome
            .issues
            .iter()
            .any(|i| i.scanner == "packages" && i.problem.contains("ABX")),
        "{:#?}",
        outcome.issues
    );
}
