//! The drop-reason form of `validate_incoming` where `kfree_skb` does not
//! pass the receiving socket (6.0-6.10): tp_btf `kfree_skb(skb, location,
//! reason)`, which runs only on drops, where a hook on the function runs
//! for every slow-path segment.
//!
//! A drop is `tcp_validate_incoming`'s when its call site (`location`) lies
//! in that function's code, found by userspace in kallsyms. Where fentry or
//! kprobes attach, the functions the kernel calls on the way to two of its
//! drops name the socket, and the event is the other form's:
//! `tcp_oow_rate_limited(net, skb, mib, &tp->last_oow_ack_time)` before
//! every PAWS drop, `tcp_send_challenge_ack(sk)` before a challenged RST's.
//! Otherwise (an ignored RST, or no function hooks) the event is read from
//! the segment alone (`SOCKET_UNREAD`): no state, stored stamp or receive
//! window; the side of the window an ignored RST fell on where the drop
//! reason tells it (where the kernel has TCP_OLD_SEQUENCE; 6.1 has not).
//! Accepted RSTs are freed without a reason: `tcp_reset(sk, skb)` or its
//! tracepoint shows them, as in the other drop-reason form.

use aya_ebpf::{
    macros::{btf_tracepoint, fentry, kprobe, map},
    maps::PerCpuArray,
    programs::{BtfTracePointContext, FEntryContext, ProbeContext},
};
use tcptrace_common::{
    paws::{
        PawsSite, RstVerdict, NO_REASON, PAWS_OLD_ACK, PAWS_TS_RECENT_UNKNOWN, RST_BELOW_WINDOW,
        RST_BEYOND_WINDOW, SOCKET_UNREAD,
    },
    programs,
};

use super::{
    is_reason, off,
    records::{receive_window, rst_socket, send_paws, send_rst, sock_state, Segment},
    tcp_header::skb_tcp_header,
    TH_RST,
};
use crate::{
    diag::done,
    kernel::{read, sock_flow, sock_netns},
    maps::global,
    packet::segment_flow,
};

/// The socket named on the way to a drop: with its segment (`skb`, PAWS)
/// or without (0, a challenge ACK).
#[derive(Clone, Copy)]
pub struct Dropping {
    skb: u64,
    sk: u64,
}

/// One per CPU: the drop follows the call that names its socket on the
/// same CPU. Whatever ran between them on that CPU (a softirq preempting a
/// socket's backlog) leaves another segment or socket here, which the drop
/// does not take (see [`named_socket`]).
#[map(name = "PAWS_DROPPING")]
static DROPPING: PerCpuArray<Dropping> = PerCpuArray::with_max_entries(1, 0);

#[btf_tracepoint(function = "kfree_skb")]
pub fn kfree_skb_segment(ctx: BtfTracePointContext) -> i32 {
    let reason = ctx.arg::<u64>(2) as u32;
    if !validate_reason(reason) || !in_validate(ctx.arg(1)) {
        return 0;
    }
    let skb: u64 = ctx.arg(0);
    let result = try_kfree_segment(skb, reason, named_socket(skb, reason));
    done(&ctx, programs::KFREE_SKB_SEGMENT, result);
    0
}

#[fentry(function = "tcp_oow_rate_limited")]
pub fn seg_oow_fentry(ctx: FEntryContext) -> i32 {
    note_oow(ctx.arg(1), ctx.arg(3));
    0
}

#[kprobe]
pub fn seg_oow_kprobe(ctx: ProbeContext) -> u32 {
    note_oow(ctx.arg(1).unwrap_or(0), ctx.arg(3).unwrap_or(0));
    0
}

#[fentry(function = "tcp_send_challenge_ack")]
pub fn seg_challenge_fentry(ctx: FEntryContext) -> i32 {
    note(0, ctx.arg(0));
    0
}

#[kprobe]
pub fn seg_challenge_kprobe(ctx: ProbeContext) -> u32 {
    note(0, ctx.arg(0).unwrap_or(0));
    0
}

/// `tcp_oow_rate_limited` for segment `skb`: its last argument points into
/// the socket (`tcp_sock.last_oow_ack_time`) when `tcp_validate_incoming`
/// calls it; other callers pass a TIME_WAIT or request socket's field,
/// whose segments are not dropped in `tcp_validate_incoming`.
#[inline(always)]
fn note_oow(skb: u64, last_oow_ack_time: u64) {
    if last_oow_ack_time != 0 {
        note(
            skb,
            last_oow_ack_time - u64::from(off!(tp_last_oow_ack_time)),
        );
    }
}

#[inline(always)]
fn note(skb: u64, sk: u64) {
    if let Some(slot) = DROPPING.get_ptr_mut(0) {
        // SAFETY: this CPU's value of a per-CPU array, valid while the
        // program runs; a whole value is written.
        unsafe { *slot = Dropping { skb, sk } };
    }
}

/// The socket named for the segment `skb` being dropped with `reason`, or
/// 0: a PAWS drop takes the socket noted with this very segment; a
/// challenged RST the socket noted by the challenge ACK if its ports are
/// the segment's. Either way the note is used up.
#[inline(always)]
fn named_socket(skb: u64, reason: u32) -> u64 {
    let Some(slot) = DROPPING.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: as in `note`; the value is copied out, then cleared.
    let noted = unsafe {
        let noted = *slot;
        *slot = Dropping { skb: 0, sk: 0 };
        noted
    };
    if noted.sk == 0 {
        return 0;
    }
    let paws = is_reason(reason, off!(reason_paws)) || is_reason(reason, off!(reason_paws_ack));
    if paws && noted.skb == skb {
        return noted.sk;
    }
    if !is_reason(reason, off!(reason_reset)) || noted.skb != 0 {
        return 0;
    }
    match (sock_flow(noted.sk), segment_flow(skb)) {
        (Ok(s), Ok(f)) if s.sport == f.sport && s.dport == f.dport => noted.sk,
        _ => 0,
    }
}

/// Whether `reason` is one `tcp_validate_incoming` drops with.
#[inline(always)]
fn validate_reason(reason: u32) -> bool {
    is_reason(reason, off!(reason_paws))
        || is_reason(reason, off!(reason_paws_ack))
        || is_reason(reason, off!(reason_reset))
        || is_reason(reason, off!(reason_old_sequence))
        || is_reason(reason, off!(reason_invalid_sequence))
        || is_reason(reason, off!(reason_invalid_end_sequence))
}

/// Whether call site `location` lies in `tcp_validate_incoming`'s code.
#[inline(always)]
fn in_validate(location: u64) -> bool {
    let [start, end, cold_start, cold_end] = off!(validate_text);
    (start <= location && location < end) || (cold_start <= location && location < cold_end)
}

/// Network namespace inode of a received segment, from the device it came
/// in on, else from its route's (a local route's device is the namespace's
/// loopback); 0 when neither is readable.
#[inline(always)]
fn skb_netns(skb: u64) -> u32 {
    let mut dev = read::<u64>(skb, off!(skb_dev)).unwrap_or(0);
    if dev == 0 {
        // The low bit of `_skb_refdst` flags a reference not taken.
        let dst = read::<u64>(skb, off!(skb_refdst)).unwrap_or(0) & !1;
        if dst != 0 {
            dev = read::<u64>(dst, off!(dst_dev)).unwrap_or(0);
        }
    }
    if dev == 0 {
        return 0;
    }
    let Ok(net) = read::<u64>(dev, off!(dev_nd_net)) else {
        return 0;
    };
    read::<u32>(net, global!(OFFSETS.net_ns_inum)).unwrap_or(0)
}

/// The event of a drop: from the socket where one was named (`sk`), else
/// from the segment alone.
#[inline(always)]
fn try_kfree_segment(skb: u64, reason: u32, sk: u64) -> Result<(), i64> {
    let h = skb_tcp_header(skb)?;
    let paws_ack = is_reason(reason, off!(reason_paws_ack));
    if is_reason(reason, off!(reason_paws)) || paws_ack {
        // An RST is not dropped for PAWS ("accepted even if it did not
        // pass"); a SYN is, and counted (before 6.12, as here).
        if h.has(TH_RST) {
            return Ok(());
        }
        let seg = Segment {
            skb,
            tsval: h.tsval,
            tsecr: h.tsecr,
        };
        let old_ack = if paws_ack { PAWS_OLD_ACK } else { 0 };
        let site = PawsSite::Established;
        if sk != 0 {
            let ts_recent = read(sk, off!(tp_ts_recent))?;
            send_paws(
                sock_netns(sk),
                sock_flow(sk)?,
                site,
                sock_state(sk)?,
                seg,
                ts_recent,
                old_ack,
            );
        } else {
            let unread = PAWS_TS_RECENT_UNKNOWN | SOCKET_UNREAD | old_ack;
            send_paws(skb_netns(skb), segment_flow(skb)?, site, 0, seg, 0, unread);
        }
        return Ok(());
    }
    if !h.has(TH_RST) {
        return Ok(());
    }
    // Where the kernel has TCP_OLD_SEQUENCE (not 6.1), TCP_INVALID_SEQUENCE
    // is the far side only; before, it is either side.
    let (verdict, side) = if is_reason(reason, off!(reason_reset)) {
        (RstVerdict::ChallengeAck, 0)
    } else if is_reason(reason, off!(reason_old_sequence)) {
        (RstVerdict::Ignored, RST_BELOW_WINDOW)
    } else if off!(reason_old_sequence) != NO_REASON {
        (RstVerdict::Ignored, RST_BEYOND_WINDOW)
    } else {
        (RstVerdict::Ignored, 0)
    };
    if sk != 0 {
        let state = sock_state(sk)?;
        let window = receive_window(sk)?;
        send_rst(rst_socket(sk, skb)?, skb, state, verdict, h.seq, window, 0);
        return Ok(());
    }
    send_rst(
        (skb_netns(skb), segment_flow(skb)?),
        skb,
        0,
        verdict,
        h.seq,
        [0; 3],
        SOCKET_UNREAD | side,
    );
    Ok(())
}
