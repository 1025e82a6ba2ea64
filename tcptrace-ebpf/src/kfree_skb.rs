//! The one program on tp_btf `kfree_skb(skb, location, reason, rx_sk)`
//! (rx_sk 6.11+): every hook that reads drop reasons attaches through it
//! (`listen_overflow`, and the drop-reason form of `validate_incoming`,
//! `paws_time_wait`, `paws_syn_recv`, `paws_syn_sent`), so a freed skb runs
//! one program, not one per hook. Userspace sets the hooks it serves in
//! `KFREE_SKB_FAMILIES`; each family's function checks its own reasons
//! first and returns at once for every other one.

use aya_ebpf::{
    macros::{btf_tracepoint, map},
    maps::Array,
    programs::BtfTracePointContext,
};
use tcptrace_common::{maps::kfree_skb_families as family, programs};

use crate::{diag::done, paws, syn};

/// The families served, a bitmask in slot 0 (written by userspace as hooks
/// attach; 0 until then).
#[map(name = "KFREE_SKB_FAMILIES")]
static FAMILIES: Array<u32> = Array::with_max_entries(1, 0);

#[btf_tracepoint(function = "kfree_skb")]
pub fn kfree_skb_btf(ctx: BtfTracePointContext) -> i32 {
    // Every family reads the receiving socket: most frees (consumed skbs
    // are not freed here, but drops outside a socket are) end here.
    let sk: u64 = ctx.arg(3);
    if sk == 0 {
        return 0;
    }
    let on = FAMILIES.get(0).copied().unwrap_or(0);
    let result = dispatch(on, ctx.arg(0), ctx.arg::<u64>(2) as u32, sk);
    done(&ctx, programs::KFREE_SKB_BTF, result);
    0
}

/// Runs each family that is on; all run even when one fails (a PAWS
/// reason is read by three of them, each for its own socket state).
#[inline(always)]
fn dispatch(on: u32, skb: u64, reason: u32, sk: u64) -> Result<(), i64> {
    let mut failed = 0;
    if on & family::LISTEN_OVERFLOW != 0 {
        failed |= listen_overflow(skb, reason, sk);
    }
    if on & family::VALIDATE != 0 {
        failed |= validate(skb, reason, sk);
    }
    if on & family::TIME_WAIT != 0 {
        failed |= time_wait(skb, reason, sk);
    }
    if on & family::SYN_RECV != 0 {
        failed |= syn_recv(skb, reason, sk);
    }
    if on & family::SYN_SENT != 0 {
        failed |= syn_sent(skb, reason, sk);
    }
    if failed != 0 {
        Err(failed)
    } else {
        Ok(())
    }
}

// One BPF function per family (not inlined into one body): each compiles
// as it did in a program of its own, and the verifier checks them one by
// one. They return the helper error of a failed read, or 0.

#[inline(never)]
fn listen_overflow(skb: u64, reason: u32, sk: u64) -> i64 {
    syn::try_kfree_skb(skb, reason, sk).err().unwrap_or(0)
}

#[inline(never)]
fn validate(skb: u64, reason: u32, sk: u64) -> i64 {
    paws::try_kfree_validate(skb, reason, sk).err().unwrap_or(0)
}

#[inline(never)]
fn time_wait(skb: u64, reason: u32, sk: u64) -> i64 {
    paws::try_kfree_timewait(skb, reason, sk).err().unwrap_or(0)
}

#[inline(never)]
fn syn_recv(skb: u64, reason: u32, sk: u64) -> i64 {
    paws::try_kfree_syn_recv(skb, reason, sk).err().unwrap_or(0)
}

#[inline(never)]
fn syn_sent(skb: u64, reason: u32, sk: u64) -> i64 {
    paws::try_kfree_syn_sent(skb, reason, sk).err().unwrap_or(0)
}
