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
//!   receiving socket, 6.11+): the `try_kfree_*` functions, called by the one
//!   `kfree_skb` program (`crate::kfree_skb`) for the hooks attached that
//!   way; accepted RSTs, which are not dropped, come from `tcp_reset(sk,
//!   skb)` (fentry or kprobe), else from its tracepoint `tcp:tcp_receive_reset`;
//! - where `kfree_skb` names the reason but not the socket (6.0-6.10),
//!   `validate_incoming`'s drops from the segment alone, told apart by their
//!   call site (`validate_segment`).
//!
//! Sites decided at function entry replicate the kernel's own test from the
//! same inputs (the segment's TCP header and the socket's stored stamps);
//! `tcp_validate_incoming` is judged at its return, when the outcome is known.
//!
//! One file per hook of the attach table (`validate_incoming` with its
//! kretprobe argument stack and its two drop-reason forms, `time_wait`,
//! `syn_recv`, `syn_sent`, `rst_sent`); the segment parser, the RFC 7323
//! test and the record builders are shared.

mod call_stack;
mod records;
mod rfc7323;
mod rst_sent;
mod syn_recv;
mod syn_sent;
mod tcp_header;
mod time_wait;
mod validate_fallback;
mod validate_incoming;
mod validate_segment;

pub(crate) use syn_recv::try_kfree_syn_recv;
pub(crate) use syn_sent::try_kfree_syn_sent;
use tcptrace_common::paws::{PawsOffsets, NO_REASON};
pub(crate) use time_wait::try_kfree_timewait;
pub(crate) use validate_fallback::try_kfree_validate;

#[unsafe(no_mangle)]
pub static PAWS_OFFSETS: PawsOffsets = PawsOffsets::UNSET;

/// Reads one field of `PAWS_OFFSETS` (a read-only global set at load time).
macro_rules! off {
    ($field:ident) => {
        // SAFETY: PAWS_OFFSETS is a static of u32 fields, initialised, and
        // never written once loaded (userspace patches it before the
        // verifier sees it): a volatile read of one field is an ordinary
        // aligned read the compiler may not fold to the compiled-in value.
        unsafe { core::ptr::read_volatile(&raw const $crate::paws::PAWS_OFFSETS.$field) }
    };
}
pub(crate) use off;

/// TCP header flags.
const TH_SYN: u8 = 0x02;
const TH_RST: u8 = 0x04;
const TH_ACK: u8 = 0x10;

/// Whether drop reason `reason` is `want`, a reason this kernel has.
#[inline(always)]
fn is_reason(reason: u32, want: u32) -> bool {
    want != NO_REASON && reason == want
}
