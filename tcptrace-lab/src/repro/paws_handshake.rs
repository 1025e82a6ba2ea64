//! PAWS rejects during a handshake, made by a crafted peer
//! ([`crate::craft`]): a third segment stamped older than the SYN
//! (SYN-RECV), SYN-ACKs echoing a time before our SYN (SYN-SENT).

use std::{borrow::Borrow, net::TcpListener, time::Duration};

use anyhow::{Context as _, Result};

use crate::{
    craft::{Family, Lab, Prefix, Segment, STALE_SYNACK_BEHIND, STALE_SYNACK_TSVAL, WAIT},
    netstat::Netstat,
};

/// What [`syn_recv`] did.
pub struct SynRecv<L = Lab> {
    /// The namespaces; they live as long as this.
    pub lab: L,
    pub server_netns: u64,
    pub server_port: u16,
    pub peer_port: u16,
    /// Third segments sent, each a PAWS reject (PAWSEstab).
    pub rejects: u32,
    /// Their TSval.
    pub tsval: u32,
    /// The SYN's TSval (the request socket's ts_recent).
    pub ts_recent: u32,
    /// The server namespace's counters before and after.
    pub before: Netstat,
    pub after: Netstat,
    _listener: TcpListener,
}

/// S7: the third segment of a handshake carries a TSval older than the
/// SYN's: the request socket (SYN-RECV) rejects it, once per segment.
pub fn syn_recv(prefix: &Prefix, family: Family) -> Result<SynRecv> {
    syn_recv_in(Lab::new(prefix, family)?)
}

/// [`syn_recv`] in a lab of the caller's: with `&Lab`, several reproductions
/// share one lab (each has ports of its own).
pub fn syn_recv_in<L: Borrow<Lab>>(lab: L) -> Result<SynRecv<L>> {
    const ACKS: u32 = 3;
    const BASE: u32 = 2_000_000;
    const SERVER: u16 = 8070;
    const PEER: u16 = 40004;
    let l = lab.borrow();
    let listener = l.listen(SERVER)?;
    let wire = l.wire()?;
    let before = l.server_netstat()?;

    let iss = 13_000_000u32;
    wire.send(&Segment {
        sport: PEER,
        dport: SERVER,
        seq: iss,
        syn: true,
        mss: Some(1400),
        ts: Some((BASE, 0)),
        window: 64000,
        ..Segment::default()
    })?;
    let synack = wire
        .recv(PEER, WAIT, |r| r.syn && r.ack_flag)
        .context("no SYN-ACK from the server")?;
    for _ in 0..ACKS {
        wire.send(&Segment {
            sport: PEER,
            dport: SERVER,
            seq: iss.wrapping_add(1),
            ack: Some(synack.seq.wrapping_add(1)),
            ts: Some((BASE - 1000, synack.tsval.unwrap_or(0))),
            window: 64000,
            ..Segment::default()
        })?;
        std::thread::sleep(Duration::from_millis(30));
    }
    std::thread::sleep(Duration::from_millis(100));
    let after = l.server_netstat()?;
    Ok(SynRecv {
        server_netns: l.server_netns_inode()?,
        lab,
        server_port: SERVER,
        peer_port: PEER,
        rejects: ACKS,
        tsval: BASE - 1000,
        ts_recent: BASE,
        before,
        after,
        _listener: listener,
    })
}

/// What [`syn_sent`] did.
pub struct SynSent<L = Lab> {
    /// The namespaces; they live as long as this.
    pub lab: L,
    pub server_netns: u64,
    /// The active open's source port (in the server namespace).
    pub local_port: u16,
    /// The peer's port it connected to.
    pub peer_port: u16,
    /// SYN-ACKs sent, each a PAWS reject (PAWSActive).
    pub rejects: u32,
    /// Their TSval.
    pub tsval: u32,
    /// How far before the SYN's stamp their TSecr is.
    pub echo_behind: u32,
    /// The server namespace's counters before and after.
    pub before: Netstat,
    pub after: Netstat,
}

/// S8: an active open from the server namespace gets SYN-ACKs whose TSecr
/// echoes a time before its SYN was sent: PAWSActive each, and the connect
/// fails (about 1.5 s).
pub fn syn_sent(prefix: &Prefix, family: Family) -> Result<SynSent> {
    syn_sent_in(Lab::new(prefix, family)?)
}

/// [`syn_sent`] in a lab of the caller's: with `&Lab`, several reproductions
/// share one lab (each has ports of its own).
pub fn syn_sent_in<L: Borrow<Lab>>(lab: L) -> Result<SynSent<L>> {
    const SYNACKS: u32 = 2;
    const PEER: u16 = 9000;
    let l = lab.borrow();
    let wire = l.wire()?;
    let before = l.server_netstat()?;
    let syn = l.stale_synacks(&wire, PEER, SYNACKS)?;
    let after = l.server_netstat()?;
    Ok(SynSent {
        server_netns: l.server_netns_inode()?,
        lab,
        local_port: syn.sport,
        peer_port: PEER,
        rejects: SYNACKS,
        tsval: STALE_SYNACK_TSVAL,
        echo_behind: STALE_SYNACK_BEHIND,
        before,
        after,
    })
}
