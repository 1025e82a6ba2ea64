//! Reading kernel structures through offsets resolved from BTF at load time.

use aya_ebpf::{
    helpers::{bpf_get_current_task, bpf_probe_read_kernel},
    programs::FExitContext,
    Argument,
};
use tcptrace_common::{event::AF_INET6, Flow};

use crate::maps::global;

/// Reads a `T` at `base + offset` in kernel memory. Only for types valid
/// for any bit pattern (integers, arrays of them).
#[inline(always)]
pub fn read<T>(base: u64, offset: u32) -> Result<T, i64> {
    // SAFETY: bpf_probe_read_kernel checks the source address itself and
    // fails on memory it cannot read; every T read here (integers, byte
    // arrays) is valid for any bytes it copies.
    unsafe { bpf_probe_read_kernel((base + offset as u64) as *const T) }.map_err(|e| e as i64)
}

/// Network namespace inode of a socket.
#[inline(always)]
pub fn sock_netns(sk: u64) -> u32 {
    let Ok(net) = read::<u64>(sk, global!(OFFSETS.skc_net)) else {
        return 0;
    };
    read::<u32>(net, global!(OFFSETS.net_ns_inum)).unwrap_or(0)
}

/// The socket's 4-tuple as it stands now (local port 0 until one is bound).
#[inline(always)]
pub fn sock_flow(sk: u64) -> Result<Flow, i64> {
    let family: u16 = read(sk, global!(OFFSETS.skc_family))?;
    let mut flow = Flow {
        family,
        sport: read(sk, global!(OFFSETS.skc_num))?,
        dport: u16::from_be(read(sk, global!(OFFSETS.skc_dport))?),
        ..Flow::default()
    };
    if family == AF_INET6 {
        flow.saddr = read(sk, global!(OFFSETS.skc_v6_rcv_saddr))?;
        flow.daddr = read(sk, global!(OFFSETS.skc_v6_daddr))?;
    } else {
        let saddr: [u8; 4] = read(sk, global!(OFFSETS.skc_rcv_saddr))?;
        let daddr: [u8; 4] = read(sk, global!(OFFSETS.skc_daddr))?;
        flow.saddr[..4].copy_from_slice(&saddr);
        flow.daddr[..4].copy_from_slice(&daddr);
    }
    Ok(flow)
}

/// The `struct sock` behind file descriptor `fd` of the current task, if it is
/// a TCP socket (SOCK_STREAM with protocol IPPROTO_TCP).
#[inline(always)]
pub fn tcp_sock_of_fd(fd: i64) -> Result<Option<u64>, i64> {
    if fd < 0 {
        return Ok(None);
    }
    // SAFETY: a helper without arguments; the task's address is only read
    // through bpf_probe_read_kernel.
    let task = unsafe { bpf_get_current_task() };
    let files: u64 = read(task, global!(OFFSETS.task_files))?;
    let fdt: u64 = read(files, global!(OFFSETS.files_fdt))?;
    // fdtable starts { max_fds; fd } on every kernel: one read for both
    // where the offsets say so (one helper call less), two otherwise.
    let (max_at, fd_at) = (
        global!(OFFSETS.fdtable_max_fds),
        global!(OFFSETS.fdtable_fd),
    );
    let (max_fds, fds) = if fd_at == max_at + 8 {
        let both: [u64; 2] = read(fdt, max_at)?;
        (both[0] as u32, both[1])
    } else {
        (read::<u32>(fdt, max_at)?, read::<u64>(fdt, fd_at)?)
    };
    if fd as u64 >= max_fds as u64 {
        return Ok(None);
    }
    let file: u64 = read(fds, (fd as u32) * 8)?;
    if file == 0 {
        return Ok(None);
    }
    tcp_sock_of_socket(read(file, global!(OFFSETS.file_private_data))?)
}

/// The `struct sock` of a `struct socket`, if it is a TCP socket.
#[inline(always)]
pub fn tcp_sock_of_socket(socket: u64) -> Result<Option<u64>, i64> {
    const SOCK_STREAM: i16 = 1;
    const IPPROTO_TCP: u16 = 6;
    let sock_type: i16 = read(socket, global!(OFFSETS.socket_type))?;
    if sock_type != SOCK_STREAM {
        return Ok(None);
    }
    let sk: u64 = read(socket, global!(OFFSETS.socket_sk))?;
    if sk == 0 || read::<u16>(sk, global!(OFFSETS.sock_protocol))? != IPPROTO_TCP {
        return Ok(None);
    }
    Ok(Some(sk))
}

/// The return value of an fexit program's function, whose parameter count
/// on kernels before 5.11 is `slot` (`programs::RET_SLOT_*`):
/// `bpf_get_func_ret` (5.17+), or in the thread-hash object, loaded on
/// kernels without task storage (before 5.11), the trampoline's context
/// slot after the arguments (userspace checked the count against BTF).
#[inline(always)]
pub fn fexit_ret<T: Argument>(ctx: &FExitContext, slot: usize) -> Result<T, i32> {
    #[cfg(feature = "thread-hash")]
    {
        Ok(ctx.arg(slot))
    }
    #[cfg(not(feature = "thread-hash"))]
    {
        let _ = slot;
        ctx.ret()
    }
}
