//! Bench-only event source (`cargo xtask bench`): a program on the
//! `getppid()` syscall that emits synthetic connect records for one process,
//! so the ring buffer → userspace pipeline can be driven at millions of
//! events per second. tcptrace loads and attaches it only under the hidden
//! `--bench-flood` flag; normal runs never load it. And empty programs on
//! the connect() syscall tracepoints (`--bench-floor`): what attaching
//! anything there costs, the floor under every tracer of those tracepoints.

use crate::{maps, programs};

/// Name of the `Array<u32>` configuring the source: `[tgid, records per
/// call, varied]` (records all alike, or varied as real connects are).
pub const FLOOD_MAP: &str = maps::BENCH_FLOOD;
/// Name of the tracepoint program.
pub const FLOOD_PROGRAM: &str = programs::BENCH_FLOOD;
/// Upper bound on records per getppid() call.
pub const MAX_PER_CALL: u32 = 256;
/// Names of the empty programs on `syscalls:sys_enter_connect` and
/// `syscalls:sys_exit_connect`.
pub const FLOOR_PROGRAMS: [(&str, &str); 2] = [
    (programs::BENCH_FLOOR_ENTER, "sys_enter_connect"),
    (programs::BENCH_FLOOR_EXIT, "sys_exit_connect"),
];
