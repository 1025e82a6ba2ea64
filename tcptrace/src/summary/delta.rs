//! Kernel counters between two snapshots: a fresh run's zeros, and what
//! happened since a baseline (a rotated file's first counters, or the start
//! of a replay window).

use tcptrace_common::{EventKind, HistId, Stat};

use super::KernelCounters;
use crate::{hist::Histogram, mapstats::MapFill, syn::SynKernelCounters};

impl KernelCounters {
    /// Counters of a fresh run: every histogram, kind and stat at zero.
    pub fn zero() -> Self {
        Self {
            hists: HistId::ALL
                .iter()
                .map(|&id| (id, Histogram::default()))
                .collect(),
            lost: EventKind::ALL.iter().map(|&k| (k, 0)).collect(),
            stats: Stat::ALL.iter().map(|&s| (s, 0)).collect(),
            syn: SynKernelCounters::default(),
            rst_sent: Vec::new(),
            missed: Vec::new(),
            maps: Vec::new(),
        }
    }

    /// `self - base` slot by slot and counter by counter (counters only
    /// grow, so this is what happened between two snapshots).
    pub fn since(&self, base: &Self) -> Self {
        let (a, b) = (self, base);
        Self {
            hists: a
                .hists
                .iter()
                .map(|(id, h)| {
                    let mut d = h.clone();
                    if let Some((_, base)) = b.hists.iter().find(|(i, _)| i == id) {
                        for (x, y) in d.slots.iter_mut().zip(base.slots.iter()) {
                            *x = x.saturating_sub(*y);
                        }
                    }
                    (*id, d)
                })
                .collect(),
            lost: a
                .lost
                .iter()
                .map(|(kind, n)| {
                    let base = b.lost.iter().find(|(k, _)| k == kind).map_or(0, |x| x.1);
                    (*kind, n.saturating_sub(base))
                })
                .collect(),
            stats: a
                .stats
                .iter()
                .map(|(s, n)| {
                    let base = b.stats.iter().find(|(x, _)| x == s).map_or(0, |x| x.1);
                    (*s, n.saturating_sub(base))
                })
                .collect(),
            syn: SynKernelCounters {
                answered: std::array::from_fn(|i| {
                    a.syn.answered[i].saturating_sub(b.syn.answered[i])
                }),
                // Answer counts since `b`; queue state as of `a`.
                listeners: a
                    .syn
                    .listeners
                    .iter()
                    .map(|(id, c)| {
                        let mut d = *c;
                        if let Some((_, base)) = b.syn.listeners.iter().find(|(i, _)| i == id) {
                            d.answered_normal =
                                c.answered_normal.saturating_sub(base.answered_normal);
                            d.answered_cookie =
                                c.answered_cookie.saturating_sub(base.answered_cookie);
                            d.answered_fastopen =
                                c.answered_fastopen.saturating_sub(base.answered_fastopen);
                        }
                        (id.clone(), d)
                    })
                    .collect(),
            },
            rst_sent: named_since(&a.rst_sent, &b.rst_sent),
            missed: named_since(&a.missed, &b.missed),
            // Entries as of `a`; failed inserts since `b`.
            maps: a
                .maps
                .iter()
                .map(|m| {
                    let base = b.maps.iter().find(|x| x.name == m.name);
                    MapFill {
                        full_failures: m
                            .full_failures
                            .saturating_sub(base.map_or(0, |x| x.full_failures)),
                        ..m.clone()
                    }
                })
                .collect(),
        }
    }
}

/// `a - b` for (name, count) counters.
fn named_since(a: &[(String, u64)], b: &[(String, u64)]) -> Vec<(String, u64)> {
    a.iter()
        .map(|(name, n)| {
            let base = b.iter().find(|(x, _)| x == name).map_or(0, |x| x.1);
            (name.clone(), n.saturating_sub(base))
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use std::net::{IpAddr, Ipv6Addr};

    use tcptrace_common::syn::ListenerCounters;

    use super::*;
    use crate::syn::ListenerId;

    /// Counters with every part filled, scaled by `seed`.
    pub fn counters(seed: u64) -> KernelCounters {
        let mut k = KernelCounters::zero();
        k.rst_sent = vec![
            ("NO_SOCKET".into(), seed * 5),
            ("TCP_RFC7323_PAWS".into(), seed),
        ];
        k.syn.answered[1] = seed * 3;
        k.syn.listeners.push((
            ListenerId {
                netns: 4026531840,
                addr: IpAddr::V6(Ipv6Addr::LOCALHOST),
                port: 8080,
            },
            ListenerCounters {
                answered_normal: seed * 11,
                answered_cookie: seed,
                last_ns: 77,
                backlog: 5,
                backlog_max: 128,
                syn_queue: 2,
                ..ListenerCounters::default()
            },
        ));
        for (i, (_, h)) in k.hists.iter_mut().enumerate() {
            h.slots[10 + i] = seed + 3;
            h.slots[20] = seed * 7;
        }
        k.lost[0].1 = seed;
        k.stats[1].1 = seed + 1;
        k.maps = vec![
            MapFill {
                name: "connect".into(),
                entries: seed * 2,
                capacity: 16384,
                lru: true,
                full_failures: seed,
            },
            MapFill {
                name: "syn_ghosts".into(),
                entries: 1,
                capacity: 8192,
                lru: false,
                full_failures: 0,
            },
        ];
        k
    }

    #[test]
    fn counters_subtract() {
        let d = counters(5).since(&counters(2));
        assert_eq!(d.lost[0].1, 3);
        assert_eq!(d.hists[0].1.slots[20], 21);
        assert_eq!(d.syn.answered[1], 9);
        assert_eq!(d.syn.listeners[0].1.answered_normal, 33);
        assert_eq!(d.syn.listeners[0].1.backlog, 5);
        assert_eq!(d.maps[0].entries, 10, "entries are a level, not a count");
        assert_eq!(d.maps[0].full_failures, 3);
        assert!(!d.maps[1].lru);
        assert_eq!(counters(2).since(&KernelCounters::zero()), counters(2));
    }
}
