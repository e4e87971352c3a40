//! `enigmctl defense scan|sign-feed|status|findings|daemon-scan`: an Active Defense scan run
//! in this process, offline — on this device (`--root /`), a mounted image or an extracted dump
//! directory, the way investigators use MVT — signing an IOC feed for devices, and what
//! `enigm-defensed` reports over `org.enigm.ActiveDefense1`.
//!
//! Exit status of `scan`: 0 when the scan is complete and found nothing, 2 when there are
//! findings, 3 when there are none but some signal could not be read (the scan is
//! incomplete, so "clean" is not claimed), 1 when the scan could not run (e.g. a malformed
//! bundle or a refused feed).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use enigm_defense_scan::scanners::packages::default_inventories;
use enigm_defense_scan::{ContentBoundary, ScanConfig, ScanFs, ScanReport, Severity, run};
use enigm_ioc::IocDbBuilder;
use enigm_runtime::sysroot::Sysroot;

/// Where a device keeps the indicators it scans with when none are given.
const DEFAULT_IOCS: &str = "/etc/enigm/defense/iocs";

/// `enigmctl defense`.
#[derive(Args, Debug)]
pub struct DefenseArgs {
    #[command(subcommand)]
    action: Action,
}

#[derive(Subcommand, Debug)]
enum Action {
    /// Scan a device tree for indicators of compromise and suspicious signals.
    Scan(ScanArgs),
    /// Build and sign an IOC feed from STIX bundles (for the backend or Command to ship).
    SignFeed(SignArgs),
    /// enigm-defensed's last scan: findings count, highest severity, when.
    Status(BusArgs),
    /// enigm-defensed's findings from its last scan.
    Findings(BusArgs),
    /// Ask enigm-defensed to scan now.
    DaemonScan(BusArgs),
}

#[derive(Args, Debug)]
struct BusArgs {
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

const NAME: &str = "org.enigm.ActiveDefense1";
const PATH: &str = "/org/enigm/ActiveDefense1";

#[derive(Args, Debug)]
struct ScanArgs {
    /// STIX 2.1 bundle files or directories of them (default: /etc/enigm/defense/iocs).
    #[arg(long = "iocs", value_name = "PATH")]
    iocs: Vec<PathBuf>,
    /// A signed IOC feed (its signature is read from FEED.sig); needs --feed-key.
    #[arg(long, value_name = "FEED", requires = "feed_key")]
    feed: Option<PathBuf>,
    /// The Ed25519 public key (PEM) the feed must be signed with.
    #[arg(long, value_name = "PEM")]
    feed_key: Option<PathBuf>,
    /// The tree to scan: `/`, a mounted image or an extracted dump.
    #[arg(long, value_name = "DIR", default_value = "/")]
    root: PathBuf,
    /// A TOML scan configuration (content boundary, locations, limits); defaults otherwise.
    #[arg(long, value_name = "TOML")]
    config: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct SignArgs {
    /// The Ed25519 private key (PEM).
    #[arg(long, value_name = "PEM")]
    key: PathBuf,
    /// The feed's sequence number (devices refuse a feed older than the one they have).
    #[arg(long)]
    sequence: u64,
    /// Where to write the feed; the signature goes to OUT.sig.
    #[arg(long, value_name = "OUT")]
    out: PathBuf,
    /// STIX bundle files.
    #[arg(required = true)]
    bundles: Vec<PathBuf>,
}

impl DefenseArgs {
    /// Whether the action runs without the bus (`scan`, `sign-feed`).
    pub fn offline(&self) -> bool {
        matches!(self.action, Action::Scan(_) | Action::SignFeed(_))
    }
}

/// Runs `enigmctl defense scan|sign-feed`.
pub fn run_offline(args: &DefenseArgs) -> Result<ExitCode> {
    match &args.action {
        Action::Scan(scan) => run_scan(scan),
        Action::SignFeed(sign) => sign_feed(sign),
        _ => bail!("this action needs enigm-defensed on the bus"),
    }
}

/// Runs `enigmctl defense status|findings|daemon-scan` against `enigm-defensed`.
pub async fn run_bus(connection: &zbus::Connection, args: &DefenseArgs) -> Result<ExitCode> {
    let proxy = zbus::Proxy::new(connection, NAME, PATH, NAME)
        .await
        .context("connecting to enigm-defensed")?;
    let call = |method: &'static str| {
        let proxy = proxy.clone();
        async move {
            match proxy.call_method(method, &()).await {
                Ok(reply) => Ok(reply),
                Err(zbus::Error::MethodError(name, message, _)) => Err(anyhow::anyhow!(
                    "{method}: {} ({name})",
                    message.unwrap_or_default()
                )),
                Err(other) => Err(anyhow::Error::new(other).context("calling enigm-defensed")),
            }
        }
    };
    match &args.action {
        Action::Status(bus) => {
            let (count, highest, complete, at): (u32, String, bool, u64) =
                call("GetStatus").await?.body().deserialize()?;
            if bus.json {
                println!(
                    "{}",
                    serde_json::json!({"findings": count, "highest": highest,
                        "complete": complete, "scanned_at": at})
                );
            } else if at == 0 {
                println!("no scan has run yet");
            } else {
                let completeness = if complete { "" } else { " (incomplete)" };
                println!(
                    "last scan at {at} (seconds since the epoch){completeness}: {count} finding(s), highest {highest}"
                );
            }
            Ok(exit_for(count, complete))
        }
        Action::Findings(bus) => {
            let text: String = call("Findings").await?.body().deserialize()?;
            let findings: Vec<enigm_defense_scan::Finding> =
                serde_json::from_str(&text).context("enigm-defensed sent malformed findings")?;
            if bus.json {
                println!("{}", serde_json::to_string_pretty(&findings)?);
            } else if findings.is_empty() {
                println!("No findings.");
            } else {
                for finding in &findings {
                    print_finding(finding);
                }
            }
            Ok(exit_for(
                u32::try_from(findings.len()).unwrap_or(u32::MAX),
                true,
            ))
        }
        Action::DaemonScan(bus) => {
            let (count, highest, complete): (u32, String, bool) =
                call("Scan").await?.body().deserialize()?;
            if bus.json {
                println!(
                    "{}",
                    serde_json::json!({"findings": count, "highest": highest, "complete": complete})
                );
            } else {
                println!("scan finished: {count} finding(s), highest {highest}");
            }
            Ok(exit_for(count, complete))
        }
        Action::Scan(_) | Action::SignFeed(_) => run_offline(args),
    }
}

/// The scan exit status: 2 with findings, 3 when incomplete without, 0 otherwise.
fn exit_for(findings: u32, complete: bool) -> ExitCode {
    if findings > 0 {
        ExitCode::from(2)
    } else if !complete {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    }
}

fn signature_path(feed: &std::path::Path) -> PathBuf {
    let mut name = feed.as_os_str().to_owned();
    name.push(".sig");
    PathBuf::from(name)
}

fn run_scan(args: &ScanArgs) -> Result<ExitCode> {
    let config: ScanConfig = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?
        }
        None => ScanConfig::default(),
    };
    let mut builder = IocDbBuilder::new();
    let mut iocs = args.iocs.clone();
    if iocs.is_empty() && args.feed.is_none() {
        iocs.push(PathBuf::from(DEFAULT_IOCS));
    }
    enigm_ioc::load::add_paths(&mut builder, &iocs).context("loading indicators")?;
    if let (Some(feed), Some(key)) = (&args.feed, &args.feed_key) {
        let pem = std::fs::read(key).with_context(|| format!("reading {}", key.display()))?;
        enigm_ioc::load::add_signed_feed(&mut builder, feed, &signature_path(feed), &pem)
            .context("loading the signed feed")?;
    }
    let db = builder.build();
    if db.indicators().is_empty() {
        bail!("no indicators loaded: a scan without them would claim too much");
    }
    if !args.root.is_dir() {
        bail!("{} is not a directory", args.root.display());
    }

    let started = Instant::now();
    let fs = ScanFs::new(
        Sysroot::new(&args.root),
        ContentBoundary::new(config.content_boundary.iter()),
    );
    let outcome = run(&fs, &db, &config, &default_inventories());
    let report = ScanReport::new(
        args.root.display().to_string(),
        db.stats().clone(),
        outcome,
        started.elapsed(),
    );
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    Ok(exit_for(
        u32::try_from(report.outcome.findings.len()).unwrap_or(u32::MAX),
        report.complete,
    ))
}

fn print_report(report: &ScanReport) {
    let stats = &report.indicators;
    println!(
        "Active Defense scan of {} ({} ms): {} indicators in {} collections from {} bundles",
        report.root, report.duration_ms, stats.skipped.indicators, stats.collections, stats.bundles
    );
    if !stats.skipped.unknown_types.is_empty() || !stats.skipped.unsupported.is_empty() {
        let skipped: Vec<String> = stats
            .skipped
            .unknown_types
            .iter()
            .chain(&stats.skipped.unsupported)
            .map(|(what, count)| format!("{what} ×{count}"))
            .collect();
        println!("  skipped indicators: {}", skipped.join(", "));
    }
    let findings = &report.outcome.findings;
    if findings.is_empty() {
        println!("\nNo findings.");
    } else {
        println!("\n{} finding(s):", findings.len());
    }
    for finding in findings {
        print_finding(finding);
    }
    if !report.complete {
        println!("\nIncomplete: some signals could not be read:");
        for issue in &report.outcome.issues {
            println!("  {}: {}", issue.scanner, issue.problem);
        }
    }
}

fn print_finding(finding: &enigm_defense_scan::Finding) {
    let label = match finding.severity {
        Severity::Critical => "CRITICAL",
        Severity::High => "HIGH",
        Severity::Medium => "MEDIUM",
        Severity::Low => "LOW",
    };
    println!("\n[{label}] {}", finding.title);
    println!("  id: {}", finding.id);
    if let Some(indicator) = &finding.indicator {
        println!(
            "  indicator: {} {} ({})",
            indicator.id,
            indicator.pattern,
            indicator.collections.join(", ")
        );
    }
    for evidence in &finding.evidence {
        let mut line = format!("  evidence: {} {}", evidence.kind, evidence.subject);
        if let Some(matched) = &evidence.matched {
            line.push_str(&format!(" [{matched}]"));
        }
        if let Some(detail) = &evidence.detail {
            line.push_str(&format!(" ({detail})"));
        }
        println!("{line}");
    }
    println!("  action: {}", finding.action);
}

fn sign_feed(args: &SignArgs) -> Result<ExitCode> {
    let pem =
        std::fs::read(&args.key).with_context(|| format!("reading {}", args.key.display()))?;
    let key = enigm_ioc::feed::private_key_from_pem(&pem)?;
    let mut bundles = Vec::new();
    for path in &args.bundles {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        // Refuse to sign what devices would refuse to load.
        enigm_ioc::stix::parse_bundle(&path.display().to_string(), &bytes)?;
        bundles.push(bytes);
    }
    let slices: Vec<&[u8]> = bundles.iter().map(Vec::as_slice).collect();
    let feed = enigm_ioc::feed::build_feed(args.sequence, &slices)?;
    let signature = enigm_ioc::feed::sign_feed(&feed, &key)?;
    std::fs::write(&args.out, &feed).with_context(|| format!("writing {}", args.out.display()))?;
    let sig_path = signature_path(&args.out);
    std::fs::write(&sig_path, &signature)
        .with_context(|| format!("writing {}", sig_path.display()))?;
    println!(
        "signed feed {} (sequence {}, {} bundles) and {}",
        args.out.display(),
        args.sequence,
        bundles.len(),
        sig_path.display()
    );
    Ok(ExitCode::SUCCESS)
}
