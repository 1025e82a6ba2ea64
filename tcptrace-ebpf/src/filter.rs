//! `--pid/--comm/--cgroup/--netns/--port/--addr` applied in the kernel, with
//! the same rules as userspace's `filter::Filter::matches` for recordings.

use aya_ebpf::helpers::{
    bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid,
};
use tcptrace_common::{
    config::{filter_flags as F, prefix_match},
    EventHeader, Flow,
};

use crate::maps::global;

const TASK_FLAGS: u32 = F::PID | F::COMM | F::CGROUP;

fn task_matches(pid: u32, comm: &[u8; 16], cgroup: u64, flags: u32) -> bool {
    (flags & F::PID == 0 || pid == global!(CONFIG.filter.pid))
        && (flags & F::COMM == 0 || *comm == global!(CONFIG.filter.comm))
        && (flags & F::CGROUP == 0 || cgroup == global!(CONFIG.filter.cgroup))
}

/// Early check for hooks that run in the calling task: skips the work for
/// tasks the filter excludes.
#[inline(always)]
pub fn current_task_allowed() -> bool {
    let flags = global!(CONFIG.filter.flags);
    if flags & TASK_FLAGS == 0 {
        return true;
    }
    let pid = (bpf_get_current_pid_tgid() >> 32) as u32;
    let comm = bpf_get_current_comm().unwrap_or_default();
    // SAFETY: a helper without arguments about the current task.
    let cgroup = unsafe { bpf_get_current_cgroup_id() };
    task_matches(pid, &comm, cgroup, flags)
}

/// Whether any filter is set.
#[inline(always)]
pub fn active() -> bool {
    global!(CONFIG.filter.flags) != 0
}

/// Whether an event passes every filter that is set.
#[inline(always)]
pub fn allows(h: &EventHeader, flow: &Flow) -> bool {
    let flags = global!(CONFIG.filter.flags);
    if flags == 0 {
        return true;
    }
    if !task_matches(h.pid, &h.comm, h.cgroup, flags) {
        return false;
    }
    if flags & F::NETNS != 0 && h.netns != global!(CONFIG.filter.netns) {
        return false;
    }
    if flags & F::PORT != 0 {
        let port = global!(CONFIG.filter.port);
        if flow.sport != port && flow.dport != port {
            return false;
        }
    }
    if flags & F::ADDR != 0 {
        let net = global!(CONFIG.filter.addr);
        let len = global!(CONFIG.filter.prefix_len);
        if flow.family != global!(CONFIG.filter.addr_family)
            || !(prefix_match(&flow.saddr, &net, len) || prefix_match(&flow.daddr, &net, len))
        {
            return false;
        }
    }
    true
}
