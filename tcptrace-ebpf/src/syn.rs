//! SYN family: SYNs a listener leaves unanswered, accept-queue overflows on
//! the third ACK, SYN-ACK retransmits, and who called listen().
//!
//! No SYN-stage drop has a drop reason, so the verdict is inferred: the entry
//! of `tcp_v4_conn_request` / `tcp_v6_conn_request` opens a per-CPU slot for
//! the SYN (softirqs do not nest on one CPU), `tcp_make_synack` marks it
//! answered, and the exit reports it as dropped if nothing answered it. The
//! cause comes from the listener's queues at entry.
//!
//! Overflows on the third ACK: `tcp_v{4,6}_syn_recv_sock` returning NULL while
//! the accept queue is full, or (kernels with the drop reason
//! TCP_LISTEN_OVERFLOW) skb:kfree_skb with that reason.
//!
//! Every tracepoint program has a tp_btf twin reading the tracepoint's typed
//! arguments (`*_btf`): userspace attaches the twin where the kernel has the
//! tracepoint's BTF, because plain tracepoints share the per-CPU recursion
//! guard with every other tracer's programs and are skipped whenever one of
//! them runs on that CPU; tp_btf programs are guarded per program. Both
//! produce the same records.

use aya_ebpf::{
    helpers::{bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid},
    macros::{btf_tracepoint, fentry, fexit, kprobe, kretprobe, map, tracepoint},
    maps::{LruHashMap, LruPerCpuHashMap, PerCpuArray},
    programs::{
        BtfTracePointContext, FEntryContext, FExitContext, ProbeContext, RetProbeContext,
        TracePointContext,
    },
};
use tcptrace_common::{
    event::AF_INET6,
    programs,
    statemaps::StateMap,
    syn::{flags, ListenerCounters, ListenerKey, SynAnswer, SynDropCause, SynEvent, SynOffsets},
    EventHeader, EventKind, Flow, Stat,
};

use crate::{
    emit::now,
    filter,
    kernel::{fexit_ret, read, sock_flow, sock_netns, tcp_sock_of_fd},
    maps::{bump, count, global, map_full, EVENTS, LOST},
    packet::{capture, segment_flow, segment_seq},
};

#[unsafe(no_mangle)]
pub static SYN_OFFSETS: SynOffsets = SynOffsets {
    sk_ack_backlog: 0,
    sk_max_ack_backlog: 0,
    icsk_qlen: 0,
    sk_socket: 0,
    socket_inode: 0,
    inode_ino: 0,
    net_syncookies: 0,
    net_max_syn_backlog: 0,
    net_abort_on_overflow: 0,
    req_num_retrans: 0,
    synack_cookie: 0,
    synack_fastopen: 0,
    treq_rcv_isn: 0,
    tp_rtx_skaddr: 0,
    tp_rtx_req: 0,
    tp_kfree_skbaddr: 0,
    tp_kfree_rx_sk: 0,
    tp_kfree_reason: 0,
    reason_listen_overflow: 0,
};

/// One field of `SYN_OFFSETS`, read so the compiler cannot fold it.
macro_rules! off {
    ($field:ident) => {
        // SAFETY: SYN_OFFSETS is a static of u32 fields, initialised, and
        // never written once loaded (userspace patches it before the
        // verifier sees it): a volatile read of one field is an ordinary
        // aligned read the compiler may not fold to the compiled-in value.
        unsafe { core::ptr::read_volatile(&raw const SYN_OFFSETS.$field) }
    };
}

/// A field of a tracepoint record at an offset read from its format file.
#[inline(always)]
fn tp_read<T>(ctx: &TracePointContext, offset: u32) -> Result<T, i64> {
    // SAFETY: `offset` comes from this kernel's format file for the
    // tracepoint (tracefs, read at load); read_at copies with
    // bpf_probe_read, which fails instead of faulting, into the integer
    // types the callers ask for.
    unsafe { ctx.read_at(offset as usize) }.map_err(|e| e as i64)
}

/// The listener's queues and the namespace's SYN sysctls at one instant.
#[derive(Clone, Copy, Default)]
struct QueueState {
    backlog: u32,
    backlog_max: u32,
    syn_queue: u32,
    max_syn_backlog: u32,
    syncookies: u8,
    abort_on_overflow: u8,
    _pad: [u8; 6],
}

/// The SYN being handled on this CPU, between conn_request entry and exit.
#[derive(Clone, Copy)]
pub struct SynSlot {
    skb: u64,
    sk: u64,
    /// conn_request frames open for this skb (v6 calls v4 for mapped SYNs).
    depth: u32,
    /// 0 = not answered, else 1 + `SynAnswer`.
    answered: u32,
    state: QueueState,
}

/// The third ACK being handled on this CPU, inside syn_recv_sock.
#[derive(Clone, Copy)]
pub struct RecvSlot {
    skb: u64,
    sk: u64,
    req: u64,
    depth: u32,
    _pad: u32,
    state: QueueState,
}

/// Who called listen() on a socket.
#[derive(Clone, Copy)]
pub struct Owner {
    pid: u32,
    tid: u32,
    cgroup: u64,
    comm: [u8; 16],
}

/// A 4-tuple that overflowed the accept queue with tcp_abort_on_overflow=0.
#[derive(Clone, Copy)]
#[expect(dead_code, reason = "read by the kernel as map key bytes")]
pub struct GhostKey {
    netns: u32,
    family: u16,
    lport: u16,
    rport: u16,
    _pad: u16,
    laddr: [u8; 16],
    raddr: [u8; 16],
}

#[derive(Clone, Copy)]
pub struct GhostInfo {
    last_ns: u64,
    /// The peer's initial sequence number (`tcp_request_sock.rcv_isn`).
    isn: u32,
    _pad: u32,
}

#[map(name = "SYN_SLOT")]
static SYN_SLOT: PerCpuArray<SynSlot> = PerCpuArray::with_max_entries(1, 0);

#[map(name = "SYN_RECV_SLOT")]
static RECV_SLOT: PerCpuArray<RecvSlot> = PerCpuArray::with_max_entries(1, 0);

/// Answered SYNs by `SynAnswer`, all listeners.
#[map(name = "SYN_ANSWERED")]
static SYN_ANSWERED: PerCpuArray<u64> = PerCpuArray::with_max_entries(SynAnswer::COUNT, 0);

/// Answered SYNs and last queue state per listener (LRU-bounded).
#[map(name = "SYN_LISTENERS")]
static SYN_LISTENERS: LruPerCpuHashMap<ListenerKey, ListenerCounters> =
    LruPerCpuHashMap::with_max_entries(4096, 0);

/// listen() callers by socket, written when listen() is called (no program
/// runs when a socket leaves LISTEN, so entries of closed listeners stay
/// until the LRU recycles them; a socket that listens again is written
/// again, and only listeners are ever looked up).
#[map(name = "SYN_LISTEN_OWNERS")]
static LISTEN_OWNERS: LruHashMap<u64, Owner> = LruHashMap::with_max_entries(16384, 0);

/// Overflowed 4-tuples awaiting SYN-ACK retransmits, with the peer's ISN:
/// a retransmit is linked only to the request that overflowed (same
/// 4-tuple and ISN), so a later connection on a reused 4-tuple is not;
/// LRU-bounded, and older than [`GHOST_MAX_AGE_NS`] not trusted.
#[map(name = "SYN_GHOSTS")]
static GHOSTS: LruHashMap<GhostKey, GhostInfo> = LruHashMap::with_max_entries(8192, 0);

/// A link older than this is not trusted (the request is long gone).
const GHOST_MAX_AGE_NS: u64 = 600_000_000_000;

#[inline(always)]
fn queue_state(sk: u64) -> QueueState {
    let mut s = QueueState {
        backlog: read(sk, off!(sk_ack_backlog)).unwrap_or(0),
        backlog_max: read(sk, off!(sk_max_ack_backlog)).unwrap_or(0),
        syn_queue: read::<i32>(sk, off!(icsk_qlen)).unwrap_or(0) as u32,
        ..QueueState::default()
    };
    if let Ok(net) = read::<u64>(sk, global!(OFFSETS.skc_net)) {
        // u8 since 6.0, int before: the low byte is the value either way.
        s.syncookies = read(net, off!(net_syncookies)).unwrap_or(0);
        s.abort_on_overflow = read(net, off!(net_abort_on_overflow)).unwrap_or(0);
        s.max_syn_backlog = read::<i32>(net, off!(net_max_syn_backlog)).unwrap_or(0) as u32;
    }
    s
}

#[inline(always)]
fn listener_key(sk: u64, netns: u32) -> ListenerKey {
    let mut key = ListenerKey {
        netns,
        ..ListenerKey::default()
    };
    if let Ok(f) = sock_flow(sk) {
        key.family = f.family;
        key.port = f.sport;
        key.addr = f.saddr;
    }
    key
}

#[inline(always)]
fn socket_ino(sk: u64) -> u64 {
    let Ok(socket) = read::<u64>(sk, off!(sk_socket)) else {
        return 0;
    };
    if socket == 0 {
        return 0;
    }
    read(socket + off!(socket_inode) as u64, off!(inode_ino)).unwrap_or(0)
}

/// Scratch space for building a record (too large for the BPF stack next
/// to the rest of a program's state).
#[map(name = "SYN_SCRATCH")]
static SCRATCH: PerCpuArray<SynEvent> = PerCpuArray::with_max_entries(1, 0);

/// Fills the scratch record for listener `sk`, attributed to whoever called
/// listen(), and returns it.
#[inline(always)]
fn event(
    kind: EventKind,
    sk: u64,
    flow: &Flow,
    state: &QueueState,
) -> Option<&'static mut SynEvent> {
    // SAFETY: this CPU's value of a per-CPU array, valid while the program
    // runs; the programs that fill it run in softirq or under the socket
    // lock and do not nest on one CPU, so the reference is the only one.
    let ev = unsafe { &mut *SCRATCH.get_ptr_mut(0)? };
    ev.header = EventHeader {
        kind: kind as u8,
        netns: sock_netns(sk),
        ts_ns: now(),
        ..EventHeader::default()
    };
    ev.flags = 0;
    ev.packet.len = 0;
    // SAFETY: the fields are copied out at once; a concurrent listen() on
    // this socket (the only writer) would at worst mix two owners.
    if let Some(owner) = unsafe { LISTEN_OWNERS.get(sk) } {
        ev.header.pid = owner.pid;
        ev.header.tid = owner.tid;
        ev.header.cgroup = owner.cgroup;
        ev.header.comm = owner.comm;
        ev.flags = flags::OWNER_KNOWN;
    }
    ev.flow = *flow;
    let listener = sock_flow(sk).unwrap_or_default();
    ev.listen_addr = listener.saddr;
    ev.listen_family = listener.family;
    ev.listener_ino = socket_ino(sk);
    ev.backlog = state.backlog;
    ev.backlog_max = state.backlog_max;
    ev.syn_queue = state.syn_queue;
    ev.max_syn_backlog = state.max_syn_backlog;
    ev.retransmit = 0;
    ev.cause = 0;
    ev.syncookies = state.syncookies;
    ev.abort_on_overflow = state.abort_on_overflow;
    ev.since_overflow_ns = 0;
    Some(ev)
}

/// Copies a finished scratch record into the ring buffer.
#[inline(always)]
fn submit(ev: &SynEvent) {
    if !filter::allows(&ev.header, &ev.flow) {
        return;
    }
    let kind = ev.header.kind;
    match EVENTS.reserve::<SynEvent>(0) {
        Some(mut slot) => {
            // SAFETY: the reservation holds exactly one SynEvent and is ours
            // until commit; `ev` is a different, fully written SynEvent.
            unsafe { core::ptr::copy_nonoverlapping(ev, slot.as_mut_ptr(), 1) };
            crate::emit::commit(slot);
        }
        None => bump(&LOST, kind as u32),
    }
}

/// Whether an IPv6 address is IPv4-mapped (::ffff:a.b.c.d).
#[inline(always)]
fn v4_mapped(a: &[u8; 16]) -> bool {
    a[..10] == [0; 10] && a[10] == 0xff && a[11] == 0xff
}

/// The key of a 4-tuple, with IPv4-mapped addresses (an IPv4 peer of a
/// dual-stack listener) folded to plain IPv4 so the skb and the request
/// sock name the same connection the same way.
#[inline(always)]
fn ghost_key(netns: u32, f: &Flow) -> GhostKey {
    let mut key = GhostKey {
        netns,
        family: f.family,
        lport: f.sport,
        rport: f.dport,
        _pad: 0,
        laddr: f.saddr,
        raddr: f.daddr,
    };
    if f.family == AF_INET6 && v4_mapped(&f.saddr) && v4_mapped(&f.daddr) {
        key.family = tcptrace_common::event::AF_INET;
        key.laddr = [0; 16];
        key.raddr = [0; 16];
        key.laddr[..4].copy_from_slice(&f.saddr[12..]);
        key.raddr[..4].copy_from_slice(&f.daddr[12..]);
    }
    key
}

// ---- SYN at a listener -------------------------------------------------

fn conn_request_enter(sk: u64, skb: u64) {
    let Some(slot) = SYN_SLOT.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: this CPU's value of a per-CPU array, valid while the program
    // runs; softirqs do not nest on one CPU, so no other reference to it
    // is live.
    let slot = unsafe { &mut *slot };
    if slot.depth > 0 && slot.skb == skb {
        slot.depth += 1;
        return;
    }
    *slot = SynSlot {
        skb,
        sk,
        depth: 1,
        answered: 0,
        state: queue_state(sk),
    };
}

fn synack_sent(sk: u64, synack_type: u32) {
    let Some(slot) = SYN_SLOT.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: this CPU's value of a per-CPU array, valid while the program
    // runs; softirqs do not nest on one CPU, so no other reference to it
    // is live.
    let slot = unsafe { &mut *slot };
    // Retransmits come from the request timer, never inside conn_request on
    // this CPU; a Fast Open SYN-ACK is sent on the child socket.
    if slot.depth == 0 || (sk != slot.sk && synack_type != off!(synack_fastopen)) {
        return;
    }
    let answer = if synack_type == off!(synack_cookie) {
        SynAnswer::Cookie
    } else if synack_type == off!(synack_fastopen) {
        SynAnswer::Fastopen
    } else {
        SynAnswer::Normal
    };
    slot.answered = answer as u32 + 1;
}

fn conn_request_exit() {
    let Some(slot) = SYN_SLOT.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: this CPU's value of a per-CPU array, valid while the program
    // runs; softirqs do not nest on one CPU, so no other reference to it
    // is live.
    let slot = unsafe { &mut *slot };
    if slot.depth == 0 {
        return;
    }
    slot.depth -= 1;
    if slot.depth > 0 {
        return;
    }
    if slot.answered != 0 {
        answered(slot);
    } else if try_dropped(slot).is_err() {
        count(Stat::ReadFailed);
    }
}

fn answered(s: &SynSlot) {
    let answer = s.answered - 1;
    bump(&SYN_ANSWERED, answer);
    let key = listener_key(s.sk, sock_netns(s.sk));
    let mut ptr = SYN_LISTENERS.get_ptr_mut(key);
    if ptr.is_none() {
        let _ = SYN_LISTENERS.insert(key, ListenerCounters::default(), 0);
        ptr = SYN_LISTENERS.get_ptr_mut(key);
    }
    let Some(c) = ptr else {
        map_full(StateMap::SynListeners);
        return;
    };
    // SAFETY: this CPU's value in a per-CPU LRU hash, valid while the
    // program runs (RCU); only programs on this CPU write it, one at a time.
    let c = unsafe { &mut *c };
    match answer {
        0 => c.answered_normal += 1,
        1 => c.answered_cookie += 1,
        _ => c.answered_fastopen += 1,
    }
    c.last_ns = now();
    c.backlog = s.state.backlog;
    c.backlog_max = s.state.backlog_max;
    c.syn_queue = s.state.syn_queue;
}

fn try_dropped(s: &SynSlot) -> Result<(), i64> {
    let st = &s.state;
    // Order of tcp_conn_request: SYN queue (only without cookies; the kernel
    // tests qlen > max since the 2025 fix, >= before), then accept queue.
    let cause = if st.syncookies == 0 && st.syn_queue > st.backlog_max {
        SynDropCause::SynQueueFull
    } else if st.backlog > st.backlog_max {
        SynDropCause::AcceptQueueFull
    } else {
        SynDropCause::Other
    };
    let flow = segment_flow(s.skb)?;
    let Some(ev) = event(EventKind::SynDrop, s.sk, &flow, st) else {
        return Ok(());
    };
    ev.cause = cause as u8;
    capture(s.skb, &mut ev.packet);
    let max_syn = st.max_syn_backlog as i64;
    if st.syncookies == 0 && max_syn - (st.syn_queue as i64) < (max_syn >> 2) {
        ev.flags |= flags::LAST_QUARTER;
    }
    submit(ev);
    Ok(())
}

#[fentry(function = "tcp_v4_conn_request")]
pub fn conn_request4_fentry(ctx: FEntryContext) -> i32 {
    conn_request_enter(ctx.arg(0), ctx.arg(1));
    0
}

#[fexit(function = "tcp_v4_conn_request")]
pub fn conn_request4_fexit(_ctx: FExitContext) -> i32 {
    conn_request_exit();
    0
}

#[fentry(function = "tcp_v6_conn_request")]
pub fn conn_request6_fentry(ctx: FEntryContext) -> i32 {
    conn_request_enter(ctx.arg(0), ctx.arg(1));
    0
}

#[fexit(function = "tcp_v6_conn_request")]
pub fn conn_request6_fexit(_ctx: FExitContext) -> i32 {
    conn_request_exit();
    0
}

#[kprobe]
pub fn conn_request_kprobe(ctx: ProbeContext) -> u32 {
    conn_request_enter(ctx.arg(0).unwrap_or(0), ctx.arg(1).unwrap_or(0));
    0
}

#[kretprobe]
pub fn conn_request_kretprobe(_ctx: RetProbeContext) -> u32 {
    conn_request_exit();
    0
}

// tcp_make_synack(sk, dst, req, foc, synack_type, syn_skb) builds every
// SYN-ACK of both families (six parameters on every supported kernel, so
// fentry can take it where the 7-parameter send_synack is out of reach).
#[fentry(function = "tcp_make_synack")]
pub fn make_synack_fentry(ctx: FEntryContext) -> i32 {
    synack_sent(ctx.arg(0), ctx.arg(4));
    0
}

#[kprobe]
pub fn make_synack_kprobe(ctx: ProbeContext) -> u32 {
    synack_sent(ctx.arg(0).unwrap_or(0), ctx.arg(4).unwrap_or(0));
    0
}

// ---- third ACK: syn_recv_sock --------------------------------------------

fn recv_sock_enter(sk: u64, skb: u64, req: u64) {
    let Some(slot) = RECV_SLOT.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: this CPU's value of a per-CPU array, valid while the program
    // runs; softirqs do not nest on one CPU, so no other reference to it
    // is live.
    let slot = unsafe { &mut *slot };
    if slot.depth > 0 && slot.req == req {
        slot.depth += 1;
        return;
    }
    *slot = RecvSlot {
        skb,
        sk,
        req,
        depth: 1,
        _pad: 0,
        state: queue_state(sk),
    };
}

fn recv_sock_exit(child: u64) {
    let Some(slot) = RECV_SLOT.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: this CPU's value of a per-CPU array, valid while the program
    // runs; softirqs do not nest on one CPU, so no other reference to it
    // is live.
    let slot = unsafe { &mut *slot };
    if slot.depth == 0 {
        return;
    }
    slot.depth -= 1;
    if slot.depth > 0 {
        return;
    }
    // NULL without a full queue is an allocation or route failure.
    if child != 0 || slot.state.backlog <= slot.state.backlog_max {
        return;
    }
    if overflowed(slot.sk, slot.skb, &slot.state).is_err() {
        count(Stat::ReadFailed);
    }
}

fn overflowed(sk: u64, skb: u64, state: &QueueState) -> Result<(), i64> {
    let flow = segment_flow(skb)?;
    let Some(ev) = event(EventKind::ListenOverflow, sk, &flow, state) else {
        return Ok(());
    };
    capture(skb, &mut ev.packet);
    if state.abort_on_overflow == 0 {
        let key = ghost_key(ev.header.netns, &flow);
        // The third ACK's sequence number is the peer's ISN + 1.
        let info = GhostInfo {
            last_ns: now(),
            isn: segment_seq(skb)?.wrapping_sub(1),
            _pad: 0,
        };
        if GHOSTS.insert(key, info, 0).is_err() {
            map_full(StateMap::Ghosts);
        }
    }
    submit(ev);
    Ok(())
}

#[fentry(function = "tcp_v4_syn_recv_sock")]
pub fn syn_recv_sock4_fentry(ctx: FEntryContext) -> i32 {
    recv_sock_enter(ctx.arg(0), ctx.arg(1), ctx.arg(2));
    0
}

#[fexit(function = "tcp_v4_syn_recv_sock")]
pub fn syn_recv_sock4_fexit(ctx: FExitContext) -> i32 {
    recv_sock_exit(fexit_ret::<u64>(&ctx, programs::RET_SLOT_SYN_RECV_SOCK).unwrap_or(1));
    0
}

#[fentry(function = "tcp_v6_syn_recv_sock")]
pub fn syn_recv_sock6_fentry(ctx: FEntryContext) -> i32 {
    recv_sock_enter(ctx.arg(0), ctx.arg(1), ctx.arg(2));
    0
}

#[fexit(function = "tcp_v6_syn_recv_sock")]
pub fn syn_recv_sock6_fexit(ctx: FExitContext) -> i32 {
    recv_sock_exit(fexit_ret::<u64>(&ctx, programs::RET_SLOT_SYN_RECV_SOCK).unwrap_or(1));
    0
}

#[kprobe]
pub fn syn_recv_sock_kprobe(ctx: ProbeContext) -> u32 {
    recv_sock_enter(
        ctx.arg(0).unwrap_or(0),
        ctx.arg(1).unwrap_or(0),
        ctx.arg(2).unwrap_or(0),
    );
    0
}

#[kretprobe]
pub fn syn_recv_sock_kretprobe(ctx: RetProbeContext) -> u32 {
    recv_sock_exit(ctx.ret::<u64>());
    0
}

/// skb:kfree_skb with reason TCP_LISTEN_OVERFLOW (6.15+): the same verdict
/// from a stable tracepoint. `rx_sk` is the listener. Plain tracepoint;
/// where the kernel has its BTF the one tp_btf `kfree_skb` program serves
/// this hook with the others that read drop reasons.
#[tracepoint(category = "skb", name = "kfree_skb")]
pub fn kfree_skb_listen_overflow(ctx: TracePointContext) -> u32 {
    done(try_kfree_skb_tp(&ctx)) as u32
}

#[inline(always)]
fn done(result: Result<(), i64>) -> i32 {
    if result.is_err() {
        count(Stat::ReadFailed);
    }
    0
}

fn try_kfree_skb_tp(ctx: &TracePointContext) -> Result<(), i64> {
    let reason: u32 = tp_read(ctx, off!(tp_kfree_reason))?;
    if reason != off!(reason_listen_overflow) {
        return Ok(());
    }
    try_kfree_skb(
        tp_read(ctx, off!(tp_kfree_skbaddr))?,
        reason,
        tp_read(ctx, off!(tp_kfree_rx_sk))?,
    )
}

/// TCP_LISTEN_OVERFLOW from skb:kfree_skb (the plain tracepoint above, or
/// the one tp_btf `kfree_skb` program, `crate::kfree_skb`).
#[inline(always)]
pub(crate) fn try_kfree_skb(skb: u64, reason: u32, sk: u64) -> Result<(), i64> {
    if reason != off!(reason_listen_overflow) || sk == 0 {
        return Ok(());
    }
    // The kernel's reason is the verdict: the queue may have been drained
    // since its check (accept() or close() on another CPU), so it is not
    // read again here. A child that could not be allocated gets the same
    // reason (not counted in ListenOverflows); the client is a ghost either
    // way.
    overflowed(sk, skb, &queue_state(sk))
}

// ---- SYN-ACK retransmits ---------------------------------------------------

#[tracepoint(category = "tcp", name = "tcp_retransmit_synack")]
pub fn retransmit_synack(ctx: TracePointContext) -> u32 {
    let args = || -> Result<(u64, u64), i64> {
        Ok((
            tp_read(&ctx, off!(tp_rtx_skaddr))?,
            tp_read(&ctx, off!(tp_rtx_req))?,
        ))
    };
    done(args().and_then(|(sk, req)| try_retransmit_synack(sk, req))) as u32
}

/// tp_btf twin: tcp_retransmit_synack(const struct sock *sk, const struct
/// request_sock *req), the same on every supported kernel.
#[btf_tracepoint(function = "tcp_retransmit_synack")]
pub fn retransmit_synack_btf(ctx: BtfTracePointContext) -> i32 {
    done(try_retransmit_synack(ctx.arg(0), ctx.arg(1)))
}

fn try_retransmit_synack(sk: u64, req: u64) -> Result<(), i64> {
    // A request sock starts with sock_common: local address and port, peer.
    let flow = sock_flow(req)?;
    let state = queue_state(sk);
    let Some(ev) = event(EventKind::SynackRetransmit, sk, &flow, &state) else {
        return Ok(());
    };
    // num_retrans is bumped after the SYN-ACK went out.
    ev.retransmit = read::<u8>(req, off!(req_num_retrans)).unwrap_or(0) as u16 + 1;
    let key = ghost_key(ev.header.netns, &flow);
    // SAFETY: one u64 is read at once; a concurrent update of this
    // 4-tuple's entry would only move the time of its last overflow.
    if let Some(g) = unsafe { GHOSTS.get(key) } {
        let age = now().saturating_sub(g.last_ns);
        let isn: u32 = read(req, off!(treq_rcv_isn))?;
        if age < GHOST_MAX_AGE_NS && isn == g.isn {
            ev.flags |= flags::AFTER_OVERFLOW;
            ev.since_overflow_ns = age;
        }
    }
    submit(ev);
    Ok(())
}

// ---- listen() owners -----------------------------------------------------------

/// Records the current task as the owner of listener `sk`.
#[inline(always)]
fn record_owner(sk: u64) {
    let pid_tgid = bpf_get_current_pid_tgid();
    let owner = Owner {
        pid: (pid_tgid >> 32) as u32,
        tid: pid_tgid as u32,
        // SAFETY: a helper without arguments about the current task.
        cgroup: unsafe { bpf_get_current_cgroup_id() },
        comm: bpf_get_current_comm().unwrap_or_default(),
    };
    if LISTEN_OWNERS.insert(sk, owner, 0).is_err() {
        map_full(StateMap::ListenOwners);
    }
}

/// `syscalls:sys_enter_listen`: runs per listen() call only. The socket is
/// found through the task's fd table, as for connect(); a listen() that
/// then fails leaves an entry no listener event ever looks up.
#[tracepoint(category = "syscalls", name = "sys_enter_listen")]
pub fn sys_enter_listen(ctx: TracePointContext) -> u32 {
    done(try_sys_enter_listen(&ctx)) as u32
}

fn try_sys_enter_listen(ctx: &TracePointContext) -> Result<(), i64> {
    // Syscall tracepoint records: 8 bytes of common fields, the syscall
    // nr, then the arguments as longs (fd first).
    const ENTER_FD: usize = 16;
    let fd: i64 = crate::connect::syscall_arg(ctx, ENTER_FD);
    if let Some(sk) = tcp_sock_of_fd(fd)? {
        record_owner(sk);
    }
    Ok(())
}

/// `inet_csk_listen_start(struct sock *sk, ...)`, where the kernel allows
/// BPF trampolines: only when a socket enters LISTEN, from whoever made
/// it (listen() through the syscall, io_uring or a kernel caller).
#[fentry(function = "inet_csk_listen_start")]
pub fn listen_fentry(ctx: FEntryContext) -> i32 {
    record_owner(ctx.arg(0));
    0
}
