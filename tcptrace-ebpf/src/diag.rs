//! Rare diagnostic paths: a kernel read that failed, a state that should not
//! happen. Each is counted in a per-CPU map (what the summary shows) and
//! logged through aya-log at info level, which `tcptrace -v` shows; without
//! `-v` userspace sets the programs' log level below info, so nothing is
//! written. Never called on a path taken per event in the normal case.

use aya_ebpf::EbpfContext;
use aya_log_ebpf::info;
use tcptrace_common::Stat;

use crate::maps::count;

/// Ends program `program` whose work returned `result`: a failed kernel read
/// (its helper's error code) is counted in [`Stat::ReadFailed`] and logged.
#[inline(always)]
pub fn done<C: EbpfContext>(ctx: &C, program: &str, result: Result<(), i64>) {
    if let Err(e) = result {
        count(Stat::ReadFailed);
        info!(ctx, "{}: kernel read failed (error {})", program, e);
    }
}
