//! The crafted TCP peer of `tcptrace_lab::craft` for scenario tests: the
//! same types under the same names, each failure a panic with its context.
//! Labs are named `ttps-`/`ttpc-` + pid + counter.

use std::{collections::HashMap, net::TcpListener, ops::Deref, time::Duration};

// Not every test binary uses each of them.
use tcptrace_lab::craft as lab;
#[allow(unused_imports)]
pub use tcptrace_lab::craft::{client_isn, Family, Prefix, Reply, Segment, WAIT};

/// The scenario tests' namespace names.
pub const PREFIX: Prefix = Prefix::TESTS;

/// Where `ip netns add` put namespace `ns`.
pub fn netns_path(ns: &str) -> String {
    lab::netns_path(ns).expect("netns path")
}

/// Inode of named network namespace `ns` (what events carry as `netns`).
pub fn netns_inode(ns: &str) -> u64 {
    lab::netns_inode(ns).expect("netns inode")
}

/// Loads nftables `rules` (an `nft -f` script) in network namespace `ns`.
pub fn nft(ns: &str, rules: &str) {
    lab::nft(ns, rules).expect("nft rules");
}

/// Runs `f` on a thread that joined network namespace `ns`.
pub fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    lab::in_netns(ns, f).expect("a thread in the namespace")
}

/// Two namespaces, a veth pair, the addresses and the neighbour entry.
pub struct Lab(pub lab::Lab);

impl Deref for Lab {
    type Target = lab::Lab;
    fn deref(&self) -> &lab::Lab {
        &self.0
    }
}

impl Lab {
    pub fn new(family: Family) -> Lab {
        Lab(lab::Lab::new(&PREFIX, family).expect("a crafted-peer lab"))
    }

    pub fn listen(&self, port: u16) -> TcpListener {
        self.0.listen(port).expect("listen in the server namespace")
    }

    pub fn server_netstat(&self) -> HashMap<String, u64> {
        self.0.server_netstat().expect("server netstat").0
    }

    pub fn server_netns_inode(&self) -> u64 {
        self.0.server_netns_inode().expect("server netns inode")
    }

    pub fn client_netns_inode(&self) -> u64 {
        self.0.client_netns_inode().expect("client netns inode")
    }

    pub fn stale_synacks(&self, wire: &Wire, port: u16, n: u32) -> Reply {
        self.0.stale_synacks(wire, port, n).expect("stale SYN-ACKs")
    }

    pub fn wire(&self) -> Wire {
        Wire(self.0.wire().expect("an AF_PACKET socket"))
    }
}

/// An AF_PACKET socket on the client veth.
pub struct Wire(pub lab::Wire);

impl Deref for Wire {
    type Target = lab::Wire;
    fn deref(&self) -> &lab::Wire {
        &self.0
    }
}

impl Wire {
    pub fn send(&self, s: &Segment) {
        self.0.send(s).expect("send a frame");
    }
}

/// One crafted connection from `peer:sport` to the server.
pub struct Conn<'a>(pub lab::Conn<'a>);

impl<'a> Deref for Conn<'a> {
    type Target = lab::Conn<'a>;
    fn deref(&self) -> &lab::Conn<'a> {
        &self.0
    }
}

impl<'a> Conn<'a> {
    pub fn handshake(
        wire: &'a Wire,
        sport: u16,
        dport: u16,
        iss: u32,
        ts_base: Option<u32>,
    ) -> Conn<'a> {
        Conn(lab::Conn::handshake(wire, sport, dport, iss, ts_base).expect("handshake"))
    }

    pub fn send(&self, s: Segment) {
        self.0.send(s).expect("send a segment");
    }

    pub fn send_data(&mut self, tick: u32, data: &[u8]) {
        self.0.send_data(tick, data).expect("send data");
    }

    pub fn answer_fin(&mut self, tick: u32) {
        self.0.answer_fin(tick).expect("answer the server's FIN");
    }
}

/// A crafted client of one server port that opens handshakes from many
/// source ports.
pub struct Peer(pub lab::Peer);

impl Deref for Peer {
    type Target = lab::Peer;
    fn deref(&self) -> &lab::Peer {
        &self.0
    }
}

impl Peer {
    pub fn new(wire: Wire, server_port: u16) -> Peer {
        Peer(lab::Peer::new(wire.0, server_port))
    }

    pub fn syn(&self, port: u16) {
        self.0.syn(port).expect("send a SYN");
    }

    pub fn ack(&self, synack: &Reply) {
        self.0.ack(synack).expect("send a third ACK");
    }

    pub fn answers(r: &Reply, port: u16) -> bool {
        lab::Peer::answers(r, port)
    }

    pub fn synack_within(&self, port: u16, within: Duration) -> Reply {
        self.0.synack_within(port, within).expect("SYN-ACK")
    }

    pub fn synack(&self, port: u16) -> Reply {
        self.0.synack(port).expect("SYN-ACK")
    }

    pub fn overflow_at_third_ack(&self, first: u16, backlog: u16) -> u16 {
        self.0
            .overflow_at_third_ack(first, backlog)
            .expect("an overflow at the third ACK")
    }
}
