//! Decoding [`SynEvent`] records: what a SYN-family record says beyond the
//! 4-tuple, and where the listener's owner came from.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};
use tcptrace_common::{
    event::AF_INET6,
    syn::{flags, SynDropCause, SynEvent},
};

/// What a SYN-family record says beyond the 4-tuple.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SynDetail {
    pub listen_addr: IpAddr,
    pub listener_ino: u64,
    pub backlog: u32,
    pub backlog_max: u32,
    pub syn_queue: u32,
    pub max_syn_backlog: u32,
    pub retransmit: u16,
    pub cause: Option<SynDropCause>,
    pub syncookies: u8,
    pub abort_on_overflow: u8,
    pub after_overflow: bool,
    pub last_quarter: bool,
    pub since_overflow_ns: u64,
    /// Where pid/comm came from: "listen" (seen calling listen()), "proc"
    /// (holds the socket now), or None when unknown.
    pub owner: Option<Owner>,
}

pub(super) fn addr(family: u16, a: &[u8; 16]) -> IpAddr {
    if family == AF_INET6 {
        IpAddr::V6(Ipv6Addr::from(*a))
    } else {
        IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3]))
    }
}

pub fn detail(rec: &SynEvent) -> SynDetail {
    SynDetail {
        listen_addr: addr(rec.listen_family, &rec.listen_addr),
        listener_ino: rec.listener_ino,
        backlog: rec.backlog,
        backlog_max: rec.backlog_max,
        syn_queue: rec.syn_queue,
        max_syn_backlog: rec.max_syn_backlog,
        retransmit: rec.retransmit,
        cause: SynDropCause::from_u8(rec.cause),
        syncookies: rec.syncookies,
        abort_on_overflow: rec.abort_on_overflow,
        after_overflow: rec.flags & flags::AFTER_OVERFLOW != 0,
        last_quarter: rec.flags & flags::LAST_QUARTER != 0,
        since_overflow_ns: rec.since_overflow_ns,
        owner: (rec.flags & flags::OWNER_KNOWN != 0).then_some(Owner::Listen),
    }
}

/// What happens to the client after an overflow on the third ACK.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// tcp_abort_on_overflow=1: the client gets a RST.
    Reset,
    /// tcp_abort_on_overflow=0: the client believes it is connected.
    Ghost,
}

impl Outcome {
    pub fn of(abort_on_overflow: u8) -> Self {
        if abort_on_overflow != 0 {
            Self::Reset
        } else {
            Self::Ghost
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Reset => "reset",
            Self::Ghost => "ghost",
        }
    }
}

/// Where the pid/comm of a SYN-family event came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Owner {
    /// Seen calling listen().
    Listen,
    /// Holds the socket now (found in /proc).
    Proc,
}
