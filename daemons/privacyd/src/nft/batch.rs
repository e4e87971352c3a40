//! Encodes a [`Ruleset`] as one nf_tables batch with libnftnl (through the `nftnl` crate).
//!
//! The kernel commits a batch at once or not at all. [`replace`] creates the table when there
//! is none and otherwise swaps the rules inside the kept chains, so no packet passes while a
//! table is replaced (see there why it never deletes and re-creates the table); [`remove`]
//! is *add table, delete table*, which succeeds whether or not the table existed.

use std::ffi::CString;

use nftnl::expr::{
    Bitwise, Cmp, CmpOp, Conntrack, Icmpv6HeaderField, InterfaceName, Meta, Payload,
    TransportHeaderField, UdpHeaderField,
};
use nftnl::{Batch, Chain, ChainType, FinalizedBatch, MsgType, Policy, ProtoFamily, Table};

use crate::kernel::KernelTable;
use crate::ruleset::{Hook, Interface, Match, PRIORITY, Rule, Ruleset, Verdict};

/// A ruleset that cannot be encoded.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// A name or comment holds a NUL byte.
    #[error("{0:?} holds a NUL byte")]
    Nul(String),
    /// A comment longer than libnftnl allows.
    #[error("rule comment {0:?} is too long")]
    Comment(String),
}

fn c_string(text: &str) -> Result<CString, EncodeError> {
    CString::new(text).map_err(|_| EncodeError::Nul(text.to_owned()))
}

fn hook(hook: Hook) -> nftnl::Hook {
    match hook {
        Hook::Input => nftnl::Hook::In,
        Hook::Output => nftnl::Hook::Out,
        Hook::Forward => nftnl::Hook::Forward,
    }
}

fn interface(interface: &Interface) -> Result<InterfaceName, EncodeError> {
    Ok(match interface {
        Interface::Exact(name) => InterfaceName::Exact(c_string(name)?),
        Interface::Prefix(prefix) => InterfaceName::StartingWith(c_string(prefix)?),
    })
}

/// The batch that atomically replaces `ruleset.table` with `ruleset`, given what the kernel
/// holds now (`current`, `None` when there is no table).
///
/// No table: create it, its chains and rules. A table: keep it and its base chains (their
/// drop policy stays in force throughout), flush their rules and add the new ones; the kernel
/// switches from the old rules to the new at one generation change. Deleting and recreating
/// the table instead would open a gap: in the commit the old chains are unhooked before the
/// new ones get their drop policy (a new base chain accepts until its own commit step), and a
/// packet can pass. Only a chain of ours that someone re-created on another hook, priority or
/// type is deleted and re-created, and chains that are not ours are flushed and deleted.
pub fn replace(
    ruleset: &Ruleset,
    current: Option<&KernelTable>,
) -> Result<FinalizedBatch, EncodeError> {
    let mut batch = Batch::new();
    let table = Table::new(c_string(&ruleset.table)?, ProtoFamily::Inet);
    batch.add(&table, MsgType::Add);
    let expected = ruleset.expected_table();
    for chain in current.map(|t| t.chains.as_slice()).unwrap_or_default() {
        let existing = Chain::new(c_string(&chain.name)?, &table);
        // A rule with a chain and no handle deletes every rule of the chain.
        batch.add(&nftnl::Rule::new(&existing), MsgType::Del);
        let keep = expected.chains.iter().any(|ours| {
            ours.name == chain.name
                && ours.hook == chain.hook
                && ours.priority == chain.priority
                && ours.chain_type == chain.chain_type
        });
        if !keep {
            batch.add(&existing, MsgType::Del);
        }
    }
    let mut chains = Vec::new();
    for kind in Hook::ALL {
        // Creates the chain, or updates an existing one (same hook, priority and type) to
        // the drop policy.
        let mut chain = Chain::new(c_string(kind.chain())?, &table);
        chain.set_hook(hook(kind), PRIORITY);
        chain.set_type(ChainType::Filter);
        chain.set_policy(Policy::Drop);
        batch.add(&chain, MsgType::Add);
        chains.push((kind, chain));
    }
    for (kind, chain) in &chains {
        for rule in ruleset.chain_rules(*kind) {
            add_rule(&mut batch, chain, rule)?;
        }
    }
    Ok(batch.finalize())
}

/// The batch that removes table `name` if it exists (and does nothing otherwise).
pub fn remove(name: &str) -> Result<FinalizedBatch, EncodeError> {
    let mut batch = Batch::new();
    let table = Table::new(c_string(name)?, ProtoFamily::Inet);
    batch.add(&table, MsgType::Add);
    batch.add(&table, MsgType::Del);
    Ok(batch.finalize())
}

fn add_rule(batch: &mut Batch, chain: &Chain<'_>, rule: &Rule) -> Result<(), EncodeError> {
    let mut out = nftnl::Rule::new(chain);
    for condition in &rule.matches {
        match condition {
            Match::InInterface(name) => {
                out.add_expr(&Meta::IifName);
                out.add_expr(&Cmp::new(CmpOp::Eq, interface(name)?));
            }
            Match::OutInterface(name) => {
                out.add_expr(&Meta::OifName);
                out.add_expr(&Cmp::new(CmpOp::Eq, interface(name)?));
            }
            Match::Family(family) => {
                out.add_expr(&Meta::NfProto);
                out.add_expr(&Cmp::new(CmpOp::Eq, family.number()));
            }
            Match::Transport(transport) => {
                out.add_expr(&Meta::L4Proto);
                out.add_expr(&Cmp::new(CmpOp::Eq, transport.number()));
            }
            // TCP and UDP keep both ports at the same offsets.
            Match::SourcePort(port) => {
                out.add_expr(&Payload::Transport(TransportHeaderField::Udp(
                    UdpHeaderField::Sport,
                )));
                out.add_expr(&Cmp::new(CmpOp::Eq, port.to_be()));
            }
            Match::DestinationPort(port) => {
                out.add_expr(&Payload::Transport(TransportHeaderField::Udp(
                    UdpHeaderField::Dport,
                )));
                out.add_expr(&Cmp::new(CmpOp::Eq, port.to_be()));
            }
            Match::Icmpv6Type(kind) => {
                out.add_expr(&Payload::Transport(TransportHeaderField::Icmpv6(
                    Icmpv6HeaderField::Type,
                )));
                out.add_expr(&Cmp::new(CmpOp::Eq, *kind));
            }
            Match::SocketUid(uid) => {
                out.add_expr(&Meta::SkUid);
                out.add_expr(&Cmp::new(CmpOp::Eq, *uid));
            }
            Match::Established => {
                let states =
                    nftnl::expr::ct::States::ESTABLISHED | nftnl::expr::ct::States::RELATED;
                out.add_expr(&Conntrack::State);
                out.add_expr(&Bitwise::new(states.bits(), 0u32));
                out.add_expr(&Cmp::new(CmpOp::Neq, 0u32));
            }
        }
    }
    out.add_expr(&match rule.verdict {
        Verdict::Accept => nftnl::expr::Verdict::Accept,
        Verdict::Drop => nftnl::expr::Verdict::Drop,
    });
    let comment = rule.comment();
    out.set_comment(c_string(&comment)?)
        .map_err(|_| EncodeError::Comment(comment))?;
    batch.add(&out, MsgType::Add);
    Ok(())
}
