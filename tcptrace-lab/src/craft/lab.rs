//! Two named namespaces joined by a veth pair: the server side runs real
//! kernel sockets, the client side carries the crafted peer's frames.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

use anyhow::{bail, Context as _, Result};

use super::{
    named::{in_netns, ip, netns_inode, Prefix},
    wire::{Reply, Segment, Wire, WAIT},
    Family,
};
use crate::netstat::Netstat;

static NEXT_LAB: AtomicU32 = AtomicU32::new(0);

/// The TSval of [`Lab::stale_synacks`]' SYN-ACKs.
pub const STALE_SYNACK_TSVAL: u32 = 555;
/// How far before the SYN's stamp their TSecr is.
pub const STALE_SYNACK_BEHIND: u32 = 100_000;

/// Two namespaces, a veth pair, the addresses and the neighbour entry.
/// Dropping it deletes both namespaces.
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

/// The MAC address of `dev` in namespace `ns`, from `ip -o link show`.
fn mac_of(ns: &str, dev: &str) -> Result<[u8; 6]> {
    let out = Command::new("ip")
        .args(["-n", ns, "-o", "link", "show", dev])
        .output()
        .context("running ip link show")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let addr = text
        .split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .with_context(|| format!("no link/ether address for {dev} in {ns}: {text}"))?;
    let mut mac = [0u8; 6];
    let parts: Vec<&str> = addr.split(':').collect();
    if parts.len() != 6 {
        bail!("MAC address of {dev} in {ns}: {addr}");
    }
    for (b, part) in mac.iter_mut().zip(parts) {
        *b = u8::from_str_radix(part, 16).with_context(|| format!("MAC address {addr}"))?;
    }
    Ok(mac)
}

impl Lab {
    /// Creates the namespaces (named `prefix` + pid + counter), the veth
    /// pair, the addresses of `family` and the peer's neighbour entry.
    pub fn new(prefix: &Prefix, family: Family) -> Result<Lab> {
        let n = NEXT_LAB.fetch_add(1, Ordering::Relaxed);
        let tag = format!("{}-{n}", std::process::id());
        let server_ns = format!("{}{tag}", prefix.server);
        let client_ns = format!("{}{tag}", prefix.client);
        ip(&["netns", "add", &server_ns])?;
        // From here on Drop removes whatever was created.
        let mut lab = Lab {
            server_ns: server_ns.clone(),
            client_ns: client_ns.clone(),
            server_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            peer_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            server_mac: [0; 6],
            client_mac: [0; 6],
        };
        ip(&["netns", "add", &client_ns])?;
        ip(&[
            "-n", &server_ns, "link", "add", "vs", "type", "veth", "peer", "name", "vc", "netns",
            &client_ns,
        ])?;
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
            ip(&args)?;
            ip(&["-n", ns, "link", "set", dev, "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        lab.server_mac = mac_of(&server_ns, "vs")?;
        lab.client_mac = mac_of(&client_ns, "vc")?;
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
        ])?;
        lab.server_ip = server.parse().context("server address")?;
        lab.peer_ip = peer.parse().context("peer address")?;
        Ok(lab)
    }

    /// A listening socket on the server address, created in the server
    /// namespace.
    pub fn listen(&self, port: u16) -> Result<TcpListener> {
        let addr = SocketAddr::new(self.server_ip, port);
        in_netns(&self.server_ns, move || TcpListener::bind(addr))?
            .with_context(|| format!("binding {addr} in the server namespace"))
    }

    /// TcpExt and Tcp counters of the server namespace.
    pub fn server_netstat(&self) -> Result<Netstat> {
        in_netns(&self.server_ns, Netstat::read)?
    }

    /// Inode of the server namespace (what events carry as `netns`).
    pub fn server_netns_inode(&self) -> Result<u64> {
        netns_inode(&self.server_ns)
    }

    /// Inode of the client namespace.
    pub fn client_netns_inode(&self) -> Result<u64> {
        netns_inode(&self.client_ns)
    }

    /// An active open from the server namespace to the peer's `port` gets
    /// `n` SYN-ACKs whose TSecr echoes a time 100,000 ticks before its SYN
    /// (each rejected: PAWSActive) and fails. Returns its SYN.
    pub fn stale_synacks(&self, wire: &Wire, port: u16, n: u32) -> Result<Reply> {
        let to = SocketAddr::new(self.peer_ip, port);
        let ns = self.server_ns.clone();
        let client = std::thread::Builder::new()
            .name("tcptrace-lab-connect".into())
            .spawn(move || {
                in_netns(&ns, move || {
                    TcpStream::connect_timeout(&to, Duration::from_millis(1500)).is_ok()
                })
            })
            .context("starting the connecting thread")?;
        let syn = wire
            .recv(port, WAIT, |r| r.syn && !r.ack_flag)
            .context("no SYN from the connecting socket")?;
        let tsval = syn.tsval.context("the SYN carries no timestamp")?;
        for _ in 0..n {
            wire.send(&Segment {
                sport: port,
                dport: syn.sport,
                seq: 77_000_000,
                ack: Some(syn.seq.wrapping_add(1)),
                syn: true,
                mss: Some(1400),
                ts: Some((STALE_SYNACK_TSVAL, tsval.wrapping_sub(STALE_SYNACK_BEHIND))),
                window: 64000,
                ..Segment::default()
            })?;
            std::thread::sleep(Duration::from_millis(50));
        }
        let connected = match client.join() {
            Ok(r) => r?,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        if connected {
            bail!("the connect answered by stale SYN-ACKs succeeded");
        }
        Ok(syn)
    }

    /// An AF_PACKET socket on the client veth.
    pub fn wire(&self) -> Result<Wire> {
        let fd = in_netns(&self.client_ns, packet_socket)??;
        Ok(Wire::new(
            fd,
            self.client_mac,
            self.server_mac,
            self.peer_ip,
            self.server_ip,
        ))
    }
}

/// An AF_PACKET socket bound to `vc` in the calling thread's namespace,
/// reads timing out after 50 ms.
fn packet_socket() -> Result<OwnedFd> {
    let proto = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: socket(2) with constant arguments; the fd it returns is
    // owned by nothing else, so OwnedFd may close it.
    let fd = unsafe {
        let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(proto));
        if fd < 0 {
            bail!("AF_PACKET socket: {}", std::io::Error::last_os_error());
        }
        OwnedFd::from_raw_fd(fd)
    };
    // SAFETY: if_nametoindex reads a NUL-terminated name.
    let ifindex = unsafe { libc::if_nametoindex(c"vc".as_ptr()) };
    if ifindex == 0 {
        bail!("no vc in the client namespace");
    }
    // SAFETY: sockaddr_ll holds only integers and byte arrays, for which
    // all zeroes is a valid value.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = proto;
    sll.sll_ifindex = ifindex as i32;
    // SAFETY: bind reads `sll`, whose size is passed, on a socket we own.
    let ret = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&raw const sll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    if ret != 0 {
        bail!("bind AF_PACKET: {}", std::io::Error::last_os_error());
    }
    let tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 50_000,
    };
    // SAFETY: setsockopt reads `tv`, whose size is passed.
    let ret = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&raw const tv).cast(),
            std::mem::size_of::<libc::timeval>() as u32,
        )
    };
    if ret != 0 {
        bail!("SO_RCVTIMEO: {}", std::io::Error::last_os_error());
    }
    Ok(fd)
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in [&self.server_ns, &self.client_ns] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}
