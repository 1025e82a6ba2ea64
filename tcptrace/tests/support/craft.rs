//! A crafted TCP peer for scenario tests: two network namespaces joined by a
//! veth pair. The server namespace runs real kernel sockets; the client
//! namespace sends hand-built segments from an address no stack owns (with a
//! permanent neighbour entry on the server side pointing at the client veth)
//! and sniffs the server's replies with AF_PACKET, so the client kernel never
//! answers or resets anything and every sequence number and timestamp is ours.

use std::{
    ffi::CString,
    fs::File,
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use super::ip;
use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TcpOptionElement, TransportSlice};

static NEXT_LAB: AtomicU32 = AtomicU32::new(0);

/// Where `ip netns add` put namespace `ns`: /run/netns (iproute2 default)
/// or /var/run/netns (older builds, or systems without the /var/run link).
pub fn netns_path(ns: &str) -> String {
    ["/run/netns", "/var/run/netns"]
        .iter()
        .map(|dir| format!("{dir}/{ns}"))
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or_else(|| panic!("network namespace {ns} not found under /run or /var/run"))
}

/// Inode of named network namespace `ns` (what events carry as `netns`).
pub fn netns_inode(ns: &str) -> u64 {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata(netns_path(ns)).expect("netns file").ino()
}

/// Loads nftables `rules` (an `nft -f` script) in network namespace `ns`.
pub fn nft(ns: &str, rules: &str) {
    let mut nft = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("nft");
    io::Write::write_all(nft.stdin.as_mut().expect("nft stdin"), rules.as_bytes())
        .expect("nft rules");
    drop(nft.stdin.take());
    assert!(nft.wait().expect("nft").success(), "nft rules: {rules}");
}

/// Runs `f` on a thread that joined network namespace `ns` (a name given to
/// `ip netns add`). Sockets created there stay in that namespace.
pub fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = netns_path(ns);
    std::thread::spawn(move || {
        let file = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
        nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        f()
    })
    .join()
    .expect("netns thread")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

/// Two namespaces, a veth pair, the addresses and the neighbour entry.
pub struct Lab {
    pub server_ns: String,
    pub client_ns: String,
    /// The server's address (a real socket binds it).
    pub server_ip: IpAddr,
    /// The crafted peer's address: owned by no stack.
    pub peer_ip: IpAddr,
    server_mac: [u8; 6],
    client_mac: [u8; 6],
}

fn mac_of(ns: &str, dev: &str) -> [u8; 6] {
    let out = Command::new("ip")
        .args(["-n", ns, "-j", "link", "show", dev])
        .output()
        .expect("ip link show");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ip -j output");
    let text = v[0]["address"].as_str().expect("address").to_owned();
    let mut mac = [0u8; 6];
    for (b, part) in mac.iter_mut().zip(text.split(':')) {
        *b = u8::from_str_radix(part, 16).expect("mac byte");
    }
    mac
}

impl Lab {
    pub fn new(family: Family) -> Lab {
        let n = NEXT_LAB.fetch_add(1, Ordering::Relaxed);
        let tag = format!("{}-{n}", std::process::id());
        let server_ns = format!("ttps-{tag}");
        let client_ns = format!("ttpc-{tag}");
        // Build the lab value first so Drop removes whatever was created.
        let mut lab = Lab {
            server_ns: server_ns.clone(),
            client_ns: client_ns.clone(),
            server_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            peer_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            server_mac: [0; 6],
            client_mac: [0; 6],
        };
        ip(&["netns", "add", &server_ns]);
        ip(&["netns", "add", &client_ns]);
        ip(&[
            "-n", &server_ns, "link", "add", "vs", "type", "veth", "peer", "name", "vc", "netns",
            &client_ns,
        ]);
        let (server, client, peer, plen) = match family {
            Family::V4 => ("10.77.0.1", "10.77.0.2", "10.77.0.3", "24"),
            Family::V6 => ("fd77::1", "fd77::2", "fd77::3", "64"),
        };
        for (ns, dev, addr) in [(&server_ns, "vs", server), (&client_ns, "vc", client)] {
            let cidr = format!("{addr}/{plen}");
            let mut args = vec!["-n", ns.as_str(), "addr", "add", &cidr, "dev", dev];
            if family == Family::V6 {
                args.push("nodad");
            }
            ip(&args);
            ip(&["-n", ns, "link", "set", dev, "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        lab.server_mac = mac_of(&server_ns, "vs");
        lab.client_mac = mac_of(&client_ns, "vc");
        let client_mac = lab
            .client_mac
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":");
        ip(&[
            "-n",
            &server_ns,
            "neigh",
            "replace",
            peer,
            "lladdr",
            &client_mac,
            "dev",
            "vs",
            "nud",
            "permanent",
        ]);
        lab.server_ip = server.parse().expect("server address");
        lab.peer_ip = peer.parse().expect("peer address");
        lab
    }

    /// A listening socket on the server address, created in the server
    /// namespace.
    pub fn listen(&self, port: u16) -> std::net::TcpListener {
        let addr = SocketAddr::new(self.server_ip, port);
        in_netns(&self.server_ns, move || {
            std::net::TcpListener::bind(addr).expect("bind in the server namespace")
        })
    }

    /// TcpExt counters of the server namespace.
    pub fn server_netstat(&self) -> std::collections::HashMap<String, u64> {
        in_netns(&self.server_ns, super::netstat)
    }

    /// Inode of the server namespace (what events carry as `netns`).
    pub fn server_netns_inode(&self) -> u64 {
        netns_inode(&self.server_ns)
    }

    /// Inode of the client namespace.
    pub fn client_netns_inode(&self) -> u64 {
        netns_inode(&self.client_ns)
    }

    /// An active open from the server namespace to the peer's `port` gets
    /// `n` SYN-ACKs whose TSecr echoes a time 100,000 ticks before its SYN
    /// (each rejected: PAWSActive) and fails. Returns its SYN.
    pub fn stale_synacks(&self, wire: &Wire, port: u16, n: u32) -> Reply {
        let to = std::net::SocketAddr::new(self.peer_ip, port);
        let ns = self.server_ns.clone();
        let client = std::thread::spawn(move || {
            in_netns(&ns, move || {
                std::net::TcpStream::connect_timeout(&to, Duration::from_millis(1500)).is_ok()
            })
        });
        let syn = wire
            .recv(port, WAIT, |r| r.syn && !r.ack_flag)
            .expect("SYN from the connecting socket");
        let tsval = syn.tsval.expect("SYN timestamp");
        for _ in 0..n {
            wire.send(&Segment {
                sport: port,
                dport: syn.sport,
                seq: 77_000_000,
                ack: Some(syn.seq.wrapping_add(1)),
                syn: true,
                mss: Some(1400),
                ts: Some((555, tsval.wrapping_sub(100_000))),
                window: 64000,
                ..Segment::default()
            });
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(!client.join().expect("client"), "connect must not succeed");
        syn
    }

    /// An AF_PACKET socket on the client veth.
    pub fn wire(&self) -> Wire {
        let client_ns = self.client_ns.clone();
        let fd = in_netns(&client_ns, || {
            // SAFETY: plain socket/bind calls with initialised arguments.
            unsafe {
                let proto = (libc::ETH_P_ALL as u16).to_be();
                let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(proto));
                assert!(fd >= 0, "AF_PACKET socket: {}", io::Error::last_os_error());
                let name = CString::new("vc").expect("ifname");
                let mut sll: libc::sockaddr_ll = std::mem::zeroed();
                sll.sll_family = libc::AF_PACKET as u16;
                sll.sll_protocol = proto;
                sll.sll_ifindex = libc::if_nametoindex(name.as_ptr()) as i32;
                assert!(sll.sll_ifindex > 0, "no vc in the client namespace");
                let ret = libc::bind(
                    fd,
                    (&raw const sll).cast(),
                    std::mem::size_of::<libc::sockaddr_ll>() as u32,
                );
                assert_eq!(ret, 0, "bind AF_PACKET: {}", io::Error::last_os_error());
                let tv = libc::timeval {
                    tv_sec: 0,
                    tv_usec: 50_000,
                };
                libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    libc::SO_RCVTIMEO,
                    (&raw const tv).cast(),
                    std::mem::size_of::<libc::timeval>() as u32,
                );
                OwnedFd::from_raw_fd(fd)
            }
        });
        Wire {
            fd,
            src_mac: self.client_mac,
            dst_mac: self.server_mac,
            peer_ip: self.peer_ip,
            server_ip: self.server_ip,
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in [&self.server_ns, &self.client_ns] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

/// What the tests build: flags, numbers, timestamp, payload.
#[derive(Clone, Debug, Default)]
pub struct Segment {
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: Option<u32>,
    pub syn: bool,
    pub rst: bool,
    pub fin: bool,
    pub psh: bool,
    /// (TSval, TSecr)
    pub ts: Option<(u32, u32)>,
    pub mss: Option<u16>,
    pub window: u16,
    pub payload: Vec<u8>,
}

/// A segment the server sent.
#[derive(Clone, Debug)]
pub struct Reply {
    pub sport: u16,
    /// The crafted peer's port it went to.
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    pub syn: bool,
    pub ack_flag: bool,
    pub fin: bool,
    pub rst: bool,
    pub window: u16,
    pub tsval: Option<u32>,
    pub payload_len: usize,
}

pub struct Wire {
    fd: OwnedFd,
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    pub peer_ip: IpAddr,
    pub server_ip: IpAddr,
}

impl Wire {
    pub fn send(&self, s: &Segment) {
        let eth = PacketBuilder::ethernet2(self.src_mac, self.dst_mac);
        let ipb = match (self.peer_ip, self.server_ip) {
            (IpAddr::V4(a), IpAddr::V4(b)) => eth.ipv4(a.octets(), b.octets(), 64),
            (IpAddr::V6(a), IpAddr::V6(b)) => eth.ipv6(a.octets(), b.octets(), 64),
            _ => panic!("mixed families"),
        };
        let mut tcp = ipb.tcp(s.sport, s.dport, s.seq, s.window);
        if s.syn {
            tcp = tcp.syn();
        }
        if s.rst {
            tcp = tcp.rst();
        }
        if s.fin {
            tcp = tcp.fin();
        }
        if s.psh {
            tcp = tcp.psh();
        }
        if let Some(a) = s.ack {
            tcp = tcp.ack(a);
        }
        let mut opts = Vec::new();
        if let Some(mss) = s.mss {
            opts.push(TcpOptionElement::MaximumSegmentSize(mss));
        }
        if let Some((val, ecr)) = s.ts {
            opts.push(TcpOptionElement::Noop);
            opts.push(TcpOptionElement::Noop);
            opts.push(TcpOptionElement::Timestamp(val, ecr));
        }
        let tcp = tcp.options(&opts).expect("tcp options");
        let mut frame = Vec::new();
        tcp.write(&mut frame, &s.payload).expect("build frame");
        // SAFETY: send on a bound AF_PACKET socket with a valid buffer.
        let n = unsafe { libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        assert_eq!(
            n,
            frame.len() as isize,
            "send frame: {}",
            io::Error::last_os_error()
        );
    }

    /// The next segment the server sends to `peer_port` that `want` accepts,
    /// within `timeout`.
    pub fn recv(
        &self,
        peer_port: u16,
        timeout: Duration,
        want: impl Fn(&Reply) -> bool,
    ) -> Option<Reply> {
        self.next(Some(peer_port), timeout, want)
    }

    /// Every segment the server sends to the peer (any port) for `wait`.
    pub fn collect(&self, wait: Duration) -> Vec<Reply> {
        let deadline = Instant::now() + wait;
        let mut out = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(None, left, |_| true) {
                Some(r) => out.push(r),
                None => return out,
            }
        }
    }

    fn next(
        &self,
        peer_port: Option<u16>,
        timeout: Duration,
        want: impl Fn(&Reply) -> bool,
    ) -> Option<Reply> {
        let deadline = Instant::now() + timeout;
        let mut buf = vec![0u8; 65536];
        while Instant::now() < deadline {
            // SAFETY: sockaddr_ll holds only integers and byte arrays, for
            // which all zeroes is a valid value.
            let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            let mut len = std::mem::size_of::<libc::sockaddr_ll>() as u32;
            // SAFETY: recvfrom into a buffer we own.
            let n = unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    0,
                    (&raw mut from).cast(),
                    &mut len,
                )
            };
            if n <= 0 || from.sll_pkttype == libc::PACKET_OUTGOING {
                continue;
            }
            let Some(reply) = self.parse(&buf[..n as usize], peer_port) else {
                continue;
            };
            if want(&reply) {
                return Some(reply);
            }
        }
        None
    }

    fn parse(&self, frame: &[u8], peer_port: Option<u16>) -> Option<Reply> {
        let p = SlicedPacket::from_ethernet(frame).ok()?;
        let (src, dst): (IpAddr, IpAddr) = match p.net? {
            NetSlice::Ipv4(v4) => (
                v4.header().source_addr().into(),
                v4.header().destination_addr().into(),
            ),
            NetSlice::Ipv6(v6) => (
                Ipv6Addr::from(v6.header().source()).into(),
                Ipv6Addr::from(v6.header().destination()).into(),
            ),
            _ => return None,
        };
        let TransportSlice::Tcp(tcp) = p.transport? else {
            return None;
        };
        if src != self.server_ip
            || dst != self.peer_ip
            || peer_port.is_some_and(|p| tcp.destination_port() != p)
        {
            return None;
        }
        let tsval = tcp.options_iterator().find_map(|o| match o {
            Ok(TcpOptionElement::Timestamp(v, _)) => Some(v),
            _ => None,
        });
        Some(Reply {
            sport: tcp.source_port(),
            dport: tcp.destination_port(),
            seq: tcp.sequence_number(),
            ack: tcp.acknowledgment_number(),
            syn: tcp.syn(),
            ack_flag: tcp.ack(),
            fin: tcp.fin(),
            rst: tcp.rst(),
            window: tcp.window_size(),
            tsval,
            payload_len: tcp.payload().len(),
        })
    }
}

/// One crafted connection from `peer:sport` to the server.
pub struct Conn<'a> {
    pub wire: &'a Wire,
    pub sport: u16,
    pub dport: u16,
    /// Next sequence number we send.
    pub snd_nxt: u32,
    /// Next sequence number we expect from the server (its rcv side is our
    /// snd side: the server's rcv_nxt is `snd_nxt`).
    pub rcv_nxt: u32,
    /// Our timestamp clock: TSval = base + ticks we choose; None = no TS.
    pub ts_base: Option<u32>,
    /// The server's last TSval (what we echo).
    pub ts_recent: u32,
    /// The server's window from the SYN-ACK.
    pub server_window: u16,
}

pub const WAIT: Duration = Duration::from_secs(3);

impl<'a> Conn<'a> {
    /// SYN, SYN-ACK read off the wire, ACK.
    pub fn handshake(
        wire: &'a Wire,
        sport: u16,
        dport: u16,
        iss: u32,
        ts_base: Option<u32>,
    ) -> Conn<'a> {
        let mut c = Conn {
            wire,
            sport,
            dport,
            snd_nxt: iss,
            rcv_nxt: 0,
            ts_base,
            ts_recent: 0,
            server_window: 0,
        };
        c.send(Segment {
            syn: true,
            mss: Some(1400),
            ..c.segment(0)
        });
        let synack = wire
            .recv(sport, WAIT, |r| {
                r.syn && r.ack_flag && r.ack == iss.wrapping_add(1)
            })
            .expect("SYN-ACK from the server");
        c.snd_nxt = iss.wrapping_add(1);
        c.rcv_nxt = synack.seq.wrapping_add(1);
        c.ts_recent = synack.tsval.unwrap_or(0);
        c.server_window = synack.window;
        c.send(c.segment(1));
        c
    }

    /// A segment at `snd_nxt`, acknowledging `rcv_nxt`, stamped `base + tick`.
    pub fn segment(&self, tick: u32) -> Segment {
        Segment {
            sport: self.sport,
            dport: self.dport,
            seq: self.snd_nxt,
            ack: (self.rcv_nxt != 0).then_some(self.rcv_nxt),
            ts: self.ts_base.map(|b| (b.wrapping_add(tick), self.ts_recent)),
            window: 64000,
            ..Segment::default()
        }
    }

    pub fn send(&self, s: Segment) {
        self.wire.send(&s);
    }

    /// Sends data stamped `base + tick` and advances `snd_nxt`.
    pub fn send_data(&mut self, tick: u32, data: &[u8]) {
        let s = Segment {
            psh: true,
            payload: data.to_vec(),
            ..self.segment(tick)
        };
        self.send(s);
        self.snd_nxt = self.snd_nxt.wrapping_add(data.len() as u32);
    }

    /// Waits for the server's FIN, then acknowledges it with our own FIN.
    pub fn answer_fin(&mut self, tick: u32) {
        let fin = self
            .wire
            .recv(self.sport, WAIT, |r| r.fin)
            .expect("FIN from the server");
        self.rcv_nxt = fin.seq.wrapping_add(fin.payload_len as u32).wrapping_add(1);
        if let Some(t) = fin.tsval {
            self.ts_recent = t;
        }
        let s = Segment {
            fin: true,
            ..self.segment(tick)
        };
        self.send(s);
        self.snd_nxt = self.snd_nxt.wrapping_add(1);
        // The server's last ACK: it is in TIME_WAIT now.
        let want = self.snd_nxt;
        self.wire
            .recv(self.sport, WAIT, move |r| r.ack_flag && r.ack == want)
            .expect("the server's ACK of our FIN");
    }
}

// ---- a peer that opens handshakes ------------------------------------------

/// The crafted peer's initial sequence number for a source port.
pub fn client_isn(port: u16) -> u32 {
    0x1000_0000 ^ (u32::from(port) << 8)
}

/// A crafted client of one server port that opens handshakes from many
/// source ports (the SYN family's scenarios): SYNs with [`client_isn`],
/// third ACKs, and what the server sends back.
pub struct Peer {
    pub wire: Wire,
    pub server_port: u16,
}

impl Peer {
    pub fn new(wire: Wire, server_port: u16) -> Peer {
        Peer { wire, server_port }
    }

    fn send(&self, port: u16, seq: u32, ack: Option<u32>, syn: bool) {
        self.wire.send(&Segment {
            sport: port,
            dport: self.server_port,
            seq,
            ack,
            syn,
            window: 64240,
            ..Segment::default()
        });
    }

    pub fn syn(&self, port: u16) {
        self.send(port, client_isn(port), None, true);
    }

    /// Completes the handshake for `synack.dport` given the server's SYN-ACK.
    pub fn ack(&self, synack: &Reply) {
        self.send(
            synack.dport,
            client_isn(synack.dport).wrapping_add(1),
            Some(synack.seq.wrapping_add(1)),
            false,
        );
    }

    /// Segments from the server's port to the peer, for `wait`.
    pub fn read(&self, wait: Duration) -> Vec<Reply> {
        let mut all = self.wire.collect(wait);
        all.retain(|r| r.sport == self.server_port);
        all
    }

    /// Whether `r` answers `port`'s SYN.
    pub fn answers(r: &Reply, port: u16) -> bool {
        r.syn && r.ack_flag && r.ack == client_isn(port).wrapping_add(1)
    }

    /// Waits (up to `within`) for the SYN-ACK answering `port`'s SYN.
    pub fn synack_within(&self, port: u16, within: Duration) -> Reply {
        let server = self.server_port;
        self.wire
            .recv(port, within, |r| {
                r.sport == server && Self::answers(r, port)
            })
            .unwrap_or_else(|| panic!("no SYN-ACK for port {port}"))
    }

    /// Waits (up to 2 s) for the SYN-ACK answering `port`'s SYN.
    pub fn synack(&self, port: u16) -> Reply {
        self.synack_within(port, Duration::from_secs(2))
    }

    /// Overflows an accept queue of `backlog` at a third ACK: `backlog`
    /// handshakes from `first` on fill it, two more SYNs are answered while
    /// it still has room, the first of them completes, and the second's
    /// third ACK finds it full. That port is returned: its request stays
    /// (a ghost) and its SYN-ACK is resent.
    pub fn overflow_at_third_ack(&self, first: u16, backlog: u16) -> u16 {
        for p in first..first + backlog {
            self.syn(p);
            self.ack(&self.synack(p));
        }
        let (a, b) = (first + backlog, first + backlog + 1);
        self.syn(a);
        let synack_a = self.synack(a);
        self.syn(b);
        let synack_b = self.synack(b);
        self.ack(&synack_a);
        std::thread::sleep(Duration::from_millis(50));
        self.ack(&synack_b);
        b
    }
}
