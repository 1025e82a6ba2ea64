//! PAWS rejects of the handshake's third segment against a request sock:
//! `tcp_check_req(sk, skb, req, fastopen, ...)`, or tp_btf `kfree_skb`
//! with reason TCP_RFC7323_PAWS where `tcp_check_req` sets one (6.15+).

use aya_ebpf::{
    macros::{fentry, kprobe},
    programs::{FEntryContext, ProbeContext},
};
use tcptrace_common::{
    paws::{tcp_state, PawsSite, PAWS_RST, PAWS_TS_RECENT_UNKNOWN},
    programs,
};

use super::{
    is_reason, off,
    records::{send_paws, sock_state, Segment},
    tcp_header::skb_tcp_header,
    TH_ACK, TH_RST,
};
use crate::{
    diag::done,
    kernel::{read, sock_flow, sock_netns},
    packet::segment_flow,
};

#[inline(always)]
fn try_check_req(skb: u64, req: u64, fastopen: bool) -> Result<(), i64> {
    let h = skb_tcp_header(skb)?;
    if !h.has_ts {
        return Ok(());
    }
    let ts_recent: u32 = read(req, off!(req_ts_recent))?;
    // The request's stamp is taken as "now minus its timeout": never 24 days
    // old; an RST passes only after a minute of SYN-ACK backoff, which this
    // does not model (RSTs are reported as rejected).
    if (ts_recent.wrapping_sub(h.tsval) as i32) <= 0 || ts_recent == 0 {
        return Ok(());
    }
    let rst = h.has(TH_RST);
    // An ACK that does not acknowledge our SYN-ACK is answered with a RST
    // before the PAWS verdict counts.
    if h.has(TH_ACK) && !rst && !fastopen {
        let snt_isn: u32 = read(req, off!(treq_snt_isn))?;
        if h.ack_seq != snt_isn.wrapping_add(1) {
            return Ok(());
        }
    }
    let flags = if rst { PAWS_RST } else { 0 };
    send_paws(
        sock_netns(req),
        sock_flow(req)?,
        PawsSite::SynRecv,
        tcp_state::NEW_SYN_RECV,
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

/// SYN-RECV in the fallback (kernels whose `tcp_check_req` sets a drop
/// reason): the skb is freed against the listener, so the flow comes from
/// the packet and the request's `ts_recent` is not known.
#[inline(always)]
pub(crate) fn try_kfree_syn_recv(skb: u64, reason: u32, listener: u64) -> Result<(), i64> {
    if !is_reason(reason, off!(reason_paws)) || listener == 0 {
        return Ok(());
    }
    if sock_state(listener)? != tcp_state::LISTEN {
        return Ok(());
    }
    let h = skb_tcp_header(skb)?;
    let mut flags = PAWS_TS_RECENT_UNKNOWN;
    if h.has(TH_RST) {
        flags |= PAWS_RST;
    }
    send_paws(
        sock_netns(listener),
        segment_flow(skb)?,
        PawsSite::SynRecv,
        tcp_state::NEW_SYN_RECV,
        Segment {
            skb,
            tsval: h.tsval,
            tsecr: h.tsecr,
        },
        0,
        flags,
    );
    Ok(())
}

#[fentry(function = "tcp_check_req")]
pub fn check_req_fentry(ctx: FEntryContext) -> i32 {
    let fastopen = ctx.arg::<u64>(3) & 0xff != 0;
    let result = try_check_req(ctx.arg(1), ctx.arg(2), fastopen);
    done(&ctx, programs::CHECK_REQ_FENTRY, result);
    0
}

#[kprobe]
pub fn check_req_kprobe(ctx: ProbeContext) -> u32 {
    let fastopen = ctx.arg::<u64>(3).unwrap_or(0) & 0xff != 0;
    let result = try_check_req(ctx.arg(1).unwrap_or(0), ctx.arg(2).unwrap_or(0), fastopen);
    done(&ctx, programs::CHECK_REQ_KPROBE, result);
    0
}
