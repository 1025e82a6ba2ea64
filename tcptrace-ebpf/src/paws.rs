//! PAWS rejects at every site and the verdict on every RST a synchronized
//! socket receives.
//!
//! Three ways to see them, chosen per hook by userspace:
//! - fentry/fexit (or kprobe/kretprobe) on the kernel functions that decide:
//!   `tcp_validate_incoming` (PAWS on synchronized sockets, RST verdicts, with
//!   `tcp_send_challenge_ack` and the `tcp:tcp_receive_reset` tracepoint
//!   marking what happened inside it), `tcp_timewait_state_process`,
//!   `tcp_check_req` (SYN-RECV) and `tcp_rcv_state_process` (SYN-SENT);
//! - tp_btf `kfree_skb` where the kernel names the drop reason (and the
//!   receiving socket, 6.11+), plus `tcp:tcp_receive_reset` for accepted RSTs.
//!
//! Sites decided at function entry replicate the kernel's own test from the
//! same inputs (the segment's TCP header and the socket's stored stamps);
//! `tcp_validate_incoming` is judged at its return, when the outcome is known.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_get_smp_processor_id},
    macros::{btf_tracepoint, fentry, fexit, kprobe, kretprobe, map, tracepoint},
    maps::{LruHashMap, PerCpuArray},
    programs::{
        BtfTracePointContext, FEntryContext, FExitContext, ProbeContext, RetProbeContext,
        TracePointContext,
    },
};
use tcptrace_common::{
    paws::{
        tcp_state, PawsEvent, PawsOffsets, PawsSite, RstEvent, RstVerdict, NO_REASON, PAWS_OLD_ACK,
        PAWS_RST, PAWS_TS_RECENT_UNKNOWN, RST_SENT_SLOTS, RST_SEQ_INFERRED,
    },
    statemaps::StateMap,
    EventHeader, EventKind, Flow, Stat,
};

use crate::{
    emit::{commit, now},
    filter,
    kernel::{read, sock_flow, sock_netns},
    maps::{bump, count, map_full, EVENTS, LOST},
    packet::{capture, headers, local_port, segment_flow},
};

#[unsafe(no_mangle)]
pub static PAWS_OFFSETS: PawsOffsets = PawsOffsets::UNSET;

/// Reads one field of `PAWS_OFFSETS` (a read-only global set at load time).
macro_rules! off {
    ($field:ident) => {
        unsafe { core::ptr::read_volatile(&raw const PAWS_OFFSETS.$field) }
    };
}

/// RSTs this host sent, by `sk_rst_reason` (slot 0 on kernels without one).
#[map(name = "RST_SENT")]
static RST_SENT: PerCpuArray<u64> = PerCpuArray::with_max_entries(RST_SENT_SLOTS, 0);

const TH_SYN: u8 = 0x02;
const TH_RST: u8 = 0x04;
const TH_ACK: u8 = 0x10;

/// RFC 7323 limits the kernel applies (`include/net/tcp.h`).
const PAWS_24DAYS_S: u32 = 60 * 60 * 24 * 24;
const PAWS_MSL_S: u32 = 60;
/// TCP_PAWS_WINDOW: on synchronized sockets a TSval one tick old still passes.
const PAWS_WINDOW: i32 = 1;

const MAX_OPTIONS: usize = 12;

/// The parts of a TCP header the checks use.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct TcpHdr {
    sport: u16,
    dport: u16,
    seq: u32,
    ack_seq: u32,
    flags: u8,
    has_ts: bool,
    tsval: u32,
    tsecr: u32,
}

impl TcpHdr {
    fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

/// Reads the TCP header at `th`, including the timestamp option.
#[inline(always)]
fn tcp_header(th: u64) -> Result<TcpHdr, i64> {
    let mut h = TcpHdr::default();
    match read_tcp_header(th, &mut h) {
        0 => Ok(h),
        e => Err(e),
    }
}

/// Not inlined, so the verifier walks the option loop once per call site
/// instead of once per path into it; C-like signature so its BTF is one the
/// kernel accepts.
#[inline(never)]
fn read_tcp_header(th: u64, out: &mut TcpHdr) -> i64 {
    match parse_tcp_header(th) {
        Ok(h) => {
            *out = h;
            0
        }
        Err(e) => e,
    }
}

#[inline(always)]
fn parse_tcp_header(th: u64) -> Result<TcpHdr, i64> {
    let fixed: [u8; 20] = read(th, 0)?;
    let mut h = TcpHdr {
        sport: u16::from_be_bytes([fixed[0], fixed[1]]),
        dport: u16::from_be_bytes([fixed[2], fixed[3]]),
        seq: u32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]),
        ack_seq: u32::from_be_bytes([fixed[8], fixed[9], fixed[10], fixed[11]]),
        flags: fixed[13],
        ..TcpHdr::default()
    };
    let doff = (fixed[12] >> 4) as usize;
    if doff <= 5 {
        return Ok(h);
    }
    let optlen = ((doff - 5) * 4) as u64;
    // Each option is read from the kernel at its own address: no variable
    // offsets into the stack or a map, which verifiers differ on. Twelve
    // options cover every layout stacks send (SYN: MSS, SACK_PERM, TS, NOP,
    // WSCALE; data: NOP, NOP, TS, NOP, NOP, SACK).
    let opts = th + 20;
    let mut i = 0u64;
    for _ in 0..MAX_OPTIONS {
        if i >= optlen {
            break;
        }
        let [kind, len]: [u8; 2] = read(opts + i, 0)?;
        if kind == 0 {
            break;
        }
        if kind == 1 {
            i += 1;
            continue;
        }
        if len < 2 {
            break;
        }
        if kind == 8 && len == 10 {
            if i + 10 > optlen {
                break;
            }
            let ts: [u8; 8] = read(opts + i + 2, 0)?;
            h.has_ts = true;
            h.tsval = u32::from_be_bytes([ts[0], ts[1], ts[2], ts[3]]);
            h.tsecr = u32::from_be_bytes([ts[4], ts[5], ts[6], ts[7]]);
            break;
        }
        i += u64::from(len);
    }
    Ok(h)
}

/// The TCP header of an skb whose transport header is set.
#[inline(always)]
fn skb_tcp_header(skb: u64) -> Result<TcpHdr, i64> {
    let (head, _, th) = headers(skb)?;
    tcp_header(head + th as u64)
}

/// `ktime_get_seconds()` as the kernel compares it (32-bit).
#[inline(always)]
fn now_seconds() -> u32 {
    (now_monotonic_ns() / 1_000_000_000) as u32
}

#[inline(always)]
fn now_monotonic_ns() -> u64 {
    unsafe { aya_ebpf::helpers::bpf_ktime_get_ns() }
}

/// `time_before32(a, b)`.
#[inline(always)]
fn before32(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

/// `tcp_paws_check(rx_opt, win)` failing: the stamp is older than
/// `ts_recent` by more than `win`, `ts_recent` is set and under 24 days old.
#[inline(always)]
fn paws_fails(ts_recent: u32, ts_recent_stamp: u32, tsval: u32, win: i32) -> bool {
    (ts_recent.wrapping_sub(tsval) as i32) > win
        && ts_recent != 0
        && before32(now_seconds(), ts_recent_stamp.wrapping_add(PAWS_24DAYS_S))
}

/// `tcp_paws_reject(rx_opt, rst)`: an RST is let through once the stored
/// stamp is older than TCP_PAWS_MSL.
#[inline(always)]
fn paws_rejects(ts_recent: u32, ts_recent_stamp: u32, tsval: u32, rst: bool) -> bool {
    paws_fails(ts_recent, ts_recent_stamp, tsval, 0)
        && (!rst || before32(now_seconds(), ts_recent_stamp.wrapping_add(PAWS_MSL_S)))
}

/// Header for events driven by an incoming segment: these run in softirq
/// (or for the socket owner's backlog), so no process is attached to them
/// (and the task filters --pid/--comm/--cgroup exclude them).
#[inline(always)]
fn packet_header(kind: EventKind, netns: u32) -> EventHeader {
    EventHeader {
        kind: kind as u8,
        netns,
        ts_ns: now(),
        ..EventHeader::default()
    }
}

#[inline(always)]
fn sock_state(sk: u64) -> Result<u8, i64> {
    read(sk, off!(skc_state))
}

/// The segment behind a PAWS reject: its skb and what its header said.
#[derive(Clone, Copy)]
struct Segment {
    skb: u64,
    tsval: u32,
    tsecr: u32,
}

/// Reserves and fills a PawsEvent in the ring buffer (the record with its
/// packet is too large to build on the BPF stack).
#[inline(always)]
fn send_paws(
    sk: u64,
    flow: Flow,
    site: PawsSite,
    state: u8,
    seg: Segment,
    ts_recent: u32,
    flags: u8,
) {
    let header = packet_header(EventKind::PawsReject, sock_netns(sk));
    if !filter::allows(&header, &flow) {
        return;
    }
    let Some(mut slot) = EVENTS.reserve::<PawsEvent>(0) else {
        bump(&LOST, EventKind::PawsReject as u32);
        return;
    };
    let ev = slot.as_mut_ptr();
    unsafe {
        (*ev).header = header;
        (*ev).flow = flow;
        (*ev).tsval = seg.tsval;
        (*ev).tsecr = seg.tsecr;
        (*ev).ts_recent = ts_recent;
        (*ev).site = site as u8;
        (*ev).state = state;
        (*ev).flags = flags;
        (*ev)._pad = 0;
        capture(seg.skb, &mut (*ev).packet);
    }
    commit(slot);
}

/// The socket's receive window as an RST is judged: rcv_nxt, rcv_wup, rcv_wnd.
#[inline(always)]
fn receive_window(sk: u64) -> Result<[u32; 3], i64> {
    Ok([
        read(sk, off!(tp_rcv_nxt))?,
        read(sk, off!(tp_rcv_wup))?,
        read(sk, off!(tp_rcv_wnd))?,
    ])
}

#[inline(always)]
fn send_rst(
    sk: u64,
    skb: u64,
    state: u8,
    verdict: RstVerdict,
    seq: u32,
    [rcv_nxt, rcv_wup, rcv_wnd]: [u32; 3],
    flags: u8,
) -> Result<(), i64> {
    let header = packet_header(EventKind::Rst, sock_netns(sk));
    let mut flow = sock_flow(sk)?;
    // An accepted RST has unhashed the socket by the time fexit reads it
    // (local port 0): the segment still names it.
    if flow.sport == 0 && skb != 0 {
        flow.sport = local_port(skb);
    }
    if !filter::allows(&header, &flow) {
        return Ok(());
    }
    let Some(mut slot) = EVENTS.reserve::<RstEvent>(0) else {
        bump(&LOST, EventKind::Rst as u32);
        return Ok(());
    };
    let ev = slot.as_mut_ptr();
    unsafe {
        (*ev).header = header;
        (*ev).flow = flow;
        (*ev).seq = seq;
        (*ev).rcv_nxt = rcv_nxt;
        (*ev).rcv_wup = rcv_wup;
        (*ev).rcv_wnd = rcv_wnd;
        (*ev).verdict = verdict as u8;
        (*ev).state = state;
        (*ev).flags = flags;
        (*ev)._pad = [0; 5];
        capture(skb, &mut (*ev).packet);
    }
    commit(slot);
    Ok(())
}

// ---------------------------------------------------------------------------
// tcp_validate_incoming: PAWS on synchronized sockets and RST verdicts.

/// A segment inside `tcp_validate_incoming` that may end in an event: an RST,
/// a SYN, or one whose TSval is older than the socket's `ts_recent`.
#[derive(Clone, Copy)]
pub struct Validating {
    seq: u32,
    tsval: u32,
    tsecr: u32,
    ts_recent: u32,
    /// TCP flags of the segment.
    flags: u8,
    state: u8,
    /// `tcp_send_challenge_ack` ran for this socket meanwhile.
    challenged: u8,
    /// `tcp_reset` ran (tracepoint `tcp:tcp_receive_reset`).
    reset: u8,
    /// The PAWS test failed on entry.
    paws: u8,
    _pad: [u8; 3],
    /// rcv_nxt, rcv_wup, rcv_wnd on entry (RSTs).
    window: [u32; 3],
}

/// Segments being validated, keyed by socket (the socket is locked for the
/// whole call, so one entry per socket). Removed at return; LRU because a
/// return the kernel missed (kretprobe) leaves an entry for a socket that
/// may never be validated again.
#[map(name = "PAWS_VALIDATING")]
static VALIDATING: LruHashMap<u64, Validating> = LruHashMap::with_max_entries(4096, 0);

#[inline(always)]
fn try_validate_enter(sk: u64, th: u64) -> Result<(), i64> {
    let h = tcp_header(th)?;
    let mut paws = false;
    let mut ts_recent = 0;
    if h.has_ts {
        ts_recent = read(sk, off!(tp_ts_recent))?;
        let stamp: u32 = read(sk, off!(tp_ts_recent_stamp))?;
        paws = paws_fails(ts_recent, stamp, h.tsval, PAWS_WINDOW);
    }
    if !paws && !h.has(TH_RST) && !h.has(TH_SYN) {
        return Ok(());
    }
    let v = Validating {
        seq: h.seq,
        tsval: h.tsval,
        tsecr: h.tsecr,
        ts_recent,
        flags: h.flags,
        state: sock_state(sk)?,
        challenged: 0,
        reset: 0,
        paws: paws as u8,
        _pad: [0; 3],
        window: if h.has(TH_RST) {
            receive_window(sk)?
        } else {
            [0; 3]
        },
    };
    if VALIDATING.insert(sk, v, 0).is_err() {
        map_full(StateMap::PawsValidating);
    }
    Ok(())
}

#[inline(always)]
fn try_validate_exit(sk: u64, skb: u64, passed: bool) -> Result<(), i64> {
    let Some(v) = (unsafe { VALIDATING.get(sk) }).copied() else {
        return Ok(());
    };
    let _ = VALIDATING.remove(sk);
    if passed {
        return Ok(());
    }
    if v.flags & TH_RST != 0 {
        let verdict = if v.reset != 0 {
            RstVerdict::Accepted
        } else if v.challenged != 0 {
            RstVerdict::ChallengeAck
        } else {
            RstVerdict::Ignored
        };
        return send_rst(sk, skb, v.state, verdict, v.seq, v.window, 0);
    }
    // A SYN that fails PAWS gets a challenge ACK on 6.12+ and is not counted
    // as a PAWS reject there; older kernels count it.
    if v.paws == 0 || (v.flags & TH_SYN != 0 && v.challenged != 0) {
        return Ok(());
    }
    let mut flags = 0;
    if off!(old_ack_split) != 0 && v.flags & TH_ACK != 0 {
        // 6.18+: an old pure ACK (no data, before rcv_nxt) counts as PAWSOldAck.
        let end_seq: u32 = read(skb, off!(skb_cb) + off!(tcb_end_seq))?;
        let rcv_nxt: u32 = read(sk, off!(tp_rcv_nxt))?;
        if end_seq == v.seq && before32(v.seq, rcv_nxt) {
            flags |= PAWS_OLD_ACK;
        }
    }
    send_paws(
        sk,
        sock_flow(sk)?,
        PawsSite::Established,
        v.state,
        Segment {
            skb,
            tsval: v.tsval,
            tsecr: v.tsecr,
        },
        v.ts_recent,
        flags,
    );
    Ok(())
}

#[inline(always)]
fn mark_challenged(sk: u64) {
    if let Some(v) = VALIDATING.get_ptr_mut(sk) {
        unsafe { (*v).challenged = 1 };
    }
}

#[inline(always)]
fn done(result: Result<(), i64>) -> i32 {
    if result.is_err() {
        count(Stat::ReadFailed);
    }
    0
}

#[fentry(function = "tcp_validate_incoming")]
pub fn validate_fentry(ctx: FEntryContext) -> i32 {
    done(try_validate_enter(ctx.arg(0), ctx.arg(2)))
}

#[fexit(function = "tcp_validate_incoming")]
pub fn validate_fexit(ctx: FExitContext) -> i32 {
    // Returns bool: anything but 0 means the segment goes on.
    let passed = ctx.ret::<u64>().unwrap_or(0) & 0xff != 0;
    done(try_validate_exit(ctx.arg(0), ctx.arg(1), passed))
}

#[fentry(function = "tcp_send_challenge_ack")]
pub fn challenge_ack_fentry(ctx: FEntryContext) -> i32 {
    mark_challenged(ctx.arg(0));
    0
}

#[kprobe]
pub fn challenge_ack_kprobe(ctx: ProbeContext) -> u32 {
    mark_challenged(ctx.arg(0).unwrap_or(0));
    0
}

/// kretprobes do not see the arguments: each entry pushes its socket (and
/// skb) on a small stack keyed by execution context, the return pops it. The
/// context is the thread, or the CPU for the idle task (pid 0 on every CPU);
/// a softirq that interrupts a thread nests on that thread's stack.
#[derive(Clone, Copy)]
pub struct CallStack {
    depth: u32,
    _pad: u32,
    frames: [[u64; 2]; CALL_DEPTH],
}

const CALL_DEPTH: usize = 4;

/// LRU: a missed return leaves a frame behind, and a thread that dies with
/// one would hold its entry forever.
#[map(name = "PAWS_VALIDATE_CALLS")]
static VALIDATE_CALLS: LruHashMap<u64, CallStack> = LruHashMap::with_max_entries(4096, 0);

#[inline(always)]
fn call_key() -> u64 {
    let id = bpf_get_current_pid_tgid();
    if id == 0 {
        (1 << 63) | unsafe { bpf_get_smp_processor_id() } as u64
    } else {
        id
    }
}

#[inline(always)]
fn push_call(sk: u64, skb: u64) {
    let key = call_key();
    match VALIDATE_CALLS.get_ptr_mut(key) {
        Some(stack) => {
            let stack = unsafe { &mut *stack };
            // Constant indexes only: verifiers differ on variable offsets
            // into map values.
            let frame = [sk, skb];
            match stack.depth {
                0 => stack.frames[0] = frame,
                1 => stack.frames[1] = frame,
                2 => stack.frames[2] = frame,
                3 => stack.frames[3] = frame,
                _ => {
                    // Deeper than real nesting goes: the bottom frames were
                    // left by returns the kernel missed. Drop the oldest so
                    // the next return still pops this call's frame.
                    stack.frames[0] = stack.frames[1];
                    stack.frames[1] = stack.frames[2];
                    stack.frames[2] = stack.frames[3];
                    stack.frames[3] = frame;
                    map_full(StateMap::PawsValidateCalls);
                    return;
                }
            }
            stack.depth += 1;
        }
        None => {
            let stack = CallStack {
                depth: 1,
                _pad: 0,
                frames: [[sk, skb], [0; 2], [0; 2], [0; 2]],
            };
            if VALIDATE_CALLS.insert(key, stack, 0).is_err() {
                map_full(StateMap::PawsValidateCalls);
            }
        }
    }
}

#[inline(always)]
fn pop_call() -> Option<[u64; 2]> {
    let key = call_key();
    let stack = unsafe { &mut *VALIDATE_CALLS.get_ptr_mut(key)? };
    let frame = match stack.depth {
        1 => stack.frames[0],
        2 => stack.frames[1],
        3 => stack.frames[2],
        4 => stack.frames[3],
        _ => {
            let _ = VALIDATE_CALLS.remove(key);
            return None;
        }
    };
    stack.depth -= 1;
    if stack.depth == 0 {
        let _ = VALIDATE_CALLS.remove(key);
    }
    Some(frame)
}

#[kprobe]
pub fn validate_kprobe(ctx: ProbeContext) -> u32 {
    let sk: u64 = ctx.arg(0).unwrap_or(0);
    let skb: u64 = ctx.arg(1).unwrap_or(0);
    push_call(sk, skb);
    done(try_validate_enter(sk, ctx.arg(2).unwrap_or(0))) as u32
}

#[kretprobe]
pub fn validate_kretprobe(ctx: RetProbeContext) -> u32 {
    let Some([sk, skb]) = pop_call() else {
        return 0;
    };
    let passed = ctx.ret::<u64>() & 0xff != 0;
    done(try_validate_exit(sk, skb, passed)) as u32
}

/// `tcp:tcp_receive_reset` while a segment is validated: `tcp_reset` ran,
/// the RST was accepted.
#[tracepoint(category = "tcp", name = "tcp_receive_reset")]
pub fn receive_reset_mark(ctx: TracePointContext) -> u32 {
    if let Ok(sk) = receive_reset_sk(&ctx) {
        mark_reset(sk);
    }
    0
}

/// tp_btf twin: tcp_receive_reset(struct sock *sk), the same on every
/// supported kernel. Attached instead of the tracepoint where the kernel has
/// its BTF: tp_btf programs are not skipped when another tracer's program
/// runs on the CPU.
#[btf_tracepoint(function = "tcp_receive_reset")]
pub fn receive_reset_mark_btf(ctx: BtfTracePointContext) -> i32 {
    mark_reset(ctx.arg(0));
    0
}

/// `skaddr` of a `tcp:tcp_receive_reset` record.
#[inline(always)]
fn receive_reset_sk(ctx: &TracePointContext) -> Result<u64, i64> {
    let at = off!(tp_receive_reset_skaddr) as usize;
    // SAFETY: `at` is the offset of the u64 `skaddr` field in this kernel's
    // record format (read from tracefs at load); read_at bounds the read
    // with bpf_probe_read_kernel.
    unsafe { ctx.read_at::<u64>(at) }.map_err(|e| e as i64)
}

#[inline(always)]
fn mark_reset(sk: u64) {
    if let Some(v) = VALIDATING.get_ptr_mut(sk) {
        // SAFETY: a pointer into a live map value of this map's type; the
        // socket is locked by its caller, so no other program writes it.
        unsafe { (*v).reset = 1 };
    }
}

// ---------------------------------------------------------------------------
// TIME_WAIT: tcp_timewait_state_process(tw, skb, th, ...).

#[inline(always)]
fn try_timewait(tw: u64, skb: u64, th: u64) -> Result<(), i64> {
    let h = tcp_header(th)?;
    if !h.has_ts {
        return Ok(());
    }
    let stamp: u32 = read(tw, off!(tw_ts_recent_stamp))?;
    if stamp == 0 {
        return Ok(());
    }
    // A FIN_WAIT2 timewait socket answers a PAWS failure like any
    // out-of-window segment, without counting it.
    let substate: u8 = read(tw, off!(tw_substate))?;
    if substate != tcp_state::TIME_WAIT {
        return Ok(());
    }
    let ts_recent: u32 = read(tw, off!(tw_ts_recent))?;
    let rst = h.has(TH_RST);
    if !paws_rejects(ts_recent, stamp, h.tsval, rst) {
        return Ok(());
    }
    let flags = if rst { PAWS_RST } else { 0 };
    send_paws(
        tw,
        sock_flow(tw)?,
        PawsSite::TimeWait,
        tcp_state::TIME_WAIT,
        Segment {
            skb,
            tsval: h.tsval,
            tsecr: h.tsecr,
        },
        ts_recent,
        flags,
    );
    Ok(())
}

#[fentry(function = "tcp_timewait_state_process")]
pub fn timewait_fentry(ctx: FEntryContext) -> i32 {
    done(try_timewait(ctx.arg(0), ctx.arg(1), ctx.arg(2)))
}

#[kprobe]
pub fn timewait_kprobe(ctx: ProbeContext) -> u32 {
    done(try_timewait(
        ctx.arg(0).unwrap_or(0),
        ctx.arg(1).unwrap_or(0),
        ctx.arg(2).unwrap_or(0),
    )) as u32
}

// ---------------------------------------------------------------------------
// SYN-RECV: tcp_check_req(sk, skb, req, fastopen, ...).

#[inline(always)]
fn try_check_req(skb: u64, req: u64, fastopen: bool) -> Result<(), i64> {
    let h = skb_tcp_header(skb)?;
    if !h.has_ts {
        return Ok(());
    }
    let ts_recent: u32 = read(req, off!(req_ts_recent))?;
    // The request's stamp is taken as "now minus its timeout": never 24 days
    // old; an RST passes only after a minute of SYN-ACK backoff, which this
    // does not model (RSTs are reported as rejected).
    if (ts_recent.wrapping_sub(h.tsval) as i32) <= 0 || ts_recent == 0 {
        return Ok(());
    }
    let rst = h.has(TH_RST);
    // An ACK that does not acknowledge our SYN-ACK is answered with a RST
    // before the PAWS verdict counts.
    if h.has(TH_ACK) && !rst && !fastopen {
        let snt_isn: u32 = read(req, off!(treq_snt_isn))?;
        if h.ack_seq != snt_isn.wrapping_add(1) {
            return Ok(());
        }
    }
    let flags = if rst { PAWS_RST } else { 0 };
    send_paws(
        req,
        sock_flow(req)?,
        PawsSite::SynRecv,
        tcp_state::NEW_SYN_RECV,
        Segment {
            skb,
            tsval: h.tsval,
            tsecr: h.tsecr,
        },
        ts_recent,
        flags,
    );
    Ok(())
}

#[fentry(function = "tcp_check_req")]
pub fn check_req_fentry(ctx: FEntryContext) -> i32 {
    let fastopen = ctx.arg::<u64>(3) & 0xff != 0;
    done(try_check_req(ctx.arg(1), ctx.arg(2), fastopen))
}

#[kprobe]
pub fn check_req_kprobe(ctx: ProbeContext) -> u32 {
    let fastopen = ctx.arg::<u64>(3).unwrap_or(0) & 0xff != 0;
    done(try_check_req(
        ctx.arg(1).unwrap_or(0),
        ctx.arg(2).unwrap_or(0),
        fastopen,
    )) as u32
}

// ---------------------------------------------------------------------------
// SYN-SENT: tcp_rcv_state_process(sk, skb) on an active open. The SYN-ACK
// must echo a TSecr between our SYN's stamp (retrans_stamp) and now.

#[inline(always)]
fn try_syn_sent(sk: u64, skb: u64) -> Result<(), i64> {
    if sock_state(sk)? != tcp_state::SYN_SENT {
        return Ok(());
    }
    let h = skb_tcp_header(skb)?;
    if !h.has(TH_ACK) || !h.has_ts || h.tsecr == 0 {
        return Ok(());
    }
    // An unacceptable ACK is reset before the timestamp is looked at.
    let snd_una: u32 = read(sk, off!(tp_snd_una))?;
    let snd_nxt: u32 = read(sk, off!(tp_snd_nxt))?;
    if !before32(snd_una, h.ack_seq) || before32(snd_nxt, h.ack_seq) {
        return Ok(());
    }
    let tsoffset: u32 = read(sk, off!(tp_tsoffset))?;
    let tsecr = h.tsecr.wrapping_sub(tsoffset);
    if tsecr == 0 {
        return Ok(());
    }
    let sent: u32 = read(sk, off!(tp_retrans_stamp))?;
    let now_ms = (now_monotonic_ns() / 1_000_000) as u32;
    // between(tsecr, sent, now)
    if now_ms.wrapping_sub(sent) >= tsecr.wrapping_sub(sent) {
        return Ok(());
    }
    send_paws(
        sk,
        sock_flow(sk)?,
        PawsSite::SynSent,
        tcp_state::SYN_SENT,
        Segment {
            skb,
            tsval: h.tsval,
            tsecr,
        },
        sent,
        0,
    );
    Ok(())
}

#[fentry(function = "tcp_rcv_state_process")]
pub fn syn_sent_fentry(ctx: FEntryContext) -> i32 {
    done(try_syn_sent(ctx.arg(0), ctx.arg(1)))
}

#[kprobe]
pub fn syn_sent_kprobe(ctx: ProbeContext) -> u32 {
    done(try_syn_sent(
        ctx.arg(0).unwrap_or(0),
        ctx.arg(1).unwrap_or(0),
    )) as u32
}

// ---------------------------------------------------------------------------
// Drop-reason fallback: tp_btf kfree_skb(skb, location, reason, rx_sk).

#[inline(always)]
fn kfree_args(ctx: &BtfTracePointContext) -> (u64, u32, u64) {
    (ctx.arg(0), ctx.arg::<u64>(2) as u32, ctx.arg(3))
}

#[inline(always)]
fn is_reason(reason: u32, want: u32) -> bool {
    want != NO_REASON && reason == want
}

#[inline(always)]
fn try_kfree_validate(skb: u64, reason: u32, sk: u64) -> Result<(), i64> {
    let paws = is_reason(reason, off!(reason_paws));
    let paws_ack = is_reason(reason, off!(reason_paws_ack));
    let challenged = is_reason(reason, off!(reason_reset));
    let out_of_window = is_reason(reason, off!(reason_old_sequence))
        || is_reason(reason, off!(reason_invalid_sequence))
        || is_reason(reason, off!(reason_invalid_end_sequence));
    if !(paws || paws_ack || challenged || out_of_window) || sk == 0 {
        return Ok(());
    }
    let state = sock_state(sk)?;
    if matches!(
        state,
        tcp_state::TIME_WAIT | tcp_state::NEW_SYN_RECV | tcp_state::LISTEN | tcp_state::SYN_SENT
    ) {
        return Ok(());
    }
    let h = skb_tcp_header(skb)?;
    if paws || paws_ack {
        if h.has(TH_RST) || h.has(TH_SYN) {
            return Ok(());
        }
        let flags = if paws_ack { PAWS_OLD_ACK } else { 0 };
        send_paws(
            sk,
            sock_flow(sk)?,
            PawsSite::Established,
            state,
            Segment {
                skb,
                tsval: h.tsval,
                tsecr: h.tsecr,
            },
            read(sk, off!(tp_ts_recent))?,
            flags,
        );
        return Ok(());
    }
    if !h.has(TH_RST) {
        return Ok(());
    }
    let verdict = if challenged {
        RstVerdict::ChallengeAck
    } else {
        RstVerdict::Ignored
    };
    send_rst(sk, skb, state, verdict, h.seq, receive_window(sk)?, 0)
}

#[btf_tracepoint(function = "kfree_skb")]
pub fn kfree_skb_validate(ctx: BtfTracePointContext) -> i32 {
    let (skb, reason, sk) = kfree_args(&ctx);
    done(try_kfree_validate(skb, reason, sk))
}

/// Accepted RSTs in the drop-reason fallback: the kernel frees them without
/// a reason, so `tcp_reset` (this tracepoint) is what shows them.
#[tracepoint(category = "tcp", name = "tcp_receive_reset")]
pub fn receive_reset_emit(ctx: TracePointContext) -> u32 {
    done(receive_reset_sk(&ctx).and_then(try_receive_reset_emit)) as u32
}

/// tp_btf twin of [`receive_reset_emit`]: tcp_receive_reset(struct sock *sk).
#[btf_tracepoint(function = "tcp_receive_reset")]
pub fn receive_reset_emit_btf(ctx: BtfTracePointContext) -> i32 {
    done(try_receive_reset_emit(ctx.arg(0)))
}

#[inline(always)]
fn try_receive_reset_emit(sk: u64) -> Result<(), i64> {
    let state = sock_state(sk)?;
    if state == tcp_state::SYN_SENT {
        return Ok(());
    }
    let window = receive_window(sk)?;
    send_rst(
        sk,
        0,
        state,
        RstVerdict::Accepted,
        window[0],
        window,
        RST_SEQ_INFERRED,
    )
}

#[inline(always)]
fn try_kfree_timewait(skb: u64, reason: u32, tw: u64) -> Result<(), i64> {
    if !is_reason(reason, off!(reason_tw_paws)) || tw == 0 {
        return Ok(());
    }
    let h = skb_tcp_header(skb)?;
    let flags = if h.has(TH_RST) { PAWS_RST } else { 0 };
    send_paws(
        tw,
        sock_flow(tw)?,
        PawsSite::TimeWait,
        tcp_state::TIME_WAIT,
        Segment {
            skb,
            tsval: h.tsval,
            tsecr: h.tsecr,
        },
        read(tw, off!(tw_ts_recent))?,
        flags,
    );
    Ok(())
}

#[btf_tracepoint(function = "kfree_skb")]
pub fn kfree_skb_timewait(ctx: BtfTracePointContext) -> i32 {
    let (skb, reason, sk) = kfree_args(&ctx);
    done(try_kfree_timewait(skb, reason, sk))
}

/// SYN-RECV in the fallback (kernels whose `tcp_check_req` sets a drop
/// reason): the skb is freed against the listener, so the flow comes from
/// the packet and the request's `ts_recent` is not known.
#[inline(always)]
fn try_kfree_syn_recv(skb: u64, reason: u32, listener: u64) -> Result<(), i64> {
    if !is_reason(reason, off!(reason_paws)) || listener == 0 {
        return Ok(());
    }
    if sock_state(listener)? != tcp_state::LISTEN {
        return Ok(());
    }
    let h = skb_tcp_header(skb)?;
    let mut flags = PAWS_TS_RECENT_UNKNOWN;
    if h.has(TH_RST) {
        flags |= PAWS_RST;
    }
    send_paws(
        listener,
        segment_flow(skb)?,
        PawsSite::SynRecv,
        tcp_state::NEW_SYN_RECV,
        Segment {
            skb,
            tsval: h.tsval,
            tsecr: h.tsecr,
        },
        0,
        flags,
    );
    Ok(())
}

#[btf_tracepoint(function = "kfree_skb")]
pub fn kfree_skb_syn_recv(ctx: BtfTracePointContext) -> i32 {
    let (skb, reason, sk) = kfree_args(&ctx);
    done(try_kfree_syn_recv(skb, reason, sk))
}

#[inline(always)]
fn try_kfree_syn_sent(skb: u64, reason: u32, sk: u64) -> Result<(), i64> {
    if !is_reason(reason, off!(reason_paws)) || sk == 0 {
        return Ok(());
    }
    if sock_state(sk)? != tcp_state::SYN_SENT {
        return Ok(());
    }
    let h = skb_tcp_header(skb)?;
    // Without ACK this is the crossed-SYN check, which counts nothing.
    if !h.has(TH_ACK) {
        return Ok(());
    }
    let tsoffset: u32 = read(sk, off!(tp_tsoffset))?;
    send_paws(
        sk,
        sock_flow(sk)?,
        PawsSite::SynSent,
        tcp_state::SYN_SENT,
        Segment {
            skb,
            tsval: h.tsval,
            tsecr: h.tsecr.wrapping_sub(tsoffset),
        },
        read(sk, off!(tp_retrans_stamp))?,
        0,
    );
    Ok(())
}

#[btf_tracepoint(function = "kfree_skb")]
pub fn kfree_skb_syn_sent(ctx: BtfTracePointContext) -> i32 {
    let (skb, reason, sk) = kfree_args(&ctx);
    done(try_kfree_syn_sent(skb, reason, sk))
}

// ---------------------------------------------------------------------------
// RSTs this host sends: tcp:tcp_send_reset, counted by reason.

#[tracepoint(category = "tcp", name = "tcp_send_reset")]
pub fn send_reset_count(ctx: TracePointContext) -> u32 {
    let at = off!(tp_send_reset_reason);
    let reason = if at == 0 {
        0
    } else {
        // SAFETY: `at` is the offset of the u32 `reason` field in this
        // kernel's record format (tracefs, read at load); read_at bounds
        // the read with bpf_probe_read_kernel.
        unsafe { ctx.read_at::<u32>(at as usize) }.unwrap_or(0)
    };
    count_reset_sent(reason);
    0
}

/// tp_btf twin for kernels before 6.10: tcp_send_reset(const struct sock
/// *sk, const struct sk_buff *skb), no reason (slot 0).
#[btf_tracepoint(function = "tcp_send_reset")]
pub fn send_reset_count_btf(_ctx: BtfTracePointContext) -> i32 {
    count_reset_sent(0);
    0
}

/// tp_btf twin for 6.10+: tcp_send_reset(sk, skb, enum sk_rst_reason
/// reason). A separate program because the verifier refuses a read of an
/// argument the tracepoint does not pass, even on a path never taken;
/// userspace picks the one matching this kernel's `btf_trace_tcp_send_reset`.
#[btf_tracepoint(function = "tcp_send_reset")]
pub fn send_reset_reason_btf(ctx: BtfTracePointContext) -> i32 {
    count_reset_sent(ctx.arg::<u64>(2) as u32);
    0
}

#[inline(always)]
fn count_reset_sent(reason: u32) {
    bump(&RST_SENT, reason.min(RST_SENT_SLOTS - 1));
}
