//! PAWS rejects (RFC 7323) and RST verdicts (RFC 5961): records, enums and
//! the kernel facts the programs need, resolved by userspace at load time.

use core::mem::size_of;

use crate::{packet::Packet, EventHeader, Flow};

/// Where a segment failed the PAWS (timestamp) check.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PawsSite {
    /// A synchronized socket (`tcp_validate_incoming`): PAWSEstab, or
    /// PAWSOldAck for old pure ACKs on kernels that split them (6.18+).
    Established = 1,
    /// A TIME_WAIT socket (`tcp_timewait_state_process`): PAWSEstab before
    /// 6.16, PAWSTimewait since.
    TimeWait = 2,
    /// An active open (SYN-SENT): the SYN-ACK echoes a timestamp our SYN did
    /// not carry (PAWSActive).
    SynSent = 3,
    /// A request socket (SYN-RECV, `tcp_check_req`): PAWSEstab.
    SynRecv = 4,
}

impl PawsSite {
    pub const ALL: [PawsSite; 4] = [
        PawsSite::Established,
        PawsSite::TimeWait,
        PawsSite::SynSent,
        PawsSite::SynRecv,
    ];

    pub const fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(Self::Established),
            2 => Some(Self::TimeWait),
            3 => Some(Self::SynSent),
            4 => Some(Self::SynRecv),
            _ => None,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            Self::Established => "established",
            Self::TimeWait => "time_wait",
            Self::SynSent => "syn_sent",
            Self::SynRecv => "syn_recv",
        }
    }
}

/// What the kernel did with an RST received on a synchronized socket.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RstVerdict {
    /// Sequence number exact: the connection was reset (`tcp_reset`).
    Accepted = 1,
    /// In the window but not exact: answered with a challenge ACK
    /// (TCPChallengeACK, or TCPACKSkippedChallenge when rate limited).
    ChallengeAck = 2,
    /// Outside the window: dropped silently. No counter counts this.
    Ignored = 3,
}

impl RstVerdict {
    pub const ALL: [RstVerdict; 3] = [
        RstVerdict::Accepted,
        RstVerdict::ChallengeAck,
        RstVerdict::Ignored,
    ];

    pub const fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(Self::Accepted),
            2 => Some(Self::ChallengeAck),
            3 => Some(Self::Ignored),
            _ => None,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::ChallengeAck => "challenge_ack",
            Self::Ignored => "ignored",
        }
    }
}

/// [`PawsEvent::flags`]: an old pure ACK (PAWSOldAck on 6.18+, no dupack sent).
pub const PAWS_OLD_ACK: u8 = 1;
/// [`PawsEvent::flags`]: `ts_recent` could not be read (drop-reason path at
/// SYN-RECV, where only the listener is known).
pub const PAWS_TS_RECENT_UNKNOWN: u8 = 2;
/// [`PawsEvent::flags`]: the segment carried RST.
pub const PAWS_RST: u8 = 4;
/// [`PawsEvent::flags`] and [`RstEvent::flags`]: the socket was not read,
/// only the segment (the drop-reason form on kernels whose `kfree_skb` does
/// not pass the receiving socket, 6.0-6.10): the state is 0 and, for an RST,
/// `rcv_nxt`/`rcv_wup`/`rcv_wnd` are unknown (0).
pub const SOCKET_UNREAD: u8 = 8;

/// Record for [`crate::EventKind::PawsReject`]. The flow is the local socket's
/// view: `saddr`/`sport` local, `daddr`/`dport` the peer.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PawsEvent {
    pub header: EventHeader,
    pub flow: Flow,
    /// TSval of the rejected segment.
    pub tsval: u32,
    /// TSecr of the rejected segment (as sent, before the local offset is
    /// taken off). At SYN-SENT this is the value that failed.
    pub tsecr: u32,
    /// The stored timestamp the segment lost to: `ts_recent` of the socket,
    /// TIME_WAIT or request socket; at SYN-SENT the time our SYN was sent
    /// (`retrans_stamp`, local clock).
    pub ts_recent: u32,
    /// [`PawsSite`] discriminant.
    pub site: u8,
    /// TCP state of the socket (`TCP_ESTABLISHED` = 1, ...).
    pub state: u8,
    /// `PAWS_*` flags.
    pub flags: u8,
    pub _pad: u8,
    /// The rejected segment's headers.
    pub packet: Packet,
}

/// [`RstEvent::flags`]: `seq` was not seen (drop-reason path, accepted RST):
/// it is reported as `rcv_nxt`, which an accepted RST matches except at the
/// SACK edge or `rcv_nxt - 1` after a FIN.
pub const RST_SEQ_INFERRED: u8 = 1;
/// [`RstEvent::flags`]: an out-of-window RST below the window (the kernel's
/// drop reason TCP_OLD_SEQUENCE), where the window itself is not known
/// ([`SOCKET_UNREAD`]).
pub const RST_BELOW_WINDOW: u8 = 2;
/// [`RstEvent::flags`]: as [`RST_BELOW_WINDOW`], beyond the window
/// (TCP_INVALID_SEQUENCE).
pub const RST_BEYOND_WINDOW: u8 = 4;

/// Record for [`crate::EventKind::Rst`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RstEvent {
    pub header: EventHeader,
    pub flow: Flow,
    /// Sequence number of the RST.
    pub seq: u32,
    /// The socket's `rcv_nxt`, `rcv_wup` and `rcv_wnd` when the RST arrived.
    pub rcv_nxt: u32,
    pub rcv_wup: u32,
    pub rcv_wnd: u32,
    /// [`RstVerdict`] discriminant.
    pub verdict: u8,
    pub state: u8,
    /// `RST_*` flags.
    pub flags: u8,
    pub _pad: [u8; 5],
    /// The RST's headers (len 0 where the probe has no skb: accepted RSTs
    /// seen through `tcp:tcp_receive_reset`).
    pub packet: Packet,
}

const _: () = assert!(size_of::<PawsEvent>() == 240);
const _: () = assert!(size_of::<RstEvent>() == 248);

/// `sk_rst_reason` slots in the `RST_SENT` counter array; reasons at or above
/// the last slot are counted in it.
pub const RST_SENT_SLOTS: u32 = 64;

/// Value of a drop reason this kernel does not have.
pub const NO_REASON: u32 = u32::MAX;

/// Everything the PAWS/RST programs read, from this kernel's BTF and
/// tracepoint formats. Offsets are bytes; a drop reason is its enum value or
/// [`NO_REASON`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PawsOffsets {
    /// `sock_common.skc_state`
    pub skc_state: u32,
    /// `tcp_sock.rcv_nxt`, `.rcv_wup`, `.rcv_wnd`, `.snd_una`, `.snd_nxt`
    pub tp_rcv_nxt: u32,
    pub tp_rcv_wup: u32,
    pub tp_rcv_wnd: u32,
    pub tp_snd_una: u32,
    pub tp_snd_nxt: u32,
    /// `tcp_sock.rx_opt.ts_recent`, `.rx_opt.ts_recent_stamp`
    pub tp_ts_recent: u32,
    pub tp_ts_recent_stamp: u32,
    /// `tcp_sock.retrans_stamp`, `tcp_sock.tsoffset`
    pub tp_retrans_stamp: u32,
    pub tp_tsoffset: u32,
    /// `inet_timewait_sock.tw_substate`
    pub tw_substate: u32,
    /// `tcp_timewait_sock.tw_ts_recent`, `.tw_ts_recent_stamp`
    pub tw_ts_recent: u32,
    pub tw_ts_recent_stamp: u32,
    /// `request_sock.ts_recent`
    pub req_ts_recent: u32,
    /// `tcp_request_sock.snt_isn`
    pub treq_snt_isn: u32,
    /// `sk_buff.cb` (the skb's header offsets are in `KernelOffsets`)
    pub skb_cb: u32,
    /// `tcp:tcp_receive_reset` field `skaddr`
    pub tp_receive_reset_skaddr: u32,
    /// `tcp:tcp_send_reset` field `reason`, 0 when the kernel has none (< 6.10)
    pub tp_send_reset_reason: u32,
    /// skb_drop_reason values (or NO_REASON)
    pub reason_paws: u32,
    pub reason_paws_ack: u32,
    pub reason_tw_paws: u32,
    pub reason_reset: u32,
    pub reason_old_sequence: u32,
    pub reason_invalid_sequence: u32,
    pub reason_invalid_end_sequence: u32,
    /// 1 when old pure ACKs failing PAWS are counted apart (PAWSOldAck, 6.18+).
    pub old_ack_split: u32,
    /// `tcp_skb_cb.end_seq` (inside `sk_buff.cb`)
    pub tcb_end_seq: u32,
    /// `sk_buff.dev`, `sk_buff._skb_refdst`, `dst_entry.dev`,
    /// `net_device.nd_net`: a segment's namespace where its socket is not
    /// known
    pub skb_dev: u32,
    pub skb_refdst: u32,
    pub dst_dev: u32,
    pub dev_nd_net: u32,
    /// `tcp_sock.last_oow_ack_time`: `tcp_oow_rate_limited`'s last argument
    /// points there
    pub tp_last_oow_ack_time: u32,
    /// Where `tcp_validate_incoming`'s code lies: [start, end) of its text
    /// and of a split-off part (`.cold`), 0 where absent; from kallsyms,
    /// for the drop-reason form without the receiving socket only.
    pub validate_text: [u64; 4],
}

impl PawsOffsets {
    /// What the programs are compiled with; userspace always overrides it.
    pub const UNSET: Self = Self {
        skc_state: 0,
        tp_rcv_nxt: 0,
        tp_rcv_wup: 0,
        tp_rcv_wnd: 0,
        tp_snd_una: 0,
        tp_snd_nxt: 0,
        tp_ts_recent: 0,
        tp_ts_recent_stamp: 0,
        tp_retrans_stamp: 0,
        tp_tsoffset: 0,
        tw_substate: 0,
        tw_ts_recent: 0,
        tw_ts_recent_stamp: 0,
        req_ts_recent: 0,
        treq_snt_isn: 0,
        skb_cb: 0,
        tp_receive_reset_skaddr: 0,
        tp_send_reset_reason: 0,
        reason_paws: NO_REASON,
        reason_paws_ack: NO_REASON,
        reason_tw_paws: NO_REASON,
        reason_reset: NO_REASON,
        reason_old_sequence: NO_REASON,
        reason_invalid_sequence: NO_REASON,
        reason_invalid_end_sequence: NO_REASON,
        old_ack_split: 0,
        tcb_end_seq: 0,
        skb_dev: 0,
        skb_refdst: 0,
        dst_dev: 0,
        dev_nd_net: 0,
        tp_last_oow_ack_time: 0,
        validate_text: [0; 4],
    };
}

const _: () = assert!(size_of::<PawsOffsets>() == 160);

// SAFETY: #[repr(C)], Copy, 32 u32 fields then u64 ones (no padding,
// asserted 160 bytes): every bit pattern is a valid value.
#[cfg(feature = "user")]
unsafe impl aya::Pod for PawsOffsets {}

/// TCP states as the kernel numbers them (`include/net/tcp_states.h`).
pub mod tcp_state {
    pub const ESTABLISHED: u8 = 1;
    pub const SYN_SENT: u8 = 2;
    pub const SYN_RECV: u8 = 3;
    pub const TIME_WAIT: u8 = 6;
    pub const CLOSE: u8 = 7;
    pub const LISTEN: u8 = 10;
    pub const NEW_SYN_RECV: u8 = 12;

    pub const fn name(s: u8) -> &'static str {
        match s {
            1 => "ESTABLISHED",
            2 => "SYN_SENT",
            3 => "SYN_RECV",
            4 => "FIN_WAIT1",
            5 => "FIN_WAIT2",
            6 => "TIME_WAIT",
            7 => "CLOSE",
            8 => "CLOSE_WAIT",
            9 => "LAST_ACK",
            10 => "LISTEN",
            11 => "CLOSING",
            12 => "NEW_SYN_RECV",
            _ => "UNKNOWN",
        }
    }
}
