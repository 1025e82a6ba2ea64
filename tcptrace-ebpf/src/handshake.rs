//! Active opens' handshakes, blocking or not: `sock:inet_sock_set_state`
//! (tp_btf where the kernel has its BTF, else the plain tracepoint), which
//! fires on every state change of every TCP socket. Only two changes do
//! work: CLOSE -> SYN_SENT (in connect(), in the connecting task, just
//! before the first SYN) stores the start time and the task by socket;
//! SYN_SENT -> ESTABLISHED or CLOSE ends the handshake and sends a
//! `handshake` record. Every other change returns after comparing the two
//! state arguments.
//!
//! A handshake that ends in CLOSE with a socket error also leaves its
//! 4-tuple in `HANDSHAKE_FAILED` for the connect() that returns after the
//! kernel cleared the source address (tcp_disconnect), see `connect.rs`.

use aya_ebpf::{
    helpers::{bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid},
    macros::{btf_tracepoint, map, tracepoint},
    maps::LruHashMap,
    programs::{BtfTracePointContext, TracePointContext},
    EbpfContext as _,
};
use tcptrace_common::{
    programs, statemaps::StateMap, EventHeader, EventKind, Flow, HandshakeEvent, HandshakeOutcome,
    HistId,
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
const IPPROTO_TCP: u16 = 6;
const ECONNREFUSED: i32 = 111;
const ETIMEDOUT: i32 = 110;

/// A handshake in flight: when the socket entered SYN_SENT, and who
/// called connect().
#[derive(Clone, Copy)]
pub struct HandshakeStart {
    start_ns: u64,
    pid: u32,
    tid: u32,
    cgroup: u64,
    comm: [u8; 16],
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

// `inet_sock_set_state`'s record begins, on every kernel that has it
// (4.16+), with the common fields (8 bytes), `const void *skaddr`, `int
// oldstate`, `int newstate`; the fields after them changed (protocol was
// added), so nothing past them is read from the record.
const TP_SKADDR: usize = 8;
const TP_OLDSTATE: usize = 16;
const TP_NEWSTATE: usize = 20;

/// A field of the tracepoint's record at `offset`, with a direct load.
#[inline(always)]
fn tp_field<T: Copy>(ctx: &TracePointContext, offset: usize) -> T {
    // SAFETY: `offset` is one of the constants above, naturally aligned for
    // `T` (a u64 or an i32) and inside the record on every kernel; the
    // verifier checks the access against the context's bounds at load.
    unsafe { core::ptr::read(ctx.as_ptr().cast::<u8>().add(offset).cast::<T>()) }
}

#[tracepoint(category = "sock", name = "inet_sock_set_state")]
pub fn handshake_state(ctx: TracePointContext) -> u32 {
    let old: i32 = tp_field(&ctx, TP_OLDSTATE);
    let new: i32 = tp_field(&ctx, TP_NEWSTATE);
    if old != TCP_SYN_SENT && new != TCP_SYN_SENT {
        return 0;
    }
    let sk: u64 = tp_field(&ctx, TP_SKADDR);
    done(&ctx, programs::HANDSHAKE_STATE, state_change(sk, old, new));
    0
}

/// tp_btf twin: inet_sock_set_state(const struct sock *sk, const int
/// oldstate, const int newstate), the same on every supported kernel.
#[btf_tracepoint(function = "inet_sock_set_state")]
pub fn handshake_state_btf(ctx: BtfTracePointContext) -> i32 {
    let old: i32 = ctx.arg(1);
    let new: i32 = ctx.arg(2);
    if old != TCP_SYN_SENT && new != TCP_SYN_SENT {
        return 0;
    }
    done(
        &ctx,
        programs::HANDSHAKE_STATE_BTF,
        state_change(ctx.arg(0), old, new),
    );
    0
}

/// One change from or to SYN_SENT (the only ones that get here).
fn state_change(sk: u64, old: i32, new: i32) -> Result<(), i64> {
    if new == TCP_SYN_SENT {
        // Only CLOSE -> SYN_SENT exists (connect()); checked all the same.
        return if old == TCP_CLOSE {
            started(sk)
        } else {
            Ok(())
        };
    }
    ended(sk, new)
}

/// CLOSE -> SYN_SENT, in the connecting task.
fn started(sk: u64) -> Result<(), i64> {
    // MPTCP's own socket changes state through the same tracepoint.
    if read::<u16>(sk, global!(OFFSETS.sock_protocol))? != IPPROTO_TCP {
        return Ok(());
    }
    if !filter::current_task_allowed() {
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
    };
    if HANDSHAKE_STATE.insert(sk, start, 0).is_err() {
        map_full(StateMap::Handshakes);
    }
    Ok(())
}

/// SYN_SENT -> `new`, in softirq (SYN-ACK, RST), timer (timeout) or task
/// (close) context: the task is the one stored at the start.
fn ended(sk: u64, new: i32) -> Result<(), i64> {
    // SAFETY: the value is copied at once; the socket's state changes are
    // serialised by its lock, so no other program updates this entry now.
    let Some(start) = (unsafe { HANDSHAKE_STATE.get(sk) }).copied() else {
        return Ok(());
    };
    let _ = HANDSHAKE_STATE.remove(sk);
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
        // SYN_SENT -> SYN_RECV: a simultaneous open, not timed.
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
                _pad: [0; 7],
            },
        );
    }
    Ok(())
}
