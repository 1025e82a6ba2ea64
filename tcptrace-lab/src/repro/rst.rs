//! RSTs a crafted peer ([`crate::craft`]) sends to an established
//! connection, one for each verdict the kernel gives: out of the window
//! (ignored), inside it but not at `rcv_nxt` (a challenge ACK), exact
//! (the connection is reset).

use std::{
    borrow::Borrow,
    io::{ErrorKind, Read as _},
    net::TcpListener,
    time::Duration,
};

use anyhow::{bail, Context as _, Result};

use crate::{
    craft::{Conn, Family, Lab, Prefix, Segment},
    netstat::Netstat,
};

/// One RST sent and what the kernel must make of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Planned {
    /// Its sequence number minus the socket's `rcv_nxt`.
    pub offset: i64,
    /// The verdict's name as tcptrace prints it: `ignored`,
    /// `challenge_ack` or `accepted`.
    pub verdict: &'static str,
    /// The sign of its distance to the receive window.
    pub sign: i64,
}

/// The RSTs, in the order sent.
pub const PLAN: [Planned; 5] = [
    Planned {
        offset: -200_000,
        verdict: "ignored",
        sign: -1,
    },
    Planned {
        offset: 50_000_000,
        verdict: "ignored",
        sign: 1,
    },
    Planned {
        offset: 100,
        verdict: "challenge_ack",
        sign: 0,
    },
    Planned {
        offset: 200,
        verdict: "challenge_ack",
        sign: 0,
    },
    Planned {
        offset: 0,
        verdict: "accepted",
        sign: 0,
    },
];

/// What [`verdicts`] did.
pub struct Verdicts<L = Lab> {
    /// The namespaces; they live as long as this.
    pub lab: L,
    pub server_netns: u64,
    pub server_port: u16,
    pub peer_port: u16,
    /// The server socket's `rcv_nxt` when the RSTs arrived.
    pub rcv_nxt: u32,
    /// What was sent: [`PLAN`].
    pub plan: &'static [Planned],
    /// The server namespace's counters before and after.
    pub before: Netstat,
    pub after: Netstat,
    _listener: TcpListener,
}

impl<L> Verdicts<L> {
    /// How many of the RSTs must get `verdict`.
    pub fn planned(&self, verdict: &str) -> usize {
        self.plan.iter().filter(|p| p.verdict == verdict).count()
    }
}

/// S6: RSTs with out-of-window, in-window inexact and exact sequence
/// numbers ([`PLAN`]): two ignored, two challenge ACKs (TCPChallengeACK
/// +2), one accepted, which resets the connection.
pub fn verdicts(prefix: &Prefix, family: Family) -> Result<Verdicts> {
    verdicts_in(Lab::new(prefix, family)?)
}

/// [`verdicts`] in a lab of the caller's: with `&Lab`, several reproductions
/// share one lab (each has ports of its own).
pub fn verdicts_in<L: Borrow<Lab>>(lab: L) -> Result<Verdicts<L>> {
    const SERVER: u16 = 8060;
    const PEER: u16 = 40003;
    let l = lab.borrow();
    let listener = l.listen(SERVER)?;
    let wire = l.wire()?;
    let before = l.server_netstat()?;

    let c = Conn::handshake(&wire, PEER, SERVER, 11_000_000, None)?;
    let (mut stream, _) = listener
        .accept()
        .context("accepting the crafted connection")?;
    let rcv_nxt = c.snd_nxt;
    for p in PLAN {
        wire.send(&Segment {
            sport: PEER,
            dport: SERVER,
            seq: rcv_nxt.wrapping_add(p.offset as u32),
            rst: true,
            window: 0,
            ..Segment::default()
        })?;
        // Challenge ACKs are limited to one per 500 ms per socket
        // (net.ipv4.tcp_invalid_ratelimit); ignored RSTs send nothing.
        let pause = if p.verdict == "challenge_ack" {
            600
        } else {
            50
        };
        std::thread::sleep(Duration::from_millis(pause));
    }
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .context("read timeout")?;
    match stream.read(&mut [0u8; 1]) {
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        other => bail!("the exact RST did not reset the connection: read gave {other:?}"),
    }
    let after = l.server_netstat()?;
    Ok(Verdicts {
        server_netns: l.server_netns_inode()?,
        lab,
        server_port: SERVER,
        peer_port: PEER,
        rcv_nxt,
        plan: &PLAN,
        before,
        after,
        _listener: listener,
    })
}
