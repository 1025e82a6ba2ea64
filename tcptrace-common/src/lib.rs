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
pub mod offsets;
pub mod packet;
pub mod paws;
pub mod statemaps;
pub mod syn;

pub use config::{Config, Filter};
pub use event::{EventHeader, EventKind, Flow, LatencyEvent};
pub use hist::{HistId, HIST_SLOTS};
pub use offsets::KernelOffsets;

/// Map names, shared so userspace looks up exactly what the programs define.
pub mod maps {
    pub const EVENTS: &str = "EVENTS";
    pub const HISTOGRAMS: &str = "HISTOGRAMS";
    pub const HIST_SUMS: &str = "HIST_SUMS";
    pub const LOST: &str = "LOST";
    pub const STATS: &str = "STATS";
    pub const PORT_SEARCH_STATE: &str = "PORT_SEARCH_STATE";
    pub const SYN_ANSWERED: &str = "SYN_ANSWERED";
    pub const SYN_LISTENERS: &str = "SYN_LISTENERS";
    pub const RST_SENT: &str = "RST_SENT";
}

/// Names of the programs on stable tracepoints and of their tp_btf twins
/// (the same record from the tracepoint's typed arguments). The attach
/// table names programs through these; a unit test checks every name the
/// table uses against the embedded object, and that each twin is tp_btf.
pub mod programs {
    /// `tcp:tcp_retransmit_synack`
    pub const RETRANSMIT_SYNACK: &str = "retransmit_synack";
    pub const RETRANSMIT_SYNACK_BTF: &str = "retransmit_synack_btf";
    /// `sock:inet_sock_set_state`
    pub const SOCK_SET_STATE: &str = "sock_set_state";
    pub const SOCK_SET_STATE_BTF: &str = "sock_set_state_btf";
    /// `skb:kfree_skb` with reason TCP_LISTEN_OVERFLOW
    pub const KFREE_SKB_LISTEN_OVERFLOW: &str = "kfree_skb_listen_overflow";
    pub const KFREE_SKB_LISTEN_OVERFLOW_BTF: &str = "kfree_skb_listen_overflow_btf";
    /// `tcp:tcp_receive_reset` beside the validate_incoming function hooks
    pub const RECEIVE_RESET_MARK: &str = "receive_reset_mark";
    pub const RECEIVE_RESET_MARK_BTF: &str = "receive_reset_mark_btf";
    /// `tcp:tcp_receive_reset` in the drop-reason fallback
    pub const RECEIVE_RESET_EMIT: &str = "receive_reset_emit";
    pub const RECEIVE_RESET_EMIT_BTF: &str = "receive_reset_emit_btf";
    /// `tcp:tcp_send_reset`; tp_btf without the reason argument (< 6.10)
    /// and with it (6.10+)
    pub const SEND_RESET_COUNT: &str = "send_reset_count";
    pub const SEND_RESET_COUNT_BTF: &str = "send_reset_count_btf";
    pub const SEND_RESET_REASON_BTF: &str = "send_reset_reason_btf";
    /// `syscalls:sys_enter_connect` / `sys_exit_connect`: no tp_btf form
    /// (syscall tracepoints are not BTF tracepoints).
    pub const SYS_ENTER_CONNECT: &str = "sys_enter_connect";
    pub const SYS_EXIT_CONNECT: &str = "sys_exit_connect";
}

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
