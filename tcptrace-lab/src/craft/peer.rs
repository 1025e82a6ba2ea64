//! A crafted client of one server port that opens handshakes from many
//! source ports (the SYN family's scenarios).

use std::time::Duration;

use anyhow::{Context as _, Result};

use super::wire::{Reply, Segment, Wire};

/// The crafted peer's initial sequence number for a source port.
pub fn client_isn(port: u16) -> u32 {
    0x1000_0000 ^ (u32::from(port) << 8)
}

/// SYNs with [`client_isn`], third ACKs, and what the server sends back.
pub struct Peer {
    pub wire: Wire,
    pub server_port: u16,
}

impl Peer {
    pub fn new(wire: Wire, server_port: u16) -> Peer {
        Peer { wire, server_port }
    }

    fn send(&self, port: u16, seq: u32, ack: Option<u32>, syn: bool) -> Result<()> {
        self.wire.send(&Segment {
            sport: port,
            dport: self.server_port,
            seq,
            ack,
            syn,
            window: 64240,
            ..Segment::default()
        })
    }

    pub fn syn(&self, port: u16) -> Result<()> {
        self.send(port, client_isn(port), None, true)
    }

    /// Completes the handshake for `synack.dport` given the server's SYN-ACK.
    pub fn ack(&self, synack: &Reply) -> Result<()> {
        self.send(
            synack.dport,
            client_isn(synack.dport).wrapping_add(1),
            Some(synack.seq.wrapping_add(1)),
            false,
        )
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
    pub fn synack_within(&self, port: u16, within: Duration) -> Result<Reply> {
        let server = self.server_port;
        self.wire
            .recv(port, within, |r| {
                r.sport == server && Self::answers(r, port)
            })
            .with_context(|| format!("no SYN-ACK for port {port} within {within:?}"))
    }

    /// Waits (up to 2 s) for the SYN-ACK answering `port`'s SYN.
    pub fn synack(&self, port: u16) -> Result<Reply> {
        self.synack_within(port, Duration::from_secs(2))
    }

    /// Overflows an accept queue of `backlog` at a third ACK: `backlog`
    /// handshakes from `first` on fill it, two more SYNs are answered while
    /// it still has room, the first of them completes, and the second's
    /// third ACK finds it full. That port is returned: its request stays
    /// (a ghost) and its SYN-ACK is resent.
    pub fn overflow_at_third_ack(&self, first: u16, backlog: u16) -> Result<u16> {
        for p in first..first + backlog {
            self.syn(p)?;
            self.ack(&self.synack(p)?)?;
        }
        let (a, b) = (first + backlog, first + backlog + 1);
        self.syn(a)?;
        let synack_a = self.synack(a)?;
        self.syn(b)?;
        let synack_b = self.synack(b)?;
        self.ack(&synack_a)?;
        std::thread::sleep(Duration::from_millis(50));
        self.ack(&synack_b)?;
        Ok(b)
    }
}
