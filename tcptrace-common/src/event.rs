//! Event records written to the `EVENTS` ring buffer.

use core::mem::size_of;

/// Which record follows an [`EventHeader`]. The discriminant is the first byte
/// of every ring-buffer record.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// A connect() syscall on a TCP socket returned.
    Connect = 1,
    /// `__inet_hash_connect` (ephemeral port search) returned.
    PortSearch = 2,
    /// A SYN reached a listener and got no answer.
    SynDrop = 3,
    /// The third ACK found the accept queue full.
    ListenOverflow = 4,
    /// A listener resent a SYN-ACK.
    SynackRetransmit = 5,
    /// A segment failed the PAWS timestamp check ([`crate::paws::PawsEvent`]).
    PawsReject = 6,
    /// An RST reached a synchronized socket ([`crate::paws::RstEvent`]).
    Rst = 7,
    /// An active open's handshake ended: SYN sent -> established, reset,
    /// timed out or closed by the application ([`HandshakeEvent`]).
    Handshake = 8,
}

impl EventKind {
    /// Number of slots in per-kind counter arrays (index = discriminant).
    pub const SLOTS: u32 = 9;
    pub const ALL: [EventKind; 8] = [
        EventKind::Connect,
        EventKind::PortSearch,
        EventKind::SynDrop,
        EventKind::ListenOverflow,
        EventKind::SynackRetransmit,
        EventKind::PawsReject,
        EventKind::Rst,
        EventKind::Handshake,
    ];

    pub const fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(Self::Connect),
            2 => Some(Self::PortSearch),
            3 => Some(Self::SynDrop),
            4 => Some(Self::ListenOverflow),
            5 => Some(Self::SynackRetransmit),
            6 => Some(Self::PawsReject),
            7 => Some(Self::Rst),
            8 => Some(Self::Handshake),
            _ => None,
        }
    }

    /// The name used in JSON (`kind`) and in the live view.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::PortSearch => "port_search",
            Self::SynDrop => "syn_drop",
            Self::ListenOverflow => "listen_overflow",
            Self::SynackRetransmit => "synack_retransmit",
            Self::PawsReject => "paws_reject",
            Self::Rst => "rst",
            Self::Handshake => "handshake",
        }
    }
}

/// Common prefix of every record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventHeader {
    /// [`EventKind`] discriminant.
    pub kind: u8,
    pub _pad: [u8; 3],
    /// Thread-group id (what userspace calls the pid).
    pub pid: u32,
    pub tid: u32,
    /// Network namespace inode number of the socket.
    pub netns: u32,
    /// CLOCK_BOOTTIME nanoseconds when the event completed.
    pub ts_ns: u64,
    /// cgroup v2 id of the task (inode of its cgroup directory).
    pub cgroup: u64,
    pub comm: [u8; 16],
}

/// A TCP 4-tuple. Addresses are in network byte order; IPv4 addresses take the
/// first four bytes. Ports are in host byte order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Flow {
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    pub sport: u16,
    pub dport: u16,
    /// AF_INET (2) or AF_INET6 (10).
    pub family: u16,
    pub _pad: u16,
}

pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;

/// Record for [`EventKind::Connect`] and [`EventKind::PortSearch`]: something that
/// took time and ended with an errno.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LatencyEvent {
    pub header: EventHeader,
    pub flow: Flow,
    pub latency_ns: u64,
    /// 0 on success, else the positive errno the kernel returned.
    pub errno: i32,
    /// Port search only: `__inet_check_established` calls seen for this socket
    /// (a lower bound on ports probed).
    pub ports_probed: u32,
}

/// How an active open's handshake ended ([`HandshakeEvent::outcome`]).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HandshakeOutcome {
    /// SYN_SENT -> ESTABLISHED: the SYN-ACK came back.
    Established = 1,
    /// SYN_SENT -> CLOSE with ECONNREFUSED: the peer answered with a RST.
    Reset = 2,
    /// SYN_SENT -> CLOSE with ETIMEDOUT: the SYN retransmissions ran out.
    TimedOut = 3,
    /// SYN_SENT -> CLOSE with no socket error: the application closed the
    /// socket (or disconnected it) before an answer came.
    Closed = 4,
    /// SYN_SENT -> CLOSE with another socket error (an ICMP error such as
    /// EHOSTUNREACH, alone or as the soft error behind a timeout).
    Error = 5,
}

impl HandshakeOutcome {
    pub const fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(Self::Established),
            2 => Some(Self::Reset),
            3 => Some(Self::TimedOut),
            4 => Some(Self::Closed),
            5 => Some(Self::Error),
            _ => None,
        }
    }

    /// The name used in JSON (`outcome`) and in the live view.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Established => "established",
            Self::Reset => "reset",
            Self::TimedOut => "timeout",
            Self::Closed => "closed",
            Self::Error => "error",
        }
    }

    /// All outcomes, by discriminant.
    pub const ALL: [HandshakeOutcome; 5] = [
        Self::Established,
        Self::Reset,
        Self::TimedOut,
        Self::Closed,
        Self::Error,
    ];
}

/// Record for [`EventKind::Handshake`]: one active open (a socket leaving
/// SYN_SENT), timed from CLOSE -> SYN_SENT (in connect(), just before the
/// first SYN) to the state change that ended it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HandshakeEvent {
    /// The task that called connect() (the end runs in softirq or timer
    /// context); `ts_ns` is when the handshake ended.
    pub header: EventHeader,
    /// The 4-tuple as the socket held it when the handshake ended (before a
    /// failed socket is unhashed and its source address cleared).
    pub flow: Flow,
    pub handshake_ns: u64,
    /// `sock.sk_err` when it ended in CLOSE (positive errno), else 0.
    pub errno: i32,
    /// SYNs retransmitted (`tcp_sock.total_retrans` at the end).
    pub syn_retransmits: u32,
    /// [`HandshakeOutcome`] discriminant.
    pub outcome: u8,
    /// How many of `syn_retransmit_us` hold a time: the retransmissions
    /// seen by `tcp:tcp_retransmit_skb`, at most [`SYN_RETRANSMITS_TIMED`]
    /// (0 in records of a tcptrace before the field, and where that hook
    /// did not attach).
    pub syn_retransmits_timed: u8,
    pub _pad: [u8; 6],
    /// When each of the first [`SYN_RETRANSMITS_TIMED`] SYN retransmissions
    /// went out, in microseconds after the handshake started (the start of
    /// `handshake_ns`), in order; later ones are counted in
    /// `syn_retransmits` but not timed.
    pub syn_retransmit_us: [u32; SYN_RETRANSMITS_TIMED],
}

/// SYN retransmissions timed per handshake ([`HandshakeEvent::syn_retransmit_us`]):
/// six take the default schedule (1, 3, 7, 15, 31, 63 s) to the default
/// give-up (`tcp_syn_retries` 6).
pub const SYN_RETRANSMITS_TIMED: usize = 6;

/// Size of a [`HandshakeEvent`] before `syn_retransmit_us` was added: such
/// records (old recordings) decode with no times.
pub const HANDSHAKE_EVENT_V1_SIZE: usize = 112;

const _: () = assert!(size_of::<EventHeader>() == 48);
const _: () = assert!(size_of::<HandshakeEvent>() == 136);
const _: () = assert!(size_of::<Flow>() == 40);
const _: () = assert!(size_of::<LatencyEvent>() == 104);
