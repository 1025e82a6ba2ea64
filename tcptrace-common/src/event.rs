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
}

impl EventKind {
    /// Number of slots in per-kind counter arrays (index = discriminant).
    pub const SLOTS: u32 = 8;
    pub const ALL: [EventKind; 7] = [
        EventKind::Connect,
        EventKind::PortSearch,
        EventKind::SynDrop,
        EventKind::ListenOverflow,
        EventKind::SynackRetransmit,
        EventKind::PawsReject,
        EventKind::Rst,
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

const _: () = assert!(size_of::<EventHeader>() == 48);
const _: () = assert!(size_of::<Flow>() == 40);
const _: () = assert!(size_of::<LatencyEvent>() == 104);
