//! A listener's queues overflowing under a crafted peer ([`crate::craft`]):
//! a third ACK that finds the accept queue full (a ghost connection, or a
//! reset with tcp_abort_on_overflow), and a burst of SYNs against a small
//! SYN queue.

use std::{
    collections::BTreeSet,
    net::SocketAddr,
    time::{Duration, Instant},
};

use anyhow::Result;
use socket2::Socket;

use crate::{
    craft::{in_netns, Family, Lab, Peer, Prefix, Reply},
    netns::set_sysctl,
    netstat::Netstat,
    sock::{addr_of, backlog_listener},
};

/// The accept queue's size in [`third_ack_overflow`].
pub const THIRD_ACK_BACKLOG: i32 = 4;

/// What [`third_ack_overflow`] did.
pub struct ThirdAck {
    /// The namespaces; they live as long as this.
    pub lab: Lab,
    pub server_netns: u64,
    pub server_port: u16,
    /// The peer's port whose third ACK overflowed.
    pub ghost_port: u16,
    /// RSTs and resent SYN-ACKs the peer got on that port.
    pub resets: u64,
    pub resent: u64,
    /// The server namespace's counters before and after.
    pub before: Netstat,
    pub after: Netstat,
}

/// S2: a listener with backlog [`THIRD_ACK_BACKLOG`] in the server
/// namespace; crafted handshakes fill its accept queue, and the third ACK
/// of one answered before it was full overflows it. With `abort`
/// (tcp_abort_on_overflow=1) the peer is reset; without, the request stays
/// and its SYN-ACK is resent after about 1 s, which the peer re-ACKs once
/// (overflowing again). The listener is then closed, which ends the
/// request: about 1.3 s (`abort`: 1.8 s, to see that nothing is resent).
pub fn third_ack_overflow(prefix: &Prefix, family: Family, abort: bool) -> Result<ThirdAck> {
    let lab = Lab::new(prefix, family)?;
    let addr = SocketAddr::new(lab.server_ip, 0);
    let l = in_netns(&lab.server_ns, move || -> Result<Socket> {
        set_sysctl(
            "net/ipv4/tcp_abort_on_overflow",
            if abort { "1" } else { "0" },
        )?;
        backlog_listener(addr, THIRD_ACK_BACKLOG)
    })??;
    let port = addr_of(&l)?.port();
    let peer = Peer::new(lab.wire()?, port);
    let before = lab.server_netstat()?;
    let ghost = peer.overflow_at_third_ack(41000, THIRD_ACK_BACKLOG as u16)?;
    let mut seen = Seen::default();
    let mut reacked: Option<Instant> = None;
    let deadline = Instant::now() + Duration::from_millis(if abort { 1800 } else { 3500 });
    let settled =
        |at: Option<Instant>| at.is_some_and(|t| t.elapsed() > Duration::from_millis(200));
    while Instant::now() < deadline && !settled(reacked) {
        for seg in peer.read(Duration::from_millis(100)) {
            // A real client re-ACKs the resent SYN-ACK; do it once.
            if seen.count(&seg, ghost) && seen.resent == 1 {
                peer.ack(&seg)?;
                reacked = Some(Instant::now());
            }
        }
    }
    // Closing the listener ends the request: nothing is resent after this,
    // and what was already on its way is still counted.
    drop(l);
    for seg in peer.read(Duration::from_millis(150)) {
        seen.count(&seg, ghost);
    }
    let after = lab.server_netstat()?;
    Ok(ThirdAck {
        server_netns: lab.server_netns_inode()?,
        lab,
        server_port: port,
        ghost_port: ghost,
        resets: seen.resets,
        resent: seen.resent,
        before,
        after,
    })
}

/// What the peer got on the ghost's port.
#[derive(Default)]
struct Seen {
    resets: u64,
    resent: u64,
}

impl Seen {
    /// Counts `seg` if it is for `port`; whether it is a resent SYN-ACK.
    fn count(&mut self, seg: &Reply, port: u16) -> bool {
        if seg.dport != port {
            return false;
        }
        if seg.rst {
            self.resets += 1;
        } else if seg.syn {
            self.resent += 1;
            return true;
        }
        false
    }
}

/// The listener's setting in a [`syn_burst`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Burst {
    /// Syncookies off, listen() backlog 8: the SYN queue fills.
    SynQueueFull,
    /// Syncookies on, same listener: the overflow is answered with cookies.
    Cookies,
    /// Syncookies off, large backlog, tcp_max_syn_backlog 8: the "last
    /// quarter" rule drops unproven peers.
    LastQuarter,
}

/// What [`syn_burst`] did.
pub struct SynBurst {
    /// The namespaces; they live as long as this.
    pub lab: Lab,
    pub server_netns: u64,
    pub server_port: u16,
    /// SYNs sent, and those answered (first answers only).
    pub syns: u16,
    pub answered: u64,
    /// The server namespace's counters before and after.
    pub before: Netstat,
    pub after: Netstat,
}

/// S3: `syns` crafted SYNs from distinct ports to a listener set up as
/// `kind` says, none completed; their first answers are counted for 0.7 s
/// (resent SYN-ACKs start after 1 s), then the listener is closed.
pub fn syn_burst(prefix: &Prefix, family: Family, kind: Burst, syns: u16) -> Result<SynBurst> {
    let backlog = if kind == Burst::LastQuarter { 64 } else { 8 };
    let lab = Lab::new(prefix, family)?;
    let addr = SocketAddr::new(lab.server_ip, 0);
    let l = in_netns(&lab.server_ns, move || -> Result<Socket> {
        set_sysctl(
            "net/ipv4/tcp_syncookies",
            if kind == Burst::Cookies { "1" } else { "0" },
        )?;
        if kind == Burst::LastQuarter {
            set_sysctl("net/ipv4/tcp_max_syn_backlog", "8")?;
        }
        backlog_listener(addr, backlog)
    })??;
    let port = addr_of(&l)?.port();
    let peer = Peer::new(lab.wire()?, port);
    let before = lab.server_netstat()?;
    for p in 0..syns {
        peer.syn(42000 + p)?;
    }
    let answered: BTreeSet<u16> = peer
        .read(Duration::from_millis(700))
        .into_iter()
        .filter(|s| Peer::answers(s, s.dport))
        .map(|s| s.dport)
        .collect();
    drop(l);
    std::thread::sleep(Duration::from_millis(100));
    let after = lab.server_netstat()?;
    Ok(SynBurst {
        server_netns: lab.server_netns_inode()?,
        lab,
        server_port: port,
        syns,
        answered: answered.len() as u64,
        before,
        after,
    })
}
