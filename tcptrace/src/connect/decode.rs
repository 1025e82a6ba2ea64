//! What a connect or port_search record says beyond the 4-tuple.

use tcptrace_common::LatencyEvent;

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
