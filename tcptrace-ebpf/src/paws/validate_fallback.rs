//! The drop-reason form of `validate_incoming` (6.11+): tp_btf `kfree_skb`
//! with the reasons `tcp_validate_incoming` gives (PAWS, RST challenged, RST
//! out of window), which runs only on drops, where a hook on the function
//! runs for every slow-path segment. Accepted RSTs are freed without a
//! reason: `tcp_reset(sk, skb)` shows them, hooked with fentry or a kprobe
//! where either attaches (it runs only on resets), else through its
//! tracepoint `tcp:tcp_receive_reset`, which has the socket but not the
//! segment.

use aya_ebpf::{
    macros::{btf_tracepoint, fentry, kprobe, tracepoint},
    programs::{BtfTracePointContext, FEntryContext, ProbeContext, TracePointContext},
};
use tcptrace_common::{
    paws::{tcp_state, PawsSite, RstVerdict, PAWS_OLD_ACK, RST_SEQ_INFERRED},
    programs,
};

use super::{
    is_reason, off,
    records::{receive_window, rst_socket, send_paws, send_rst, sock_state, Segment},
    tcp_header::skb_tcp_header,
    validate_incoming::receive_reset_sk,
    TH_RST, TH_SYN,
};
use crate::{
    diag::done,
    kernel::{read, sock_flow, sock_netns},
};

#[inline(always)]
pub(crate) fn try_kfree_validate(skb: u64, reason: u32, sk: u64) -> Result<(), i64> {
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
            sock_netns(sk),
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
    send_rst(
        rst_socket(sk, skb)?,
        skb,
        state,
        verdict,
        h.seq,
        receive_window(sk)?,
        0,
    );
    Ok(())
}

/// An accepted RST with its segment, at `tcp_reset(sk, skb)`. The kernel
/// also calls it to abort a socket that receives data after it was shut
/// for reading (TCPAbortOnData): that segment has no RST flag, and no RST
/// was received. SYN-SENT's RSTs are not `tcp_validate_incoming`'s.
#[inline(always)]
fn try_reset_emit(sk: u64, skb: u64) -> Result<(), i64> {
    let h = skb_tcp_header(skb)?;
    if !h.has(TH_RST) {
        return Ok(());
    }
    let state = sock_state(sk)?;
    if state == tcp_state::SYN_SENT {
        return Ok(());
    }
    send_rst(
        rst_socket(sk, skb)?,
        skb,
        state,
        RstVerdict::Accepted,
        h.seq,
        receive_window(sk)?,
        0,
    );
    Ok(())
}

/// An accepted RST seen through the tracepoint: the socket's state and
/// window as `tcp_reset` saw them; the segment's sequence number is
/// inferred as `rcv_nxt`. The tracepoint cannot tell a TCPAbortOnData
/// abort from a received RST.
#[inline(always)]
fn try_receive_reset_emit(sk: u64) -> Result<(), i64> {
    let state = sock_state(sk)?;
    if state == tcp_state::SYN_SENT {
        return Ok(());
    }
    let window = receive_window(sk)?;
    send_rst(
        rst_socket(sk, 0)?,
        0,
        state,
        RstVerdict::Accepted,
        window[0],
        window,
        RST_SEQ_INFERRED,
    );
    Ok(())
}

/// Accepted RSTs in the drop-reason fallback: the kernel frees them without
/// a reason, so `tcp_reset` (this tracepoint) is what shows them.
#[tracepoint(category = "tcp", name = "tcp_receive_reset")]
pub fn receive_reset_emit(ctx: TracePointContext) -> u32 {
    let result = receive_reset_sk(&ctx).and_then(try_receive_reset_emit);
    done(&ctx, programs::RECEIVE_RESET_EMIT, result);
    0
}

/// tp_btf twin of [`receive_reset_emit`]: tcp_receive_reset(struct sock *sk).
#[btf_tracepoint(function = "tcp_receive_reset")]
pub fn receive_reset_emit_btf(ctx: BtfTracePointContext) -> i32 {
    let result = try_receive_reset_emit(ctx.arg(0));
    done(&ctx, programs::RECEIVE_RESET_EMIT_BTF, result);
    0
}

#[fentry(function = "tcp_reset")]
pub fn reset_fentry(ctx: FEntryContext) -> i32 {
    let result = try_reset_emit(ctx.arg(0), ctx.arg(1));
    done(&ctx, programs::RESET_FENTRY, result);
    0
}

#[kprobe]
pub fn reset_kprobe(ctx: ProbeContext) -> u32 {
    let result = try_reset_emit(ctx.arg(0).unwrap_or(0), ctx.arg(1).unwrap_or(0));
    done(&ctx, programs::RESET_KPROBE, result);
    0
}
