//! Connect family (connect, port_search and handshake), userspace side:
//! decoding of `LatencyEvent` and `HandshakeEvent` records ([`decode`]), their text and JSON fields
//! ([`output`]) and the summary's port-search line ([`summary`]). The
//! latency histograms are kernel counters read with the others; the attach
//! tables are `hooks/connect.rs` and `hooks/port_search.rs`, the rules
//! `diagnose/{connect,ports}.rs`.

pub mod decode;
pub mod output;
pub mod summary;

pub use self::{
    decode::{ConnectDetail, HandshakeDetail, PortSearchDetail},
    summary::ConnectSummary,
};
