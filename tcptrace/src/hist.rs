//! log2 latency histograms as kept by the kernel programs (see
//! `tcptrace_common::hist`): summing per-CPU slots, percentiles, rendering.

use std::fmt::Write as _;

use anyhow::{Context as _, Result};
use aya::maps::{MapData, PerCpuArray};
use tcptrace_common::{hist, HistId, HIST_SLOTS};

const SLOTS: usize = HIST_SLOTS as usize;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Histogram {
    pub slots: [u64; SLOTS],
}

impl Default for Histogram {
    fn default() -> Self {
        Self { slots: [0; SLOTS] }
    }
}

/// Lower bound of a slot's range (slot 0 holds 0 and 1).
pub fn slot_low(slot: usize) -> u64 {
    if slot == 0 {
        0
    } else {
        1u64 << slot
    }
}

/// Exclusive upper bound of a slot's range, saturating at u64::MAX.
pub fn slot_high(slot: usize) -> u64 {
    if slot >= 63 {
        u64::MAX
    } else {
        2u64 << slot
    }
}

impl Histogram {
    #[cfg(test)]
    pub fn record(&mut self, value: u64) {
        self.slots[hist::slot(value) as usize] += 1;
    }

    pub fn total(&self) -> u64 {
        self.slots.iter().sum()
    }

    /// The value below which `p` (0..=100) percent of samples fall, linearly
    /// interpolated inside the log2 slot that holds it. `None` when empty.
    pub fn percentile(&self, p: f64) -> Option<u64> {
        let total = self.total();
        if total == 0 {
            return None;
        }
        let rank = ((p / 100.0) * total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (slot, &count) in self.slots.iter().enumerate() {
            if count == 0 {
                continue;
            }
            if seen + count >= rank {
                let (lo, hi) = (slot_low(slot) as f64, slot_high(slot) as f64);
                let frac = (rank - seen) as f64 / count as f64;
                return Some((lo + (hi - lo) * frac) as u64);
            }
            seen += count;
        }
        None
    }

    /// bpftrace-style text rendering of the non-empty range.
    pub fn render(&self, indent: &str) -> String {
        let mut out = String::new();
        let used: Vec<usize> = (0..SLOTS).filter(|&s| self.slots[s] > 0).collect();
        let (Some(&first), Some(&last)) = (used.first(), used.last()) else {
            return out;
        };
        let max = self.slots[first..=last]
            .iter()
            .copied()
            .max()
            .unwrap_or(1)
            .max(1);
        for slot in first..=last {
            let count = self.slots[slot];
            let bar = "@".repeat(((count * 40).div_ceil(max)) as usize);
            let _ = writeln!(
                out,
                "{indent}[{:>6}, {:>6}) {count:>9} |{bar:<40}|",
                fmt_ns(slot_low(slot)),
                fmt_ns(slot_high(slot)),
            );
        }
        out
    }
}

/// Short human form of a nanosecond duration: 512ns, 4us, 1.5ms, 2s.
pub fn fmt_ns(ns: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1_000_000_000, "s"), (1_000_000, "ms"), (1_000, "us")];
    for (div, unit) in UNITS {
        if ns >= div {
            let v = ns as f64 / div as f64;
            return if v >= 100.0 || v.fract() == 0.0 {
                format!("{v:.0}{unit}")
            } else {
                format!("{v:.1}{unit}")
            };
        }
    }
    format!("{ns}ns")
}

/// Reads every histogram from the kernel's per-CPU array, summing CPUs.
pub fn read_all(map: &PerCpuArray<MapData, u64>) -> Result<Vec<(HistId, Histogram)>> {
    HistId::ALL
        .iter()
        .map(|&id| {
            let mut h = Histogram::default();
            for slot in 0..HIST_SLOTS {
                let values = map
                    .get(&hist::index(id, slot), 0)
                    .with_context(|| format!("reading HISTOGRAMS slot {slot} of {}", id.name()))?;
                h.slots[slot as usize] = values.iter().sum();
            }
            Ok((id, h))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_log2() {
        assert_eq!(hist::slot(0), 0);
        assert_eq!(hist::slot(1), 0);
        assert_eq!(hist::slot(2), 1);
        assert_eq!(hist::slot(3), 1);
        assert_eq!(hist::slot(1024), 10);
        assert_eq!(hist::slot(u64::MAX), 63);
        for s in 1..63 {
            assert_eq!(hist::slot(slot_low(s)), s as u32);
            assert_eq!(hist::slot(slot_high(s) - 1), s as u32);
        }
    }

    #[test]
    fn percentiles_interpolate_inside_slots() {
        let mut h = Histogram::default();
        assert_eq!(h.percentile(50.0), None);
        for _ in 0..90 {
            h.record(1500); // slot [1024, 2048)
        }
        for _ in 0..10 {
            h.record(1_000_000); // slot [524288, 1048576)
        }
        assert_eq!(h.total(), 100);
        let p50 = h.percentile(50.0).unwrap();
        assert!((1024..2048).contains(&p50), "{p50}");
        let p99 = h.percentile(99.0).unwrap();
        assert!((524_288..=1_048_576).contains(&p99), "{p99}");
        assert_eq!(h.percentile(100.0), Some(1_048_576));
    }

    #[test]
    fn render_spans_first_to_last_used_slot() {
        let mut h = Histogram::default();
        h.record(3);
        h.record(40);
        let text = h.render("  ");
        assert_eq!(text.lines().count(), 5, "{text}");
        assert!(text.starts_with("  [   2ns,    4ns)         1 |"), "{text}");
    }

    #[test]
    fn human_durations() {
        assert_eq!(fmt_ns(512), "512ns");
        assert_eq!(fmt_ns(4096), "4.1us");
        assert_eq!(fmt_ns(1_500_000), "1.5ms");
        assert_eq!(fmt_ns(2_000_000_000), "2s");
    }
}
