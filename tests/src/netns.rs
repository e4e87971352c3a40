//! Network namespaces for the Privacy Mode tests: a "device" namespace with an uplink and a
//! tunnel (both veth pairs) to an "outside" namespace that runs small TCP, UDP and DNS
//! servers, IPv4 and IPv6; probes run from the device side on threads that enter its
//! namespace. Addresses are from the benchmarking (198.18.0.0/15) and documentation
//! (2001:db8::/32) ranges and never leave the namespaces.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::require_tool;

/// The device's uplink interface (the "real" network).
pub const UPLINK: &str = "uplink0";
/// The device's tunnel interface (stands in for the VPN).
pub const TUNNEL: &str = "wgtest0";
/// Echo port (TCP and UDP) of the outside servers.
pub const ECHO_PORT: u16 = 7000;
/// Port the no-leak-window sender aims at (nothing listens: the capture sees it).
pub const LEAK_PORT: u16 = 7001;

/// The outside's addresses: reached over the uplink, and over the tunnel.
pub fn outside(family: Family, path: Path) -> IpAddr {
    match (family, path) {
        (Family::V4, Path::Uplink) => IpAddr::from([198, 18, 0, 1]),
        (Family::V4, Path::Tunnel) => IpAddr::from([198, 18, 1, 1]),
        (Family::V6, Path::Uplink) => IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, 1]),
        (Family::V6, Path::Tunnel) => IpAddr::from([0x2001, 0xdb8, 1, 0, 0, 0, 0, 1]),
    }
}

/// IPv4 or IPv6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

/// Which device interface a probe's route uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// The uplink.
    Uplink,
    /// The tunnel.
    Tunnel,
}

/// What a probe sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// TCP connect and echo.
    Tcp,
    /// UDP echo.
    Udp,
    /// ICMP echo (ping).
    Icmp,
    /// A DNS query over UDP.
    DnsUdp,
    /// A DNS query over TCP.
    DnsTcp,
}

impl Probe {
    /// Every probe.
    pub const ALL: [Probe; 5] = [
        Probe::Tcp,
        Probe::Udp,
        Probe::Icmp,
        Probe::DnsUdp,
        Probe::DnsTcp,
    ];
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A device namespace and an outside namespace joined by an uplink and a tunnel, with
/// servers running outside. Deleted on drop.
pub struct Topology {
    /// The device namespace's name (`ip netns exec NAME ...`).
    pub device: String,
    /// The outside namespace's name.
    pub outside: String,
    stop: Arc<AtomicBool>,
    servers: Vec<std::thread::JoinHandle<()>>,
}

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("running ip")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Runs `body` on a new thread inside network namespace `name` and returns its result.
pub fn in_netns<T: Send + 'static>(
    name: &str,
    body: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    let name = name.to_owned();
    std::thread::spawn(move || {
        enter(&name)?;
        body()
    })
    .join()
    .map_err(|_| anyhow::anyhow!("namespace thread panicked"))?
}

/// Moves the calling thread into network namespace `name`.
pub fn enter(name: &str) -> Result<()> {
    let file = std::fs::File::open(format!("/run/netns/{name}"))
        .with_context(|| format!("opening network namespace {name}"))?;
    nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
        .with_context(|| format!("entering network namespace {name}"))?;
    Ok(())
}

impl Topology {
    /// Creates both namespaces, the two veth pairs with their addresses, and starts the
    /// outside servers. Needs root, `ip` and `ping`.
    pub fn create() -> Result<Self> {
        require_tool("ip", "iproute2")?;
        require_tool("ping", "iputils-ping")?;
        let id = format!(
            "{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let device = format!("enigm-dev-{id}");
        let outside_ns = format!("enigm-out-{id}");
        ip(&["netns", "add", &device])?;
        let mut topology = Self {
            device: device.clone(),
            outside: outside_ns.clone(),
            stop: Arc::new(AtomicBool::new(false)),
            servers: Vec::new(),
        };
        ip(&["netns", "add", &outside_ns])?;
        for (dev, peer) in [(UPLINK, "wan0"), (TUNNEL, "vpnpeer0")] {
            ip(&[
                "link",
                "add",
                "name",
                dev,
                "netns",
                &device,
                "type",
                "veth",
                "peer",
                "name",
                peer,
                "netns",
                &outside_ns,
            ])?;
        }
        let addresses = [
            (&device, UPLINK, "198.18.0.2/24", "2001:db8::2/64"),
            (&device, TUNNEL, "198.18.1.2/24", "2001:db8:1::2/64"),
            (&outside_ns, "wan0", "198.18.0.1/24", "2001:db8::1/64"),
            (&outside_ns, "vpnpeer0", "198.18.1.1/24", "2001:db8:1::1/64"),
        ];
        for (ns, dev, v4, v6) in addresses {
            ip(&["-n", ns, "addr", "add", v4, "dev", dev])?;
            ip(&["-n", ns, "-6", "addr", "add", v6, "dev", dev, "nodad"])?;
            ip(&["-n", ns, "link", "set", dev, "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        topology.start_servers()?;
        // Both ends up and neighbours resolvable: wait until every probe gets through.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let results = topology.probe_all()?;
            if results.iter().all(|r| r.reached) {
                break;
            }
            if Instant::now() > deadline {
                bail!("the namespaces never connected: {results:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(topology)
    }

    fn start_servers(&mut self) -> Result<()> {
        for (port, dns) in [(ECHO_PORT, false), (53, true)] {
            let stop = self.stop.clone();
            let tcp = in_netns(&self.outside, move || {
                let listener = TcpListener::bind(("::", port))?;
                listener.set_nonblocking(true)?;
                Ok(listener)
            })?;
            self.servers
                .push(std::thread::spawn(move || tcp_server(tcp, dns, &stop)));
            let stop = self.stop.clone();
            let udp = in_netns(&self.outside, move || {
                let socket = UdpSocket::bind(("::", port))?;
                socket.set_read_timeout(Some(Duration::from_millis(50)))?;
                Ok(socket)
            })?;
            self.servers
                .push(std::thread::spawn(move || udp_server(udp, dns, &stop)));
        }
        Ok(())
    }

    /// Every probe over both families and both paths, run in parallel from the device.
    pub fn probe_all(&self) -> Result<Vec<ProbeResult>> {
        let mut handles = Vec::new();
        for family in [Family::V4, Family::V6] {
            for path in [Path::Uplink, Path::Tunnel] {
                for probe in Probe::ALL {
                    let device = self.device.clone();
                    handles.push(std::thread::spawn(move || {
                        let reached = run_probe(&device, probe, outside(family, path))?;
                        Ok::<_, anyhow::Error>(ProbeResult {
                            probe,
                            family,
                            path,
                            reached,
                        })
                    }));
                }
            }
        }
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| anyhow::anyhow!("probe thread panicked"))?
            })
            .collect()
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for server in self.servers.drain(..) {
            let _ = server.join();
        }
        let _ = ip(&["netns", "del", &self.device]);
        let _ = ip(&["netns", "del", &self.outside]);
    }
}

/// One probe's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeResult {
    /// What was sent.
    pub probe: Probe,
    /// Over which family.
    pub family: Family,
    /// Over which path.
    pub path: Path,
    /// Whether the answer came back.
    pub reached: bool,
}

const PROBE_TIMEOUT: Duration = Duration::from_millis(700);

fn run_probe(device: &str, probe: Probe, address: IpAddr) -> Result<bool> {
    if probe == Probe::Icmp {
        let status = Command::new("ip")
            .args([
                "netns", "exec", device, "ping", "-n", "-q", "-c", "1", "-W", "1",
            ])
            .arg(address.to_string())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()?;
        return Ok(status.success());
    }
    enter(device)?;
    let port = match probe {
        Probe::DnsUdp | Probe::DnsTcp => 53,
        _ => ECHO_PORT,
    };
    let target = SocketAddr::new(address, port);
    let query = dns_query(0x4242);
    Ok(match probe {
        Probe::Tcp => tcp_exchange(target, b"ping").is_some_and(|reply| reply == b"ping"),
        Probe::Udp => udp_exchange(target, b"ping").is_some_and(|reply| reply == b"ping"),
        Probe::DnsUdp => udp_exchange(target, &query).is_some_and(|r| dns_answers(&r, 0x4242)),
        Probe::DnsTcp => {
            let mut framed = (query.len() as u16).to_be_bytes().to_vec();
            framed.extend(&query);
            tcp_exchange(target, &framed)
                .is_some_and(|r| r.len() > 2 && dns_answers(&r[2..], 0x4242))
        }
        Probe::Icmp => false,
    })
}

fn tcp_exchange(target: SocketAddr, request: &[u8]) -> Option<Vec<u8>> {
    let mut stream = TcpStream::connect_timeout(&target, PROBE_TIMEOUT).ok()?;
    stream.set_read_timeout(Some(PROBE_TIMEOUT)).ok()?;
    stream.write_all(request).ok()?;
    let mut buffer = vec![0u8; 512];
    let n = stream.read(&mut buffer).ok()?;
    buffer.truncate(n);
    Some(buffer)
}

fn udp_exchange(target: SocketAddr, request: &[u8]) -> Option<Vec<u8>> {
    let bind: SocketAddr = if target.is_ipv4() {
        "0.0.0.0:0".parse().ok()?
    } else {
        "[::]:0".parse().ok()?
    };
    let socket = UdpSocket::bind(bind).ok()?;
    socket.set_read_timeout(Some(PROBE_TIMEOUT)).ok()?;
    socket.send_to(request, target).ok()?;
    let mut buffer = vec![0u8; 512];
    let (n, _) = socket.recv_from(&mut buffer).ok()?;
    buffer.truncate(n);
    Some(buffer)
}

/// A DNS query for `example.test. A` with id `id`.
pub fn dns_query(id: u16) -> Vec<u8> {
    let mut query = id.to_be_bytes().to_vec();
    query.extend([0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in ["example", "test"] {
        query.push(label.len() as u8);
        query.extend(label.as_bytes());
    }
    query.extend([0, 0, 1, 0, 1]);
    query
}

fn dns_answers(reply: &[u8], id: u16) -> bool {
    reply.len() >= 12 && reply[..2] == id.to_be_bytes() && reply[2] & 0x80 != 0
}

/// The answer to a query: the question, then one A record 198.18.0.53.
fn dns_reply(query: &[u8]) -> Vec<u8> {
    let mut reply = query.to_vec();
    if reply.len() < 12 {
        return reply;
    }
    reply[2] |= 0x80;
    reply[7] = 1;
    reply.extend([0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 198, 18, 0, 53]);
    reply
}

fn tcp_server(listener: TcpListener, dns: bool, stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        let Ok((mut stream, _)) = listener.accept() else {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        };
        let _ = stream.set_nonblocking(false);
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        let mut buffer = vec![0u8; 512];
        let Ok(n) = stream.read(&mut buffer) else {
            continue;
        };
        let reply = if dns && n > 2 {
            let answer = dns_reply(&buffer[2..n]);
            let mut framed = (answer.len() as u16).to_be_bytes().to_vec();
            framed.extend(answer);
            framed
        } else {
            buffer[..n].to_vec()
        };
        let _ = stream.write_all(&reply);
    }
}

fn udp_server(socket: UdpSocket, dns: bool, stop: &AtomicBool) {
    let mut buffer = vec![0u8; 512];
    while !stop.load(Ordering::SeqCst) {
        let Ok((n, from)) = socket.recv_from(&mut buffer) else {
            continue;
        };
        let reply = if dns {
            dns_reply(&buffer[..n])
        } else {
            buffer[..n].to_vec()
        };
        let _ = socket.send_to(&reply, from);
    }
}

/// Numbered packets and when they were sent or seen.
pub type Timeline = Vec<(u64, Instant)>;

/// A capture of every UDP datagram to [`LEAK_PORT`] arriving in the outside namespace
/// (a packet socket, like tcpdump's): the sequence number in its first 8 bytes and when it
/// arrived.
pub struct Capture {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Result<Timeline>>>,
}

impl Capture {
    /// Starts capturing in namespace `outside`.
    pub fn start(outside: &str) -> Result<Self> {
        use nix::sys::socket::{
            AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType, recv, setsockopt, socket,
            sockopt,
        };
        use std::os::fd::AsRawFd;
        let stop = Arc::new(AtomicBool::new(false));
        let fd = in_netns(outside, || {
            Ok(socket(
                AddressFamily::Packet,
                SockType::Raw,
                SockFlag::SOCK_CLOEXEC,
                SockProtocol::EthAll,
            )?)
        })?;
        setsockopt(
            &fd,
            sockopt::ReceiveTimeout,
            &nix::sys::time::TimeVal::new(0, 20_000),
        )?;
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut seen = Vec::new();
            let mut frame = vec![0u8; 2048];
            while !flag.load(Ordering::SeqCst) {
                let Ok(n) = recv(fd.as_raw_fd(), &mut frame, MsgFlags::empty()) else {
                    continue;
                };
                let at = Instant::now();
                if let Some(seq) = leak_sequence(&frame[..n]) {
                    seen.push((seq, at));
                }
            }
            Ok(seen)
        });
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops and returns what arrived: (sequence number, arrival time).
    pub fn finish(mut self) -> Result<Vec<(u64, Instant)>> {
        self.stop.store(true, Ordering::SeqCst);
        match self.thread.take() {
            Some(thread) => thread
                .join()
                .map_err(|_| anyhow::anyhow!("capture thread panicked"))?,
            None => Ok(Vec::new()),
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// The sequence number of an Ethernet frame carrying a UDP datagram to [`LEAK_PORT`].
fn leak_sequence(frame: &[u8]) -> Option<u64> {
    let ethertype = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
    let (protocol, udp) = match ethertype {
        0x0800 => {
            let ihl = usize::from(frame.get(14)? & 0x0f) * 4;
            (*frame.get(14 + 9)?, 14 + ihl)
        }
        0x86dd => (*frame.get(14 + 6)?, 14 + 40),
        _ => return None,
    };
    if protocol != 17 {
        return None;
    }
    let port = u16::from_be_bytes([*frame.get(udp + 2)?, *frame.get(udp + 3)?]);
    if port != LEAK_PORT {
        return None;
    }
    let payload = frame.get(udp + 8..udp + 16)?;
    Some(u64::from_be_bytes(payload.try_into().ok()?))
}

/// What a no-leak-window run saw around the moment Enable returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeakReport {
    /// Datagrams the sender sent after Enable returned.
    pub sent_after: usize,
    /// Datagrams the capture saw in all.
    pub captured: usize,
    /// Captured datagrams that arrived after Enable returned.
    pub arrived_after: usize,
    /// Captured datagrams that were sent after Enable returned.
    pub leaked: usize,
}

/// Compares the sender's and the capture's timelines with the moment Enable `returned`.
pub fn leak_report(sent: &Timeline, captured: &Timeline, returned: Instant) -> LeakReport {
    let first_after = sent
        .iter()
        .find(|(_, at)| *at > returned)
        .map(|(seq, _)| *seq);
    LeakReport {
        sent_after: sent.iter().filter(|(_, at)| *at > returned).count(),
        captured: captured.len(),
        arrived_after: captured.iter().filter(|(_, at)| *at > returned).count(),
        leaked: captured
            .iter()
            .filter(|(seq, _)| first_after.is_some_and(|first| *seq >= first))
            .count(),
    }
}

/// A sender in the device namespace: a numbered UDP datagram to `target` every
/// `interval`, recording when each was sent, until stopped.
pub struct Sender {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Result<Timeline>>>,
}

impl Sender {
    /// Starts sending from namespace `device`.
    pub fn start(device: &str, target: SocketAddr, interval: Duration) -> Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let device = device.to_owned();
        let thread = std::thread::spawn(move || {
            enter(&device)?;
            let socket = UdpSocket::bind(if target.is_ipv4() {
                "0.0.0.0:0"
            } else {
                "[::]:0"
            })?;
            let mut sent = Vec::new();
            let mut seq = 0u64;
            while !flag.load(Ordering::SeqCst) {
                let at = Instant::now();
                // Refused sends (EPERM from the output hook) are expected once the drop is on.
                let _ = socket.send_to(&seq.to_be_bytes(), target);
                sent.push((seq, at));
                seq += 1;
                std::thread::sleep(interval);
            }
            Ok(sent)
        });
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops and returns what was sent: (sequence number, send time).
    pub fn finish(mut self) -> Result<Vec<(u64, Instant)>> {
        self.stop.store(true, Ordering::SeqCst);
        match self.thread.take() {
            Some(thread) => thread
                .join()
                .map_err(|_| anyhow::anyhow!("sender thread panicked"))?,
            None => Ok(Vec::new()),
        }
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leak_frames_are_recognised() {
        let mut frame = vec![0u8; 14 + 20 + 8 + 8];
        frame[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        frame[14] = 0x45;
        frame[14 + 9] = 17;
        frame[34 + 2..34 + 4].copy_from_slice(&LEAK_PORT.to_be_bytes());
        frame[42..50].copy_from_slice(&77u64.to_be_bytes());
        assert_eq!(leak_sequence(&frame), Some(77));
        frame[34 + 3] ^= 1;
        assert_eq!(leak_sequence(&frame), None);
        let query = dns_query(9);
        assert!(dns_answers(&dns_reply(&query), 9));
        assert!(!dns_answers(&query, 9));
    }
}
