//! Building and sending records: headers, histograms, ring-buffer output.

use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid,
        bpf_ktime_get_boot_ns,
    },
    maps::ring_buf::RingBufEntry,
};
use tcptrace_common::{hist, EventHeader, EventKind, HistId};

use crate::maps::{add, bump, global, EVENTS, HISTOGRAMS, HIST_SUMS, LOST};

/// CLOCK_BOOTTIME in nanoseconds.
#[inline(always)]
pub fn now() -> u64 {
    // SAFETY: a helper without arguments that only reads the clock.
    unsafe { bpf_ktime_get_boot_ns() }
}

/// A header for the current task.
#[inline(always)]
pub fn header(kind: EventKind, netns: u32) -> EventHeader {
    let pid_tgid = bpf_get_current_pid_tgid();
    EventHeader {
        kind: kind as u8,
        _pad: [0; 3],
        pid: (pid_tgid >> 32) as u32,
        tid: pid_tgid as u32,
        netns,
        ts_ns: now(),
        // SAFETY: a helper without arguments about the current task.
        cgroup: unsafe { bpf_get_current_cgroup_id() },
        comm: bpf_get_current_comm().unwrap_or_default(),
    }
}

#[inline(always)]
pub fn record_latency(hist_id: HistId, latency_ns: u64) {
    bump(&HISTOGRAMS, hist::index(hist_id, hist::slot(latency_ns)));
    add(&HIST_SUMS, hist_id as u32, latency_ns);
}

/// Whether a timed event goes to userspace: failures always do, the rest
/// only when at least `min_latency_ns` long. `EINPROGRESS` (a non-blocking
/// connect) is not a failure.
#[inline(always)]
pub fn passes_threshold(latency_ns: u64, errno: i32) -> bool {
    const EINPROGRESS: i32 = 115;
    (errno != 0 && errno != EINPROGRESS) || latency_ns >= global!(CONFIG.min_latency_ns)
}

/// Unread bytes in `EVENTS` at which a record wakes the reader: one wake-up
/// per this many bytes (~2300 connect records) instead of one per record
/// while the reader keeps up. Below it the reader polls on a short timer
/// (`commands/live.rs`), so a lone event still shows within milliseconds.
pub const WAKEUP_BYTES: u64 = 256 << 10;

/// Sends a record of `kind`, counting it as lost when the ring buffer is full.
#[inline(always)]
pub fn send<T: Copy + 'static>(kind: EventKind, event: &T) {
    match EVENTS.reserve::<T>(0) {
        Some(mut slot) => {
            slot.write(*event);
            commit(slot);
        }
        None => bump(&LOST, kind as u32),
    }
}

/// Submits a record filled in place; every record goes through here so
/// that none wakes the reader on its own (see [`wakeup_flag`]).
#[inline(always)]
pub fn commit<T: 'static>(slot: RingBufEntry<T>) {
    slot.submit(wakeup_flag(core::mem::size_of::<T>() as u64));
}

/// Forces a wake-up when this record (with its 8-byte ring header) makes
/// the unread data cross a multiple of [`WAKEUP_BYTES`]; a crossing missed
/// in a race with another CPU is caught at the next multiple or by the
/// reader's timer.
#[inline(always)]
pub fn wakeup_flag(size: u64) -> u64 {
    let avail = EVENTS.query(BPF_RB_AVAIL_DATA as u64);
    let before = avail.saturating_sub(size + 8);
    if avail / WAKEUP_BYTES != before / WAKEUP_BYTES {
        BPF_RB_FORCE_WAKEUP as u64
    } else {
        BPF_RB_NO_WAKEUP as u64
    }
}
