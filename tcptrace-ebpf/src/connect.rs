//! connect() on TCP sockets. Where the kernel allows BPF trampolines,
//! fentry/fexit on `inet_stream_connect`, which gets the socket and the
//! kernel's copy of the address as arguments; elsewhere the syscall
//! tracepoints sys_enter_connect / sys_exit_connect, present on every kernel
//! (the socket is found through the task's fd table). Both sets share the
//! in-flight state, so a call that starts under one and ends under the other
//! while userspace swaps them is counted once.

use aya_ebpf::{
    helpers::bpf_probe_read_user,
    macros::{fentry, fexit, map, tracepoint},
    maps::PerCpuArray,
    programs::{FEntryContext, FExitContext, TracePointContext},
    EbpfContext as _,
};
use tcptrace_common::{
    event::{AF_INET, AF_INET6},
    programs,
    statemaps::StateMap,
    EventKind, Flow, HistId, LatencyEvent,
};

#[cfg(not(feature = "thread-hash"))]
use crate::maps::TaskStorage;
use crate::{
    diag::done,
    emit::{header, now, passes_threshold, record_latency, send},
    filter,
    handshake::HANDSHAKE_FAILED,
    kernel::{fexit_ret, read, sock_flow, sock_netns, tcp_sock_of_fd, tcp_sock_of_socket},
    maps::map_full,
};
#[cfg(feature = "thread-hash")]
use {crate::maps::ThreadHash, aya_ebpf::macros::map as hash_map};

/// A connect() in flight on one thread.
#[derive(Clone, Copy, Default)]
pub struct ConnectStart {
    start_ns: u64,
    /// The socket, or 0 when the entry left finding it (from `fd`) to the
    /// return.
    sk: u64,
    fd: i64,
    /// Destination from the call's sockaddr.
    flow: Flow,
}

/// The connect() in flight on each thread (`start_ns` 0 when none): task
/// storage, so entry and return reach it without a hash lookup. A call whose
/// return the kernel skipped (program recursion) leaves its value set, and
/// the thread's next connect() overwrites it.
#[cfg(not(feature = "thread-hash"))]
#[unsafe(link_section = ".maps")]
#[unsafe(export_name = "CONNECT_TASK")]
static CONNECT_TASK: TaskStorage<ConnectStart> = TaskStorage::new();

/// Kernels without task storage (before 5.11; the `thread-hash` object):
/// the same state in an LRU hash keyed by thread, an entry from the call's
/// entry to its return.
#[cfg(feature = "thread-hash")]
#[hash_map(name = "CONNECT_TASK")]
static CONNECT_TASK: ThreadHash<ConnectStart> = ThreadHash::with_max_entries(16384);

/// Calls in flight (see `statemaps::CONNECT_IN_FLIGHT`): task storage
/// cannot be walked from userspace.
#[map(name = "CONNECT_IN_FLIGHT")]
static CONNECT_IN_FLIGHT: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Adds `delta` (wrapping) to this CPU's in-flight count. Like every
/// per-CPU counter here it is not atomic (the BPF target has no atomic
/// add in `core`): only a program preempted between its read and its write
/// (syscall tracepoints are preemptible on 7.x) by another on the same CPU
/// could lose an update.
#[inline(always)]
fn in_flight(delta: u64) {
    if let Some(slot) = CONNECT_IN_FLIGHT.get_ptr_mut(0) {
        // SAFETY: this CPU's value of a per-CPU array, valid while the
        // program runs (the race above aside, no one else writes it).
        unsafe { *slot = (*slot).wrapping_add(delta) };
    }
}

// Offsets into the syscall tracepoints' records (stable since syscall
// tracepoints exist: 8 bytes of common fields, the syscall nr, then longs).
const ENTER_FD: usize = 16;
const ENTER_ADDR: usize = 24;
const EXIT_RET: usize = 16;

/// A long of a syscall tracepoint record at `offset` (8-byte aligned, within
/// the record), read with a direct load: the verifier allows aligned reads
/// of a tracepoint's context, which costs less than a helper call.
#[inline(always)]
pub fn syscall_arg<T: Copy>(ctx: &TracePointContext, offset: usize) -> T {
    // SAFETY: `offset` is one of the constants above (or the listen fd's),
    // aligned and inside every kernel's syscall record, and the verifier
    // checks the access against the context's bounds at load; `T` is an
    // 8-byte integer, valid for any bits.
    unsafe { core::ptr::read(ctx.as_ptr().cast::<u8>().add(offset).cast::<T>()) }
}

/// The destination in a sockaddr's first 16 bytes (family, port, and the
/// IPv4 address; an IPv6 address is at byte 8 and read by the caller), or
/// None for families other than AF_INET and AF_INET6.
#[inline(always)]
fn destination(sa: &[u8; 16]) -> Option<Flow> {
    let family = u16::from_ne_bytes([sa[0], sa[1]]);
    if family != AF_INET && family != AF_INET6 {
        return None;
    }
    let mut flow = Flow {
        family,
        // sockaddr_in and sockaddr_in6 both keep the port at byte 2.
        dport: u16::from_be_bytes([sa[2], sa[3]]),
        ..Flow::default()
    };
    if family == AF_INET {
        flow.daddr[..4].copy_from_slice(&sa[4..8]);
    }
    Some(flow)
}

/// Where a connect() entry finds its socket.
enum Socket {
    /// The kernel's `struct socket` (fentry): its TCP sock is found at once.
    Kernel(u64),
    /// A file descriptor of the task (syscall tracepoint): found at the
    /// return, so that the entry, which every connect() to an IPv4 or IPv6
    /// address runs, whatever the socket, stays short. The walk of the fd
    /// table costs the same there, and finds the same file unless another
    /// thread closed the descriptor during the call.
    Fd(i64),
}

/// Starts timing a connect() whose sockaddr begins with `sa`, if it is to
/// an IPv4 or IPv6 address, from a task the filter allows, on `socket`
/// (only TCP sockets are timed); `v6_daddr` reads an IPv6 destination
/// address.
#[inline(always)]
fn start(
    sa: &[u8; 16],
    socket: Socket,
    v6_daddr: impl FnOnce() -> Result<[u8; 16], i64>,
) -> Result<(), i64> {
    let Some(mut flow) = destination(sa) else {
        return Ok(());
    };
    if !filter::current_task_allowed() {
        return Ok(());
    }
    let (sk, fd) = match socket {
        Socket::Kernel(socket) => match tcp_sock_of_socket(socket)? {
            Some(sk) => (sk, -1),
            None => return Ok(()),
        },
        Socket::Fd(fd) if fd < 0 => return Ok(()),
        Socket::Fd(fd) => (0, fd),
    };
    if flow.family == AF_INET6 {
        flow.daddr = v6_daddr()?;
    }
    let Some(slot) = CONNECT_TASK.current(true) else {
        map_full(StateMap::Connect);
        return Ok(());
    };
    // SAFETY: the kernel's pointer to this thread's value, valid until the
    // program returns; only this thread's programs use it.
    unsafe {
        if (*slot).start_ns == 0 {
            in_flight(1);
        }
        *slot = ConnectStart {
            start_ns: now(),
            sk,
            fd,
            flow,
        };
    }
    Ok(())
}

#[tracepoint(category = "syscalls", name = "sys_enter_connect")]
pub fn sys_enter_connect(ctx: TracePointContext) -> u32 {
    let result = try_sys_enter_connect(&ctx);
    done(&ctx, programs::SYS_ENTER_CONNECT, result);
    0
}

fn try_sys_enter_connect(ctx: &TracePointContext) -> Result<(), i64> {
    // Direct loads from the record (no helper call each, as read_at makes).
    let fd: i64 = syscall_arg(ctx, ENTER_FD);
    let uaddr: u64 = syscall_arg::<u64>(ctx, ENTER_ADDR);
    // One read for family, port and IPv4 address: sockaddr_in's 16 bytes,
    // which every AF_INET/AF_INET6 connect() passes at least.
    // SAFETY: bpf_probe_read_user checks the user address itself and fails
    // on memory it cannot read (not faulted in); any 16 bytes are a valid
    // [u8; 16].
    let sa: [u8; 16] = match unsafe { bpf_probe_read_user(uaddr as *const [u8; 16]) } {
        Ok(sa) => sa,
        // A shorter sockaddr of another family at the end of a page.
        Err(e) => {
            // SAFETY: as above, for a u16.
            let family: u16 =
                unsafe { bpf_probe_read_user(uaddr as *const u16) }.map_err(|e| e as i64)?;
            if family == AF_INET || family == AF_INET6 {
                return Err(e as i64);
            }
            return Ok(());
        }
    };
    start(
        &sa,
        Socket::Fd(fd),
        // SAFETY: as for `sa`: a checked read of 16 bytes of user memory.
        || unsafe { bpf_probe_read_user((uaddr + 8) as *const [u8; 16]) }.map_err(|e| e as i64),
    )
}

#[tracepoint(category = "syscalls", name = "sys_exit_connect")]
pub fn sys_exit_connect(ctx: TracePointContext) -> u32 {
    let ret: i64 = syscall_arg(&ctx, EXIT_RET);
    done(&ctx, programs::SYS_EXIT_CONNECT, finish(ret));
    0
}

/// `inet_stream_connect(struct socket *sock, struct sockaddr *uaddr, int
/// addr_len, int flags)`: connect() on every TCP socket, whether it came
/// through the syscall, io_uring or a kernel caller.
#[fentry(function = "inet_stream_connect")]
pub fn connect_fentry(ctx: FEntryContext) -> i32 {
    let result = try_connect_fentry(ctx.arg(0), ctx.arg(1));
    done(&ctx, programs::CONNECT_FENTRY, result);
    0
}

fn try_connect_fentry(socket: u64, uaddr: u64) -> Result<(), i64> {
    // The kernel's copy of the address (a sockaddr_storage for the syscall).
    let sa: [u8; 16] = read(uaddr, 0)?;
    start(&sa, Socket::Kernel(socket), || read(uaddr, 8))
}

#[fexit(function = "inet_stream_connect")]
pub fn connect_fexit(ctx: FExitContext) -> i32 {
    // The function returns int; sign-extend what the trampoline saved.
    let result =
        finish(fexit_ret::<i32>(&ctx, programs::RET_SLOT_INET_STREAM_CONNECT).unwrap_or(0) as i64);
    done(&ctx, programs::CONNECT_FEXIT, result);
    0
}

/// Ends the connect() of the current thread with return value `ret`: the
/// histogram, and an event when the call failed or was slow.
fn finish(ret: i64) -> Result<(), i64> {
    const ENOTSOCK: i32 = 88;
    const EINTR: i32 = 4;
    const EINPROGRESS: i32 = 115;
    // Restart codes (ERESTARTSYS..ERESTART_RESTARTBLOCK) never reach
    // userspace: an interrupted connect() returns EINTR there, or restarts.
    const RESTART: core::ops::RangeInclusive<i32> = 512..=516;
    let Some(slot) = CONNECT_TASK.current(false) else {
        return Ok(());
    };
    // SAFETY: as in `start`.
    let start = unsafe { *slot };
    if start.start_ns == 0 {
        return Ok(());
    }
    // SAFETY: as in `start`.
    unsafe { (*slot).start_ns = 0 };
    CONNECT_TASK.release();
    in_flight(u64::MAX);
    let errno = match ret {
        0.. => 0,
        _ if RESTART.contains(&(-ret as i32)) => EINTR,
        _ => -ret as i32,
    };
    if errno == ENOTSOCK {
        return Ok(());
    }
    let sk = match start.sk {
        0 => match tcp_sock_of_fd(start.fd)? {
            Some(sk) => sk,
            // Another kind of socket (UDP, a raw socket).
            None => return Ok(()),
        },
        sk => sk,
    };
    let latency_ns = now().saturating_sub(start.start_ns);
    let send_it = passes_threshold(latency_ns, errno);
    if !send_it && !filter::active() {
        // Nothing to send and nothing to filter on: the histogram is all.
        record_latency(HistId::Connect, latency_ns);
        return Ok(());
    }
    let mut flow = start.flow;
    // The local side is only known once the kernel picked it.
    if let Ok(now_flow) = sock_flow(sk) {
        flow.saddr = now_flow.saddr;
        flow.sport = now_flow.sport;
    }
    // A failed handshake's socket has lost its source address by now
    // (tcp_disconnect): take the 4-tuple its end saw. Failures only, so
    // healthy calls never look.
    if errno != 0 && errno != EINPROGRESS {
        // SAFETY: the value is copied at once.
        if let Some(failed) = unsafe { HANDSHAKE_FAILED.get(sk) }.copied() {
            let _ = HANDSHAKE_FAILED.remove(sk);
            flow.saddr = failed.saddr;
            flow.sport = failed.sport;
        }
    }
    let header = header(EventKind::Connect, sock_netns(sk));
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
