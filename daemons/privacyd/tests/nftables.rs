//! The netlink firewall against the real kernel, in a private network namespace of a test
//! thread (needs root): the table the kernel reports back is exactly the intended one for
//! every profile shape, replacing is idempotent, a table of someone else's stays, and removal
//! takes exactly ours. `nft list table` is the outside oracle for what the kernel holds.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

use enigm_privacyd::firewall::{Firewall, apply_verified, verify};
use enigm_privacyd::nft::Nftables;
use enigm_privacyd::profile::{NetworkMode, lockdown};
use enigm_privacyd::ruleset::{Ruleset, TABLE};

/// Runs `body` on a thread with a network namespace of its own.
fn in_private_netns<T: Send + 'static>(body: impl FnOnce() -> T + Send + 'static) -> T {
    let nft = Command::new("nft").arg("--version").output();
    assert!(
        nft.is_ok_and(|o| o.status.success()),
        "nft (Debian nftables) is the oracle of these tests: run `cargo xtask install-deps`"
    );
    std::thread::spawn(move || {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare (root?)");
        body()
    })
    .join()
    .unwrap()
}

fn nft_list(table: &str) -> String {
    // /proc/thread-self/ns/net is this thread's namespace: run nft inside it.
    let ns = format!(
        "/proc/{}/task/{}/ns/net",
        std::process::id(),
        nix::unistd::gettid()
    );
    let out = Command::new("nsenter")
        .arg(format!("--net={ns}"))
        .args(["nft", "list", "table", "inet", table])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn rulesets() -> Vec<Ruleset> {
    let mut tunnel = lockdown();
    tunnel.tunnels = vec!["wg0".into(), "tun*".into()];
    let mut tor = tunnel.clone();
    tor.tor = true;
    let mut offline = lockdown();
    offline.network = NetworkMode::Offline;
    vec![
        Ruleset::for_profile(&tunnel, None).unwrap(),
        Ruleset::for_profile(&tor, Some(4242)).unwrap(),
        Ruleset::for_profile(&offline, None).unwrap(),
    ]
}

#[test]
fn the_kernel_holds_exactly_the_intended_table() {
    in_private_netns(|| {
        let mut firewall = Nftables::new();
        assert_eq!(firewall.read(TABLE).unwrap(), None);
        for ruleset in rulesets() {
            apply_verified(&mut firewall, &ruleset).unwrap();
            // Twice: replacing an existing table is the same one batch.
            apply_verified(&mut firewall, &ruleset).unwrap();
            let listed = nft_list(TABLE);
            assert!(listed.contains("policy drop"), "{listed}");
            assert!(
                listed.contains("comment \"enigm:out-loopback\""),
                "{listed}"
            );
        }
        let listed = nft_list(TABLE);
        assert!(
            !listed.contains("wg0"),
            "the last (offline) table replaced the others: {listed}"
        );
        firewall.remove(TABLE).unwrap();
        assert_eq!(firewall.read(TABLE).unwrap(), None);
        firewall.remove(TABLE).unwrap();
    });
}

#[test]
fn removal_leaves_other_tables_and_tampering_is_seen() {
    in_private_netns(|| {
        let ns = format!(
            "/proc/{}/task/{}/ns/net",
            std::process::id(),
            nix::unistd::gettid()
        );
        let nft = |script: &str| {
            let status = Command::new("nsenter")
                .arg(format!("--net={ns}"))
                .args(["nft", script])
                .status()
                .unwrap();
            assert!(status.success(), "nft {script}");
        };
        nft("add table inet someone_else");
        let mut firewall = Nftables::new();
        let ruleset = rulesets().remove(0);
        apply_verified(&mut firewall, &ruleset).unwrap();
        // Someone adds an accept rule to our output chain: the read-back sees it.
        nft(&format!("insert rule inet {TABLE} output accept"));
        let err = verify(&mut firewall, &ruleset).unwrap_err();
        assert!(
            err.to_string().contains("chain output differs from rule 0"),
            "{err}"
        );
        firewall.remove(TABLE).unwrap();
        assert!(nft_list("someone_else").contains("table inet someone_else"));
    });
}

#[test]
fn replacing_repairs_a_tampered_table() {
    in_private_netns(|| {
        let ns = format!(
            "/proc/{}/task/{}/ns/net",
            std::process::id(),
            nix::unistd::gettid()
        );
        let nft = |script: &str| {
            let status = Command::new("nsenter")
                .arg(format!("--net={ns}"))
                .args(["nft", script])
                .status()
                .unwrap();
            assert!(status.success(), "nft {script}");
        };
        let mut firewall = Nftables::new();
        let ruleset = rulesets().remove(0);
        apply_verified(&mut firewall, &ruleset).unwrap();
        // Someone opens the output policy, adds an accepting chain of their own, and
        // re-creates forward at another priority with a rule in it.
        nft(&format!(
            "add chain inet {TABLE} output {{ policy accept; }}"
        ));
        nft(&format!(
            "add chain inet {TABLE} sneaky {{ type filter hook output priority -5; policy accept; }}"
        ));
        nft(&format!("add rule inet {TABLE} sneaky accept"));
        nft(&format!("delete chain inet {TABLE} forward"));
        nft(&format!(
            "add chain inet {TABLE} forward {{ type filter hook forward priority 10; policy accept; }}"
        ));
        nft(&format!("add rule inet {TABLE} forward accept"));
        assert!(verify(&mut firewall, &ruleset).is_err());
        apply_verified(&mut firewall, &ruleset).unwrap();
        let listed = nft_list(TABLE);
        assert!(!listed.contains("sneaky"), "{listed}");
        assert!(!listed.contains("policy accept"), "{listed}");
        firewall.remove(TABLE).unwrap();
    });
}
