//! Maps and read-only globals shared by every hook family.

#[cfg(not(feature = "thread-hash"))]
use aya_ebpf::{
    bindings::{bpf_map_type, BPF_F_NO_PREALLOC, BPF_LOCAL_STORAGE_GET_F_CREATE},
    helpers::{bpf_get_current_task_btf, bpf_task_storage_get},
};
#[cfg(feature = "thread-hash")]
use aya_ebpf::{helpers::bpf_get_current_pid_tgid, maps::LruHashMap};
use aya_ebpf::{
    macros::map,
    maps::{PerCpuArray, RingBuf},
};
use tcptrace_common::{
    statemaps::StateMap, Config, EventKind, HistId, KernelOffsets, Stat, HIST_SLOTS,
};

/// Every event record goes through this ring buffer.
#[map(name = "EVENTS")]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(1 << 22, 0);

/// log2 latency histograms, `HistId::COUNT * HIST_SLOTS` slots.
#[map(name = "HISTOGRAMS")]
pub static HISTOGRAMS: PerCpuArray<u64> =
    PerCpuArray::with_max_entries(HistId::COUNT * HIST_SLOTS, 0);

/// Sum in ns of the values recorded in each histogram, indexed by `HistId`.
#[map(name = "HIST_SUMS")]
pub static HIST_SUMS: PerCpuArray<u64> = PerCpuArray::with_max_entries(HistId::COUNT, 0);

/// Ring-buffer reserve failures, indexed by `EventKind`.
#[map(name = "LOST")]
pub static LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(EventKind::SLOTS, 0);

/// Other counters, indexed by `Stat`.
#[map(name = "STATS")]
pub static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(Stat::COUNT, 0);

/// Insert failures of the per-thread and per-socket state maps, indexed by
/// `StateMap` (the total is `Stat::StateMapFull`).
#[map(name = "STATE_MAP_FULL")]
pub static STATE_MAP_FULL: PerCpuArray<u64> = PerCpuArray::with_max_entries(StateMap::COUNT, 0);

/// A task storage map (`BPF_MAP_TYPE_TASK_STORAGE`): one value per thread,
/// reached from the task itself (no hash, no insert or delete), freed with
/// the thread. Declared the BTF way (a `.maps` section entry whose member
/// types carry the map's type, key, value and flags), since the kernel takes
/// the key and value types of local storage from the object's BTF.
#[cfg(not(feature = "thread-hash"))]
#[repr(C)]
pub struct TaskStorage<T> {
    r#type: *const [i32; bpf_map_type::BPF_MAP_TYPE_TASK_STORAGE as usize],
    key: *const i32,
    value: *const T,
    map_flags: *const [i32; BPF_F_NO_PREALLOC as usize],
}

// SAFETY: the members are never dereferenced; only their BTF types matter.
#[cfg(not(feature = "thread-hash"))]
unsafe impl<T> Sync for TaskStorage<T> {}

#[cfg(not(feature = "thread-hash"))]
impl<T> TaskStorage<T> {
    pub const fn new() -> Self {
        Self {
            r#type: core::ptr::null(),
            key: core::ptr::null(),
            value: core::ptr::null(),
            map_flags: core::ptr::null(),
        }
    }

    /// The current thread's value, created zeroed first when `create`. None
    /// when it has none (and not `create`), or the kernel refused (no
    /// memory, or the storage busy on this CPU).
    #[inline(always)]
    pub fn current(&self, create: bool) -> Option<*mut T> {
        let flags = if create {
            u64::from(BPF_LOCAL_STORAGE_GET_F_CREATE)
        } else {
            0
        };
        // SAFETY: `self` is a task storage map in `.maps` (the loader puts
        // its fd in this address), the task is the current one as a
        // trusted BTF pointer, and a null initial value makes the kernel
        // zero a new value; the helper checks everything else itself.
        let value = unsafe {
            bpf_task_storage_get(
                core::ptr::from_ref(self).cast_mut().cast(),
                bpf_get_current_task_btf(),
                core::ptr::null_mut(),
                flags,
            )
        };
        (!value.is_null()).then_some(value.cast())
    }

    /// Done with the current thread's value: it stays, with the thread.
    #[inline(always)]
    pub fn release(&self) {}
}

/// [`TaskStorage`]'s interface over an LRU hash keyed by thread
/// (`pid_tgid`): the object built with the `thread-hash` feature, which
/// userspace loads on kernels without task storage (before 5.11). A value
/// lives from the call's entry to its [`release`](Self::release); LRU, so
/// one whose return the kernel skipped is recycled.
#[cfg(feature = "thread-hash")]
#[repr(transparent)]
pub struct ThreadHash<T: 'static>(LruHashMap<u64, T>);

#[cfg(feature = "thread-hash")]
impl<T: Default + 'static> ThreadHash<T> {
    pub const fn with_max_entries(max_entries: u32) -> Self {
        Self(LruHashMap::with_max_entries(max_entries, 0))
    }

    /// The current thread's value, inserted as `T::default()` first when
    /// `create`. None when it has none (and not `create`), or the insert
    /// failed.
    #[inline(always)]
    pub fn current(&self, create: bool) -> Option<*mut T> {
        let key = bpf_get_current_pid_tgid();
        if let Some(value) = self.0.get_ptr_mut(key) {
            return Some(value);
        }
        if !create {
            return None;
        }
        self.0.insert(key, T::default(), 0).ok()?;
        self.0.get_ptr_mut(key)
    }

    /// Done with the current thread's value: removes it (a pointer from
    /// [`current`](Self::current) is not used after this).
    #[inline(always)]
    pub fn release(&self) {
        // Already gone (recycled) is as good as removed.
        let _ = self.0.remove(bpf_get_current_pid_tgid());
    }
}

#[unsafe(no_mangle)]
pub static OFFSETS: KernelOffsets = KernelOffsets {
    task_files: 0,
    files_fdt: 0,
    fdtable_max_fds: 0,
    fdtable_fd: 0,
    file_private_data: 0,
    socket_type: 0,
    socket_sk: 0,
    sock_protocol: 0,
    skc_daddr: 0,
    skc_rcv_saddr: 0,
    skc_dport: 0,
    skc_num: 0,
    skc_family: 0,
    skc_net: 0,
    skc_v6_daddr: 0,
    skc_v6_rcv_saddr: 0,
    net_ns_inum: 0,
    skb_head: 0,
    skb_network_header: 0,
    skb_transport_header: 0,
    sk_err: 0,
    tcp_total_retrans: 0,
    inet_sport: 0,
    tcp_segs_out: 0,
    skc_state: 0,
};

#[unsafe(no_mangle)]
pub static CONFIG: Config = Config::DEFAULT;

/// Reads one field of a read-only global so the compiler cannot fold it to the
/// zero it was compiled with.
macro_rules! global {
    ($global:ident . $($field:ident).+) => {
        // SAFETY: the globals are statics of plain integers, initialised,
        // and never written once loaded (userspace patches them before the
        // verifier sees them): a volatile read of one field is an ordinary
        // aligned read the compiler may not fold to the compiled-in value.
        unsafe { core::ptr::read_volatile(&raw const $crate::maps::$global.$($field).+) }
    };
}
pub(crate) use global;

#[inline(always)]
pub fn bump(map: &PerCpuArray<u64>, index: u32) {
    if let Some(slot) = map.get_ptr_mut(index) {
        // SAFETY: this CPU's value of a per-CPU array, valid while the
        // program runs. Not atomic: only a program that preempts this one
        // on the same CPU could lose an update (a counter off by one).
        unsafe { *slot += 1 };
    }
}

/// Adds `value` to slot `index` of a per-CPU counter array.
#[inline(always)]
pub fn add(map: &PerCpuArray<u64>, index: u32, value: u64) {
    if let Some(slot) = map.get_ptr_mut(index) {
        // SAFETY: the pointer is this CPU's slot of a per-CPU array, valid
        // for the program's run, and no other program writes it meanwhile.
        unsafe { *slot = (*slot).wrapping_add(value) };
    }
}

#[inline(always)]
pub fn count(stat: Stat) {
    bump(&STATS, stat as u32);
}

/// An insert into state map `m` failed: the event it tracks is lost.
#[inline(always)]
pub fn map_full(m: StateMap) {
    bump(&STATE_MAP_FULL, m as u32);
    count(Stat::StateMapFull);
}
