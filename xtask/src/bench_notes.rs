//! The prose of BENCHMARKS.md: what each measured cost is made of, why a
//! missed target was missed, and what design change would close it.

use std::fmt::Write as _;

use crate::bench_report::Verdict;

const HOTPATH: &str = "\
**Hot path.** Per connect(), tcptrace runs two programs. Where the kernel \
allows BPF trampolines they are fentry/fexit on `inet_stream_connect`, \
which gets the socket and the kernel's copy of the address: at entry one \
read of the address, three reads to check the socket is TCP and a write \
of the start into the thread's own task storage (no hash map: the kernel \
finds the value from the task), and no cost on any other syscall. \
Elsewhere (this host refuses fentry) they run on the syscall tracepoints: \
at entry one user read of the sockaddr, a walk from the task's fd table \
to the `struct sock` (six kernel reads, so that only TCP sockets are \
counted) and the same write. At exit, either way: the same task-storage \
lookup, a per-CPU histogram increment and, only when the call failed or \
was slow, \
the 4-tuple, netns, cgroup and comm read into a 104-byte record reserved \
in the ring buffer. The syscall tracepoints attach first, so events flow \
at once; fentry/fexit replace them once attached, and both share the \
in-flight state, so a call that straddles the swap is counted once. \
Records do not wake the reader one by one: every record is submitted with \
`BPF_RB_NO_WAKEUP`, a wake-up is forced only when the unread data crosses \
a multiple of 256 KiB, and the reader polls every 5 ms while events flow \
(backing off to 40 ms when idle); `eisconn_paced` shows what a wake-up \
per event costs the traced call (bpftrace's perf-buffer output wakes its \
reader for every event). Where every call is an event, tcptrace is a \
fraction of bpftrace. Where calls produce no event (`loopback`, \
`synflood`: successful or in-progress connects under the threshold) the \
cost on this host is dominated by the syscall tracepoints themselves: \
`bpftrace[empty programs]`, two empty programs on the same tracepoints, \
already adds most of what the full script adds, so no tracer built on \
these tracepoints can add less than that floor, and half of bpftrace's \
figure lies below it. tcptrace's own work on that path (the fd walk, the \
task-storage write and read, the histogram) is the difference between its \
figure and the floor; the task storage replaced an LRU hash map keyed by \
thread (an insert at entry, a lookup and a delete at exit), about 85 ns \
per call on this host (`eisconn`, `tcptrace@hashmap` rows). With every hook this kernel allows, tcptrace also \
runs on every listen() call (listener owners), every freed socket \
buffer (one kfree_skb program, which returns at once unless the drop \
reason is one it reports; the healthy-traffic cost section counts its \
runs) and every reset, and reports each RST \
the loopback close produces (an accepted-RST event per connection): more \
work than the script does. The VM sections measure the connect hook on \
fentry/fexit against the same hook on the syscall tracepoints and against \
empty programs there (bpftrace is not in the VMs; its script cannot cost \
less than those empty programs), under emulation, where only ratios \
between rows of one VM mean anything. What would cut further on this \
host: nothing on the syscall tracepoints below their floor; raw \
tracepoints on sys_enter/sys_exit cost a connect() less but run a program \
on every syscall of every task.";

const STARTUP: &str = "\
**Start-up.** tcptrace reads the kernel BTF for struct offsets and \
function signatures (a lean index of its own: one pass recording where \
each type starts, lookups decode only what they walk), loads the object \
(maps created, the 4 MiB ring buffer zeroed) and attaches the hooks that \
need only plain tracepoints, connect() among them; from then on events \
are printed while the hooks that need aya's own parse of the BTF (fentry, \
tp_btf) or more verifier work attach on another thread; `tracing;` is \
printed once every hook is attached (a recording waits for it, since its \
header lists every hook). The diagnosis baseline (/proc counters of each \
namespace, no socket tables) is taken on a third thread meanwhile; \
/proc/kallsyms is read only to explain a failed attach; once the kernel \
refuses an fentry load (EPERM) later hooks skip the attempt. bpftrace \
compiles and loads two small programs for this script and waits for \
both. What would cut the rest: attaching hook families in parallel \
threads (program loads verify independently), or caching the offsets per \
kernel build ID so the BTF is not read before the first hook.";

const PIPELINE: &str = "\
**Pipeline.** The drain loop decodes each record, counts it in the \
summary and feeds the diagnosis engine; the live diagnosis used to build \
a JSON object per event and parse its time and addresses back (about \
1 µs per event, which kept the drain under 1 M/s); it now reads connect \
and port_search records directly, checked field by field against the JSON \
view in a unit test. At these rates the drain uses a small share of its \
core; losses come from scheduling: the 4 MiB ring holds about 37,000 \
records, 18 ms at 2 M/s, and on a machine where other processes share the \
drain's CPU a longer gap before it runs again drops records (counted, per \
kind, never silent). Closing that: a larger ring (16–64 MiB, locked \
kernel memory), smaller records (comm and cgroup are 24 of the 104 bytes \
and could move to a per-task table sent once), a drain thread at a \
real-time priority, or in-kernel aggregation for the kinds that come by \
the million.";

/// One paragraph per target family, with the measured shortfall first when
/// the target was missed.
pub fn notes(verdicts: &[Verdict]) -> String {
    let mut s = String::new();
    for (key, text) in [
        ("hotpath", HOTPATH),
        ("startup", STARTUP),
        ("pipeline", PIPELINE),
    ] {
        let missed: Vec<&Verdict> = verdicts
            .iter()
            .filter(|v| v.key == key && v.met == Some(false))
            .collect();
        for v in &missed {
            let _ = writeln!(s, "Missed: {} — measured {}.\n", v.target, v.measured);
        }
        let _ = writeln!(s, "{text}\n");
    }
    s
}
