//! What a connect or port_search record says beyond the 4-tuple.

use tcptrace_common::{HandshakeEvent, HandshakeOutcome, LatencyEvent};

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
}

/// None for an outcome this tcptrace does not know.
pub fn handshake(rec: &HandshakeEvent) -> Option<HandshakeDetail> {
    Some(HandshakeDetail {
        handshake_ns: rec.handshake_ns,
        outcome: HandshakeOutcome::from_u8(rec.outcome)?,
        errno: rec.errno,
        syn_retransmits: rec.syn_retransmits,
    })
}
