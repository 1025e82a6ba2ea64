//! The report's time axis: a bounded number of intervals, each holding
//! what happened in it (events by kind, the kernel's latency histograms,
//! TcpExt counter increments, each tracked listener's drops and backlog).
//! Intervals start one second wide and double, neighbours merged, when
//! the recording outgrows [`MAX_BUCKETS`], so memory stays the same for a
//! minute or a day of events.

use std::collections::BTreeMap;

use crate::hist::Histogram;

/// Most intervals on the axis.
pub const MAX_BUCKETS: usize = 300;
/// Listeners drawn over time (the first seen); the others add up in
/// the totals table only.
pub const MAX_LISTENERS: usize = 8;
/// The TcpExt counters drawn beside the events.
pub const TCPEXT: [&str; 9] = [
    "ListenOverflows",
    "ListenDrops",
    "TCPReqQFullDrop",
    "TCPReqQFullDoCookies",
    "TCPSynRetrans",
    "PAWSEstab",
    "PAWSActive",
    "PAWSTimewait",
    "TCPChallengeACK",
];
/// SYN drop causes, in the order of their JSON names' documentation.
pub const CAUSES: [&str; 3] = ["accept_queue_full", "syn_queue_full", "other"];

/// One listener's interval: drops by cause ([`CAUSES`] order), the largest
/// accept queue seen and its limit.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListenerSlot {
    pub drops: [u64; 3],
    pub backlog: Option<u32>,
    pub backlog_max: u32,
}

impl ListenerSlot {
    fn merge(&mut self, o: &Self) {
        for (a, b) in self.drops.iter_mut().zip(o.drops) {
            *a += b;
        }
        self.backlog = match (self.backlog, o.backlog) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        self.backlog_max = self.backlog_max.max(o.backlog_max);
    }
}

/// What happened in one interval.
#[derive(Clone, Debug, Default)]
pub struct Bucket {
    pub events: BTreeMap<&'static str, u64>,
    /// Kernel latency histograms, what they counted in this interval.
    pub hists: BTreeMap<&'static str, Histogram>,
    pub tcpext: BTreeMap<&'static str, u64>,
    /// Index = the listener's in [`Timeline::listeners`].
    pub listeners: Vec<ListenerSlot>,
}

impl Bucket {
    fn merge(&mut self, o: &Bucket) {
        for (k, n) in &o.events {
            *self.events.entry(k).or_default() += n;
        }
        for (k, h) in &o.hists {
            let mine = self.hists.entry(k).or_default();
            for (a, b) in mine.slots.iter_mut().zip(h.slots.iter()) {
                *a += b;
            }
        }
        for (k, n) in &o.tcpext {
            *self.tcpext.entry(k).or_default() += n;
        }
        if self.listeners.len() < o.listeners.len() {
            self.listeners
                .resize(o.listeners.len(), ListenerSlot::default());
        }
        for (a, b) in self.listeners.iter_mut().zip(&o.listeners) {
            a.merge(b);
        }
    }

    /// The slot of listener `i`, made when first needed.
    pub fn listener(&mut self, i: usize) -> &mut ListenerSlot {
        if self.listeners.len() <= i {
            self.listeners.resize(i + 1, ListenerSlot::default());
        }
        &mut self.listeners[i]
    }
}

/// A listener by where it listens: (netns, address, port).
pub type ListenerKey = (u32, String, u16);

/// The intervals from `origin`, each `width_ns` wide.
#[derive(Debug)]
pub struct Timeline {
    /// CLOCK_BOOTTIME of the first interval's start; anything earlier
    /// counts in the first interval.
    pub origin: u64,
    pub width_ns: u64,
    pub buckets: Vec<Bucket>,
    /// Listeners drawn over time, first seen first.
    pub listeners: Vec<ListenerKey>,
    /// The last time anything was placed.
    pub last: u64,
}

impl Timeline {
    pub fn new(origin: u64) -> Self {
        Self {
            origin,
            width_ns: 1_000_000_000,
            buckets: Vec::new(),
            listeners: Vec::new(),
            last: origin,
        }
    }

    /// The interval holding time `t`, widening the intervals when `t` is
    /// past the last one the axis may have.
    pub fn at(&mut self, t: u64) -> &mut Bucket {
        self.last = self.last.max(t);
        let mut i = self.index(t);
        while i >= MAX_BUCKETS {
            self.widen();
            i = self.index(t);
        }
        if self.buckets.len() <= i {
            self.buckets.resize_with(i + 1, Bucket::default);
        }
        &mut self.buckets[i]
    }

    fn index(&self, t: u64) -> usize {
        usize::try_from(t.saturating_sub(self.origin) / self.width_ns).unwrap_or(usize::MAX)
    }

    /// Twice as wide: each pair of neighbours merged into one.
    fn widen(&mut self) {
        self.width_ns = self.width_ns.saturating_mul(2);
        let old = std::mem::take(&mut self.buckets);
        for pair in old.chunks(2) {
            let mut b = pair[0].clone();
            if let Some(next) = pair.get(1) {
                b.merge(next);
            }
            self.buckets.push(b);
        }
    }

    /// The index of a listener drawn over time, `None` once
    /// [`MAX_LISTENERS`] others are.
    pub fn listener(&mut self, key: ListenerKey) -> Option<usize> {
        if let Some(i) = self.listeners.iter().position(|k| *k == key) {
            return Some(i);
        }
        if self.listeners.len() >= MAX_LISTENERS {
            return None;
        }
        self.listeners.push(key);
        Some(self.listeners.len() - 1)
    }

    /// Start of interval `i` (CLOCK_BOOTTIME).
    pub fn start_of(&self, i: usize) -> u64 {
        self.origin
            .saturating_add(self.width_ns.saturating_mul(i as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_double_and_keep_every_count() {
        let mut t = Timeline::new(1_000);
        let mut placed = 0u64;
        // One event every 0.7 s for 1000 s: past MAX_BUCKETS one-second
        // intervals, so they widen.
        for i in 0..1_430u64 {
            *t.at(1_000 + i * 700_000_000)
                .events
                .entry("connect")
                .or_default() += 1;
            placed += 1;
        }
        // And one before the origin: counted in the first interval.
        *t.at(0).events.entry("connect").or_default() += 1;
        placed += 1;
        assert!(t.buckets.len() <= MAX_BUCKETS);
        assert_eq!(t.width_ns, 4_000_000_000);
        let total: u64 = t.buckets.iter().map(|b| b.events["connect"]).sum();
        assert_eq!(total, placed);
    }

    #[test]
    fn listeners_are_bounded() {
        let mut t = Timeline::new(0);
        for port in 0..20u16 {
            let i = t.listener((1, "10.0.0.1".into(), port));
            assert_eq!(i.is_some(), usize::from(port) < MAX_LISTENERS);
        }
        assert_eq!(t.listener((1, "10.0.0.1".into(), 3)), Some(3));
        let b = t.at(5);
        b.listener(2).drops[0] += 1;
        b.listener(2).backlog = Some(7);
        assert_eq!(b.listeners.len(), 3);
    }
}
