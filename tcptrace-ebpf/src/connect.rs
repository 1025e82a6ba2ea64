//! connect() on TCP sockets: syscall tracepoints sys_enter_connect /
//! sys_exit_connect, present on every kernel.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user},
    macros::{map, tracepoint},
    maps::LruHashMap,
    programs::TracePointContext,
};
use tcptrace_common::{
    event::{AF_INET, AF_INET6},
    statemaps::StateMap,
    EventKind, Flow, HistId, LatencyEvent, Stat,
};

use crate::{
    emit::{header, now, passes_threshold, record_latency, send},
    filter,
    kernel::{sock_flow, sock_netns, tcp_sock_of_fd},
    maps::{count, map_full},
};

/// A connect() in flight on one thread.
#[derive(Clone, Copy)]
pub struct ConnectStart {
    start_ns: u64,
    sk: u64,
    /// Destination from the syscall's sockaddr.
    flow: Flow,
}

/// In-flight connect() calls keyed by pid_tgid; every entry is removed at
/// syscall exit, so the map only holds threads inside connect() right now.
/// LRU: an entry whose exit the kernel skipped (program recursion) and whose
/// thread then died is recycled instead of filling the map.
#[map(name = "CONNECT_STATE")]
static CONNECT_STATE: LruHashMap<u64, ConnectStart> = LruHashMap::with_max_entries(16384, 0);

// Offsets into the syscall tracepoints' records (stable since syscall
// tracepoints exist: 8 bytes of common fields, the syscall nr, then longs).
const ENTER_FD: usize = 16;
const ENTER_ADDR: usize = 24;
const EXIT_RET: usize = 16;

#[tracepoint(category = "syscalls", name = "sys_enter_connect")]
pub fn sys_enter_connect(ctx: TracePointContext) -> u32 {
    if try_sys_enter_connect(&ctx).is_err() {
        count(Stat::ReadFailed);
    }
    0
}

fn try_sys_enter_connect(ctx: &TracePointContext) -> Result<(), i64> {
    let fd: i64 = unsafe { ctx.read_at(ENTER_FD) }.map_err(|e| e as i64)?;
    let uaddr: u64 = unsafe { ctx.read_at(ENTER_ADDR) }.map_err(|e| e as i64)?;
    // One read for family, port and IPv4 address: sockaddr_in's 16 bytes,
    // which every AF_INET/AF_INET6 connect() passes at least.
    let sa: [u8; 16] = match unsafe { bpf_probe_read_user(uaddr as *const [u8; 16]) } {
        Ok(sa) => sa,
        // A shorter sockaddr of another family at the end of a page.
        Err(e) => {
            let family: u16 =
                unsafe { bpf_probe_read_user(uaddr as *const u16) }.map_err(|e| e as i64)?;
            if family == AF_INET || family == AF_INET6 {
                return Err(e as i64);
            }
            return Ok(());
        }
    };
    let family = u16::from_ne_bytes([sa[0], sa[1]]);
    if (family != AF_INET && family != AF_INET6) || !filter::current_task_allowed() {
        return Ok(());
    }
    let Some(sk) = tcp_sock_of_fd(fd)? else {
        return Ok(());
    };
    let mut flow = Flow {
        family,
        // sockaddr_in and sockaddr_in6 both keep the port at byte 2.
        dport: u16::from_be_bytes([sa[2], sa[3]]),
        ..Flow::default()
    };
    // The address is at byte 4 (v4) or 8 (v6).
    if family == AF_INET {
        flow.daddr[..4].copy_from_slice(&sa[4..8]);
    } else {
        flow.daddr =
            unsafe { bpf_probe_read_user((uaddr + 8) as *const [u8; 16]) }.map_err(|e| e as i64)?;
    }
    let start = ConnectStart {
        start_ns: now(),
        sk,
        flow,
    };
    if CONNECT_STATE
        .insert(bpf_get_current_pid_tgid(), start, 0)
        .is_err()
    {
        map_full(StateMap::Connect);
    }
    Ok(())
}

#[tracepoint(category = "syscalls", name = "sys_exit_connect")]
pub fn sys_exit_connect(ctx: TracePointContext) -> u32 {
    if try_sys_exit_connect(&ctx).is_err() {
        count(Stat::ReadFailed);
    }
    0
}

fn try_sys_exit_connect(ctx: &TracePointContext) -> Result<(), i64> {
    const ENOTSOCK: i32 = 88;
    let key = bpf_get_current_pid_tgid();
    let Some(start) = (unsafe { CONNECT_STATE.get(key) }).copied() else {
        return Ok(());
    };
    let _ = CONNECT_STATE.remove(key);
    let ret: i64 = unsafe { ctx.read_at(EXIT_RET) }.map_err(|e| e as i64)?;
    let errno = if ret < 0 { -ret as i32 } else { 0 };
    if errno == ENOTSOCK {
        return Ok(());
    }
    let latency_ns = now().saturating_sub(start.start_ns);
    let send_it = passes_threshold(latency_ns, errno);
    if !send_it && !filter::active() {
        // Nothing to send and nothing to filter on: the histogram is all.
        record_latency(HistId::Connect, latency_ns);
        return Ok(());
    }
    let mut flow = start.flow;
    // The local side is only known once the kernel picked it.
    if let Ok(now_flow) = sock_flow(start.sk) {
        flow.saddr = now_flow.saddr;
        flow.sport = now_flow.sport;
    }
    let header = header(EventKind::Connect, sock_netns(start.sk));
    if !filter::allows(&header, &flow) {
        return Ok(());
    }
    record_latency(HistId::Connect, latency_ns);
    if send_it {
        send(
            EventKind::Connect,
            &LatencyEvent {
                header,
                flow,
                latency_ns,
                errno,
                ports_probed: 0,
            },
        );
    }
    Ok(())
}
