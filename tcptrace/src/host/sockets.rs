//! Sockets of one namespace: the lines of /proc/net/tcp and tcp6, and what
//! they add up to (listeners and their queues, connections per listening
//! port, the destinations holding the ephemeral range).

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use serde::{Deserialize, Serialize};

use super::sysctl::{Sysctls, DEFAULT_PORT_RANGE};

/// Destinations listed as holders of the ephemeral range.
const TOP_DESTINATIONS: usize = 5;
/// A namespace's own addresses kept.
const MAX_LOCAL_ADDRS: usize = 256;
/// Peers kept per listening port.
const MAX_LISTENER_PEERS: usize = 64;

/// TCP states as printed in /proc/net/tcp.
pub mod state {
    pub const ESTABLISHED: u8 = 0x01;
    pub const TIME_WAIT: u8 = 0x06;
    pub const CLOSE_WAIT: u8 = 0x08;
    pub const LISTEN: u8 = 0x0A;
}

/// One line of /proc/net/tcp or tcp6.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SockLine {
    pub local: IpAddr,
    pub lport: u16,
    pub remote: IpAddr,
    pub rport: u16,
    pub state: u8,
    pub tx_queue: u64,
    /// For a listener: `sk_ack_backlog`, connections waiting for accept().
    pub rx_queue: u64,
    pub inode: u64,
}

fn parse_hex_addr(s: &str) -> Option<(IpAddr, u16)> {
    let (addr, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    // The kernel prints each 32-bit word of the address as a native-endian
    // integer.
    let mut bytes = Vec::with_capacity(16);
    for i in (0..addr.len()).step_by(8) {
        let w = u32::from_str_radix(addr.get(i..i + 8)?, 16).ok()?;
        bytes.extend_from_slice(&w.to_ne_bytes());
    }
    let ip = match <[u8; 4]>::try_from(bytes.as_slice()) {
        Ok(b) => IpAddr::V4(Ipv4Addr::from(b)),
        Err(_) => {
            let v6 = Ipv6Addr::from(<[u8; 16]>::try_from(bytes.as_slice()).ok()?);
            match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(v6),
            }
        }
    };
    Some((ip, port))
}

/// Parses /proc/net/tcp or tcp6 text; malformed lines are skipped.
pub fn parse_proc_net_tcp(text: &str) -> Vec<SockLine> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let c: Vec<&str> = line.split_whitespace().collect();
            let (local, lport) = parse_hex_addr(c.get(1)?)?;
            let (remote, rport) = parse_hex_addr(c.get(2)?)?;
            let state = u8::from_str_radix(c.get(3)?, 16).ok()?;
            let (tx, rx) = c.get(4)?.split_once(':')?;
            Some(SockLine {
                local,
                lport,
                remote,
                rport,
                state,
                tx_queue: u64::from_str_radix(tx, 16).ok()?,
                rx_queue: u64::from_str_radix(rx, 16).ok()?,
                inode: c.get(9)?.parse().ok()?,
            })
        })
        .collect()
}

/// A listening socket now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listener {
    pub addr: IpAddr,
    pub port: u16,
    /// Connections waiting in its accept queue now.
    pub backlog: u64,
    pub inode: u64,
}

/// Connections on one local port, by state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortStates {
    pub established: u64,
    pub close_wait: u64,
    pub time_wait: u64,
}

/// A destination and the ephemeral ports its connections hold.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub daddr: IpAddr,
    pub dport: u16,
    /// Sockets to it whose local port is in `ip_local_port_range`.
    pub ports: u64,
    pub time_wait: u64,
}

/// What one namespace looked like at the snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NetnsSnapshot {
    pub sysctls: Sysctls,
    /// Whether the socket tables below were read.
    pub sockets_read: bool,
    pub listeners: Vec<Listener>,
    /// Per listening port: the connections on it (accepted or waiting).
    pub listener_ports: BTreeMap<u16, PortStates>,
    pub time_wait_total: u64,
    pub close_wait_total: u64,
    /// Sockets (not listeners) with a local port in the ephemeral range.
    pub ephemeral_in_use: u64,
    pub ephemeral_time_wait: u64,
    /// Destinations holding most of the ephemeral range, most first.
    pub holders: Vec<Holder>,
    /// The namespace's own addresses (where a wildcard listener answers;
    /// bounded, sorted).
    pub local_addrs: Vec<IpAddr>,
    /// Per listening port: peer addresses of its connections (bounded):
    /// which clients reached this namespace's listener.
    pub listener_peers: BTreeMap<u16, BTreeSet<IpAddr>>,
}

impl NetnsSnapshot {
    /// Aggregates socket lines: listeners, states per listening port,
    /// ephemeral-range use per destination.
    pub fn add_sockets(&mut self, socks: &[SockLine]) {
        let (lo, hi) = self
            .sysctls
            .ip_local_port_range
            .unwrap_or(DEFAULT_PORT_RANGE);
        self.sockets_read = true;
        let listening: BTreeSet<u16> = socks
            .iter()
            .filter(|s| s.state == state::LISTEN)
            .map(|s| s.lport)
            .chain(self.listeners.iter().map(|l| l.port))
            .collect();
        let mut holders: HashMap<(IpAddr, u16), Holder> = self
            .holders
            .drain(..)
            .map(|h| ((h.daddr, h.dport), h))
            .collect();
        for s in socks {
            match s.state {
                state::LISTEN => {
                    self.listeners.push(Listener {
                        addr: s.local,
                        port: s.lport,
                        backlog: s.rx_queue,
                        inode: s.inode,
                    });
                    continue;
                }
                state::TIME_WAIT => self.time_wait_total += 1,
                state::CLOSE_WAIT => self.close_wait_total += 1,
                _ => {}
            }
            if listening.contains(&s.lport) {
                let peers = self.listener_peers.entry(s.lport).or_default();
                if peers.len() < MAX_LISTENER_PEERS {
                    peers.insert(s.remote);
                }
                let p = self.listener_ports.entry(s.lport).or_default();
                match s.state {
                    state::ESTABLISHED => p.established += 1,
                    state::CLOSE_WAIT => p.close_wait += 1,
                    state::TIME_WAIT => p.time_wait += 1,
                    _ => {}
                }
            } else if (lo..=hi).contains(&s.lport) {
                self.ephemeral_in_use += 1;
                let tw = u64::from(s.state == state::TIME_WAIT);
                self.ephemeral_time_wait += tw;
                let h = holders.entry((s.remote, s.rport)).or_insert(Holder {
                    daddr: s.remote,
                    dport: s.rport,
                    ports: 0,
                    time_wait: 0,
                });
                h.ports += 1;
                h.time_wait += tw;
            }
        }
        let mut holders: Vec<Holder> = holders.into_values().collect();
        holders.sort_by(|a, b| {
            b.ports
                .cmp(&a.ports)
                .then(a.daddr.cmp(&b.daddr))
                .then(a.dport.cmp(&b.dport))
        });
        holders.truncate(TOP_DESTINATIONS);
        self.holders = holders;
    }

    /// Keeps the namespace's own addresses (bounded, deduplicated).
    pub fn set_local_addrs(&mut self, mut addrs: Vec<IpAddr>) {
        addrs.sort();
        addrs.dedup();
        addrs.truncate(MAX_LOCAL_ADDRS);
        self.local_addrs = addrs;
    }

    /// Whether `addr` is one of this namespace's own addresses (loopback
    /// always is).
    pub fn owns(&self, addr: IpAddr) -> bool {
        addr.is_loopback() || self.local_addrs.binary_search(&addr).is_ok()
    }

    /// The listener on `port` that a SYN to `addr` reaches here: bound to
    /// `addr`, or a wildcard listener when `addr` is this namespace's own.
    pub fn listener_for(&self, addr: IpAddr, port: u16) -> Option<&Listener> {
        let on_port = || self.listeners.iter().filter(move |l| l.port == port);
        on_port()
            .find(|l| l.addr == addr)
            .or_else(|| on_port().find(|l| l.addr.is_unspecified() && self.owns(addr)))
    }

    pub fn listener(&self, port: u16, addr: Option<IpAddr>) -> Option<&Listener> {
        let mut on_port = self.listeners.iter().filter(|l| l.port == port);
        match addr {
            Some(a) => on_port.find(|l| l.addr == a || l.addr.is_unspecified()),
            None => on_port.next(),
        }
    }
}

/// The addresses `/proc/net/fib_trie` marks `/32 host LOCAL`: a
/// namespace's own IPv4 addresses.
pub fn parse_fib_trie_local(text: &str) -> Vec<IpAddr> {
    let mut out = Vec::new();
    let mut last: Option<Ipv4Addr> = None;
    for line in text.lines() {
        let t = line.trim();
        if let Some(a) = t.strip_prefix("|-- ") {
            last = a.trim().parse().ok();
        } else if t.starts_with("/32 host LOCAL") {
            if let Some(a) = last.take() {
                out.push(IpAddr::V4(a));
            }
        }
    }
    out
}

/// The addresses of `/proc/net/if_inet6`: a namespace's own IPv6 addresses.
pub fn parse_if_inet6(text: &str) -> Vec<IpAddr> {
    text.lines()
        .filter_map(|l| {
            let hex = l.split_whitespace().next()?;
            let v = u128::from_str_radix(hex, 16).ok()?;
            Some(IpAddr::V6(Ipv6Addr::from(v)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{
        super::fixture::{tcp4, TCP_HEAD},
        *,
    };

    #[test]
    fn parses_proc_net_tcp_v4_and_v6() {
        let text = format!(
            "{TCP_HEAD}{}{}",
            tcp4([127, 0, 0, 1], 8080, [0, 0, 0, 0], 0, 0x0A, 3, 1234),
            tcp4([10, 0, 0, 2], 40000, [10, 0, 0, 9], 5432, 0x06, 0, 0)
        );
        let s = parse_proc_net_tcp(&text);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].local, "127.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(
            (s[0].lport, s[0].state, s[0].rx_queue, s[0].inode),
            (8080, 0x0A, 3, 1234)
        );
        assert_eq!(s[1].remote, "10.0.0.9".parse::<IpAddr>().unwrap());
        assert_eq!(s[1].rport, 5432);
        // ::1 port 8080 listening, and ::ffff:127.0.0.1 (folded to IPv4).
        let v6 = format!(
            "{TCP_HEAD}   0: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000001 00:00000000 00000000     0        0 99 1\n   1: 0000000000000000FFFF00000100007F:1F90 0000000000000000FFFF00000100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 0 1\n"
        );
        let s = parse_proc_net_tcp(&v6);
        assert_eq!(s[0].local, "::1".parse::<IpAddr>().unwrap());
        assert_eq!((s[0].lport, s[0].rx_queue, s[0].inode), (8080, 1, 99));
        assert_eq!(s[1].local, "127.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(s[1].rport, 40000);
    }

    #[test]
    fn aggregates_sockets() {
        let mut ns = NetnsSnapshot {
            sysctls: Sysctls {
                ip_local_port_range: Some((40000, 40007)),
                ..Sysctls::default()
            },
            ..NetnsSnapshot::default()
        };
        let mut text = String::from(TCP_HEAD);
        text += &tcp4([0; 4], 8080, [0; 4], 0, 0x0A, 5, 77);
        for i in 0..3 {
            text += &tcp4([127, 0, 0, 1], 8080, [127, 0, 0, 1], 50000 + i, 0x08, 0, 0);
        }
        for i in 0..6 {
            let st = if i < 2 { 0x06 } else { 0x01 };
            text += &tcp4([127, 0, 0, 1], 40000 + i, [127, 0, 0, 1], 5555, st, 0, 0);
        }
        text += &tcp4([127, 0, 0, 1], 40006, [127, 0, 0, 2], 80, 0x01, 0, 0);
        ns.add_sockets(&parse_proc_net_tcp(&text));
        assert_eq!(ns.listeners.len(), 1);
        assert_eq!(
            ns.listener(8080, Some("127.0.0.1".parse().unwrap()))
                .unwrap()
                .backlog,
            5
        );
        assert_eq!(ns.listener_ports[&8080].close_wait, 3);
        assert_eq!(ns.close_wait_total, 3);
        assert_eq!(ns.time_wait_total, 2);
        assert_eq!(ns.ephemeral_in_use, 7);
        assert_eq!(ns.ephemeral_time_wait, 2);
        assert_eq!(ns.holders[0].dport, 5555);
        assert_eq!((ns.holders[0].ports, ns.holders[0].time_wait), (6, 2));
        assert_eq!(ns.holders[1].ports, 1);
        let peers: Vec<IpAddr> = ns.listener_peers[&8080].iter().copied().collect();
        assert_eq!(peers, ["127.0.0.1".parse::<IpAddr>().unwrap()]);
    }

    #[test]
    fn finds_a_namespaces_own_addresses() {
        let fib = "Main:\n  +-- 0.0.0.0/0 3 0 5\n     +-- 10.77.0.0/24 2 0 2\n        |-- 10.77.0.0\n           /24 link UNICAST\n        |-- 10.77.0.1\n           /32 host LOCAL\n     +-- 127.0.0.0/8 2 0 2\n        |-- 127.0.0.1\n           /32 host LOCAL\n        |-- 127.255.255.255\n           /32 link BROADCAST\n";
        let v4 = parse_fib_trie_local(fib);
        assert_eq!(
            v4,
            [
                "10.77.0.1".parse::<IpAddr>().unwrap(),
                "127.0.0.1".parse().unwrap()
            ]
        );
        let v6 = parse_if_inet6(
            "00000000000000000000000000000001 01 80 10 80       lo\nfd770000000000000000000000000001 02 40 00 80       vs\n",
        );
        assert_eq!(v6[1], "fd77::1".parse::<IpAddr>().unwrap());
        let mut ns = NetnsSnapshot::default();
        ns.set_local_addrs([v4, v6].concat());
        ns.listeners.push(Listener {
            addr: "0.0.0.0".parse().unwrap(),
            port: 80,
            backlog: 0,
            inode: 1,
        });
        assert!(ns.listener_for("10.77.0.1".parse().unwrap(), 80).is_some());
        assert!(ns.listener_for("10.77.0.2".parse().unwrap(), 80).is_none());
        assert!(ns.listener_for("127.0.0.1".parse().unwrap(), 81).is_none());
    }
}
