//! PAWS rejects of SYN-ACKs on an active open: `tcp_rcv_state_process(sk,
//! skb)` in SYN-SENT, where the SYN-ACK must echo a TSecr between our SYN's
//! stamp (retrans_stamp) and now; or tp_btf `kfree_skb` with reason
//! TCP_RFC7323_PAWS where SYN-SENT drops carry one (6.12+).

use aya_ebpf::{
    macros::{fentry, kprobe},
    programs::{FEntryContext, ProbeContext},
};
use tcptrace_common::{
    paws::{tcp_state, PawsSite},
    programs,
};

use super::{
    is_reason, off,
    records::{send_paws, sock_state, Segment},
    rfc7323::{before32, now_monotonic_ns},
    tcp_header::skb_tcp_header,
    TH_ACK,
};
use crate::{
    diag::done,
    kernel::{read, sock_flow, sock_netns},
};

#[inline(always)]
fn try_syn_sent(sk: u64, skb: u64) -> Result<(), i64> {
    if sock_state(sk)? != tcp_state::SYN_SENT {
        return Ok(());
    }
    let h = skb_tcp_header(skb)?;
    if !h.has(TH_ACK) || !h.has_ts || h.tsecr == 0 {
        return Ok(());
    }
    // An unacceptable ACK is reset before the timestamp is looked at.
    let snd_una: u32 = read(sk, off!(tp_snd_una))?;
    let snd_nxt: u32 = read(sk, off!(tp_snd_nxt))?;
    if !before32(snd_una, h.ack_seq) || before32(snd_nxt, h.ack_seq) {
        return Ok(());
    }
    let tsoffset: u32 = read(sk, off!(tp_tsoffset))?;
    let tsecr = h.tsecr.wrapping_sub(tsoffset);
    if tsecr == 0 {
        return Ok(());
    }
    let sent: u32 = read(sk, off!(tp_retrans_stamp))?;
    let now_ms = (now_monotonic_ns() / 1_000_000) as u32;
    // between(tsecr, sent, now)
    if now_ms.wrapping_sub(sent) >= tsecr.wrapping_sub(sent) {
        return Ok(());
    }
    send_paws(
        sock_netns(sk),
        sock_flow(sk)?,
        PawsSite::SynSent,
        tcp_state::SYN_SENT,
        Segment {
            skb,
            tsval: h.tsval,
            tsecr,
        },
        sent,
        0,
    );
    Ok(())
}

/// The drop-reason fallback: the SYN-ACK was dropped against socket `sk`.
#[inline(always)]
pub(crate) fn try_kfree_syn_sent(skb: u64, reason: u32, sk: u64) -> Result<(), i64> {
    if !is_reason(reason, off!(reason_paws)) || sk == 0 {
        return Ok(());
    }
    if sock_state(sk)? != tcp_state::SYN_SENT {
        return Ok(());
    }
    let h = skb_tcp_header(skb)?;
    // Without ACK this is the crossed-SYN check, which counts nothing.
    if !h.has(TH_ACK) {
        return Ok(());
    }
    let tsoffset: u32 = read(sk, off!(tp_tsoffset))?;
    send_paws(
        sock_netns(sk),
        sock_flow(sk)?,
        PawsSite::SynSent,
        tcp_state::SYN_SENT,
        Segment {
            skb,
            tsval: h.tsval,
            tsecr: h.tsecr.wrapping_sub(tsoffset),
        },
        read(sk, off!(tp_retrans_stamp))?,
        0,
    );
    Ok(())
}

#[fentry(function = "tcp_rcv_state_process")]
pub fn syn_sent_fentry(ctx: FEntryContext) -> i32 {
    let result = try_syn_sent(ctx.arg(0), ctx.arg(1));
    done(&ctx, programs::SYN_SENT_FENTRY, result);
    0
}

#[kprobe]
pub fn syn_sent_kprobe(ctx: ProbeContext) -> u32 {
    let result = try_syn_sent(ctx.arg(0).unwrap_or(0), ctx.arg(1).unwrap_or(0));
    done(&ctx, programs::SYN_SENT_KPROBE, result);
    0
}
