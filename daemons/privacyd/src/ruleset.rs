//! The network lockdown as plain data: one `inet` table, three base chains with a drop
//! policy, and the few rules that let loopback, the tunnel, Tor, DHCPv4 and neighbour
//! discovery through.
//!
//! [`Ruleset::for_profile`] builds it from a profile with no I/O; `crate::nft` turns it into
//! one netlink batch and reads the kernel's copy back into the same terms
//! ([`Ruleset::expected_table`]), so the comparison is plain equality.

use crate::kernel::{KernelChain, KernelExpr, KernelRule, KernelTable};
use crate::profile::{NetworkMode, Profile};

/// The table the daemon owns, in the `inet` family (IPv4 and IPv6).
pub const TABLE: &str = "enigm_privacy";

/// Prefix of the comment on every rule of ours.
pub const COMMENT_PREFIX: &str = "enigm:";

/// Base chain priority: the standard filter priority.
pub const PRIORITY: i32 = 0;

/// A netfilter hook, and the base chain of ours on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Hook {
    /// Packets for this host.
    Input,
    /// Packets this host sends.
    Output,
    /// Packets routed through this host.
    Forward,
}

impl Hook {
    /// Our chains, in creation order.
    pub const ALL: [Hook; 3] = [Hook::Input, Hook::Output, Hook::Forward];

    /// The chain's name.
    pub fn chain(self) -> &'static str {
        match self {
            Hook::Input => "input",
            Hook::Output => "output",
            Hook::Forward => "forward",
        }
    }

    /// The kernel's hook number (`NF_INET_*`).
    pub fn number(self) -> u32 {
        match self {
            Hook::Input => 1,
            Hook::Forward => 2,
            Hook::Output => 3,
        }
    }
}

/// An IP family (`meta nfproto`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl Family {
    /// `NFPROTO_IPV4` / `NFPROTO_IPV6`.
    pub fn number(self) -> u8 {
        match self {
            Family::V4 => 2,
            Family::V6 => 10,
        }
    }
}

/// A transport protocol (`meta l4proto`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// ICMPv6.
    Icmpv6,
}

impl Transport {
    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Transport::Tcp => 6,
            Transport::Udp => 17,
            Transport::Icmpv6 => 58,
        }
    }
}

/// An interface name, exact or a prefix (`wg*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Interface {
    /// Exactly this name.
    Exact(String),
    /// Any name starting with this.
    Prefix(String),
}

impl Interface {
    /// From a configured pattern: a trailing `*` makes it a prefix.
    pub fn from_pattern(pattern: &str) -> Interface {
        match pattern.strip_suffix('*') {
            Some(prefix) => Interface::Prefix(prefix.to_owned()),
            None => Interface::Exact(pattern.to_owned()),
        }
    }

    /// The bytes the rule compares the interface name with (NUL-terminated when exact).
    pub fn bytes(&self) -> Vec<u8> {
        match self {
            Interface::Exact(name) => {
                let mut bytes = name.as_bytes().to_vec();
                bytes.push(0);
                bytes
            }
            Interface::Prefix(prefix) => prefix.as_bytes().to_vec(),
        }
    }

    /// For rule comments: the pattern as configured.
    pub fn pattern(&self) -> String {
        match self {
            Interface::Exact(name) => name.clone(),
            Interface::Prefix(prefix) => format!("{prefix}*"),
        }
    }
}

/// One condition of a rule; a rule matches when all of its conditions do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Match {
    /// Arrived on this interface (`meta iifname`).
    InInterface(Interface),
    /// Leaves through this interface (`meta oifname`).
    OutInterface(Interface),
    /// IPv4 or IPv6 (`meta nfproto`).
    Family(Family),
    /// TCP, UDP or ICMPv6 (`meta l4proto`).
    Transport(Transport),
    /// Source port (TCP or UDP; after a [`Match::Transport`]).
    SourcePort(u16),
    /// Destination port (TCP or UDP; after a [`Match::Transport`]).
    DestinationPort(u16),
    /// ICMPv6 type (after `Transport(Icmpv6)`).
    Icmpv6Type(u8),
    /// Sent by a socket of this uid (`meta skuid`).
    SocketUid(u32),
    /// Part of a connection already accepted (`ct state established,related`).
    Established,
}

/// What a matching rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Let the packet through (this table).
    Accept,
    /// Drop it.
    Drop,
}

impl Verdict {
    /// `NF_ACCEPT` / `NF_DROP`.
    pub fn code(self) -> u32 {
        match self {
            Verdict::Accept => 1,
            Verdict::Drop => 0,
        }
    }
}

/// One rule in one of our chains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// The chain.
    pub hook: Hook,
    /// A short name, unique in the table; stored in the kernel as the rule's comment.
    pub name: String,
    /// Conditions, all of which must hold.
    pub matches: Vec<Match>,
    /// What a match does.
    pub verdict: Verdict,
}

impl Rule {
    fn new(hook: Hook, name: impl Into<String>, matches: Vec<Match>, verdict: Verdict) -> Self {
        Self {
            hook,
            name: name.into(),
            matches,
            verdict,
        }
    }

    /// The comment stored with the rule.
    pub fn comment(&self) -> String {
        format!("{COMMENT_PREFIX}{}", self.name)
    }
}

/// NDP message types (RFC 4861): router solicitation and advertisement, neighbour
/// solicitation and advertisement, redirect.
pub const NDP_TYPES: [u8; 5] = [133, 134, 135, 136, 137];

/// The whole table: every base chain drops what no rule accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ruleset {
    /// The table's name ([`TABLE`]).
    pub table: String,
    /// Rules, in order, each in its chain.
    pub rules: Vec<Rule>,
}

impl Ruleset {
    /// The table for `profile` (already resolved: tunnels filled in), with `tor_uid` the Tor
    /// daemon's uid when the profile lets Tor out. `None` for an open network.
    pub fn for_profile(profile: &Profile, tor_uid: Option<u32>) -> Option<Ruleset> {
        let mut rules = Vec::new();
        let lo = || Interface::Exact("lo".into());
        rules.push(Rule::new(
            Hook::Input,
            "in-loopback",
            vec![Match::InInterface(lo())],
            Verdict::Accept,
        ));
        rules.push(Rule::new(
            Hook::Output,
            "out-loopback",
            vec![Match::OutInterface(lo())],
            Verdict::Accept,
        ));
        match profile.network {
            NetworkMode::Open => return None,
            NetworkMode::Offline => {}
            NetworkMode::TunnelOnly => tunnel_rules(profile, tor_uid, &mut rules),
        }
        Some(Ruleset {
            table: TABLE.to_owned(),
            rules,
        })
    }

    /// The rules of one chain, in order.
    pub fn chain_rules(&self, hook: Hook) -> impl Iterator<Item = &Rule> {
        self.rules.iter().filter(move |rule| rule.hook == hook)
    }

    /// What the kernel should report for this table, in the terms `crate::nft` reads it in.
    pub fn expected_table(&self) -> KernelTable {
        let chains = Hook::ALL
            .iter()
            .map(|hook| KernelChain {
                name: hook.chain().to_owned(),
                hook: Some(hook.number()),
                priority: Some(PRIORITY),
                policy: Some(Verdict::Drop.code()),
                chain_type: Some("filter".to_owned()),
            })
            .collect();
        let rules = Hook::ALL
            .iter()
            .flat_map(|hook| self.chain_rules(*hook))
            .map(|rule| KernelRule {
                chain: rule.hook.chain().to_owned(),
                comment: Some(rule.comment()),
                exprs: expected_exprs(rule),
            })
            .collect();
        KernelTable {
            name: self.table.clone(),
            chains,
            rules,
        }
    }
}

fn tunnel_rules(profile: &Profile, tor_uid: Option<u32>, rules: &mut Vec<Rule>) {
    for tunnel in &profile.tunnels {
        let interface = Interface::from_pattern(tunnel);
        let pattern = interface.pattern();
        rules.push(Rule::new(
            Hook::Input,
            format!("in-tunnel-{pattern}"),
            vec![Match::InInterface(interface.clone())],
            Verdict::Accept,
        ));
        rules.push(Rule::new(
            Hook::Output,
            format!("out-tunnel-{pattern}"),
            vec![Match::OutInterface(interface)],
            Verdict::Accept,
        ));
    }
    // DNS leaves only through the tunnel: not even an allowed uid may send it elsewhere.
    for transport in [Transport::Udp, Transport::Tcp] {
        let name = if transport == Transport::Udp {
            "udp"
        } else {
            "tcp"
        };
        rules.push(Rule::new(
            Hook::Output,
            format!("out-dns-{name}-outside-tunnel"),
            vec![Match::Transport(transport), Match::DestinationPort(53)],
            Verdict::Drop,
        ));
    }
    // DHCPv4 client: requests out (68 → 67), answers in (67 → 68).
    rules.push(Rule::new(
        Hook::Output,
        "out-dhcp4",
        vec![
            Match::Family(Family::V4),
            Match::Transport(Transport::Udp),
            Match::SourcePort(68),
            Match::DestinationPort(67),
        ],
        Verdict::Accept,
    ));
    rules.push(Rule::new(
        Hook::Input,
        "in-dhcp4",
        vec![
            Match::Family(Family::V4),
            Match::Transport(Transport::Udp),
            Match::SourcePort(67),
            Match::DestinationPort(68),
        ],
        Verdict::Accept,
    ));
    // IPv6 neighbour discovery, both ways.
    for (hook, direction) in [(Hook::Input, "in"), (Hook::Output, "out")] {
        for kind in NDP_TYPES {
            rules.push(Rule::new(
                hook,
                format!("{direction}-ndp-{kind}"),
                vec![
                    Match::Family(Family::V6),
                    Match::Transport(Transport::Icmpv6),
                    Match::Icmpv6Type(kind),
                ],
                Verdict::Accept,
            ));
        }
    }
    if let (true, Some(uid)) = (profile.tor, tor_uid) {
        rules.push(Rule::new(
            Hook::Output,
            "out-tor",
            vec![Match::SocketUid(uid)],
            Verdict::Accept,
        ));
        // Replies to the connections Tor opened.
        rules.push(Rule::new(
            Hook::Input,
            "in-established",
            vec![Match::Established],
            Verdict::Accept,
        ));
    }
}

/// The expressions the kernel holds for `rule`, in order: what each condition loads and
/// compares, then the verdict.
pub fn expected_exprs(rule: &Rule) -> Vec<KernelExpr> {
    let mut exprs = Vec::new();
    for condition in &rule.matches {
        match condition {
            Match::InInterface(interface) => {
                exprs.push(KernelExpr::meta(META_IIFNAME));
                exprs.push(KernelExpr::cmp_eq(interface.bytes()));
            }
            Match::OutInterface(interface) => {
                exprs.push(KernelExpr::meta(META_OIFNAME));
                exprs.push(KernelExpr::cmp_eq(interface.bytes()));
            }
            Match::Family(family) => {
                exprs.push(KernelExpr::meta(META_NFPROTO));
                exprs.push(KernelExpr::cmp_eq(vec![family.number()]));
            }
            Match::Transport(transport) => {
                exprs.push(KernelExpr::meta(META_L4PROTO));
                exprs.push(KernelExpr::cmp_eq(vec![transport.number()]));
            }
            Match::SourcePort(port) => {
                exprs.push(KernelExpr::payload_transport(0, 2));
                exprs.push(KernelExpr::cmp_eq(port.to_be_bytes().to_vec()));
            }
            Match::DestinationPort(port) => {
                exprs.push(KernelExpr::payload_transport(2, 2));
                exprs.push(KernelExpr::cmp_eq(port.to_be_bytes().to_vec()));
            }
            Match::Icmpv6Type(kind) => {
                exprs.push(KernelExpr::payload_transport(0, 1));
                exprs.push(KernelExpr::cmp_eq(vec![*kind]));
            }
            Match::SocketUid(uid) => {
                exprs.push(KernelExpr::meta(META_SKUID));
                exprs.push(KernelExpr::cmp_eq(uid.to_ne_bytes().to_vec()));
            }
            Match::Established => {
                exprs.push(KernelExpr::ct(CT_STATE));
                exprs.push(KernelExpr::named("bitwise"));
                exprs.push(KernelExpr::cmp(CMP_NEQ, vec![0; 4]));
            }
        }
    }
    exprs.push(KernelExpr::verdict(rule.verdict.code()));
    exprs
}

/// `NFT_META_NFPROTO`.
pub const META_NFPROTO: u32 = 15;
/// `NFT_META_L4PROTO`.
pub const META_L4PROTO: u32 = 16;
/// `NFT_META_IIFNAME`.
pub const META_IIFNAME: u32 = 6;
/// `NFT_META_OIFNAME`.
pub const META_OIFNAME: u32 = 7;
/// `NFT_META_SKUID`.
pub const META_SKUID: u32 = 10;
/// `NFT_CT_STATE`.
pub const CT_STATE: u32 = 0;
/// `NFT_CMP_EQ`.
pub const CMP_EQ: u32 = 0;
/// `NFT_CMP_NEQ`.
pub const CMP_NEQ: u32 = 1;
/// `NFT_PAYLOAD_TRANSPORT_HEADER`.
pub const PAYLOAD_TRANSPORT: u32 = 2;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::{Profile, lockdown};

    fn profile(network: NetworkMode, tunnels: &[&str], tor: bool) -> Profile {
        Profile {
            network,
            tunnels: tunnels.iter().map(|s| s.to_string()).collect(),
            tor,
            ..lockdown()
        }
    }

    fn names(ruleset: &Ruleset, hook: Hook) -> Vec<String> {
        ruleset.chain_rules(hook).map(|r| r.name.clone()).collect()
    }

    #[test]
    fn open_has_no_table() {
        assert_eq!(
            Ruleset::for_profile(&profile(NetworkMode::Open, &[], false), None),
            None
        );
    }

    #[test]
    fn rules_per_profile() {
        let ndp = |dir: &str| NDP_TYPES.map(|t| format!("{dir}-ndp-{t}"));
        type Case = (Profile, Option<u32>, Vec<String>, Vec<String>);
        let cases: Vec<Case> = vec![
            (
                profile(NetworkMode::Offline, &[], false),
                None,
                vec!["in-loopback".into()],
                vec!["out-loopback".into()],
            ),
            (
                profile(NetworkMode::TunnelOnly, &["wg0", "tun*"], false),
                Some(107),
                [
                    vec![
                        "in-loopback".to_owned(),
                        "in-tunnel-wg0".into(),
                        "in-tunnel-tun*".into(),
                        "in-dhcp4".into(),
                    ],
                    ndp("in").to_vec(),
                ]
                .concat(),
                [
                    vec![
                        "out-loopback".to_owned(),
                        "out-tunnel-wg0".into(),
                        "out-tunnel-tun*".into(),
                        "out-dns-udp-outside-tunnel".into(),
                        "out-dns-tcp-outside-tunnel".into(),
                        "out-dhcp4".into(),
                    ],
                    ndp("out").to_vec(),
                ]
                .concat(),
            ),
            (
                profile(NetworkMode::TunnelOnly, &[], true),
                Some(107),
                [
                    vec!["in-loopback".to_owned(), "in-dhcp4".into()],
                    ndp("in").to_vec(),
                    vec!["in-established".into()],
                ]
                .concat(),
                [
                    vec![
                        "out-loopback".to_owned(),
                        "out-dns-udp-outside-tunnel".into(),
                        "out-dns-tcp-outside-tunnel".into(),
                        "out-dhcp4".into(),
                    ],
                    ndp("out").to_vec(),
                    vec!["out-tor".into()],
                ]
                .concat(),
            ),
        ];
        for (profile, tor_uid, input, output) in cases {
            let ruleset = Ruleset::for_profile(&profile, tor_uid).unwrap();
            assert_eq!(names(&ruleset, Hook::Input), input, "{profile:?}");
            assert_eq!(names(&ruleset, Hook::Output), output, "{profile:?}");
            assert!(
                names(&ruleset, Hook::Forward).is_empty(),
                "forward: drop all"
            );
            let expected = ruleset.expected_table();
            assert_eq!(expected.chains.len(), 3);
            assert!(
                expected
                    .chains
                    .iter()
                    .all(|c| c.policy == Some(Verdict::Drop.code()))
            );
        }
    }

    #[test]
    fn dns_is_dropped_before_any_uid_is_let_out() {
        let ruleset =
            Ruleset::for_profile(&profile(NetworkMode::TunnelOnly, &["wg0"], true), Some(107))
                .unwrap();
        let output = names(&ruleset, Hook::Output);
        let position = |name: &str| output.iter().position(|n| n == name).unwrap();
        assert!(position("out-tunnel-wg0") < position("out-dns-udp-outside-tunnel"));
        assert!(position("out-dns-tcp-outside-tunnel") < position("out-tor"));
    }

    #[test]
    fn expressions_encode_the_conditions() {
        let rule = Rule::new(
            Hook::Output,
            "x",
            vec![
                Match::OutInterface(Interface::Exact("wg0".into())),
                Match::Transport(Transport::Udp),
                Match::DestinationPort(53),
            ],
            Verdict::Drop,
        );
        let exprs = expected_exprs(&rule);
        let names: Vec<&str> = exprs.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            names,
            ["meta", "cmp", "meta", "cmp", "payload", "cmp", "immediate"]
        );
        assert_eq!(exprs[1], KernelExpr::cmp_eq(b"wg0\0".to_vec()));
        assert_eq!(exprs[5], KernelExpr::cmp_eq(vec![0, 53]));
        assert_eq!(exprs[6], KernelExpr::verdict(0));
        assert_eq!(
            Interface::from_pattern("wg*").bytes(),
            b"wg".to_vec(),
            "a prefix has no NUL"
        );
    }
}
