//! SYN family: SYNs a listener drops, accept-queue overflows on the third ACK,
//! and SYN-ACK retransmits (records, map keys, offsets handed to the programs).

use core::mem::size_of;

use crate::{packet::Packet, EventHeader, Flow};

/// Why a SYN that reached a listener got no answer (`SynEvent::cause`).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SynDropCause {
    /// Accept queue full: `sk_ack_backlog > sk_max_ack_backlog`.
    AcceptQueueFull = 1,
    /// SYN queue full (`qlen > sk_max_ack_backlog`) with syncookies off.
    SynQueueFull = 2,
    /// Anything else: the "last quarter of tcp_max_syn_backlog" rule for
    /// unproven peers, allocation, route or LSM failure, broadcast SYNs.
    Other = 3,
}

impl SynDropCause {
    pub const fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(Self::AcceptQueueFull),
            2 => Some(Self::SynQueueFull),
            3 => Some(Self::Other),
            _ => None,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            Self::AcceptQueueFull => "accept_queue_full",
            Self::SynQueueFull => "syn_queue_full",
            Self::Other => "other",
        }
    }
}

/// `SynEvent::flags` bits.
pub mod flags {
    /// synack_retransmit: an accept-queue overflow was seen for this 4-tuple
    /// (the client believes it is connected: a "ghost" connection).
    pub const AFTER_OVERFLOW: u8 = 1;
    /// syn_drop: at the SYN, more than three quarters of tcp_max_syn_backlog
    /// were in use with syncookies off (the rule that drops unproven peers).
    pub const LAST_QUARTER: u8 = 2;
    /// The pid/comm in the header is the process that called listen().
    pub const OWNER_KNOWN: u8 = 4;
}

/// Record for [`crate::EventKind::SynDrop`], [`crate::EventKind::ListenOverflow`]
/// and [`crate::EventKind::SynackRetransmit`].
///
/// `flow.saddr:sport` is the listener side (the address the peer sent to),
/// `flow.daddr:dport` the peer. The header's pid/comm name the process that
/// called listen() when known (flag `OWNER_KNOWN`), never the interrupted task.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SynEvent {
    pub header: EventHeader,
    pub flow: Flow,
    /// The listener's bound address (0.0.0.0 / :: for a wildcard listener).
    pub listen_addr: [u8; 16],
    /// Inode of the listener's socket (for finding its owner in /proc), or 0.
    pub listener_ino: u64,
    /// `sk_ack_backlog`: connections waiting in the accept queue.
    pub backlog: u32,
    /// `sk_max_ack_backlog`: min(listen() backlog, net.core.somaxconn).
    pub backlog_max: u32,
    /// `icsk_accept_queue.qlen`: request socks in the SYN queue.
    pub syn_queue: u32,
    /// net.ipv4.tcp_max_syn_backlog of the listener's namespace.
    pub max_syn_backlog: u32,
    /// synack_retransmit: the request's retransmit number (1 = first).
    pub retransmit: u16,
    /// The listener's own family (an IPv6 listener also takes IPv4 peers).
    pub listen_family: u16,
    /// [`SynDropCause`] for syn_drop, else 0.
    pub cause: u8,
    /// net.ipv4.tcp_syncookies of the listener's namespace.
    pub syncookies: u8,
    /// net.ipv4.tcp_abort_on_overflow of the listener's namespace.
    pub abort_on_overflow: u8,
    /// [`flags`] bits.
    pub flags: u8,
    /// synack_retransmit after an overflow: ns since the last overflow.
    pub since_overflow_ns: u64,
    /// syn_drop: the SYN; listen_overflow: the third ACK (len 0 for
    /// synack_retransmit).
    pub packet: Packet,
}

const _: () = assert!(size_of::<SynEvent>() == 280);

/// Key of the per-listener counters (`SYN_LISTENERS`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ListenerKey {
    pub netns: u32,
    pub family: u16,
    pub port: u16,
    /// Bound address (IPv4 in the first four bytes).
    pub addr: [u8; 16],
}

const _: () = assert!(size_of::<ListenerKey>() == 24);

/// Per-CPU counters of answered SYNs for one listener, with the queue state
/// at the last SYN this CPU saw.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ListenerCounters {
    pub answered_normal: u64,
    pub answered_cookie: u64,
    pub answered_fastopen: u64,
    /// Boot-time ns of the last SYN (picks the newest queue state across CPUs).
    pub last_ns: u64,
    pub backlog: u32,
    pub backlog_max: u32,
    pub syn_queue: u32,
    pub _pad: u32,
}

const _: () = assert!(size_of::<ListenerCounters>() == 48);

/// Indexes of the per-CPU `SYN_ANSWERED` array (all listeners together).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SynAnswer {
    Normal = 0,
    Cookie = 1,
    Fastopen = 2,
}

impl SynAnswer {
    pub const COUNT: u32 = 3;
    pub const ALL: [SynAnswer; 3] = [SynAnswer::Normal, SynAnswer::Cookie, SynAnswer::Fastopen];

    pub const fn name(self) -> &'static str {
        match self {
            Self::Normal => "normal",
            Self::Cookie => "cookie",
            Self::Fastopen => "fastopen",
        }
    }
}

/// Offsets and enum values for the SYN family, resolved by userspace from
/// BTF and tracepoint format files (global `SYN_OFFSETS`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SynOffsets {
    /// `sock.sk_ack_backlog`
    pub sk_ack_backlog: u32,
    /// `sock.sk_max_ack_backlog`
    pub sk_max_ack_backlog: u32,
    /// `inet_connection_sock.icsk_accept_queue.qlen`
    pub icsk_qlen: u32,
    /// `sock.sk_socket`
    pub sk_socket: u32,
    /// `socket_alloc.vfs_inode` minus `socket_alloc.socket`
    pub socket_inode: u32,
    /// `inode.i_ino`
    pub inode_ino: u32,
    /// `net.ipv4.sysctl_tcp_syncookies`
    pub net_syncookies: u32,
    /// `net.ipv4.sysctl_max_syn_backlog`
    pub net_max_syn_backlog: u32,
    /// `net.ipv4.sysctl_tcp_abort_on_overflow`
    pub net_abort_on_overflow: u32,
    /// `request_sock.num_retrans`
    pub req_num_retrans: u32,
    /// enum tcp_synack_type values.
    pub synack_cookie: u32,
    pub synack_fastopen: u32,
    /// `tcp_request_sock.rcv_isn`: the peer's ISN, which ties a SYN-ACK
    /// retransmit to the request whose third ACK overflowed.
    pub treq_rcv_isn: u32,
    /// tcp:tcp_retransmit_synack record: skaddr, req.
    pub tp_rtx_skaddr: u32,
    pub tp_rtx_req: u32,
    /// skb:kfree_skb record: skbaddr, rx_sk, reason (0 when absent).
    pub tp_kfree_skbaddr: u32,
    pub tp_kfree_rx_sk: u32,
    pub tp_kfree_reason: u32,
    /// SKB_DROP_REASON_TCP_LISTEN_OVERFLOW, or u32::MAX when the kernel has none.
    pub reason_listen_overflow: u32,
}

const _: () = assert!(size_of::<SynOffsets>() == 76);

/// TCP states as the kernel numbers them (include/net/tcp_states.h, stable ABI).
pub const TCP_ESTABLISHED: i32 = 1;
pub const TCP_SYN_RECV: i32 = 3;
pub const TCP_LISTEN: i32 = 10;

#[cfg(feature = "user")]
mod pod {
    // SAFETY: #[repr(C)], Copy, u32 fields only (no padding, asserted 76
    // bytes): every bit pattern is a valid value.
    unsafe impl aya::Pod for super::SynOffsets {}
    // SAFETY: #[repr(C)], Copy, integer fields laid out without padding
    // (asserted 24 bytes): every bit pattern is a valid value.
    unsafe impl aya::Pod for super::ListenerKey {}
    // SAFETY: #[repr(C)], Copy, u64 then u32 fields with explicit `_pad`
    // (asserted 48 bytes): every bit pattern is a valid value.
    unsafe impl aya::Pod for super::ListenerCounters {}
}
