//! `cargo xtask bench`: Privacy Mode's figures, each next to its goal, and its peer measured
//! in the same run. Needs root (network namespaces). Run from a release build.
//!
//! - Enable to rules active in the kernel, library path: one atomic batch, the read-back dump
//!   and the comparison (`apply_verified`), median / p95 / max of 200, in a private namespace;
//!   peer: `nft -f` loading the same table (rendered as nft text, replacing as ours does).
//! - Enable to rules active, end to end: the daemon in a namespace on a private bus, the
//!   `Enable` call returning only after the read-back (median of 20).
//! - The daemon's idle resident memory after those 20 Enable/Disable cycles and 2 s idle.

use std::fmt::Write as _;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use enigm_e2e::netns::{TUNNEL, Topology, in_netns};
use enigm_e2e::{Daemon, PrivateBus, ensure_system_users, package_binary, require_tool};
use enigm_privacyd::firewall::{Firewall, apply_verified};
use enigm_privacyd::nft::Nftables;
use enigm_privacyd::profile::lockdown;
use enigm_privacyd::ruleset::{Hook, Interface, Match, Ruleset, TABLE, Transport, Verdict};

const LIBRARY_RUNS: usize = 200;
const PEER_RUNS: usize = 50;
const DAEMON_RUNS: usize = 20;
/// Goal: Enable to rules active in the kernel.
const GOAL_MS: f64 = 50.0;

fn main() -> ExitCode {
    match bench() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("privacy bench failed: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// (median, p95, max) in ms.
fn spread(mut samples: Vec<Duration>) -> (f64, f64, f64) {
    samples.sort();
    let at = |q: f64| ms(samples[((samples.len() - 1) as f64 * q).round() as usize]);
    (at(0.5), at(0.95), at(1.0))
}

fn ruleset() -> Result<Ruleset> {
    let profile = lockdown().resolve("lockdown", &[TUNNEL.to_owned(), "tun*".to_owned()])?;
    Ruleset::for_profile(&profile, Some(4242)).context("lockdown has a table")
}

fn nft_interface(interface: &Interface) -> String {
    format!("\"{}\"", interface.pattern())
}

/// The same table as nft text; with `replace`, deleting an existing one in the same
/// transaction (as ours does when the table is there).
fn nft_text(ruleset: &Ruleset, replace: bool) -> String {
    let mut out = if replace {
        format!("table inet {t}\ndelete table inet {t}\n", t = ruleset.table)
    } else {
        String::new()
    };
    let _ = writeln!(out, "table inet {} {{", ruleset.table);
    for hook in Hook::ALL {
        let _ = writeln!(
            out,
            "  chain {c} {{\n    type filter hook {c} priority 0; policy drop;",
            c = hook.chain()
        );
        for rule in ruleset.chain_rules(hook) {
            let mut line = String::from("    ");
            for m in &rule.matches {
                let part = match m {
                    Match::InInterface(i) => format!("iifname {}", nft_interface(i)),
                    Match::OutInterface(i) => format!("oifname {}", nft_interface(i)),
                    Match::Family(f) => format!(
                        "meta nfproto {}",
                        if f.number() == 2 { "ipv4" } else { "ipv6" }
                    ),
                    Match::Transport(t) => format!(
                        "meta l4proto {}",
                        match t {
                            Transport::Tcp => "tcp",
                            Transport::Udp => "udp",
                            Transport::Icmpv6 => "ipv6-icmp",
                        }
                    ),
                    Match::SourcePort(p) => format!("th sport {p}"),
                    Match::DestinationPort(p) => format!("th dport {p}"),
                    Match::Icmpv6Type(t) => format!("icmpv6 type {t}"),
                    Match::SocketUid(u) => format!("meta skuid {u}"),
                    Match::Established => "ct state established,related".into(),
                };
                line.push_str(&part);
                line.push(' ');
            }
            line.push_str(match rule.verdict {
                Verdict::Accept => "accept",
                Verdict::Drop => "drop",
            });
            let _ = writeln!(out, "{line} comment \"{}\"", rule.comment());
        }
        out.push_str("  }\n");
    }
    out.push_str("}\n");
    out
}

/// (fresh verified apply, fresh commit only, replacing verified apply).
type LibraryTimes = (Vec<Duration>, Vec<Duration>, Vec<Duration>);

fn library(device: &str) -> Result<LibraryTimes> {
    let ruleset = ruleset()?;
    in_netns(device, move || {
        let mut firewall = Nftables::new();
        let (mut verified, mut commit_only, mut replacing) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..LIBRARY_RUNS {
            firewall.remove(TABLE)?;
            let start = Instant::now();
            apply_verified(&mut firewall, &ruleset)?;
            verified.push(start.elapsed());
            let start = Instant::now();
            apply_verified(&mut firewall, &ruleset)?;
            replacing.push(start.elapsed());
            firewall.remove(TABLE)?;
            let start = Instant::now();
            firewall.replace(&ruleset)?;
            commit_only.push(start.elapsed());
        }
        firewall.remove(TABLE)?;
        Ok((verified, commit_only, replacing))
    })
}

fn peer(device: &str, dir: &std::path::Path, replace: bool) -> Result<Vec<Duration>> {
    let file = dir.join(format!("lockdown-{replace}.nft"));
    std::fs::write(&file, nft_text(&ruleset()?, replace))?;
    let mut samples = Vec::new();
    for _ in 0..PEER_RUNS {
        if !replace {
            let _ = Command::new("ip")
                .args([
                    "netns", "exec", device, "nft", "delete", "table", "inet", TABLE,
                ])
                .stderr(std::process::Stdio::null())
                .status();
        }
        // `ip netns exec` itself is not timed: nft runs inside the namespace through nsenter.
        let ns = format!("/run/netns/{device}");
        let start = Instant::now();
        let out = Command::new("nsenter")
            .arg(format!("--net={ns}"))
            .args(["nft", "-f"])
            .arg(&file)
            .output()?;
        samples.push(start.elapsed());
        if !out.status.success() {
            bail!("nft -f: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
    Ok(samples)
}

async fn daemon(device: &str, dir: &std::path::Path) -> Result<(Vec<Duration>, f64)> {
    ensure_system_users()?;
    let sysroot = dir.join("sysroot");
    std::fs::create_dir_all(&sysroot)?;
    let state = dir.join("state");
    std::fs::create_dir_all(&state)?;
    let user = nix::unistd::User::from_name("enigm-privacyd")?.context("no enigm-privacyd user")?;
    nix::unistd::chown(&state, Some(user.uid), Some(user.gid))?;
    let bus = PrivateBus::start("")?;
    let mut command = Command::new("ip");
    command
        .args(["netns", "exec", device])
        .arg(package_binary("enigm-privacyd", "enigm-privacyd")?)
        .arg("--sysroot")
        .arg(&sysroot)
        .env("DBUS_SYSTEM_BUS_ADDRESS", bus.address())
        .env(
            "ENIGM_PRIVACYD__PRIVACY__STATE_FILE",
            state.join("state.json"),
        )
        .env(
            "ENIGM_PRIVACYD__PRIVACY__TUNNELS",
            format!("[\"{TUNNEL}\"]"),
        )
        .env_remove("NOTIFY_SOCKET");
    let daemon = Daemon::spawn(command)?;
    bus.wait_for_name("org.enigm.PrivacyMode1", Duration::from_secs(10))
        .await
        .with_context(|| daemon.stderr())?;
    let connection = bus.connect().await?;
    let proxy = zbus::Proxy::new(
        &connection,
        "org.enigm.PrivacyMode1",
        "/org/enigm/PrivacyMode1",
        "org.enigm.PrivacyMode1",
    )
    .await?;
    let mut samples = Vec::new();
    for _ in 0..DAEMON_RUNS {
        let start = Instant::now();
        let reply = proxy.call_method("Enable", &("lockdown",)).await?;
        samples.push(start.elapsed());
        let (state, _): (String, String) = reply.body().deserialize()?;
        if state != "on" {
            bail!("Enable answered {state}");
        }
        proxy.call_method("Disable", &()).await?;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss = daemon.status_field("VmRSS")?;
    let kib: f64 = rss
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .context("VmRSS")?;
    Ok((samples, kib / 1024.0))
}

fn bench() -> Result<()> {
    if cfg!(debug_assertions) {
        eprintln!("warning: debug build; run `cargo xtask bench` for release figures");
    }
    require_tool("nft", "nftables")?;
    require_tool("nsenter", "util-linux")?;
    let topology = Topology::create()?;
    let dir = tempfile::tempdir()?;
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )?;
    let rules = ruleset()?.rules.len();

    let (verified, commit_only, replacing) = library(&topology.device)?;
    let peer_fresh = peer(&topology.device, dir.path(), false)?;
    let peer_replace = peer(&topology.device, dir.path(), true)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (daemon, rss) = runtime.block_on(daemon(&topology.device, dir.path()))?;

    let (v50, v95, vmax) = spread(verified);
    let (c50, c95, cmax) = spread(commit_only);
    let (r50, r95, rmax) = spread(replacing);
    let (p50, p95, pmax) = spread(peer_fresh);
    let (q50, q95, qmax) = spread(peer_replace);
    let (d50, d95, dmax) = spread(daemon);
    println!("\nenigm-privacyd: lockdown table with {rules} rules, 3 chains (IPv4 + IPv6)");
    println!(
        "{:<62} {:>8} {:>8} {:>8}  goal",
        "figure (ms)", "median", "p95", "max"
    );
    let row = |name: &str, (a, b, c): (f64, f64, f64), goal: &str| {
        println!("{name:<62} {a:>8.2} {b:>8.2} {c:>8.2}  {goal}");
    };
    row(
        &format!("Enable → rules verified in the kernel (library, n={LIBRARY_RUNS})"),
        (v50, v95, vmax),
        &format!("≤ {GOAL_MS} ms"),
    );
    row(
        "  of which: one batch committed (no read-back)",
        (c50, c95, cmax),
        "",
    );
    row(
        "replace an existing table, verified (profile switch, reconcile)",
        (r50, r95, rmax),
        &format!("≤ {GOAL_MS} ms"),
    );
    row(
        &format!("Enable over D-Bus → verified (daemon, n={DAEMON_RUNS})"),
        (d50, d95, dmax),
        &format!("≤ {GOAL_MS} ms"),
    );
    row(
        &format!("peer: nft -f creating the same table (process, n={PEER_RUNS})"),
        (p50, p95, pmax),
        "",
    );
    row(
        &format!("peer: nft -f replacing it (delete + create, n={PEER_RUNS})"),
        (q50, q95, qmax),
        "",
    );
    println!(
        "ratio nft -f / ours (median): create {:.1}x, replace {:.1}x",
        p50 / v50.max(f64::EPSILON),
        q50 / r50.max(f64::EPSILON)
    );
    println!("idle resident memory of the daemon (VmRSS after 2 s idle): {rss:.1} MiB");
    if v95 > GOAL_MS || d95 > GOAL_MS || r95 > GOAL_MS {
        eprintln!("note: p95 above the {GOAL_MS} ms goal");
    }
    Ok(())
}
