//! PAWS rejects by TIME_WAIT sockets: `tcp_timewait_state_process(tw, skb,
//! th, ...)`, or tp_btf `kfree_skb` with reason TCP_RFC7323_TW_PAWS (6.16+).

use aya_ebpf::{
    macros::{fentry, kprobe},
    programs::{FEntryContext, ProbeContext},
};
use tcptrace_common::{
    paws::{tcp_state, PawsSite, PAWS_RST},
    programs,
};

use super::{
    is_reason, off,
    records::{send_paws, Segment},
    rfc7323::paws_rejects,
    tcp_header::{skb_tcp_header, tcp_header},
    TH_RST,
};
use crate::{
    diag::done,
    kernel::{read, sock_flow, sock_netns},
};

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
        sock_netns(tw),
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

/// The drop-reason fallback: the segment was dropped against timewait
/// socket `tw`.
#[inline(always)]
pub(crate) fn try_kfree_timewait(skb: u64, reason: u32, tw: u64) -> Result<(), i64> {
    if !is_reason(reason, off!(reason_tw_paws)) || tw == 0 {
        return Ok(());
    }
    let h = skb_tcp_header(skb)?;
    let flags = if h.has(TH_RST) { PAWS_RST } else { 0 };
    send_paws(
        sock_netns(tw),
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

#[fentry(function = "tcp_timewait_state_process")]
pub fn timewait_fentry(ctx: FEntryContext) -> i32 {
    let result = try_timewait(ctx.arg(0), ctx.arg(1), ctx.arg(2));
    done(&ctx, programs::TIMEWAIT_FENTRY, result);
    0
}

#[kprobe]
pub fn timewait_kprobe(ctx: ProbeContext) -> u32 {
    let result = try_timewait(
        ctx.arg(0).unwrap_or(0),
        ctx.arg(1).unwrap_or(0),
        ctx.arg(2).unwrap_or(0),
    );
    done(&ctx, programs::TIMEWAIT_KPROBE, result);
    0
}
