//! `tcp_validate_incoming`: PAWS on synchronized sockets and the verdict on
//! every RST they receive (RFC 5961).
//!
//! Entry notes the segment (RST, SYN, or a TSval older than `ts_recent`)
//! keyed by socket; `tcp_send_challenge_ack` and `tcp:tcp_receive_reset`
//! mark what happened inside; the return judges it: accepted, challenged or
//! ignored for RSTs, a PAWS reject for the rest.

use aya_ebpf::{
    macros::{btf_tracepoint, fentry, fexit, kprobe, kretprobe, map, tracepoint},
    maps::LruHashMap,
    programs::{
        BtfTracePointContext, FEntryContext, FExitContext, ProbeContext, RetProbeContext,
        TracePointContext,
    },
};
use tcptrace_common::{
    paws::{PawsSite, RstVerdict, PAWS_OLD_ACK},
    programs,
    statemaps::StateMap,
};

use super::{
    call_stack::{pop_call, push_call},
    off,
    records::{receive_window, rst_socket, send_paws, send_rst, sock_state, Segment},
    rfc7323::{before32, paws_fails, PAWS_WINDOW},
    tcp_header::tcp_header,
    TH_ACK, TH_RST, TH_SYN,
};
use crate::{
    diag::done,
    kernel::{fexit_ret, read, sock_flow, sock_netns},
    maps::map_full,
};

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
    // SAFETY: the entry is copied out at once; only programs running for
    // this socket, which the kernel holds locked, write it.
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
        send_rst(
            rst_socket(sk, skb)?,
            skb,
            v.state,
            verdict,
            v.seq,
            v.window,
            0,
        );
        return Ok(());
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
        sock_netns(sk),
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

/// `tcp_send_challenge_ack` ran for socket `sk`.
#[inline(always)]
fn mark_challenged(sk: u64) {
    if let Some(v) = VALIDATING.get_ptr_mut(sk) {
        // SAFETY: a pointer into a live value of this map; the challenge ACK
        // is sent inside tcp_validate_incoming, under the socket's lock, so
        // no other program writes this entry meanwhile.
        unsafe { (*v).challenged = 1 };
    }
}

/// `tcp_reset` ran for socket `sk` (the RST was accepted).
#[inline(always)]
fn mark_reset(sk: u64) {
    if let Some(v) = VALIDATING.get_ptr_mut(sk) {
        // SAFETY: a pointer into a live value of this map; tcp_reset runs
        // under the socket's lock, so no other program writes this entry.
        unsafe { (*v).reset = 1 };
    }
}

/// `skaddr` of a `tcp:tcp_receive_reset` record.
#[inline(always)]
pub(super) fn receive_reset_sk(ctx: &TracePointContext) -> Result<u64, i64> {
    let at = off!(tp_receive_reset_skaddr) as usize;
    // SAFETY: `at` is the offset of the u64 `skaddr` field in this kernel's
    // record format (read from tracefs at load); read_at bounds the read
    // with bpf_probe_read_kernel.
    unsafe { ctx.read_at::<u64>(at) }.map_err(|e| e as i64)
}

// ---- programs ------------------------------------------------------------------

#[fentry(function = "tcp_validate_incoming")]
pub fn validate_fentry(ctx: FEntryContext) -> i32 {
    let result = try_validate_enter(ctx.arg(0), ctx.arg(2));
    done(&ctx, programs::VALIDATE_FENTRY, result);
    0
}

#[fexit(function = "tcp_validate_incoming")]
pub fn validate_fexit(ctx: FExitContext) -> i32 {
    // Returns bool: anything but 0 means the segment goes on.
    let passed =
        fexit_ret::<u64>(&ctx, programs::RET_SLOT_VALIDATE_INCOMING).unwrap_or(0) & 0xff != 0;
    let result = try_validate_exit(ctx.arg(0), ctx.arg(1), passed);
    done(&ctx, programs::VALIDATE_FEXIT, result);
    0
}

#[kprobe]
pub fn validate_kprobe(ctx: ProbeContext) -> u32 {
    let sk: u64 = ctx.arg(0).unwrap_or(0);
    let skb: u64 = ctx.arg(1).unwrap_or(0);
    push_call(&ctx, sk, skb);
    let result = try_validate_enter(sk, ctx.arg(2).unwrap_or(0));
    done(&ctx, programs::VALIDATE_KPROBE, result);
    0
}

#[kretprobe]
pub fn validate_kretprobe(ctx: RetProbeContext) -> u32 {
    let Some([sk, skb]) = pop_call(&ctx) else {
        return 0;
    };
    let passed = ctx.ret::<u64>() & 0xff != 0;
    let result = try_validate_exit(sk, skb, passed);
    done(&ctx, programs::VALIDATE_KRETPROBE, result);
    0
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
