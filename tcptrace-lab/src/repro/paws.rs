//! PAWS rejects made by a crafted peer ([`crate::craft`]): segments stamped
//! older than what the server's socket last accepted, on an established
//! connection and against a TIME_WAIT socket.

use std::{borrow::Borrow, io::Read as _, net::TcpListener, net::TcpStream, time::Duration};

use anyhow::{Context as _, Result};

use crate::{
    craft::{Conn, Family, Lab, Prefix, Segment},
    netstat::Netstat,
};

/// How far behind the connection's last stamp [`established`]'s segments
/// are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behind {
    /// 1010 ticks: stale timestamps from the connection's own clock.
    Stale,
    /// 4 ticks: reordering; the kernel drops them all the same.
    Reordered,
    /// 1,000,010 ticks: a second clock on one connection (shared mapping).
    SecondClock,
}

impl Behind {
    /// The stale segments' TSval, relative to the clock's base.
    fn tick(self) -> u32 {
        match self {
            Behind::Stale => 0u32.wrapping_sub(1000),
            Behind::Reordered => 6,
            Behind::SecondClock => 0u32.wrapping_sub(1_000_000),
        }
    }
}

/// What [`established`] did.
pub struct Established<L = Lab> {
    /// The namespaces; they live as long as this.
    pub lab: L,
    pub server_netns: u64,
    pub server_port: u16,
    pub peer_port: u16,
    /// Stale segments sent, each a PAWS reject (PAWSEstab).
    pub rejects: u32,
    /// Their TSval.
    pub tsval: u32,
    /// The connection's last accepted stamp when they arrived.
    pub ts_recent: u32,
    /// The server namespace's counters before and after.
    pub before: Netstat,
    pub after: Netstat,
    _sockets: (TcpListener, TcpStream),
}

/// S4: an established connection receives new data stamped older than its
/// `ts_recent` (how far: `behind`), three times: each is a PAWS reject.
pub fn established(prefix: &Prefix, family: Family, behind: Behind) -> Result<Established> {
    established_in(Lab::new(prefix, family)?, behind)
}

/// [`established`] in a lab of the caller's: with `&Lab`, several reproductions
/// share one lab (each has ports of its own).
pub fn established_in<L: Borrow<Lab>>(lab: L, behind: Behind) -> Result<Established<L>> {
    const REJECTS: u32 = 3;
    const BASE: u32 = 1_000_000;
    const SERVER: u16 = 8040;
    const PEER: u16 = 40001;
    let l = lab.borrow();
    let listener = l.listen(SERVER)?;
    let wire = l.wire()?;
    let before = l.server_netstat()?;

    let mut c = Conn::handshake(&wire, PEER, SERVER, 7_000_000, Some(BASE))?;
    let (mut stream, _) = listener
        .accept()
        .context("accepting the crafted connection")?;
    c.send_data(10, b"hello")?;
    stream
        .set_read_timeout(Some(Duration::from_secs(3)))
        .context("read timeout")?;
    let mut buf = [0u8; 5];
    stream
        .read_exact(&mut buf)
        .context("the in-order segment did not arrive")?;
    // The in-order segment was stamped BASE + 10.
    let tick = behind.tick();
    for _ in 0..REJECTS {
        // New data at rcv_nxt, but stamped in the past.
        c.send(Segment {
            psh: true,
            payload: b"stale".to_vec(),
            ..c.segment(tick)
        })?;
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(100));
    let after = l.server_netstat()?;
    Ok(Established {
        server_netns: l.server_netns_inode()?,
        lab,
        server_port: SERVER,
        peer_port: PEER,
        rejects: REJECTS,
        tsval: BASE.wrapping_add(tick),
        ts_recent: BASE + 10,
        before,
        after,
        _sockets: (listener, stream),
    })
}

/// What [`time_wait`] did.
pub struct TimeWait<L = Lab> {
    /// The namespaces; they live as long as this.
    pub lab: L,
    pub server_netns: u64,
    pub server_port: u16,
    pub peer_port: u16,
    /// SYNs sent to the TIME_WAIT socket, each a PAWS reject.
    pub rejects: u32,
    /// The first SYN's TSval (the others follow it, one tick apart).
    pub first_tsval: u32,
    /// The TIME_WAIT socket's last stamp from the old connection.
    pub ts_recent: u32,
    /// The counter this kernel counts them in: PAWSTimewait (6.16+), else
    /// PAWSEstab.
    pub counter: &'static str,
    /// The server namespace's counters before and after.
    pub before: Netstat,
    pub after: Netstat,
    _listener: TcpListener,
}

/// S5: a client (or a second one behind the same address: the server
/// cannot tell) reuses a 4-tuple the server holds in TIME_WAIT, and its new
/// connection's clock is behind the old one's: each SYN fails PAWS against
/// the old connection's last stamp.
pub fn time_wait(prefix: &Prefix, family: Family) -> Result<TimeWait> {
    time_wait_in(Lab::new(prefix, family)?)
}

/// [`time_wait`] in a lab of the caller's: with `&Lab`, several reproductions
/// share one lab (each has ports of its own).
pub fn time_wait_in<L: Borrow<Lab>>(lab: L) -> Result<TimeWait<L>> {
    const SYNS: u32 = 3;
    // B is behind A by less than 2^31: older, in 32-bit timestamp arithmetic.
    const CLOCK_A: u32 = 1_500_000_000;
    const CLOCK_B: u32 = 100_000;
    const SERVER: u16 = 8050;
    const PEER: u16 = 40002;
    let l = lab.borrow();
    let listener = l.listen(SERVER)?;
    let wire = l.wire()?;
    let before = l.server_netstat()?;

    // Client A: connect, then the server closes first and keeps TIME_WAIT.
    let mut a = Conn::handshake(&wire, PEER, SERVER, 9_000_000, Some(CLOCK_A))?;
    let (stream, _) = listener
        .accept()
        .context("accepting the crafted connection")?;
    drop(stream);
    a.answer_fin(20)?;
    // Client B, same address and port, its own clock.
    for i in 0..SYNS {
        wire.send(&Segment {
            sport: PEER,
            dport: SERVER,
            seq: 50_000_000 + i,
            syn: true,
            mss: Some(1400),
            ts: Some((CLOCK_B + i, 0)),
            window: 64000,
            ..Segment::default()
        })?;
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(100));
    let after = l.server_netstat()?;
    // 6.16+ counts TIME_WAIT rejects apart; before, they are PAWSEstab.
    let counter = if after.0.contains_key("PAWSTimewait") {
        "PAWSTimewait"
    } else {
        "PAWSEstab"
    };
    Ok(TimeWait {
        server_netns: l.server_netns_inode()?,
        lab,
        server_port: SERVER,
        peer_port: PEER,
        rejects: SYNS,
        first_tsval: CLOCK_B,
        ts_recent: CLOCK_A + 20,
        counter,
        before,
        after,
        _listener: listener,
    })
}
