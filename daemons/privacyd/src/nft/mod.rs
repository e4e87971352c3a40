//! The real [`Firewall`]: nf_tables over a netlink socket, no `nft` command.
//!
//! Writes are one libnftnl batch ([`batch`]), committed atomically by the kernel; every
//! message is acknowledged and the first error fails the whole change. Reads are netlink
//! dumps of the `inet` family's tables, chains and rules, parsed by [`netlink`].

pub mod batch;
pub mod netlink;

use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, bind, recv, send,
    setsockopt, socket, sockopt,
};
use nix::sys::time::TimeVal;

use crate::firewall::{Firewall, FirewallError};
use crate::kernel::KernelTable;
use crate::ruleset::Ruleset;
use netlink::Reply;

/// How long the kernel may take to answer one request.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);
/// Receive buffer: larger than any nf_tables message.
const BUFFER: usize = 256 * 1024;

/// nf_tables in the current network namespace.
#[derive(Debug, Default)]
pub struct Nftables {
    seq: u32,
}

impl Nftables {
    /// A firewall on the calling thread's network namespace.
    pub fn new() -> Self {
        Self::default()
    }

    fn open() -> Result<OwnedFd, FirewallError> {
        let sys = |step: &'static str| {
            move |errno: nix::Error| FirewallError::Netlink {
                step,
                source: errno.into(),
            }
        };
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkNetFilter,
        )
        .map_err(sys("socket"))?;
        bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 0)).map_err(sys("bind"))?;
        let timeout = TimeVal::new(REPLY_TIMEOUT.as_secs() as i64, 0);
        setsockopt(&fd, sockopt::ReceiveTimeout, &timeout).map_err(sys("SO_RCVTIMEO"))?;
        Ok(fd)
    }

    /// Sends a finalized batch in one message and waits for every acknowledgement.
    fn commit(&mut self, batch: &nftnl::FinalizedBatch) -> Result<(), FirewallError> {
        let fd = Self::open()?;
        let bytes: Vec<u8> = batch.iter().flatten().copied().collect();
        send(fd.as_raw_fd(), &bytes, MsgFlags::empty()).map_err(|errno| {
            FirewallError::Netlink {
                step: "send batch",
                source: errno.into(),
            }
        })?;
        let mut pending: Vec<u32> = batch.sequence_numbers().collect();
        let mut buffer = vec![0u8; BUFFER];
        while !pending.is_empty() {
            let n = receive(&fd, &mut buffer)?;
            for reply in netlink::parse_replies(&buffer[..n])? {
                match reply {
                    Reply::Ack(seq) => pending.retain(|s| *s != seq),
                    Reply::Error { errno, .. } => {
                        return Err(FirewallError::Refused {
                            source: std::io::Error::from_raw_os_error(errno),
                        });
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// Runs one dump and hands each record (message type, attributes) to `each`.
    fn dump(
        &mut self,
        msg: u16,
        table: &str,
        mut each: impl FnMut(u16, &[u8]) -> Result<(), FirewallError>,
    ) -> Result<(), FirewallError> {
        let fd = Self::open()?;
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        send(
            fd.as_raw_fd(),
            &netlink::dump_request(msg, seq, table),
            MsgFlags::empty(),
        )
        .map_err(|errno| FirewallError::Netlink {
            step: "send dump request",
            source: errno.into(),
        })?;
        let mut buffer = vec![0u8; BUFFER];
        loop {
            let n = receive(&fd, &mut buffer)?;
            for reply in netlink::parse_replies(&buffer[..n])? {
                match reply {
                    Reply::Done(s) if s == seq => return Ok(()),
                    Reply::Error { seq: s, errno } if s == seq => {
                        // A rule dump of a table that does not exist.
                        if errno == libc_enoent() {
                            return Ok(());
                        }
                        return Err(FirewallError::Refused {
                            source: std::io::Error::from_raw_os_error(errno),
                        });
                    }
                    Reply::Record { msg, seq: s, attrs } if s == seq => each(msg, attrs)?,
                    _ => {}
                }
            }
        }
    }
}

fn libc_enoent() -> i32 {
    nix::errno::Errno::ENOENT as i32
}

fn receive(fd: &OwnedFd, buffer: &mut [u8]) -> Result<usize, FirewallError> {
    recv(fd.as_raw_fd(), buffer, MsgFlags::empty()).map_err(|errno| FirewallError::Netlink {
        step: "receive",
        source: errno.into(),
    })
}

impl Firewall for Nftables {
    fn replace(&mut self, ruleset: &Ruleset) -> Result<(), FirewallError> {
        let current = self.read(&ruleset.table)?;
        let batch = batch::replace(ruleset, current.as_ref())?;
        self.commit(&batch)
    }

    fn remove(&mut self, table: &str) -> Result<(), FirewallError> {
        let batch = batch::remove(table)?;
        self.commit(&batch)
    }

    fn read(&mut self, table: &str) -> Result<Option<KernelTable>, FirewallError> {
        let mut found = false;
        self.dump(netlink::MSG_GETTABLE, table, |msg, attrs| {
            if msg == netlink::MSG_NEWTABLE && netlink::table_name(attrs)?.as_deref() == Some(table)
            {
                found = true;
            }
            Ok(())
        })?;
        if !found {
            return Ok(None);
        }
        let mut out = KernelTable {
            name: table.to_owned(),
            chains: Vec::new(),
            rules: Vec::new(),
        };
        self.dump(netlink::MSG_GETCHAIN, table, |msg, attrs| {
            if msg == netlink::MSG_NEWCHAIN {
                let (owner, chain) = netlink::parse_chain(attrs)?;
                if owner == table {
                    out.chains.push(chain);
                }
            }
            Ok(())
        })?;
        self.dump(netlink::MSG_GETRULE, table, |msg, attrs| {
            if msg == netlink::MSG_NEWRULE {
                let (owner, rule) = netlink::parse_rule(attrs)?;
                if owner == table {
                    out.rules.push(rule);
                }
            }
            Ok(())
        })?;
        Ok(Some(out))
    }
}
