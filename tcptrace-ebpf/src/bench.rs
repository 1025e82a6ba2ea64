//! Bench-only programs, see `tcptrace_common::bench`: an event source
//! (hidden `--bench-flood`) and empty programs on the connect() syscall
//! tracepoints (hidden `--bench-floor`); never loaded in normal runs.

use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid,
    macros::{map, tracepoint},
    maps::Array,
    programs::TracePointContext,
};
use tcptrace_common::{bench::MAX_PER_CALL, event::AF_INET, EventKind, Flow, LatencyEvent};

use crate::emit::{header, send};

/// `[tgid, records per call]`, written by userspace before attaching.
#[map(name = "BENCH_FLOOD")]
static BENCH_FLOOD: Array<u32> = Array::with_max_entries(2, 0);

#[tracepoint(category = "syscalls", name = "sys_enter_getppid")]
pub fn bench_flood(_ctx: TracePointContext) -> u32 {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    match BENCH_FLOOD.get(0) {
        Some(&want) if want != 0 && want == tgid => {}
        _ => return 0,
    }
    let n = BENCH_FLOOD.get(1).copied().unwrap_or(0);
    let mut ev = LatencyEvent {
        header: header(EventKind::Connect, 0),
        flow: Flow {
            saddr: [127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            daddr: [127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            sport: 40000,
            dport: 80,
            family: AF_INET,
            _pad: 0,
        },
        latency_ns: 0,
        errno: 0,
        ports_probed: 0,
    };
    for i in 0..MAX_PER_CALL {
        if i >= n {
            break;
        }
        ev.latency_ns = i as u64;
        send(EventKind::Connect, &ev);
    }
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_connect")]
pub fn bench_floor_enter(_ctx: TracePointContext) -> u32 {
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_connect")]
pub fn bench_floor_exit(_ctx: TracePointContext) -> u32 {
    0
}
