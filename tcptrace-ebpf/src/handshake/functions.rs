//! The function form of the handshake hook, where fentry or kprobes
//! attach: each program runs on one step of an active open only, never on
//! every state change. Entry programs all: the start before the first SYN
//! goes out, the ends before the kernel changes the socket.

use aya_ebpf::{
    macros::{fentry, kprobe},
    programs::{FEntryContext, ProbeContext},
};
use tcptrace_common::programs;

use super::{end_in_syn_sent, ended, started, TCP_ESTABLISHED};
use crate::diag::done;

/// `tcp_connect(struct sock *sk)`: builds and sends the SYN of an active
/// open, in the connecting task, after the port search.
#[fentry(function = "tcp_connect")]
pub fn handshake_connect_fentry(ctx: FEntryContext) -> i32 {
    done(
        &ctx,
        programs::HANDSHAKE_CONNECT_FENTRY,
        started(ctx.arg(0)),
    );
    0
}

#[kprobe]
pub fn handshake_connect_kprobe(ctx: ProbeContext) -> u32 {
    let result = started(ctx.arg(0).unwrap_or(0));
    done(&ctx, programs::HANDSHAKE_CONNECT_KPROBE, result);
    0
}

/// `tcp_finish_connect(struct sock *sk, struct sk_buff *skb)`: SYN_SENT
/// -> ESTABLISHED on the SYN-ACK (softirq, or the task processing its
/// backlog).
#[fentry(function = "tcp_finish_connect")]
pub fn handshake_finish_fentry(ctx: FEntryContext) -> i32 {
    let result = ended(ctx.arg(0), TCP_ESTABLISHED);
    done(&ctx, programs::HANDSHAKE_FINISH_FENTRY, result);
    0
}

#[kprobe]
pub fn handshake_finish_kprobe(ctx: ProbeContext) -> u32 {
    let result = ended(ctx.arg(0).unwrap_or(0), TCP_ESTABLISHED);
    done(&ctx, programs::HANDSHAKE_FINISH_KPROBE, result);
    0
}

/// `sk_error_report(struct sock *sk)`: the socket error is set (RST:
/// ECONNREFUSED, timeout: ETIMEDOUT, ICMP: EHOSTUNREACH...) and the socket
/// is in SYN_SENT or already CLOSE. Runs only on socket errors. Where the
/// kernel lacks it (5.10), the same programs go on `tcp_done(struct sock
/// *sk)`, which the kernel calls after setting the error of a failed
/// handshake, the socket still in SYN_SENT, and once per end of every
/// connection that closes (those return after one map lookup).
#[fentry(function = "sk_error_report")]
pub fn handshake_error_fentry(ctx: FEntryContext) -> i32 {
    let result = end_in_syn_sent(ctx.arg(0), true);
    done(&ctx, programs::HANDSHAKE_ERROR_FENTRY, result);
    0
}

#[kprobe]
pub fn handshake_error_kprobe(ctx: ProbeContext) -> u32 {
    let result = end_in_syn_sent(ctx.arg(0).unwrap_or(0), true);
    done(&ctx, programs::HANDSHAKE_ERROR_KPROBE, result);
    0
}

/// `tcp_close(struct sock *sk, long timeout)`: close() of the last
/// reference, once per socket; a socket still in SYN_SENT is a handshake
/// the application gave up on.
#[fentry(function = "tcp_close")]
pub fn handshake_close_fentry(ctx: FEntryContext) -> i32 {
    let result = end_in_syn_sent(ctx.arg(0), false);
    done(&ctx, programs::HANDSHAKE_CLOSE_FENTRY, result);
    0
}

#[kprobe]
pub fn handshake_close_kprobe(ctx: ProbeContext) -> u32 {
    let result = end_in_syn_sent(ctx.arg(0).unwrap_or(0), false);
    done(&ctx, programs::HANDSHAKE_CLOSE_KPROBE, result);
    0
}

/// `tcp_disconnect(struct sock *sk, int flags)`: shutdown() or
/// connect(AF_UNSPEC) of a socket in SYN_SENT gives its handshake up
/// without closing it (also called after a failed connect(), whose error
/// already ended the handshake).
#[fentry(function = "tcp_disconnect")]
pub fn handshake_disconnect_fentry(ctx: FEntryContext) -> i32 {
    let result = end_in_syn_sent(ctx.arg(0), false);
    done(&ctx, programs::HANDSHAKE_DISCONNECT_FENTRY, result);
    0
}

#[kprobe]
pub fn handshake_disconnect_kprobe(ctx: ProbeContext) -> u32 {
    let result = end_in_syn_sent(ctx.arg(0).unwrap_or(0), false);
    done(&ctx, programs::HANDSHAKE_DISCONNECT_KPROBE, result);
    0
}
