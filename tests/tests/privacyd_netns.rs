//! Privacy Mode's network lockdown against real traffic, in network namespaces this test
//! creates: a device namespace with an uplink and a tunnel (veth pairs standing in for the
//! real network and the VPN) to an outside namespace running TCP, UDP and DNS servers.
//!
//! The firewall code runs inside the device namespace (a thread that entered it); the
//! daemon-level tests (SIGKILL, restart) are in `privacyd.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use enigm_e2e::netns::{
    Capture, Family, LEAK_PORT, Path, ProbeResult, Sender, TUNNEL, Topology, in_netns, leak_report,
    outside,
};
use enigm_privacyd::firewall::{Firewall, apply_verified};
use enigm_privacyd::nft::Nftables;
use enigm_privacyd::profile::lockdown;
use enigm_privacyd::ruleset::{Ruleset, TABLE};

fn lockdown_ruleset() -> Ruleset {
    let profile = lockdown()
        .resolve("lockdown", &[TUNNEL.to_owned()])
        .unwrap();
    Ruleset::for_profile(&profile, None).unwrap()
}

fn enable(device: &str) {
    in_netns(device, || {
        Ok(apply_verified(&mut Nftables::new(), &lockdown_ruleset())?)
    })
    .unwrap();
}

fn disable(device: &str) {
    in_netns(device, || Ok(Nftables::new().remove(TABLE)?)).unwrap();
}

fn failures(results: &[ProbeResult], want: impl Fn(&ProbeResult) -> bool) -> Vec<ProbeResult> {
    results
        .iter()
        .filter(|r| r.reached != want(r))
        .copied()
        .collect()
}

#[test]
fn lockdown_blocks_the_uplink_keeps_the_tunnel_and_disable_restores() {
    let topology = Topology::create().unwrap();
    // Before: everything reaches the outside (Topology::create waits for that).
    let before = topology.probe_all().unwrap();
    assert_eq!(before.len(), 20, "5 probes x 2 families x 2 paths");
    assert_eq!(failures(&before, |_| true), []);

    enable(&topology.device);
    let during = topology.probe_all().unwrap();
    assert_eq!(
        failures(&during, |r| r.path == Path::Tunnel),
        [],
        "with the lockdown on only the tunnel may carry traffic (TCP, UDP, ICMP, DNS; v4 and v6)"
    );

    disable(&topology.device);
    let after = topology.probe_all().unwrap();
    assert_eq!(failures(&after, |_| true), [], "all restored after Disable");
}

#[test]
fn no_packet_leaves_after_enable_returns() {
    let topology = Topology::create().unwrap();
    for family in [Family::V4, Family::V6] {
        let capture = Capture::start(&topology.outside).unwrap();
        let target = SocketAddr::new(outside(family, Path::Uplink), LEAK_PORT);
        let sender = Sender::start(&topology.device, target, Duration::from_micros(200)).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        enable(&topology.device);
        let returned = Instant::now();
        // Replacing the table (a profile switch, a reconcile) never opens a gap either.
        for _ in 0..50 {
            enable(&topology.device);
        }
        std::thread::sleep(Duration::from_millis(300));
        let sent = sender.finish().unwrap();
        // Give anything in flight time to arrive before the capture stops.
        std::thread::sleep(Duration::from_millis(100));
        let seen = capture.finish().unwrap();

        let report = leak_report(&sent, &seen, returned);
        assert!(
            report.sent_after > 100,
            "{family:?}: the sender kept sending: {report:?}"
        );
        assert!(
            report.captured > 100,
            "{family:?}: the capture saw the traffic before: {report:?}"
        );
        assert_eq!(
            report.arrived_after, 0,
            "{family:?}: packets arrived after Enable returned"
        );
        assert_eq!(
            report.leaked, 0,
            "{family:?}: packets sent after Enable returned got out"
        );
        disable(&topology.device);
    }
}
