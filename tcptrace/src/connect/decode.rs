//! What a connect or port_search record says beyond the 4-tuple.

use tcptrace_common::{HandshakeEvent, HandshakeOutcome, LatencyEvent, SYN_RETRANSMITS_TIMED};

/// A connect() call that returned, with how long it took.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectDetail {
    pub latency_ns: u64,
    pub errno: i32,
}

/// A search for a free local port inside connect().
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortSearchDetail {
    pub latency_ns: u64,
    pub errno: i32,
    pub ports_probed: u32,
}

pub fn connect(rec: &LatencyEvent) -> ConnectDetail {
    ConnectDetail {
        latency_ns: rec.latency_ns,
        errno: rec.errno,
    }
}

pub fn port_search(rec: &LatencyEvent) -> PortSearchDetail {
    PortSearchDetail {
        latency_ns: rec.latency_ns,
        errno: rec.errno,
        ports_probed: rec.ports_probed,
    }
}

/// An active open's handshake, from SYN_SENT entered to left.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandshakeDetail {
    pub handshake_ns: u64,
    pub outcome: HandshakeOutcome,
    /// The socket's error when it ended in CLOSE, else 0.
    pub errno: i32,
    pub syn_retransmits: u32,
    /// When the first `syn_retransmit_timed` SYN retransmissions went out,
    /// in µs after the handshake started ([`Self::syn_retransmit_us`]).
    syn_retransmit_us: [u32; SYN_RETRANSMITS_TIMED],
    syn_retransmit_timed: u8,
}

impl HandshakeDetail {
    /// When each timed SYN retransmission went out, in µs after the
    /// handshake started, in order: the first [`SYN_RETRANSMITS_TIMED`] of
    /// `syn_retransmits`, none where the `handshake_rtx` hook did not run.
    pub fn syn_retransmit_us(&self) -> &[u32] {
        let n = usize::from(self.syn_retransmit_timed).min(SYN_RETRANSMITS_TIMED);
        &self.syn_retransmit_us[..n]
    }
}

/// None for an outcome this tcptrace does not know.
pub fn handshake(rec: &HandshakeEvent) -> Option<HandshakeDetail> {
    Some(HandshakeDetail {
        handshake_ns: rec.handshake_ns,
        outcome: HandshakeOutcome::from_u8(rec.outcome)?,
        errno: rec.errno,
        syn_retransmits: rec.syn_retransmits,
        syn_retransmit_us: rec.syn_retransmit_us,
        syn_retransmit_timed: rec.syn_retransmits_timed,
    })
}
