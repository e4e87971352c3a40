//! What the kernel reports for our table, as plain data, and how it differs from what was
//! intended.
//!
//! `crate::nft` fills a [`KernelTable`] from a netlink dump; [`crate::ruleset::Ruleset`]
//! produces the one it expects. [`differences`] lists every way they disagree, so a status is
//! "on" only when the kernel holds exactly our rules.

use std::fmt;

/// One expression of a rule: its name and the value it loads or compares, when it has one
/// that identifies it (meta and ct keys, payload offsets, comparison operator and data,
/// verdict code).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelExpr {
    /// `meta`, `cmp`, `payload`, `immediate`, `ct`, `bitwise`, ….
    pub name: String,
    /// Identifying bytes (see the constructors).
    pub value: Option<Vec<u8>>,
}

impl KernelExpr {
    /// An expression compared by name only.
    pub fn named(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            value: None,
        }
    }

    /// `meta` loading `key` (value: the key, big-endian).
    pub fn meta(key: u32) -> Self {
        Self {
            name: "meta".into(),
            value: Some(key.to_be_bytes().to_vec()),
        }
    }

    /// `ct` loading `key`.
    pub fn ct(key: u32) -> Self {
        Self {
            name: "ct".into(),
            value: Some(key.to_be_bytes().to_vec()),
        }
    }

    /// `cmp` with operator `op` (value: the operator big-endian, then the data).
    pub fn cmp(op: u32, data: Vec<u8>) -> Self {
        let mut value = op.to_be_bytes().to_vec();
        value.extend(data);
        Self {
            name: "cmp".into(),
            value: Some(value),
        }
    }

    /// `cmp ==`.
    pub fn cmp_eq(data: Vec<u8>) -> Self {
        Self::cmp(crate::ruleset::CMP_EQ, data)
    }

    /// `payload` of the transport header (value: base, offset, length, big-endian).
    pub fn payload_transport(offset: u32, len: u32) -> Self {
        let mut value = crate::ruleset::PAYLOAD_TRANSPORT.to_be_bytes().to_vec();
        value.extend(offset.to_be_bytes());
        value.extend(len.to_be_bytes());
        Self {
            name: "payload".into(),
            value: Some(value),
        }
    }

    /// `immediate` verdict (value: the verdict code, big-endian).
    pub fn verdict(code: u32) -> Self {
        Self {
            name: "immediate".into(),
            value: Some(code.to_be_bytes().to_vec()),
        }
    }
}

/// A chain as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelChain {
    /// Name.
    pub name: String,
    /// Hook number, for a base chain.
    pub hook: Option<u32>,
    /// Hook priority, for a base chain.
    pub priority: Option<i32>,
    /// Policy (`NF_DROP` 0, `NF_ACCEPT` 1), for a base chain.
    pub policy: Option<u32>,
    /// `filter`, `route`, `nat`.
    pub chain_type: Option<String>,
}

/// A rule as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelRule {
    /// Its chain.
    pub chain: String,
    /// Its comment (user data), when it has one.
    pub comment: Option<String>,
    /// Its expressions, in order.
    pub exprs: Vec<KernelExpr>,
}

/// Our table as the kernel holds it: chains in kernel order, rules per chain in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelTable {
    /// Table name.
    pub name: String,
    /// Its chains.
    pub chains: Vec<KernelChain>,
    /// Its rules, grouped by chain in the order of [`KernelTable::chains`] as listed by the
    /// expected table.
    pub rules: Vec<KernelRule>,
}

/// One way the kernel's table differs from the intended one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Difference {
    /// The table is not there.
    NoTable,
    /// A chain we need is missing.
    MissingChain(String),
    /// A chain differs (hook, priority, policy or type).
    ChainDiffers(String),
    /// A chain we did not create.
    ExtraChain(String),
    /// The chain's rules differ from the first differing position.
    RulesDiffer {
        /// The chain.
        chain: String,
        /// Index of the first rule that differs.
        position: usize,
    },
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Difference::NoTable => write!(f, "the table is missing"),
            Difference::MissingChain(c) => write!(f, "chain {c} is missing"),
            Difference::ChainDiffers(c) => {
                write!(f, "chain {c} has another hook, priority, policy or type")
            }
            Difference::ExtraChain(c) => write!(f, "chain {c} is not ours"),
            Difference::RulesDiffer { chain, position } => {
                write!(f, "chain {chain} differs from rule {position} on")
            }
        }
    }
}

/// Every difference between the `expected` table and what the kernel holds (`None`: no
/// table). Empty means the kernel holds exactly the intended table.
pub fn differences(expected: &KernelTable, actual: Option<&KernelTable>) -> Vec<Difference> {
    let Some(actual) = actual else {
        return vec![Difference::NoTable];
    };
    let mut out = Vec::new();
    for chain in &expected.chains {
        match actual.chains.iter().find(|c| c.name == chain.name) {
            None => out.push(Difference::MissingChain(chain.name.clone())),
            Some(found) if found != chain => out.push(Difference::ChainDiffers(chain.name.clone())),
            Some(_) => {}
        }
    }
    for chain in &actual.chains {
        if !expected.chains.iter().any(|c| c.name == chain.name) {
            out.push(Difference::ExtraChain(chain.name.clone()));
        }
    }
    for chain in &expected.chains {
        let want: Vec<&KernelRule> = expected
            .rules
            .iter()
            .filter(|r| r.chain == chain.name)
            .collect();
        let have: Vec<&KernelRule> = actual
            .rules
            .iter()
            .filter(|r| r.chain == chain.name)
            .collect();
        let first = (0..want.len().max(have.len())).find(|&i| want.get(i) != have.get(i));
        if let Some(position) = first {
            out.push(Difference::RulesDiffer {
                chain: chain.name.clone(),
                position,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::lockdown;
    use crate::ruleset::Ruleset;

    fn expected() -> KernelTable {
        let mut profile = lockdown();
        profile.tunnels = vec!["wg0".into()];
        Ruleset::for_profile(&profile, None)
            .unwrap()
            .expected_table()
    }

    #[test]
    fn every_kind_of_tampering_is_found() {
        let table = expected();
        type Tamper = fn(&mut KernelTable);
        let cases: [(&str, Tamper, Difference); 5] = [
            (
                "policy accept",
                |t| t.chains[1].policy = Some(1),
                Difference::ChainDiffers("output".into()),
            ),
            (
                "chain gone",
                |t| {
                    t.chains.remove(2);
                },
                Difference::MissingChain("forward".into()),
            ),
            (
                "extra chain",
                |t| {
                    let mut c = t.chains[0].clone();
                    c.name = "sneaky".into();
                    t.chains.push(c);
                },
                Difference::ExtraChain("sneaky".into()),
            ),
            (
                "rule inserted",
                |t| {
                    let mut r = t.rules[0].clone();
                    r.comment = None;
                    t.rules.insert(1, r);
                },
                Difference::RulesDiffer {
                    chain: "input".into(),
                    position: 1,
                },
            ),
            (
                "verdict flipped",
                |t| {
                    let last = t.rules.iter().rposition(|r| r.chain == "output").unwrap();
                    let exprs = &mut t.rules[last].exprs;
                    *exprs.last_mut().unwrap() = KernelExpr::verdict(0);
                },
                Difference::RulesDiffer {
                    chain: "output".into(),
                    position: table.rules.iter().filter(|r| r.chain == "output").count() - 1,
                },
            ),
        ];
        assert!(differences(&table, Some(&table)).is_empty());
        assert_eq!(differences(&table, None), [Difference::NoTable]);
        for (what, tamper, difference) in cases {
            let mut actual = table.clone();
            tamper(&mut actual);
            assert_eq!(differences(&table, Some(&actual)), [difference], "{what}");
        }
    }
}
