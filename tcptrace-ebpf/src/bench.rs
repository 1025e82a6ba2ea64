//! Bench-only programs, see `tcptrace_common::bench`: an event source
//! (hidden `--bench-flood`) and empty programs on the connect() syscall
//! tracepoints (hidden `--bench-floor`); never loaded in normal runs.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_get_prandom_u32},
    macros::{map, tracepoint},
    maps::Array,
    programs::TracePointContext,
};
use tcptrace_common::{bench::MAX_PER_CALL, event::AF_INET, EventKind, Flow, LatencyEvent};

use crate::emit::{header, now, send};

/// `[tgid, records per call, varied]`, written by userspace before
/// attaching.
#[map(name = "BENCH_FLOOD")]
static BENCH_FLOOD: Array<u32> = Array::with_max_entries(3, 0);

/// Destination ports of the varied records.
const PORTS: [u16; 4] = [80, 443, 5432, 6379];

/// Makes `ev` one of a varied stream, as a recording of real connects
/// holds: its own time, a random ephemeral port, one of 16 addresses and
/// 4 ports, a latency from 20 us to about 4 ms, and 1 in 32 refused.
#[inline(always)]
fn vary(ev: &mut LatencyEvent) {
    // SAFETY: helpers without arguments.
    let (r, r2) = unsafe { (bpf_get_prandom_u32(), bpf_get_prandom_u32()) };
    ev.header.ts_ns = now();
    ev.flow.sport = 32768 + (r & 0x3fff) as u16;
    ev.flow.daddr[3] = 1 + ((r >> 14) & 15) as u8;
    ev.flow.dport = PORTS[((r >> 18) & 3) as usize];
    ev.latency_ns = 20_000 + u64::from(r >> 20) * 977;
    ev.errno = if r2 & 31 == 0 { 111 } else { 0 };
}

#[tracepoint(category = "syscalls", name = "sys_enter_getppid")]
pub fn bench_flood(_ctx: TracePointContext) -> u32 {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    match BENCH_FLOOD.get(0) {
        Some(&want) if want != 0 && want == tgid => {}
        _ => return 0,
    }
    let n = BENCH_FLOOD.get(1).copied().unwrap_or(0);
    let varied = BENCH_FLOOD.get(2).is_some_and(|&v| v != 0);
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
        if varied {
            vary(&mut ev);
        } else {
            ev.latency_ns = i as u64;
        }
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
