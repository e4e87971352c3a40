//! nf_tables netlink messages without I/O: dump requests for our table's chains and rules,
//! and the parser of the kernel's answers (acknowledgements, errors, `NEWCHAIN` and `NEWRULE`
//! dump records) into [`crate::kernel`] terms.
//!
//! Layout (linux/netlink.h, linux/netfilter/nfnetlink.h, nf_tables.h): a 16-byte `nlmsghdr`,
//! a 4-byte `nfgenmsg`, then attributes (`nlattr`: u16 length, u16 type, 4-byte aligned).

use crate::kernel::{KernelChain, KernelExpr, KernelRule};

/// `NFNL_SUBSYS_NFTABLES`.
const SUBSYS_NFTABLES: u16 = 10;
/// `NFT_MSG_NEWTABLE`.
pub const MSG_NEWTABLE: u16 = 0;
/// `NFT_MSG_GETTABLE`.
pub const MSG_GETTABLE: u16 = 1;
/// `NFT_MSG_NEWCHAIN`.
pub const MSG_NEWCHAIN: u16 = 3;
/// `NFT_MSG_GETCHAIN`.
pub const MSG_GETCHAIN: u16 = 4;
/// `NFT_MSG_NEWRULE`.
pub const MSG_NEWRULE: u16 = 6;
/// `NFT_MSG_GETRULE`.
pub const MSG_GETRULE: u16 = 7;
/// `NFPROTO_INET`.
pub const FAMILY_INET: u8 = 1;

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const HEADER: usize = 16;
const NFGEN: usize = 4;
const ATTR_TYPE_MASK: u16 = 0x3fff;
/// `NFTNL_UDATA_RULE_COMMENT`.
const UDATA_COMMENT: u8 = 0;

/// A reply that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed netlink reply: {0}")]
pub struct Malformed(pub &'static str);

/// One message of a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply<'a> {
    /// `NLMSG_ERROR` with code 0: the request with this sequence number was done.
    Ack(u32),
    /// `NLMSG_ERROR` with an errno: the request with this sequence number failed.
    Error {
        /// Sequence number.
        seq: u32,
        /// The positive errno.
        errno: i32,
    },
    /// End of a dump.
    Done(u32),
    /// An nf_tables record: message type (low byte), sequence number, attributes.
    Record {
        /// `NFT_MSG_*`.
        msg: u16,
        /// Sequence number.
        seq: u32,
        /// The attribute bytes after the `nfgenmsg`.
        attrs: &'a [u8],
    },
}

fn u16_at(bytes: &[u8], at: usize) -> Result<u16, Malformed> {
    bytes
        .get(at..at + 2)
        .and_then(|b| b.try_into().ok())
        .map(u16::from_ne_bytes)
        .ok_or(Malformed("truncated u16"))
}

fn u32_at(bytes: &[u8], at: usize) -> Result<u32, Malformed> {
    bytes
        .get(at..at + 4)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_ne_bytes)
        .ok_or(Malformed("truncated u32"))
}

fn align(len: usize) -> usize {
    (len + 3) & !3
}

/// Splits a received buffer into its messages.
pub fn parse_replies(buffer: &[u8]) -> Result<Vec<Reply<'_>>, Malformed> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + HEADER <= buffer.len() {
        let len = u32_at(buffer, at)? as usize;
        if len < HEADER || at + len > buffer.len() {
            return Err(Malformed("message length out of bounds"));
        }
        let kind = u16_at(buffer, at + 4)?;
        let seq = u32_at(buffer, at + 8)?;
        let body = &buffer[at + HEADER..at + len];
        out.push(match kind {
            NLMSG_ERROR => {
                let code = u32_at(body, 0)? as i32;
                if code == 0 {
                    Reply::Ack(seq)
                } else {
                    Reply::Error {
                        seq,
                        errno: code.saturating_neg(),
                    }
                }
            }
            NLMSG_DONE => Reply::Done(seq),
            _ if kind >> 8 == SUBSYS_NFTABLES => Reply::Record {
                msg: kind & 0xff,
                seq,
                attrs: body.get(NFGEN..).ok_or(Malformed("no nfgenmsg"))?,
            },
            _ => return Err(Malformed("unexpected message type")),
        });
        at += align(len);
    }
    Ok(out)
}

/// Iterates `(type, payload)` over attributes.
pub fn attributes(mut bytes: &[u8]) -> impl Iterator<Item = Result<(u16, &[u8]), Malformed>> {
    std::iter::from_fn(move || {
        if bytes.len() < 4 {
            return None;
        }
        let len = match u16_at(bytes, 0) {
            Ok(len) => len as usize,
            Err(err) => return Some(Err(err)),
        };
        if len < 4 || len > bytes.len() {
            bytes = &[];
            return Some(Err(Malformed("attribute length out of bounds")));
        }
        let kind = u16_at(bytes, 2).map(|k| k & ATTR_TYPE_MASK);
        let payload = &bytes[4..len];
        bytes = bytes.get(align(len)..).unwrap_or(&[]);
        Some(kind.map(|kind| (kind, payload)))
    })
}

fn find(bytes: &[u8], kind: u16) -> Result<Option<&[u8]>, Malformed> {
    for attr in attributes(bytes) {
        let (k, payload) = attr?;
        if k == kind {
            return Ok(Some(payload));
        }
    }
    Ok(None)
}

fn string(payload: &[u8]) -> String {
    let end = payload
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(payload.len());
    String::from_utf8_lossy(&payload[..end]).into_owned()
}

fn be32(payload: &[u8]) -> Result<u32, Malformed> {
    payload
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_be_bytes)
        .ok_or(Malformed("truncated be32"))
}

/// A dump request for every table, chain or rule of the `inet` family; a rule dump is
/// narrowed to `table`.
pub fn dump_request(msg: u16, seq: u32, table: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend(0u32.to_ne_bytes());
    out.extend(((SUBSYS_NFTABLES << 8) | msg).to_ne_bytes());
    out.extend((NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    out.extend(seq.to_ne_bytes());
    out.extend(0u32.to_ne_bytes());
    out.extend([FAMILY_INET, 0, 0, 0]);
    if msg == MSG_GETRULE {
        // NFTA_RULE_TABLE
        let mut value = table.as_bytes().to_vec();
        value.push(0);
        out.extend(((4 + value.len()) as u16).to_ne_bytes());
        out.extend(1u16.to_ne_bytes());
        out.extend(&value);
        out.resize(align(out.len()), 0);
    }
    let len = out.len() as u32;
    out[..4].copy_from_slice(&len.to_ne_bytes());
    out
}

/// The name of a table record (`NFTA_TABLE_NAME`).
pub fn table_name(attrs: &[u8]) -> Result<Option<String>, Malformed> {
    Ok(find(attrs, 1)?.map(string))
}

/// A chain record: its table (`NFTA_CHAIN_TABLE`) and the chain.
pub fn parse_chain(attrs: &[u8]) -> Result<(String, KernelChain), Malformed> {
    let mut table = String::new();
    let mut chain = KernelChain {
        name: String::new(),
        hook: None,
        priority: None,
        policy: None,
        chain_type: None,
    };
    for attr in attributes(attrs) {
        match attr? {
            (1, v) => table = string(v),
            (3, v) => chain.name = string(v),
            (4, hook) => {
                chain.hook = find(hook, 1)?.map(be32).transpose()?;
                chain.priority = find(hook, 2)?.map(be32).transpose()?.map(|p| p as i32);
            }
            (5, v) => chain.policy = Some(be32(v)?),
            (7, v) => chain.chain_type = Some(string(v)),
            _ => {}
        }
    }
    Ok((table, chain))
}

/// A rule record: its table and the rule (chain, comment, expressions).
pub fn parse_rule(attrs: &[u8]) -> Result<(String, KernelRule), Malformed> {
    let mut table = String::new();
    let mut rule = KernelRule {
        chain: String::new(),
        comment: None,
        exprs: Vec::new(),
    };
    for attr in attributes(attrs) {
        match attr? {
            (1, v) => table = string(v),
            (2, v) => rule.chain = string(v),
            (4, list) => {
                for elem in attributes(list) {
                    let (_, expr) = elem?;
                    rule.exprs.push(parse_expr(expr)?);
                }
            }
            (7, v) => rule.comment = comment(v),
            _ => {}
        }
    }
    Ok((table, rule))
}

/// The comment in a rule's user data (libnftnl's TLV: u8 type, u8 length, value).
fn comment(mut udata: &[u8]) -> Option<String> {
    while udata.len() >= 2 {
        let (kind, len) = (udata[0], udata[1] as usize);
        let value = udata.get(2..2 + len)?;
        if kind == UDATA_COMMENT {
            return Some(string(value));
        }
        udata = &udata[2 + len..];
    }
    None
}

fn parse_expr(expr: &[u8]) -> Result<KernelExpr, Malformed> {
    let name = find(expr, 1)?
        .map(string)
        .ok_or(Malformed("expression has no name"))?;
    let data = find(expr, 2)?.unwrap_or(&[]);
    let value = match name.as_str() {
        // NFTA_META_KEY / NFTA_CT_KEY
        "meta" | "ct" => find(data, 2)?.map(<[u8]>::to_vec),
        // NFTA_CMP_OP, NFTA_CMP_DATA { NFTA_DATA_VALUE }
        "cmp" => {
            let op = find(data, 2)?.ok_or(Malformed("cmp without op"))?;
            let value = find(data, 3)?
                .map(|nested| find(nested, 1))
                .transpose()?
                .flatten()
                .ok_or(Malformed("cmp without data"))?;
            Some([op, value].concat())
        }
        // NFTA_PAYLOAD_BASE, OFFSET, LEN
        "payload" => {
            let mut value = Vec::new();
            for kind in [2, 3, 4] {
                value.extend(find(data, kind)?.ok_or(Malformed("payload field missing"))?);
            }
            Some(value)
        }
        // NFTA_IMMEDIATE_DATA { NFTA_DATA_VERDICT { NFTA_VERDICT_CODE } }
        "immediate" => find(data, 2)?
            .map(|d| find(d, 2))
            .transpose()?
            .flatten()
            .map(|v| find(v, 1))
            .transpose()?
            .flatten()
            .map(<[u8]>::to_vec),
        _ => None,
    };
    Ok(KernelExpr { name, value })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut out = ((4 + value.len()) as u16).to_ne_bytes().to_vec();
        out.extend(kind.to_ne_bytes());
        out.extend(value);
        out.resize(align(out.len()), 0);
        out
    }

    fn message(kind: u16, seq: u32, body: &[u8]) -> Vec<u8> {
        let mut out = ((HEADER + body.len()) as u32).to_ne_bytes().to_vec();
        out.extend(kind.to_ne_bytes());
        out.extend(0u16.to_ne_bytes());
        out.extend(seq.to_ne_bytes());
        out.extend(0u32.to_ne_bytes());
        out.extend(body);
        out.resize(align(out.len()), 0);
        out
    }

    #[test]
    fn acks_errors_and_records() {
        let mut buffer = message(NLMSG_ERROR, 7, &[0; 20]);
        buffer.extend(message(NLMSG_ERROR, 8, &(-2i32).to_ne_bytes()));
        buffer.extend(message(
            (10 << 8) | MSG_NEWTABLE,
            9,
            &[1, 0, 0, 0, 8, 0, 1, 0],
        ));
        buffer.extend(message(NLMSG_DONE, 9, &[0; 4]));
        let replies = parse_replies(&buffer).unwrap();
        assert_eq!(replies[0], Reply::Ack(7));
        assert_eq!(replies[1], Reply::Error { seq: 8, errno: 2 });
        assert!(
            matches!(replies[2], Reply::Record { msg: MSG_NEWTABLE, seq: 9, attrs } if attrs.len() == 4)
        );
        assert_eq!(replies[3], Reply::Done(9));
        let mut truncated = message(NLMSG_DONE, 1, &[0; 4]);
        truncated[0] = 200;
        assert!(parse_replies(&truncated).is_err());
    }

    #[test]
    fn rules_parse_into_kernel_terms() {
        let meta = [attr(1, b"meta\0"), attr(2, &attr(2, &7u32.to_be_bytes()))].concat();
        let cmp_data = [
            attr(1, &1u32.to_be_bytes()),
            attr(2, &0u32.to_be_bytes()),
            attr(3 | 0x8000, &attr(1, b"wg0\0")),
        ]
        .concat();
        let cmp = [attr(1, b"cmp\0"), attr(2, &cmp_data)].concat();
        let verdict = attr(2, &attr(2, &attr(1, &1u32.to_be_bytes())));
        let imm = [
            attr(1, b"immediate\0"),
            attr(2, &[attr(1, &0u32.to_be_bytes()), verdict].concat()),
        ]
        .concat();
        let list = [attr(1, &meta), attr(1, &cmp), attr(1, &imm)].concat();
        let udata = [vec![UDATA_COMMENT, 9], b"enigm:lo\0".to_vec()].concat();
        let attrs = [
            attr(1, b"enigm_privacy\0"),
            attr(2, b"output\0"),
            attr(3, &5u64.to_be_bytes()),
            attr(4 | 0x8000, &list),
            attr(7, &udata),
        ]
        .concat();
        let (table, rule) = parse_rule(&attrs).unwrap();
        assert_eq!(table, "enigm_privacy");
        assert_eq!(rule.chain, "output");
        assert_eq!(rule.comment.as_deref(), Some("enigm:lo"));
        assert_eq!(
            rule.exprs,
            [
                KernelExpr::meta(7),
                KernelExpr::cmp_eq(b"wg0\0".to_vec()),
                KernelExpr::verdict(1)
            ]
        );
    }

    #[test]
    fn chains_parse_with_hook_priority_policy_and_type() {
        let hook = [
            attr(1, &3u32.to_be_bytes()),
            attr(2, &(-10i32).to_be_bytes()),
        ]
        .concat();
        let attrs = [
            attr(1, b"enigm_privacy\0"),
            attr(3, b"output\0"),
            attr(4 | 0x8000, &hook),
            attr(5, &0u32.to_be_bytes()),
            attr(7, b"filter\0"),
        ]
        .concat();
        let (table, chain) = parse_chain(&attrs).unwrap();
        assert_eq!(table, "enigm_privacy");
        assert_eq!(
            chain,
            KernelChain {
                name: "output".into(),
                hook: Some(3),
                priority: Some(-10),
                policy: Some(0),
                chain_type: Some("filter".into()),
            }
        );
    }

    #[test]
    fn rule_dump_requests_name_the_table() {
        let request = dump_request(MSG_GETRULE, 42, "enigm_privacy");
        assert_eq!(u32_at(&request, 0).unwrap() as usize, request.len());
        assert_eq!(u16_at(&request, 4).unwrap(), (10 << 8) | MSG_GETRULE);
        assert_eq!(u32_at(&request, 8).unwrap(), 42);
        let attrs: Vec<_> = attributes(&request[HEADER + NFGEN..])
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(attrs, [(1, &b"enigm_privacy\0"[..])]);
        assert_eq!(dump_request(MSG_GETCHAIN, 1, "x").len(), HEADER + NFGEN);
    }
}
