//! Building and sending the family's records: a PAWS reject, an RST verdict.

use tcptrace_common::{
    paws::{PawsEvent, PawsSite, RstEvent, RstVerdict},
    EventHeader, EventKind, Flow,
};

use super::off;
use crate::{
    emit::{commit, now},
    filter,
    kernel::{read, sock_flow, sock_netns},
    maps::{bump, EVENTS, LOST},
    packet::{capture, local_port},
};

/// Header for events driven by an incoming segment: these run in softirq
/// (or for the socket owner's backlog), so no process is attached to them
/// (and the task filters --pid/--comm/--cgroup exclude them).
#[inline(always)]
fn packet_header(kind: EventKind, netns: u32) -> EventHeader {
    EventHeader {
        kind: kind as u8,
        netns,
        ts_ns: now(),
        ..EventHeader::default()
    }
}

/// `sk_state` of a socket (any of sock, timewait or request sock).
#[inline(always)]
pub fn sock_state(sk: u64) -> Result<u8, i64> {
    read(sk, off!(skc_state))
}

/// The segment behind a PAWS reject: its skb and what its header said.
#[derive(Clone, Copy)]
pub struct Segment {
    pub skb: u64,
    pub tsval: u32,
    pub tsecr: u32,
}

/// Reserves and fills a PawsEvent in the ring buffer (the record with its
/// packet is too large to build on the BPF stack); `netns` is the socket's,
/// or the segment's where the socket is not known.
#[inline(always)]
pub fn send_paws(
    netns: u32,
    flow: Flow,
    site: PawsSite,
    state: u8,
    seg: Segment,
    ts_recent: u32,
    flags: u8,
) {
    let header = packet_header(EventKind::PawsReject, netns);
    if !filter::allows(&header, &flow) {
        return;
    }
    let Some(mut slot) = EVENTS.reserve::<PawsEvent>(0) else {
        bump(&LOST, EventKind::PawsReject as u32);
        return;
    };
    let ev = slot.as_mut_ptr();
    // SAFETY: `ev` is this program's ring-buffer reservation of one
    // PawsEvent, exclusively ours until `commit`. Every field, padding
    // included, is written through the raw pointer, and `capture` only
    // writes the packet it is handed, so nothing uninitialised is read.
    unsafe {
        (*ev).header = header;
        (*ev).flow = flow;
        (*ev).tsval = seg.tsval;
        (*ev).tsecr = seg.tsecr;
        (*ev).ts_recent = ts_recent;
        (*ev).site = site as u8;
        (*ev).state = state;
        (*ev).flags = flags;
        (*ev)._pad = 0;
        capture(seg.skb, &mut (*ev).packet);
    }
    commit(slot);
}

/// The socket's receive window as an RST is judged: rcv_nxt, rcv_wup, rcv_wnd.
#[inline(always)]
pub fn receive_window(sk: u64) -> Result<[u32; 3], i64> {
    Ok([
        read(sk, off!(tp_rcv_nxt))?,
        read(sk, off!(tp_rcv_wup))?,
        read(sk, off!(tp_rcv_wnd))?,
    ])
}

/// The namespace and flow of socket `sk`, which received the RST in `skb`
/// (0 when unknown).
#[inline(always)]
pub fn rst_socket(sk: u64, skb: u64) -> Result<(u32, Flow), i64> {
    let mut flow = sock_flow(sk)?;
    // An accepted RST has unhashed the socket by the time fexit reads it
    // (local port 0): the segment still names it.
    if flow.sport == 0 && skb != 0 {
        flow.sport = local_port(skb);
    }
    Ok((sock_netns(sk), flow))
}

/// Reserves and fills an RstEvent: `(netns, flow)` the socket's
/// ([`rst_socket`]), or the segment's where the socket is not known; `skb`
/// (0 when unknown) supplies the captured packet.
#[inline(always)]
pub fn send_rst(
    (netns, flow): (u32, Flow),
    skb: u64,
    state: u8,
    verdict: RstVerdict,
    seq: u32,
    [rcv_nxt, rcv_wup, rcv_wnd]: [u32; 3],
    flags: u8,
) {
    let header = packet_header(EventKind::Rst, netns);
    if !filter::allows(&header, &flow) {
        return;
    }
    let Some(mut slot) = EVENTS.reserve::<RstEvent>(0) else {
        bump(&LOST, EventKind::Rst as u32);
        return;
    };
    let ev = slot.as_mut_ptr();
    // SAFETY: as in `send_paws`, for this program's reservation of one
    // RstEvent.
    unsafe {
        (*ev).header = header;
        (*ev).flow = flow;
        (*ev).seq = seq;
        (*ev).rcv_nxt = rcv_nxt;
        (*ev).rcv_wup = rcv_wup;
        (*ev).rcv_wnd = rcv_wnd;
        (*ev).verdict = verdict as u8;
        (*ev).state = state;
        (*ev).flags = flags;
        (*ev)._pad = [0; 5];
        capture(skb, &mut (*ev).packet);
    }
    commit(slot);
}
