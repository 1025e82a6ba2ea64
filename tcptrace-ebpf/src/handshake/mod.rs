//! Active opens' handshakes, blocking or not, in two forms that share the
//! state and the record:
//!
//! - `functions`, where fentry or kprobes attach: the start at
//!   `tcp_connect` (in connect(), in the connecting task, before the first
//!   SYN), success at `tcp_finish_connect`, failures (RST, timeout, ICMP)
//!   at `sk_error_report` (6.1 and later in the matrix; 5.10 lacks it and
//!   its failures are taken at `tcp_done`), the application giving up at
//!   `tcp_close` or `tcp_disconnect` while the socket is in SYN_SENT. A
//!   healthy connection runs 4 programs: the start, the success, and one
//!   close per end (6 with `tcp_done`, which every end runs too).
//! - `state`, elsewhere, only when asked for (`--handshake-state-changes`):
//!   `sock:inet_sock_set_state` (tp_btf where the kernel has its BTF, else
//!   the plain tracepoint), which fires on every state change of every TCP
//!   socket, about ten per loopback connection.
//!   CLOSE -> SYN_SENT (in connect(), before the port search and the SYN)
//!   starts, SYN_SENT -> ESTABLISHED or CLOSE ends.
//!
//! `tcp:tcp_retransmit_skb` (tp_btf or plain, likewise) fires on every
//! retransmitted segment of every socket: for a socket in SYN_SENT with an
//! entry here it times the SYN retransmission into that entry, which the
//! end copies into the record; every other socket returns after the
//! lookup.
//!
//! A handshake that ends in CLOSE with a socket error also leaves its
//! 4-tuple in `HANDSHAKE_FAILED` for the connect() that returns after the
//! kernel cleared the source address (tcp_disconnect), see `connect.rs`.

mod functions;
mod state;

use aya_ebpf::{
    helpers::{bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid},
    macros::{btf_tracepoint, map, tracepoint},
    maps::LruHashMap,
    programs::{BtfTracePointContext, TracePointContext},
    EbpfContext as _,
};
use tcptrace_common::{
    programs, statemaps::StateMap, EventHeader, EventKind, Flow, HandshakeEvent, HandshakeOutcome,
    HistId, SYN_RETRANSMITS_TIMED,
};

use crate::{
    diag::done,
    emit::{now, passes_threshold, record_latency, send},
    filter,
    kernel::{read, sock_flow, sock_netns},
    maps::{global, map_full},
};

const TCP_ESTABLISHED: i32 = 1;
const TCP_SYN_SENT: i32 = 2;
const TCP_CLOSE: i32 = 7;
const ECONNREFUSED: i32 = 111;
const ETIMEDOUT: i32 = 110;

/// A handshake in flight: when it started (see the two forms above), and
/// who called connect().
#[derive(Clone, Copy)]
pub struct HandshakeStart {
    start_ns: u64,
    pid: u32,
    tid: u32,
    cgroup: u64,
    comm: [u8; 16],
    /// `tcp_sock.total_retrans` at the last retransmission timed: a traced
    /// attempt the kernel did not count (6.14+ traces failed ones too, with
    /// their error) leaves it unchanged and is not timed.
    rtx_seen: u32,
    /// Entries of `rtx_us` filled.
    rtx_timed: u8,
    /// Each SYN retransmission, in µs after `start_ns`.
    rtx_us: [u32; SYN_RETRANSMITS_TIMED],
}

/// Sockets in SYN_SENT, by socket address. LRU: a socket freed without
/// leaving SYN_SENT through a traced change cannot leak an entry for good.
#[map(name = "HANDSHAKE_STATE")]
static HANDSHAKE_STATE: LruHashMap<u64, HandshakeStart> = LruHashMap::with_max_entries(16384, 0);

/// The 4-tuple of handshakes that ended in CLOSE with a socket error, by
/// socket, until the blocking connect() that waited for it returns (a
/// non-blocking caller never takes it: LRU).
#[map(name = "HANDSHAKE_FAILED")]
pub static HANDSHAKE_FAILED: LruHashMap<u64, Flow> = LruHashMap::with_max_entries(4096, 0);

/// A field of the tracepoint's record at `offset`, with a direct load.
#[inline(always)]
fn tp_field<T: Copy>(ctx: &TracePointContext, offset: usize) -> T {
    // SAFETY: `offset` is one of the record offsets of this module's
    // tracepoints, naturally aligned for `T` (a u64 or an i32) and inside
    // the record on every kernel; the verifier checks the access against
    // the context's bounds at load.
    unsafe { core::ptr::read(ctx.as_ptr().cast::<u8>().add(offset).cast::<T>()) }
}

// `tcp_retransmit_skb`'s record begins, on every kernel that has it
// (4.15+), with the common fields, `const void *skbaddr`, `const void
// *skaddr`; the fields after them changed (state in 4.16, err in 6.14).
const TP_RTX_SKADDR: usize = 16;

#[tracepoint(category = "tcp", name = "tcp_retransmit_skb")]
pub fn handshake_rtx(ctx: TracePointContext) -> u32 {
    let sk: u64 = tp_field(&ctx, TP_RTX_SKADDR);
    done(&ctx, programs::HANDSHAKE_RTX, retransmitted(sk));
    0
}

/// tp_btf twin: tcp_retransmit_skb(const struct sock *sk, const struct
/// sk_buff *skb) (6.14+ adds `int err`): only `sk` is read.
#[btf_tracepoint(function = "tcp_retransmit_skb")]
pub fn handshake_rtx_btf(ctx: BtfTracePointContext) -> i32 {
    done(&ctx, programs::HANDSHAKE_RTX_BTF, retransmitted(ctx.arg(0)));
    0
}

/// A segment of socket `sk` retransmitted (the tracepoint fires after the
/// attempt, under the socket's lock): timed when `sk` is in SYN_SENT with
/// an entry, so the segment is its SYN.
fn retransmitted(sk: u64) -> Result<(), i64> {
    let Some(hs) = HANDSHAKE_STATE.get_ptr_mut(sk) else {
        return Ok(());
    };
    let total: u32 = read(sk, global!(OFFSETS.tcp_total_retrans))?;
    // SAFETY: the pointer is the map's value for `sk`, valid while this
    // program runs (the entry is freed only after an RCU grace period).
    // The socket's lock, held by the tracepoint's callers and around every
    // end but `tcp_close`'s entry, keeps the other programs off this entry
    // meanwhile; a close racing with it at worst loses this write.
    let hs = unsafe { &mut *hs };
    if total == hs.rtx_seen {
        return Ok(());
    }
    hs.rtx_seen = total;
    let at_us = now().saturating_sub(hs.start_ns) / 1000;
    if let Some(slot) = hs.rtx_us.get_mut(usize::from(hs.rtx_timed)) {
        *slot = u32::try_from(at_us).unwrap_or(u32::MAX);
        hs.rtx_timed += 1;
    }
    Ok(())
}

/// An active open of TCP socket `sk` starts, in the connecting task.
fn started(sk: u64) -> Result<(), i64> {
    if sk == 0 || !filter::current_task_allowed() {
        return Ok(());
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    let start = HandshakeStart {
        start_ns: now(),
        pid: (pid_tgid >> 32) as u32,
        tid: pid_tgid as u32,
        // SAFETY: a helper without arguments about the current task.
        cgroup: unsafe { bpf_get_current_cgroup_id() },
        comm: bpf_get_current_comm().unwrap_or_default(),
        rtx_seen: 0,
        rtx_timed: 0,
        rtx_us: [0; SYN_RETRANSMITS_TIMED],
    };
    if HANDSHAKE_STATE.insert(sk, start, 0).is_err() {
        map_full(StateMap::Handshakes);
    }
    Ok(())
}

/// The function form's ends other than success, for a socket with an
/// entry: only while it is in SYN_SENT (or, after an error, already CLOSE:
/// from 6.10 `tcp_done_with_error` closes it before reporting). An entry
/// of a socket in any other state is a simultaneous open (SYN_SENT ->
/// SYN_RECV, which no program of this form sees): dropped, not reported.
fn end_in_syn_sent(sk: u64, or_closed: bool) -> Result<(), i64> {
    if HANDSHAKE_STATE.get_ptr(sk).is_none() {
        return Ok(());
    }
    let state = i32::from(read::<u8>(sk, global!(OFFSETS.skc_state))?);
    if state == TCP_SYN_SENT || (or_closed && state == TCP_CLOSE) {
        return ended(sk, TCP_CLOSE);
    }
    let _ = HANDSHAKE_STATE.remove(sk);
    Ok(())
}

/// SYN_SENT -> `new` (ESTABLISHED or CLOSE), in softirq (SYN-ACK, RST),
/// timer (timeout) or task (close) context: the task is the one stored at
/// the start.
fn ended(sk: u64, new: i32) -> Result<(), i64> {
    // SAFETY: the value is copied at once, and the map keeps it valid
    // until a grace period after its removal.
    let Some(start) = (unsafe { HANDSHAKE_STATE.get(sk) }).copied() else {
        return Ok(());
    };
    // Only the end that removes the entry reports: `tcp_close` runs before
    // the socket's lock is taken, so a SYN-ACK processed meanwhile may end
    // the same handshake at once.
    if HANDSHAKE_STATE.remove(sk).is_err() {
        return Ok(());
    }
    let (outcome, errno) = match new {
        TCP_ESTABLISHED => (HandshakeOutcome::Established, 0),
        TCP_CLOSE => {
            // connect() fails after entering SYN_SENT and before the SYN
            // (no free port, no route): not a handshake.
            if read::<u32>(sk, global!(OFFSETS.tcp_segs_out))? == 0 {
                return Ok(());
            }
            let err: i32 = read(sk, global!(OFFSETS.sk_err))?;
            let outcome = match err {
                0 => HandshakeOutcome::Closed,
                ECONNREFUSED => HandshakeOutcome::Reset,
                ETIMEDOUT => HandshakeOutcome::TimedOut,
                _ => HandshakeOutcome::Error,
            };
            (outcome, err)
        }
        // SYN_SENT -> SYN_RECV (state form): a simultaneous open, not
        // timed.
        _ => return Ok(()),
    };
    let handshake_ns = now().saturating_sub(start.start_ns);
    let mut flow = sock_flow(sk)?;
    // The traced CLOSE change comes after the port went back (skc_num 0).
    flow.sport = u16::from_be(read(sk, global!(OFFSETS.inet_sport))?);
    let header = EventHeader {
        kind: EventKind::Handshake as u8,
        _pad: [0; 3],
        pid: start.pid,
        tid: start.tid,
        netns: sock_netns(sk),
        ts_ns: now(),
        cgroup: start.cgroup,
        comm: start.comm,
    };
    if !filter::allows(&header, &flow) {
        return Ok(());
    }
    record_latency(HistId::Handshake, handshake_ns);
    let syn_retransmits: u32 = read(sk, global!(OFFSETS.tcp_total_retrans))?;
    if errno != 0 && HANDSHAKE_FAILED.insert(sk, flow, 0).is_err() {
        map_full(StateMap::Handshakes);
    }
    // Every handshake that did not establish, or needed a retransmission,
    // is sent; the rest under the --min-latency threshold.
    let failed = outcome != HandshakeOutcome::Established || syn_retransmits > 0;
    if failed || passes_threshold(handshake_ns, 0) {
        send(
            EventKind::Handshake,
            &HandshakeEvent {
                header,
                flow,
                handshake_ns,
                errno,
                syn_retransmits,
                outcome: outcome as u8,
                syn_retransmits_timed: start.rtx_timed,
                _pad: [0; 6],
                syn_retransmit_us: start.rtx_us,
            },
        );
    }
    Ok(())
}
