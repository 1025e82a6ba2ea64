//! Records shared between the kernel programs and userspace.
//!
//! Everything here is `#[repr(C)]`, `Copy` and free of padding surprises: the
//! kernel writes these bytes into the ring buffer and userspace reads them back.
//! Sizes are asserted at compile time so both sides agree.
#![no_std]

pub mod bench;
pub mod config;
pub mod event;
pub mod hist;
pub mod maps;
pub mod offsets;
pub mod packet;
pub mod paws;
pub mod programs;
pub mod statemaps;
pub mod syn;

pub use config::{Config, Filter};
pub use event::{
    EventHeader, EventKind, Flow, HandshakeEvent, HandshakeOutcome, LatencyEvent,
    SYN_RETRANSMITS_TIMED,
};
pub use hist::{HistId, HIST_SLOTS};
pub use offsets::KernelOffsets;

/// Names of the read-only globals userspace fills in before loading.
pub mod globals {
    pub const OFFSETS: &str = "OFFSETS";
    pub const CONFIG: &str = "CONFIG";
    pub const SYN_OFFSETS: &str = "SYN_OFFSETS";
    pub const PAWS_OFFSETS: &str = "PAWS_OFFSETS";
}

/// Counters kept in the per-CPU `STATS` array besides lost events.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stat {
    /// A per-thread or per-socket state map was full: an event could not be
    /// tracked (all maps; `statemaps::FULL_MAP` counts per map).
    StateMapFull = 0,
    /// A kernel read failed (bad offset, paged-out user memory).
    ReadFailed = 1,
}

impl Stat {
    pub const COUNT: u32 = 2;
    pub const ALL: [Stat; Self::COUNT as usize] = [Stat::StateMapFull, Stat::ReadFailed];
}
