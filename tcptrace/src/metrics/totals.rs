//! What the event stream adds to the metrics: per-listener SYN-family
//! counts, PAWS rejects and received RSTs (optionally per peer), connect()
//! and port-search errors, ports probed. Kept by the drain and merged into
//! the copy the endpoint reads.

use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
};

use tcptrace_common::{
    paws::{PawsSite, RstVerdict},
    syn::SynDropCause,
    EventKind,
};

use super::topk::Tally;
use crate::{
    connect::decode::{ConnectDetail, PortSearchDetail},
    event::{Detail, Event},
    syn::ListenerId,
};

/// Distinct listeners (and peers) tracked one by one; beyond, their counts
/// go straight to `other`. Far above any label bound, so folding stays
/// a choice made at scrape time.
pub const MAX_TRACKED: usize = 16384;

/// `ports_probed` bucket bounds: 0, 1, 2, 4, ... 65536, then +Inf.
pub const PORT_BUCKETS: usize = 19;

/// SYN-family counts of one listener.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListenerTotals {
    /// By `SynDropCause` (accept_queue_full, syn_queue_full, other).
    pub drops: [u64; 3],
    /// By outcome: ghost, reset.
    pub overflows: [u64; 2],
    pub synack_retransmits: u64,
    /// Queue state at the newest event (boot ns).
    pub last_ns: u64,
    pub backlog: u32,
    pub backlog_max: u32,
}

impl ListenerTotals {
    pub fn activity(&self) -> u64 {
        self.drops.iter().sum::<u64>()
            + self.overflows.iter().sum::<u64>()
            + self.synack_retransmits
    }

    fn merge(&mut self, o: &Self) {
        self.drops.add(&o.drops);
        self.overflows.add(&o.overflows);
        self.synack_retransmits += o.synack_retransmits;
        if o.last_ns >= self.last_ns {
            self.last_ns = o.last_ns;
            self.backlog = o.backlog;
            self.backlog_max = o.backlog_max;
        }
    }
}

pub const OUTCOMES: [&str; 2] = ["ghost", "reset"];

/// Counts from the event stream, since the start.
#[derive(Clone, Debug, Default)]
pub struct Totals {
    /// Events observed (0: nothing to merge).
    pub events: u64,
    /// Events by `EventKind` value.
    pub by_kind: [u64; EventKind::SLOTS as usize],
    pub listeners: HashMap<ListenerId, ListenerTotals>,
    /// Listeners beyond [`MAX_TRACKED`], all together.
    pub untracked_listeners: ListenerTotals,
    /// By `PawsSite` (index = value - 1).
    pub paws: [u64; 4],
    /// By `RstVerdict` (index = value - 1).
    pub rst: [u64; 3],
    /// With per-peer series: (site or verdict index, peer) → count.
    pub per_peer: bool,
    pub paws_by_peer: HashMap<(usize, IpAddr), u64>,
    pub rst_by_peer: HashMap<(usize, IpAddr), u64>,
    /// Per-peer counts beyond [`MAX_TRACKED`] peers, by site / verdict.
    pub paws_untracked: [u64; 4],
    pub rst_untracked: [u64; 3],
    /// Failed calls by errno (EINPROGRESS, a non-blocking connect, is not
    /// a failure).
    pub connect_errors: BTreeMap<i32, u64>,
    pub port_search_errors: BTreeMap<i32, u64>,
    /// `ports_probed` of port searches, in [`PORT_BUCKETS`] buckets.
    pub ports_probed: [u64; PORT_BUCKETS],
    pub ports_probed_sum: u64,
}

/// The bucket of a `ports_probed` value: 0 → 0, n → ceil(log2 n) + 1,
/// anything above 65536 → the last (+Inf).
pub fn port_bucket(n: u32) -> usize {
    if n == 0 {
        return 0;
    }
    let b = (n - 1).checked_ilog2().map_or(1, |l| l as usize + 2);
    b.min(PORT_BUCKETS - 1)
}

/// Upper bound of a `ports_probed` bucket (`None`: +Inf).
pub fn port_bucket_le(b: usize) -> Option<f64> {
    match b {
        0 => Some(0.0),
        _ if b < PORT_BUCKETS - 1 => Some(f64::from(1u32 << (b - 1))),
        _ => None,
    }
}

const EINPROGRESS: i32 = 115;

impl Totals {
    pub fn new(per_peer: bool) -> Self {
        Self {
            per_peer,
            ..Self::default()
        }
    }

    pub fn observe(&mut self, ev: &Event) {
        self.events += 1;
        if let Some(n) = self.by_kind.get_mut(ev.kind as usize) {
            *n += 1;
        }
        match &ev.detail {
            Detail::Connect(ConnectDetail { errno, .. }) => {
                if *errno != 0 && *errno != EINPROGRESS {
                    *self.connect_errors.entry(*errno).or_default() += 1;
                }
            }
            Detail::PortSearch(PortSearchDetail {
                errno,
                ports_probed,
                ..
            }) => {
                if *errno != 0 {
                    *self.port_search_errors.entry(*errno).or_default() += 1;
                }
                self.ports_probed[port_bucket(*ports_probed)] += 1;
                self.ports_probed_sum += u64::from(*ports_probed);
            }
            Detail::Syn(d) => {
                let id = ListenerId {
                    netns: ev.netns,
                    addr: d.listen_addr,
                    port: ev.endpoints.sport,
                };
                let room = self.listeners.len() < MAX_TRACKED;
                let l = match self.listeners.get_mut(&id) {
                    Some(l) => l,
                    None if room => self.listeners.entry(id).or_default(),
                    None => &mut self.untracked_listeners,
                };
                match ev.kind {
                    EventKind::SynDrop => {
                        let cause = d.cause.unwrap_or(SynDropCause::Other);
                        l.drops[cause as usize - 1] += 1;
                    }
                    EventKind::ListenOverflow => {
                        l.overflows[usize::from(d.abort_on_overflow != 0)] += 1;
                    }
                    _ => l.synack_retransmits += 1,
                }
                if ev.ts_ns >= l.last_ns {
                    l.last_ns = ev.ts_ns;
                    l.backlog = d.backlog;
                    l.backlog_max = d.backlog_max;
                }
            }
            Detail::PawsReject(p) => {
                let i = p.site as usize - 1;
                self.paws[i] += 1;
                if self.per_peer {
                    bump_peer(&mut self.paws_by_peer, &mut self.paws_untracked, i, ev);
                }
            }
            // Counted by kind; their times are the handshake histogram.
            Detail::Handshake(_) => {}
            Detail::Rst(r) => {
                let i = r.verdict as usize - 1;
                self.rst[i] += 1;
                if self.per_peer {
                    bump_peer(&mut self.rst_by_peer, &mut self.rst_untracked, i, ev);
                }
            }
        }
    }

    /// Adds `o` (increments kept while the shared copy was busy).
    pub fn merge(&mut self, o: Totals) {
        self.events += o.events;
        self.by_kind.add(&o.by_kind);
        for (id, l) in o.listeners {
            let room = self.listeners.len() < MAX_TRACKED;
            match self.listeners.get_mut(&id) {
                Some(mine) => mine.merge(&l),
                None if room => {
                    self.listeners.insert(id, l);
                }
                None => self.untracked_listeners.merge(&l),
            }
        }
        self.untracked_listeners.merge(&o.untracked_listeners);
        self.paws.add(&o.paws);
        self.rst.add(&o.rst);
        merge_peers(
            &mut self.paws_by_peer,
            &mut self.paws_untracked,
            o.paws_by_peer,
        );
        merge_peers(
            &mut self.rst_by_peer,
            &mut self.rst_untracked,
            o.rst_by_peer,
        );
        self.paws_untracked.add(&o.paws_untracked);
        self.rst_untracked.add(&o.rst_untracked);
        for (e, n) in o.connect_errors {
            *self.connect_errors.entry(e).or_default() += n;
        }
        for (e, n) in o.port_search_errors {
            *self.port_search_errors.entry(e).or_default() += n;
        }
        self.ports_probed.add(&o.ports_probed);
        self.ports_probed_sum += o.ports_probed_sum;
    }
}

fn bump_peer<const N: usize>(
    map: &mut HashMap<(usize, IpAddr), u64>,
    untracked: &mut [u64; N],
    i: usize,
    ev: &Event,
) {
    let key = (i, ev.endpoints.daddr);
    if map.len() < MAX_TRACKED || map.contains_key(&key) {
        *map.entry(key).or_default() += 1;
    } else if let Some(n) = untracked.get_mut(i) {
        *n += 1;
    }
}

fn merge_peers<const N: usize>(
    map: &mut HashMap<(usize, IpAddr), u64>,
    untracked: &mut [u64; N],
    from: HashMap<(usize, IpAddr), u64>,
) {
    for (key, n) in from {
        if map.len() < MAX_TRACKED || map.contains_key(&key) {
            *map.entry(key).or_default() += n;
        } else if let Some(u) = untracked.get_mut(key.0) {
            *u += n;
        }
    }
}

/// Site and verdict names by index.
pub fn site_name(i: usize) -> &'static str {
    PawsSite::ALL.get(i).map_or("unknown", |s| s.name())
}

pub fn verdict_name(i: usize) -> &'static str {
    RstVerdict::ALL.get(i).map_or("unknown", |v| v.name())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_probed_buckets_are_inclusive_powers_of_two() {
        assert_eq!(port_bucket(0), 0);
        assert_eq!(port_bucket(1), 1);
        assert_eq!(port_bucket(2), 2);
        assert_eq!(port_bucket(3), 3);
        assert_eq!(port_bucket(4), 3);
        assert_eq!(port_bucket(5), 4);
        assert_eq!(port_bucket(65536), 17);
        assert_eq!(port_bucket_le(17), Some(65536.0));
        assert_eq!(port_bucket(65537), PORT_BUCKETS - 1);
        assert_eq!(port_bucket(u32::MAX), PORT_BUCKETS - 1);
        for n in [0u32, 1, 2, 3, 4, 5, 8, 9, 1000, 32768, 32769] {
            let b = port_bucket(n);
            if let Some(le) = port_bucket_le(b) {
                assert!(f64::from(n) <= le, "{n} in bucket {b} (le {le})");
            }
            if b > 0 {
                let below = port_bucket_le(b - 1).unwrap();
                assert!(f64::from(n) > below, "{n} in bucket {b}, above {below}");
            }
        }
    }
}
