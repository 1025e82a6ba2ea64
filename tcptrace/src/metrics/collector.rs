//! The prometheus-client collector: at each scrape, the event totals the
//! drain keeps and a fresh read of the kernel maps, encoded with bounded
//! label sets (docs/metrics.md lists every metric).

use std::{
    collections::BTreeMap,
    fmt::Error as FmtError,
    sync::{Arc, Mutex},
};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, NoLabelSet},
    metrics::MetricType,
};
use tcptrace_common::{
    syn::{ListenerCounters, SynDropCause},
    EventKind, HistId, Stat,
};

use super::{
    kernel::{answered, KernelRead, KernelReader},
    sink::Shared,
    topk::{fold, Admission, Folded},
    totals::{
        port_bucket_le, site_name, verdict_name, ListenerTotals, Totals, OUTCOMES, PORT_BUCKETS,
    },
    Bounds,
};
use crate::{endpoint::endpoint, event::errno_name, hist::slot_high, syn::ListenerId};

type Labels = Vec<(&'static str, String)>;

/// A listener's accept queue as last seen: (when, length, limit).
type Queue = (u64, u32, u32);
/// One of its gauges: the field it shows.
type QueueField = fn(&Queue) -> u32;

/// Slots up to this one share the first bucket (le = 2^10 ns, about 1 us).
const FIRST_SLOT: usize = 9;
/// Slots above this one are only in +Inf (le = 2^36 ns, about 69 s).
const LAST_SLOT: usize = 35;

/// Which listeners and peers have series, and the fold counts so far.
#[derive(Debug)]
struct FoldState {
    listeners: Admission<ListenerId>,
    peers: Admission<std::net::IpAddr>,
    /// Highest fold count reported per metric (a counter never goes back).
    folded: BTreeMap<&'static str, u64>,
}

#[derive(Debug)]
pub struct Exporter {
    shared: Arc<Shared>,
    kernel: Option<Arc<KernelReader>>,
    fold: Mutex<FoldState>,
    bounds: Bounds,
    /// Listeners in this namespace are named without it.
    host_netns: u32,
    version: &'static str,
    kernel_release: String,
}

impl Exporter {
    pub fn new(shared: Arc<Shared>, kernel: Option<Arc<KernelReader>>, bounds: Bounds) -> Self {
        Self {
            shared,
            kernel,
            fold: Mutex::new(FoldState {
                listeners: Admission::new(bounds.listeners),
                peers: Admission::new(bounds.peers.unwrap_or(0)),
                folded: BTreeMap::new(),
            }),
            bounds,
            host_netns: host_netns(),
            version: env!("CARGO_PKG_VERSION"),
            kernel_release: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|r| r.trim().to_owned())
                .unwrap_or_default(),
        }
    }

    fn listener_label(&self, id: &ListenerId) -> String {
        let ep = endpoint(id.addr, id.port);
        if id.netns == self.host_netns || id.netns == 0 {
            ep
        } else {
            format!("{ep}@netns:{}", id.netns)
        }
    }
}

/// The network namespace of PID 1 (the host's), else this process's.
fn host_netns() -> u32 {
    use std::os::unix::fs::MetadataExt as _;
    ["/proc/1/ns/net", "/proc/self/ns/net"]
        .iter()
        .find_map(|p| std::fs::metadata(p).ok())
        .map_or(0, |m| m.ino() as u32)
}

// ---- encoding helpers ------------------------------------------------------

fn counter(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (Labels, u64)>,
) -> Result<(), FmtError> {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, v) in rows {
        if labels.is_empty() {
            m.encode_counter::<NoLabelSet, u64, u64>(&v, None)?;
        } else {
            m.encode_family(&labels)?
                .encode_counter::<NoLabelSet, u64, u64>(&v, None)?;
        }
    }
    Ok(())
}

fn gauge(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (Labels, u64)>,
) -> Result<(), FmtError> {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, v) in rows {
        if labels.is_empty() {
            m.encode_gauge(&v)?;
        } else {
            m.encode_family(&labels)?.encode_gauge(&v)?;
        }
    }
    Ok(())
}

fn info(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = Labels>,
) -> Result<(), FmtError> {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Info)?;
    for labels in rows {
        m.encode_info(&labels)?;
    }
    Ok(())
}

/// A histogram of seconds from a kernel log2 histogram in ns.
fn latency_histogram(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    h: &super::kernel::HistRead,
) -> Result<(), FmtError> {
    let mut buckets: Vec<(f64, u64)> = Vec::with_capacity(LAST_SLOT - FIRST_SLOT + 2);
    buckets.push((
        slot_high(FIRST_SLOT) as f64 / 1e9,
        h.hist.slots[..=FIRST_SLOT].iter().sum(),
    ));
    for s in FIRST_SLOT + 1..=LAST_SLOT {
        buckets.push((slot_high(s) as f64 / 1e9, h.hist.slots[s]));
    }
    buckets.push((f64::MAX, h.hist.slots[LAST_SLOT + 1..].iter().sum()));
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Histogram)?;
    m.encode_histogram::<NoLabelSet>(h.sum_ns as f64 / 1e9, h.hist.total(), &buckets, None)
}

fn labels<const N: usize>(pairs: [(&'static str, String); N]) -> Labels {
    pairs.into()
}

// ---- the metrics -----------------------------------------------------------

impl Collector for Exporter {
    fn encode(&self, mut enc: DescriptorEncoder<'_>) -> Result<(), FmtError> {
        // A copy: the drain keeps going while this scrape encodes.
        let totals = self
            .shared
            .totals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let kernel = match self.kernel.as_ref().map(|k| k.read()) {
            Some(Ok(k)) => Some(k),
            Some(Err(e)) => {
                log::warn!("metrics: reading the kernel maps: {e:#}");
                None
            }
            None => None,
        };
        let mut fold = self.fold.lock().unwrap_or_else(|e| e.into_inner());
        self.identity(&mut enc)?;
        self.listeners(&mut enc, &totals, kernel.as_ref(), &mut fold)?;
        self.paws_rst(&mut enc, &totals, kernel.as_ref(), &mut fold)?;
        self.connect(&mut enc, &totals, kernel.as_ref())?;
        if let Some(k) = &kernel {
            self.health(&mut enc, k)?;
        }
        counter(
            &mut enc,
            "tcptrace_events",
            "Events decoded, by kind.",
            EventKind::ALL.iter().map(|k| {
                (
                    labels([("kind", k.name().into())]),
                    totals.by_kind[*k as usize],
                )
            }),
        )?;
        self.findings(&mut enc)?;
        self.recorder(&mut enc)?;
        counter(
            &mut enc,
            "tcptrace_series_folded",
            "Label values (listeners, peers) whose counts were added to the other series of a metric instead of a series of their own.",
            fold.folded
                .iter()
                .map(|(m, n)| (labels([("metric", (*m).into())]), *n)),
        )
    }
}

impl Exporter {
    fn identity(&self, enc: &mut DescriptorEncoder<'_>) -> Result<(), FmtError> {
        info(
            enc,
            "tcptrace_build",
            "tcptrace version and the kernel it runs on.",
            [labels([
                ("version", self.version.into()),
                ("kernel", self.kernel_release.clone()),
            ])],
        )?;
        let hooks = self
            .shared
            .hooks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        info(
            enc,
            "tcptrace_hook",
            "Every hook and the mechanism it attached with (none: it could not attach).",
            hooks
                .into_iter()
                .map(|(h, m)| labels([("hook", h), ("mechanism", m)])),
        )
    }

    fn listeners(
        &self,
        enc: &mut DescriptorEncoder<'_>,
        t: &Totals,
        k: Option<&KernelRead>,
        fold_state: &mut FoldState,
    ) -> Result<(), FmtError> {
        let empty = Vec::new();
        let kernel: &Vec<(ListenerId, ListenerCounters)> = k.map_or(&empty, |k| &k.listeners);
        let mut activity: BTreeMap<&ListenerId, u64> = BTreeMap::new();
        for (id, l) in &t.listeners {
            *activity.entry(id).or_default() += l.activity();
        }
        for (id, r) in kernel {
            *activity.entry(id).or_default() += answered(r).iter().sum::<u64>();
        }
        fold_state
            .listeners
            .admit(activity.iter().map(|(k, v)| (*k, *v)));
        let adm = &fold_state.listeners;
        let untracked = &t.untracked_listeners;
        let mut folded = Vec::new();

        // Drops by cause.
        let f = fold(t.listeners.iter().map(|(id, l)| (id.clone(), l.drops)), adm);
        folded.push(("tcptrace_syn_drops_total", f.folded));
        let rows = self.rows(f, Some(untracked.drops), |v| {
            [
                SynDropCause::AcceptQueueFull,
                SynDropCause::SynQueueFull,
                SynDropCause::Other,
            ]
            .iter()
            .map(|c| (("cause", c.name().to_owned()), v[*c as usize - 1]))
            .collect()
        });
        counter(
            enc,
            "tcptrace_syn_drops",
            "SYNs a listener dropped, by cause.",
            rows,
        )?;

        let f = fold(kernel.iter().map(|(id, r)| (id.clone(), answered(r))), adm);
        folded.push(("tcptrace_syn_answered_total", f.folded));
        let rows = self.rows(f, None, |v| {
            ["normal", "cookie", "fastopen"]
                .iter()
                .zip(v)
                .map(|(n, c)| (("type", (*n).to_owned()), *c))
                .collect()
        });
        counter(
            enc,
            "tcptrace_syn_answered",
            "SYNs a listener answered with a SYN-ACK, by type.",
            rows,
        )?;

        let f = fold(
            t.listeners.iter().map(|(id, l)| (id.clone(), l.overflows)),
            adm,
        );
        folded.push(("tcptrace_accept_queue_overflows_total", f.folded));
        let rows = self.rows(f, Some(untracked.overflows), |v| {
            OUTCOMES
                .iter()
                .zip(v)
                .map(|(n, c)| (("outcome", (*n).to_owned()), *c))
                .collect()
        });
        counter(
            enc,
            "tcptrace_accept_queue_overflows",
            "Third ACKs that found the accept queue full, by what the client sees (ghost: a connection the server does not have; reset).",
            rows,
        )?;

        let f = fold(
            t.listeners
                .iter()
                .map(|(id, l)| (id.clone(), [l.synack_retransmits])),
            adm,
        );
        folded.push(("tcptrace_synack_retransmits_total", f.folded));
        let rows = self.rows(f, Some([untracked.synack_retransmits]), |v| {
            vec![(("", String::new()), v[0])]
        });
        counter(
            enc,
            "tcptrace_synack_retransmits",
            "SYN-ACKs a listener sent again.",
            rows,
        )?;

        // Queue gauges: admitted listeners only (a sum of queues means
        // nothing), as the newest of its events and answered SYNs saw them.
        let mut queues: BTreeMap<&ListenerId, Queue> = BTreeMap::new();
        let from_events = t.listeners.iter().map(|(id, l)| {
            let ListenerTotals {
                last_ns,
                backlog,
                backlog_max,
                ..
            } = *l;
            (id, (last_ns, backlog, backlog_max))
        });
        let from_kernel = kernel
            .iter()
            .map(|(id, r)| (id, (r.last_ns, r.backlog, r.backlog_max)));
        for (id, seen) in from_events.chain(from_kernel) {
            if adm.has(id) {
                let q = queues.entry(id).or_default();
                if seen.0 >= q.0 {
                    *q = seen;
                }
            }
        }
        let gauges: [(&str, &str, QueueField); 2] = [
            (
                "tcptrace_listen_backlog",
                "Connections waiting in a listener's accept queue, at its newest SYN or event.",
                |q| q.1,
            ),
            (
                "tcptrace_listen_backlog_max",
                "A listener's accept queue limit: min(listen() backlog, net.core.somaxconn).",
                |q| q.2,
            ),
        ];
        for (name, help, value) in gauges {
            gauge(
                enc,
                name,
                help,
                queues.iter().map(|(id, q)| {
                    (
                        labels([("listener", self.listener_label(id))]),
                        u64::from(value(q)),
                    )
                }),
            )?;
        }
        for (m, n) in folded {
            let e = fold_state.folded.entry(m).or_default();
            *e = (*e).max(n);
        }
        Ok(())
    }

    /// Rows of a per-listener metric: one per admitted listener and value
    /// label, then `listener="other"` with every folded listener and those
    /// beyond tracking. A value label named "" is no label.
    fn rows<const N: usize>(
        &self,
        f: Folded<ListenerId, [u64; N]>,
        untracked: Option<[u64; N]>,
        split: impl Fn(&[u64; N]) -> Vec<((&'static str, String), u64)>,
    ) -> Vec<(Labels, u64)> {
        let mut out = Vec::new();
        let mut push = |listener: String, v: &[u64; N]| {
            for ((k, val), n) in split(v) {
                let mut l = labels([("listener", listener.clone())]);
                if !k.is_empty() {
                    l.push((k, val));
                }
                out.push((l, n));
            }
        };
        for (id, v) in &f.own {
            push(self.listener_label(id), v);
        }
        let mut other = f.other;
        if let Some(u) = untracked.filter(|u| u.iter().any(|n| *n > 0)) {
            super::topk::Tally::add(other.get_or_insert([0; N]), &u);
        }
        if let Some(o) = other {
            push("other".into(), &o);
        }
        out
    }

    fn paws_rst(
        &self,
        enc: &mut DescriptorEncoder<'_>,
        t: &Totals,
        k: Option<&KernelRead>,
        fold_state: &mut FoldState,
    ) -> Result<(), FmtError> {
        counter(
            enc,
            "tcptrace_paws_rejects",
            "Segments that failed the PAWS timestamp check, by site.",
            t.paws
                .iter()
                .enumerate()
                .map(|(i, n)| (labels([("site", site_name(i).into())]), *n)),
        )?;
        counter(
            enc,
            "tcptrace_rst_received",
            "RSTs received on synchronized sockets, by the kernel's verdict.",
            t.rst
                .iter()
                .enumerate()
                .map(|(i, n)| (labels([("verdict", verdict_name(i).into())]), *n)),
        )?;
        if let Some(k) = k {
            counter(
                enc,
                "tcptrace_rst_sent",
                "RSTs this host sent, by the kernel's reason.",
                // Every reason this kernel names; its enum's end marker
                // and unnamed slots only once they count something.
                k.rst_sent
                    .iter()
                    .filter(|(r, n)| *n > 0 || !(r == "MAX" || r.starts_with("reason_")))
                    .map(|(r, n)| (labels([("reason", r.clone())]), *n)),
            )?;
        }
        if self.bounds.peers.is_none() {
            return Ok(());
        }
        let mut activity: BTreeMap<&std::net::IpAddr, u64> = BTreeMap::new();
        for ((_, peer), n) in t.paws_by_peer.iter().chain(&t.rst_by_peer) {
            *activity.entry(peer).or_default() += n;
        }
        fold_state
            .peers
            .admit(activity.iter().map(|(k, v)| (*k, *v)));
        for (name, key, help, label, by_peer, untracked, names) in [
            (
                "tcptrace_paws_rejects_by_peer",
                "tcptrace_paws_rejects_by_peer_total",
                "PAWS rejects by site and peer address (--metrics-per-peer).",
                "site",
                &t.paws_by_peer,
                &t.paws_untracked[..],
                site_name as fn(usize) -> &'static str,
            ),
            (
                "tcptrace_rst_received_by_peer",
                "tcptrace_rst_received_by_peer_total",
                "Received RSTs by verdict and peer address (--metrics-per-peer).",
                "verdict",
                &t.rst_by_peer,
                &t.rst_untracked[..],
                verdict_name,
            ),
        ] {
            let mut rows: Vec<(Labels, u64)> = Vec::new();
            let mut folded = 0;
            for (i, extra) in untracked.iter().enumerate() {
                let f = fold(
                    by_peer
                        .iter()
                        .filter(|((j, _), _)| *j == i)
                        .map(|((_, p), n)| (*p, *n)),
                    &fold_state.peers,
                );
                folded += f.folded;
                for (p, n) in f.own {
                    rows.push((
                        labels([(label, names(i).into()), ("peer", p.to_string())]),
                        n,
                    ));
                }
                let other = f.other.unwrap_or(0) + extra;
                if other > 0 {
                    rows.push((
                        labels([(label, names(i).into()), ("peer", "other".into())]),
                        other,
                    ));
                }
            }
            counter(enc, name, help, rows)?;
            let e = fold_state.folded.entry(key).or_default();
            *e = (*e).max(folded);
        }
        Ok(())
    }

    fn connect(
        &self,
        enc: &mut DescriptorEncoder<'_>,
        t: &Totals,
        k: Option<&KernelRead>,
    ) -> Result<(), FmtError> {
        if let Some(k) = k {
            for (id, h) in &k.hists {
                let (name, help) = match id {
                    HistId::Connect => (
                        "tcptrace_connect_duration_seconds",
                        "Time in connect(), every call (from the kernel's log2 histogram).",
                    ),
                    HistId::PortSearch => (
                        "tcptrace_port_search_duration_seconds",
                        "Time the kernel searched for a free ephemeral port, every search (from the kernel's log2 histogram).",
                    ),
                    HistId::Handshake => (
                        "tcptrace_handshake_duration_seconds",
                        "Time of active opens' handshakes, SYN sent to established, reset, timed out or closed, every one (from the kernel's log2 histogram).",
                    ),
                };
                latency_histogram(enc, name, help, h)?;
            }
        }
        counter(
            enc,
            "tcptrace_connect_errors",
            "Failed connect() calls by errno (EINPROGRESS is not a failure).",
            t.connect_errors
                .iter()
                .map(|(e, n)| (labels([("errno", errno_name(*e))]), *n)),
        )?;
        counter(
            enc,
            "tcptrace_port_search_errors",
            "Failed ephemeral port searches by errno (EADDRNOTAVAIL: no free port).",
            t.port_search_errors
                .iter()
                .map(|(e, n)| (labels([("errno", errno_name(*e))]), *n)),
        )?;
        let buckets: Vec<(f64, u64)> = (0..PORT_BUCKETS)
            .map(|b| (port_bucket_le(b).unwrap_or(f64::MAX), t.ports_probed[b]))
            .collect();
        let mut m = enc.encode_descriptor(
            "tcptrace_port_search_ports_probed",
            "Ports examined by one port search that reached userspace (a lower bound: see docs/events-connect.md).",
            None,
            MetricType::Histogram,
        )?;
        m.encode_histogram::<NoLabelSet>(
            t.ports_probed_sum as f64,
            t.ports_probed.iter().sum(),
            &buckets,
            None,
        )
    }

    fn health(&self, enc: &mut DescriptorEncoder<'_>, k: &KernelRead) -> Result<(), FmtError> {
        counter(
            enc,
            "tcptrace_events_lost",
            "Events the kernel could not send (ring buffer full), by kind.",
            k.lost
                .iter()
                .map(|(kind, n)| (labels([("kind", kind.name().into())]), *n)),
        )?;
        counter(
            enc,
            "tcptrace_programs_skipped",
            "Runs of a tcptrace program the kernel skipped (another BPF program was running on that CPU).",
            k.missed
                .iter()
                .map(|(p, n)| (labels([("program", p.clone())]), *n)),
        )?;
        let fill = |f: &crate::mapstats::MapFill| labels([("map", f.name.clone())]);
        gauge(
            enc,
            "tcptrace_state_map_entries",
            "Entries in a kernel state map now.",
            k.maps.iter().map(|f| (fill(f), f.entries)),
        )?;
        gauge(
            enc,
            "tcptrace_state_map_capacity",
            "Capacity of a kernel state map (0: per-task storage, no fixed capacity).",
            k.maps.iter().map(|f| (fill(f), f.capacity)),
        )?;
        counter(
            enc,
            "tcptrace_state_map_insert_failures",
            "Inserts into a kernel state map that failed: each an event not tracked.",
            k.maps.iter().map(|f| (fill(f), f.full_failures)),
        )?;
        let read_failed = k
            .stats
            .iter()
            .find(|(s, _)| *s == Stat::ReadFailed)
            .map_or(0, |(_, n)| *n);
        counter(
            enc,
            "tcptrace_kernel_read_failures",
            "Kernel memory reads by the programs that failed.",
            [(Labels::new(), read_failed)],
        )
    }

    /// The daemon's flight recorder (`--record-dir`), when there is one.
    fn recorder(&self, enc: &mut DescriptorEncoder<'_>) -> Result<(), FmtError> {
        let health = self
            .shared
            .health
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let Some(h) = health.filter(|h| h.record_dir.is_some()) else {
            return Ok(());
        };
        gauge(
            enc,
            "tcptrace_recorder_bytes",
            "Disk use of the --record-dir segments, bytes.",
            [(Labels::new(), h.record_dir.map_or(0, |(_, b)| b))],
        )?;
        counter(
            enc,
            "tcptrace_recorder_errors",
            "Recorder errors by kind (disk_full, dir_missing, io); tracing goes on and the next block tries a new segment.",
            ["disk_full", "dir_missing", "io"].into_iter().map(|k| {
                (
                    labels([("error", k.into())]),
                    h.recorder_errors.get(k).copied().unwrap_or(0),
                )
            }),
        )?;
        counter(
            enc,
            "tcptrace_recorder_events_not_written",
            "Events the recorder could not write (their block met an error).",
            [(Labels::new(), h.events_not_written)],
        )
    }

    fn findings(&self, enc: &mut DescriptorEncoder<'_>) -> Result<(), FmtError> {
        let view = self
            .shared
            .findings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let l = |id: &str, sev: &str| labels([("id", id.into()), ("severity", sev.into())]);
        gauge(
            enc,
            "tcptrace_finding_active",
            "1 while the diagnosis holds a finding of this rule (docs/diagnosis.md), 0 once it no longer does.",
            view.rules
                .iter()
                .map(|((id, sev), (active, _))| (l(id, sev), u64::from(*active))),
        )?;
        counter(
            enc,
            "tcptrace_finding_occurrences",
            "Events (or counter increments) behind the findings of a rule, all subjects together.",
            view.rules
                .iter()
                .map(|((id, sev), (_, n))| (l(id, sev), *n)),
        )
    }
}
