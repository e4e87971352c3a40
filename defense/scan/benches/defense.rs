//! Active Defense benchmark (issue 7): load the shared MVT bundles, match 100,000 observed
//! domains and 10,000 process names, and run a full scan of a generated tree with 100,000
//! files and 500 processes (criterion); then the same loading and matching with MVT's
//! `Indicators` class (PyPI `mvt`, installed into a virtual environment next to the target
//! directory on first use, or the interpreter named by `ENIGM_MVT_PYTHON`) on the same
//! bundles and observations, in the same run, printed side by side with the ratio.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use criterion::Criterion;
use enigm_defense_scan::scanners::packages::default_inventories;
use enigm_defense_scan::{ContentBoundary, ScanConfig, ScanFs, run};
use enigm_ioc::{Attribute, IocDb, load_paths};
use enigm_runtime::sysroot::Sysroot;

const STIX: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/testdata/stix2"
);
const DOMAINS: usize = 100_000;
const PROCESSES: usize = 10_000;
const FILES: usize = 100_000;
const SCAN_PROCESSES: usize = 500;

/// Deterministic pseudo-random numbers (xorshift), so every run matches the same inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// 100,000 domains: 1 in 100 an indicator domain (half exact, half a sub-domain of one that
/// is a registered domain, which MVT matches too), the rest synthetic.
fn observed_domains(db: &IocDb) -> Vec<String> {
    let mut indicator_domains: Vec<String> = db
        .values_of(Attribute::DomainName)
        .map(str::to_owned)
        .collect();
    indicator_domains.sort();
    let registered: Vec<&String> = indicator_domains
        .iter()
        .filter(|d| d.matches('.').count() == 1)
        .collect();
    let tlds = ["com", "net", "org", "info", "io", "de", "fr"];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    (0..DOMAINS)
        .map(|i| match i % 200 {
            0 => indicator_domains[rng.next() as usize % indicator_domains.len()].clone(),
            100 => format!(
                "cdn{i}.{}",
                registered[rng.next() as usize % registered.len()]
            ),
            _ => format!(
                "host{}.site{}.{}",
                rng.next() % 10_000,
                rng.next() % 50_000,
                tlds[rng.next() as usize % tlds.len()]
            ),
        })
        .collect()
}

/// 10,000 process names: 1 in 100 an indicator name, the rest synthetic.
fn observed_processes(db: &IocDb) -> Vec<String> {
    let mut names: Vec<String> = db
        .values_of(Attribute::ProcessName)
        .map(str::to_owned)
        .collect();
    names.sort();
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    (0..PROCESSES)
        .map(|i| {
            if i % 100 == 0 {
                names[rng.next() as usize % names.len()].clone()
            } else {
                format!("daemon-{}", rng.next() % 100_000)
            }
        })
        .collect()
}

fn match_all(db: &IocDb, domains: &[String], processes: &[String]) -> (usize, usize) {
    let mut hits = Vec::new();
    let mut domain_matches = 0;
    for domain in domains {
        hits.clear();
        db.match_value(Attribute::DomainName, domain, &mut hits);
        domain_matches += usize::from(!hits.is_empty());
    }
    let mut process_matches = 0;
    for process in processes {
        hits.clear();
        db.match_value(Attribute::ProcessName, process, &mut hits);
        process_matches += usize::from(!hits.is_empty());
    }
    (domain_matches, process_matches)
}

/// A device tree with `FILES` files under /opt and `SCAN_PROCESSES` processes.
fn generate_tree(root: &Path) {
    for dir in 0..100 {
        let path = root.join(format!("opt/pkg{dir:03}"));
        std::fs::create_dir_all(&path).unwrap();
        for file in 0..FILES / 100 {
            std::fs::write(path.join(format!("f{file:04}.so")), format!("{dir}:{file}")).unwrap();
        }
    }
    for pid in 0..SCAN_PROCESSES {
        let dir = root.join(format!("proc/{}", 1000 + pid));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("comm"), format!("worker{pid}\n")).unwrap();
        std::fs::write(dir.join("cmdline"), format!("/usr/bin/worker{pid}\0-x\0")).unwrap();
        std::fs::write(dir.join("environ"), "HOME=/\0PATH=/usr/bin\0").unwrap();
        std::os::unix::fs::symlink(format!("/usr/bin/worker{pid}"), dir.join("exe")).unwrap();
    }
    std::fs::create_dir_all(root.join("proc/net")).unwrap();
    std::fs::write(
        root.join("proc/net/tcp"),
        "  sl  local_address rem_address   st\n",
    )
    .unwrap();
    std::fs::write(root.join("proc/mounts"), "/dev/dm-0 / erofs ro 0 0\n").unwrap();
}

fn criterion_benches(c: &mut Criterion, db: &IocDb, domains: &[String], processes: &[String]) {
    let paths = [PathBuf::from(STIX)];
    c.bench_function("load the 4 shared bundles (1,985 indicators)", |b| {
        b.iter(|| load_paths(black_box(&paths)).unwrap())
    });
    c.bench_function("match 100,000 domains", |b| {
        let mut hits = Vec::new();
        b.iter(|| {
            for domain in domains {
                hits.clear();
                db.match_value(Attribute::DomainName, domain, &mut hits);
            }
            hits.len()
        })
    });
    c.bench_function("match 10,000 process names", |b| {
        let mut hits = Vec::new();
        b.iter(|| {
            for process in processes {
                hits.clear();
                db.match_value(Attribute::ProcessName, process, &mut hits);
            }
            hits.len()
        })
    });
    let dir = tempfile::tempdir().unwrap();
    generate_tree(dir.path());
    let config = ScanConfig::default();
    let fs = ScanFs::new(
        Sysroot::new(dir.path()),
        ContentBoundary::new(config.content_boundary.iter()),
    );
    let inventories = default_inventories();
    let outcome = run(&fs, db, &config, &inventories);
    assert_eq!(
        outcome.observed.get("files").copied(),
        Some(FILES as u64 + 100)
    );
    assert_eq!(
        outcome.observed.get("processes").copied(),
        Some(SCAN_PROCESSES as u64)
    );
    let mut group = c.benchmark_group("full scan");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.bench_function("100,000 files (SHA-256 each) and 500 processes", |b| {
        b.iter(|| run(&fs, db, &config, &inventories))
    });
    group.finish();
}

/// The Python interpreter with `mvt` importable: `ENIGM_MVT_PYTHON`, or a virtual
/// environment next to the target directory, created and filled with `pip install mvt`.
fn mvt_python() -> Option<PathBuf> {
    if let Some(python) = std::env::var_os("ENIGM_MVT_PYTHON") {
        return Some(PathBuf::from(python));
    }
    let exe = std::env::current_exe().ok()?;
    let target = exe.ancestors().nth(3)?.to_owned();
    let venv = target.join("mvt-venv");
    let python = venv.join("bin/python3");
    let importable = |python: &Path| {
        Command::new(python)
            .args(["-c", "import mvt.common.indicators"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if importable(&python) {
        return Some(python);
    }
    eprintln!("bench: installing mvt from PyPI into {}", venv.display());
    let created = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .is_ok_and(|s| s.success());
    let installed = created
        && Command::new(&python)
            .args(["-m", "pip", "install", "--quiet", "mvt"])
            .status()
            .is_ok_and(|s| s.success());
    (installed && importable(&python)).then_some(python)
}

fn compare_with_mvt(domains: &[String], processes: &[String]) {
    // Ours: the same work from cold (read and parse the bundles, build, match), best of 5.
    let mut best = Duration::MAX;
    let mut best_load = Duration::MAX;
    let mut counts = (0, 0);
    for _ in 0..5 {
        let started = Instant::now();
        let db = load_paths(&[PathBuf::from(STIX)]).unwrap();
        let loaded = started.elapsed();
        counts = match_all(&db, domains, processes);
        best = best.min(started.elapsed());
        best_load = best_load.min(loaded);
    }
    println!(
        "\nenigm-ioc: load {:.1} ms + match 100,000 domains and 10,000 processes = {:.1} ms total \
         ({} domains and {} processes matched)",
        best_load.as_secs_f64() * 1e3,
        best.as_secs_f64() * 1e3,
        counts.0,
        counts.1
    );

    let Some(python) = mvt_python() else {
        println!("MVT peer: could not install mvt (pip install mvt); no comparison this run");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let domains_file = dir.path().join("domains.txt");
    let processes_file = dir.path().join("processes.txt");
    std::fs::write(&domains_file, domains.join("\n")).unwrap();
    std::fs::write(&processes_file, processes.join("\n")).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/mvt_peer.py");
    let output = Command::new(&python)
        .arg(script)
        .arg(STIX)
        .arg(&domains_file)
        .arg(&processes_file)
        .output()
        .unwrap();
    if !output.status.success() {
        println!(
            "MVT peer failed: {}",
            String::from_utf8_lossy(&output.stderr)
                .lines()
                .last()
                .unwrap_or("")
        );
        return;
    }
    let result: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let seconds = |key: &str| result[key].as_f64().unwrap_or(f64::NAN);
    let total = seconds("load_s") + seconds("domains_s") + seconds("processes_s");
    let version = Command::new(&python)
        .args([
            "-c",
            "import importlib.metadata as m; print(m.version('mvt'))",
        ])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    println!(
        "MVT {version} (Indicators): load {:.1} ms + domains {:.1} ms + processes {:.1} ms = {:.1} ms total \
         ({} domains and {} processes matched)",
        seconds("load_s") * 1e3,
        seconds("domains_s") * 1e3,
        seconds("processes_s") * 1e3,
        total * 1e3,
        result["domain_matches"],
        result["process_matches"]
    );
    println!(
        "ratio: MVT / enigm-ioc = {:.0}x (goal >= 50x)",
        total / best.as_secs_f64()
    );
}

fn main() {
    let db = load_paths(&[PathBuf::from(STIX)]).unwrap();
    let domains = observed_domains(&db);
    let processes = observed_processes(&db);
    let mut criterion = Criterion::default().configure_from_args();
    criterion_benches(&mut criterion, &db, &domains, &processes);
    criterion.final_summary();
    compare_with_mvt(&domains, &processes);
}
