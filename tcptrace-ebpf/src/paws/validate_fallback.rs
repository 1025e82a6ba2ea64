//! The drop-reason fallback of `validate_incoming`, for kernels where
//! neither fentry nor kprobes attach: tp_btf `kfree_skb` with the reasons
//! `tcp_validate_incoming` gives (PAWS, RST challenged, RST out of window),
//! and `tcp:tcp_receive_reset` for accepted RSTs, which the kernel frees
//! without a reason.

use aya_ebpf::{
    macros::{btf_tracepoint, tracepoint},
    programs::{BtfTracePointContext, TracePointContext},
};
use tcptrace_common::{
    paws::{tcp_state, PawsSite, RstVerdict, PAWS_OLD_ACK, RST_SEQ_INFERRED},
    programs,
};

use super::{
    is_reason, off,
    records::{receive_window, send_paws, send_rst, sock_state, Segment},
    tcp_header::skb_tcp_header,
    validate_incoming::receive_reset_sk,
    TH_RST, TH_SYN,
};
use crate::{
    diag::done,
    kernel::{read, sock_flow},
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

/// An accepted RST: the socket's state and window as `tcp_reset` saw them;
/// the segment's sequence number is inferred as `rcv_nxt`.
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
