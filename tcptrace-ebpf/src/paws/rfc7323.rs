//! The PAWS test as the kernel applies it (`include/net/tcp.h`), and the
//! clocks it compares with.

/// RFC 7323 limits the kernel applies.
const PAWS_24DAYS_S: u32 = 60 * 60 * 24 * 24;
const PAWS_MSL_S: u32 = 60;
/// TCP_PAWS_WINDOW: on synchronized sockets a TSval one tick old still passes.
pub const PAWS_WINDOW: i32 = 1;

/// `ktime_get_seconds()` as the kernel compares it (32-bit).
#[inline(always)]
fn now_seconds() -> u32 {
    (now_monotonic_ns() / 1_000_000_000) as u32
}

/// CLOCK_MONOTONIC in nanoseconds (the clock of `tcp_time_stamp` and
/// `ktime_get_seconds`).
#[inline(always)]
pub fn now_monotonic_ns() -> u64 {
    // SAFETY: a helper without arguments that only reads the clock.
    unsafe { aya_ebpf::helpers::bpf_ktime_get_ns() }
}

/// `time_before32(a, b)`.
#[inline(always)]
pub fn before32(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

/// `tcp_paws_check(rx_opt, win)` failing: the stamp is older than
/// `ts_recent` by more than `win`, `ts_recent` is set and under 24 days old.
#[inline(always)]
pub fn paws_fails(ts_recent: u32, ts_recent_stamp: u32, tsval: u32, win: i32) -> bool {
    (ts_recent.wrapping_sub(tsval) as i32) > win
        && ts_recent != 0
        && before32(now_seconds(), ts_recent_stamp.wrapping_add(PAWS_24DAYS_S))
}

/// `tcp_paws_reject(rx_opt, rst)`: an RST is let through once the stored
/// stamp is older than TCP_PAWS_MSL.
#[inline(always)]
pub fn paws_rejects(ts_recent: u32, ts_recent_stamp: u32, tsval: u32, rst: bool) -> bool {
    paws_fails(ts_recent, ts_recent_stamp, tsval, 0)
        && (!rst || before32(now_seconds(), ts_recent_stamp.wrapping_add(PAWS_MSL_S)))
}
