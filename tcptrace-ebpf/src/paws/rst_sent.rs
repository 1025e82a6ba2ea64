//! RSTs this host sends: `tcp:tcp_send_reset`, counted by `sk_rst_reason`
//! (slot 0 on kernels without one) in a per-CPU array.

use aya_ebpf::{
    macros::{btf_tracepoint, map, tracepoint},
    maps::PerCpuArray,
    programs::{BtfTracePointContext, TracePointContext},
};
use tcptrace_common::paws::RST_SENT_SLOTS;

use super::off;
use crate::maps::bump;

/// RSTs this host sent, by `sk_rst_reason` (slot 0 on kernels without one).
#[map(name = "RST_SENT")]
static RST_SENT: PerCpuArray<u64> = PerCpuArray::with_max_entries(RST_SENT_SLOTS, 0);

#[inline(always)]
fn count_reset_sent(reason: u32) {
    bump(&RST_SENT, reason.min(RST_SENT_SLOTS - 1));
}

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
