//! In-kernel log2 latency histograms.
//!
//! The `HISTOGRAMS` per-CPU array holds `HistId::COUNT * HIST_SLOTS` u64 counters;
//! slot `s` of histogram `h` is at index `h * HIST_SLOTS + s`. Slot 0 counts
//! values of 0 and 1 ns, slot `s > 0` counts values in `[2^s, 2^(s+1))`.
//! The `HIST_SUMS` per-CPU array holds, at index `HistId`, the sum in ns of
//! every value recorded (the `_sum` of the Prometheus histograms).

/// Slots per histogram: enough for every u64 value.
pub const HIST_SLOTS: u32 = 64;

#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HistId {
    Connect = 0,
    PortSearch = 1,
    /// Active opens: SYN_SENT entered -> left (the `handshake` events).
    Handshake = 2,
}

impl HistId {
    pub const COUNT: u32 = 3;
    pub const ALL: [HistId; Self::COUNT as usize] =
        [HistId::Connect, HistId::PortSearch, HistId::Handshake];

    pub const fn name(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::PortSearch => "port_search",
            Self::Handshake => "handshake",
        }
    }
}

/// The slot a value falls into: floor(log2(v)), with 0 for v <= 1.
#[inline(always)]
pub const fn slot(v: u64) -> u32 {
    if v <= 1 {
        0
    } else {
        63 - v.leading_zeros()
    }
}

/// Index into the `HISTOGRAMS` array.
#[inline(always)]
pub const fn index(hist: HistId, slot: u32) -> u32 {
    hist as u32 * HIST_SLOTS + (slot & (HIST_SLOTS - 1))
}
