//! Ephemeral port search: `__inet_hash_connect` timed per thread, and
//! `__inet_check_established` / `__inet6_check_established` counted as the
//! ports it probes. fentry/fexit and kprobe/kretprobe variants share the
//! `try_*` helpers; userspace loads one set.

use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid,
    macros::{fentry, fexit, kprobe, kretprobe, map},
    maps::LruHashMap,
    programs::{FEntryContext, FExitContext, ProbeContext, RetProbeContext},
};
use tcptrace_common::{programs, statemaps::StateMap, EventKind, HistId, LatencyEvent};

use crate::{
    diag::done,
    emit::{header, now, passes_threshold, record_latency, send},
    filter,
    kernel::{fexit_ret, sock_flow, sock_netns},
    maps::map_full,
};

/// A port search in flight on one thread.
#[derive(Clone, Copy)]
pub struct SearchStart {
    start_ns: u64,
    sk: u64,
    ports_probed: u32,
    _pad: u32,
}

/// In-flight searches keyed by pid_tgid, removed when the search returns.
/// LRU: a kretprobe the kernel missed (too many returns in flight) leaves an
/// entry that a dead thread would never overwrite.
#[map(name = "PORT_SEARCH_STATE")]
static PORT_SEARCH_STATE: LruHashMap<u64, SearchStart> = LruHashMap::with_max_entries(16384, 0);

fn try_search_enter(sk: u64) -> Result<(), i64> {
    if !filter::current_task_allowed() {
        return Ok(());
    }
    let start = SearchStart {
        start_ns: now(),
        sk,
        ports_probed: 0,
        _pad: 0,
    };
    PORT_SEARCH_STATE
        .insert(bpf_get_current_pid_tgid(), start, 0)
        .map_err(i64::from)
}

fn try_port_probed() {
    if let Some(state) = PORT_SEARCH_STATE.get_ptr_mut(bpf_get_current_pid_tgid()) {
        // SAFETY: a pointer into a live value of this map (RCU keeps it
        // valid while the program runs), keyed by this thread: only its
        // own, sequential, programs write it.
        unsafe { (*state).ports_probed += 1 };
    }
}

fn try_search_exit(ret: i64) -> Result<(), i64> {
    let key = bpf_get_current_pid_tgid();
    // SAFETY: the value is copied out at once; only this thread's programs
    // write its entry.
    let Some(start) = (unsafe { PORT_SEARCH_STATE.get(key) }).copied() else {
        return Ok(());
    };
    let _ = PORT_SEARCH_STATE.remove(key);
    let errno = if ret < 0 { -(ret as i32) } else { 0 };
    let latency_ns = now().saturating_sub(start.start_ns);
    let flow = sock_flow(start.sk)?;
    let header = header(EventKind::PortSearch, sock_netns(start.sk));
    if !filter::allows(&header, &flow) {
        return Ok(());
    }
    record_latency(HistId::PortSearch, latency_ns);
    if passes_threshold(latency_ns, errno) {
        send(
            EventKind::PortSearch,
            &LatencyEvent {
                header,
                flow,
                latency_ns,
                errno,
                ports_probed: start.ports_probed,
            },
        );
    }
    Ok(())
}

fn enter(sk: u64) -> i32 {
    if try_search_enter(sk).is_err() {
        map_full(StateMap::PortSearch);
    }
    0
}

#[fentry(function = "__inet_hash_connect")]
pub fn hash_connect_fentry(ctx: FEntryContext) -> i32 {
    enter(ctx.arg(1))
}

#[fexit(function = "__inet_hash_connect")]
pub fn hash_connect_fexit(ctx: FExitContext) -> i32 {
    // The function returns int; sign-extend what the trampoline saved.
    let result = try_search_exit(
        fexit_ret::<i32>(&ctx, programs::RET_SLOT_INET_HASH_CONNECT).unwrap_or(0) as i64,
    );
    done(&ctx, programs::HASH_CONNECT_FEXIT, result);
    0
}

#[kprobe]
pub fn hash_connect_kprobe(ctx: ProbeContext) -> u32 {
    enter(ctx.arg(1).unwrap_or(0)) as u32
}

#[kretprobe]
pub fn hash_connect_kretprobe(ctx: RetProbeContext) -> u32 {
    let result = try_search_exit(ctx.ret::<i32>() as i64);
    done(&ctx, programs::HASH_CONNECT_KRETPROBE, result);
    0
}

// Kernels before 6.18 call check_established(death_row, sk, lport, twp); 6.18
// adds `bool rcu_lookup` and calls it twice for the port it takes (a lockless
// look, then the real check): count only the lockless calls there.
#[fentry(function = "__inet_check_established")]
pub fn check_established_fentry(_ctx: FEntryContext) -> i32 {
    try_port_probed();
    0
}

#[fentry(function = "__inet6_check_established")]
pub fn check6_established_fentry(_ctx: FEntryContext) -> i32 {
    try_port_probed();
    0
}

#[fentry(function = "__inet_check_established")]
pub fn check_established_rcu_fentry(ctx: FEntryContext) -> i32 {
    if ctx.arg::<u8>(4) != 0 {
        try_port_probed();
    }
    0
}

#[fentry(function = "__inet6_check_established")]
pub fn check6_established_rcu_fentry(ctx: FEntryContext) -> i32 {
    if ctx.arg::<u8>(4) != 0 {
        try_port_probed();
    }
    0
}

#[kprobe]
pub fn check_established_kprobe(_ctx: ProbeContext) -> u32 {
    try_port_probed();
    0
}

#[kprobe]
pub fn check_established_rcu_kprobe(ctx: ProbeContext) -> u32 {
    if ctx.arg::<u8>(4).unwrap_or(0) != 0 {
        try_port_probed();
    }
    0
}
