//! The state-change form of the handshake hook: `sock:inet_sock_set_state`
//! on every TCP state change, where neither fentry nor kprobes attach (or
//! under `--attach tracepoint`), when asked for. Only changes from or
//! to SYN_SENT do work; every other returns after comparing the two state
//! arguments.

use aya_ebpf::{
    macros::{btf_tracepoint, tracepoint},
    programs::{BtfTracePointContext, TracePointContext},
};
use tcptrace_common::programs;

use super::{ended, started, tp_field, TCP_CLOSE, TCP_SYN_SENT};
use crate::{diag::done, kernel::read, maps::global};

const IPPROTO_TCP: u16 = 6;

// `inet_sock_set_state`'s record begins, on every kernel that has it
// (4.16+), with the common fields (8 bytes), `const void *skaddr`, `int
// oldstate`, `int newstate`; the fields after them changed (protocol was
// added), so nothing past them is read from the record.
const TP_SKADDR: usize = 8;
const TP_OLDSTATE: usize = 16;
const TP_NEWSTATE: usize = 20;

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
        // MPTCP's own socket changes state through the same tracepoint.
        if old != TCP_CLOSE || read::<u16>(sk, global!(OFFSETS.sock_protocol))? != IPPROTO_TCP {
            return Ok(());
        }
        return started(sk);
    }
    ended(sk, new)
}
