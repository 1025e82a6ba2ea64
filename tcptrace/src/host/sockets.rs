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

    pub fn listener(&self, port: u16, addr: Option<IpAddr>) -> Option<&Listener> {
        let mut on_port = self.listeners.iter().filter(|l| l.port == port);
        match addr {
            Some(a) => on_port.find(|l| l.addr == a || l.addr.is_unspecified()),
            None => on_port.next(),
        }
    }
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
    }
}
