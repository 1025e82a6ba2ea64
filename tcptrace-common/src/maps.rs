//! Names of the kernel maps, shared by both sides of the contract.
//!
//! `#[map(name = ..)]` takes a literal, so the kernel side spells these
//! names there; userspace looks maps up only through these constants. A
//! unit test in the product crate checks that the embedded object holds
//! exactly [`ALL`] (besides aya-log's own map), and each map userspace
//! takes with the type it reads it as.

// ---- every hook family -------------------------------------------------------

/// Ring buffer of every event record.
pub const EVENTS: &str = "EVENTS";
/// Per-CPU log2 latency histograms.
pub const HISTOGRAMS: &str = "HISTOGRAMS";
/// Per-CPU sum in ns of the values each latency histogram recorded, by
/// `HistId` (the `_sum` of the Prometheus histograms).
pub const HIST_SUMS: &str = "HIST_SUMS";
/// Per-CPU ring-buffer reserve failures, by `EventKind`.
pub const LOST: &str = "LOST";
/// Per-CPU counters, by `Stat`.
pub const STATS: &str = "STATS";
/// Per-CPU insert failures of the state maps, by `statemaps::StateMap`.
pub const STATE_MAP_FULL: &str = "STATE_MAP_FULL";

// ---- connect -----------------------------------------------------------------

/// Task storage: the connect() in flight on each thread.
pub const CONNECT_TASK: &str = "CONNECT_TASK";
/// Per-CPU count of connect() calls in flight (task storage cannot be walked).
pub const CONNECT_IN_FLIGHT: &str = "CONNECT_IN_FLIGHT";
/// Active opens in SYN_SENT, by socket: start time and the connecting task.
pub const HANDSHAKE_STATE: &str = "HANDSHAKE_STATE";
/// The 4-tuple of a handshake that failed, by socket, for the connect()
/// that returns after the kernel cleared the source address.
pub const HANDSHAKE_FAILED: &str = "HANDSHAKE_FAILED";

// ---- port search -------------------------------------------------------------

/// Port searches in flight, by thread.
pub const PORT_SEARCH_STATE: &str = "PORT_SEARCH_STATE";

// ---- SYN at a listener ---------------------------------------------------------

/// Per-CPU: the SYN inside conn_request on this CPU.
pub const SYN_SLOT: &str = "SYN_SLOT";
/// Per-CPU: the third ACK inside syn_recv_sock on this CPU.
pub const SYN_RECV_SLOT: &str = "SYN_RECV_SLOT";
/// Per-CPU scratch space for a `SynEvent`.
pub const SYN_SCRATCH: &str = "SYN_SCRATCH";
/// Per-CPU answered SYNs, by `SynAnswer`.
pub const SYN_ANSWERED: &str = "SYN_ANSWERED";
/// Answered SYNs and queue state per listener.
pub const SYN_LISTENERS: &str = "SYN_LISTENERS";
/// Who called listen(), by socket.
pub const SYN_LISTEN_OWNERS: &str = "SYN_LISTEN_OWNERS";
/// Accept-queue overflows awaiting SYN-ACK retransmits, by 4-tuple.
pub const SYN_GHOSTS: &str = "SYN_GHOSTS";

// ---- PAWS and RSTs -------------------------------------------------------------

/// Segments inside tcp_validate_incoming, by socket.
pub const PAWS_VALIDATING: &str = "PAWS_VALIDATING";
/// kprobe mode: tcp_validate_incoming arguments kept for the return.
pub const PAWS_VALIDATE_CALLS: &str = "PAWS_VALIDATE_CALLS";
/// Per-CPU RSTs sent, by `sk_rst_reason`.
pub const RST_SENT: &str = "RST_SENT";
/// Per-CPU: the socket behind the segment `tcp_validate_incoming` is about
/// to drop, where the drop-reason form reads the segment alone.
pub const PAWS_DROPPING: &str = "PAWS_DROPPING";

// ---- drop reasons (skb:kfree_skb, shared by families) --------------------------

/// `[families]`: the bits of [`kfree_skb_families`] whose hooks attached
/// through the one tp_btf `kfree_skb` program; the program ignores the
/// others' reasons.
pub const KFREE_SKB_FAMILIES: &str = "KFREE_SKB_FAMILIES";

/// Bits of [`KFREE_SKB_FAMILIES`]: which hooks the drop-reason program
/// serves.
pub mod kfree_skb_families {
    /// `listen_overflow`: TCP_LISTEN_OVERFLOW.
    pub const LISTEN_OVERFLOW: u32 = 1;
    /// `validate_incoming`: PAWS, challenged and out-of-window RSTs.
    pub const VALIDATE: u32 = 1 << 1;
    /// `paws_time_wait`: TCP_RFC7323_TW_PAWS.
    pub const TIME_WAIT: u32 = 1 << 2;
    /// `paws_syn_recv`: TCP_RFC7323_PAWS on a listener.
    pub const SYN_RECV: u32 = 1 << 3;
    /// `paws_syn_sent`: TCP_RFC7323_PAWS in SYN-SENT.
    pub const SYN_SENT: u32 = 1 << 4;
}

// ---- bench only ------------------------------------------------------------------

/// `[tgid, records per call]` of the bench event source.
pub const BENCH_FLOOD: &str = "BENCH_FLOOD";

/// Every map the programs define.
pub const ALL: &[&str] = &[
    EVENTS,
    HISTOGRAMS,
    HIST_SUMS,
    LOST,
    STATS,
    STATE_MAP_FULL,
    CONNECT_TASK,
    CONNECT_IN_FLIGHT,
    HANDSHAKE_STATE,
    HANDSHAKE_FAILED,
    PORT_SEARCH_STATE,
    SYN_SLOT,
    SYN_RECV_SLOT,
    SYN_SCRATCH,
    SYN_ANSWERED,
    SYN_LISTENERS,
    SYN_LISTEN_OWNERS,
    SYN_GHOSTS,
    PAWS_VALIDATING,
    PAWS_VALIDATE_CALLS,
    RST_SENT,
    PAWS_DROPPING,
    KFREE_SKB_FAMILIES,
    BENCH_FLOOD,
];
