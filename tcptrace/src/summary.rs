//! The periodic and final summary: kernel histograms and counters, plus what
//! userspace saw in the event stream (errors by errno).

pub mod delta;
pub mod json;

use std::{collections::BTreeMap, fmt::Write as _};

use tcptrace_common::{EventKind, HistId, Stat};

use crate::{
    connect::ConnectSummary,
    event::{errno_name, Event},
    hist::{fmt_ns, Histogram},
    paws::stats::PawsStats,
};

use self::json::{ErrorCount, HistJson, RecordingJson, SlotJson, SummaryJson};

/// Counters read from the kernel maps at one instant.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KernelCounters {
    pub hists: Vec<(HistId, Histogram)>,
    pub lost: Vec<(EventKind, u64)>,
    pub stats: Vec<(Stat, u64)>,
    /// RSTs this host sent, by reason name (from `tcp:tcp_send_reset`).
    pub rst_sent: Vec<(String, u64)>,
    pub syn: crate::syn::SynKernelCounters,
    /// Programs the kernel skipped (another BPF program was running on that
    /// CPU), by program name: events lost before they existed.
    pub missed: Vec<(String, u64)>,
    /// How full each per-thread / per-socket state map is.
    pub maps: Vec<crate::mapstats::MapFill>,
}

impl KernelCounters {
    pub fn lost_total(&self) -> u64 {
        self.lost.iter().map(|(_, n)| n).sum()
    }

    pub fn missed_total(&self) -> u64 {
        self.missed.iter().map(|(_, n)| n).sum()
    }
}

fn stat_name(s: Stat) -> &'static str {
    match s {
        Stat::StateMapFull => "state_map_full",
        Stat::ReadFailed => "kernel_read_failed",
    }
}

/// A recording that stopped before the run did (a full disk): shown in
/// every summary from then on, so no loss is silent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordingStop {
    pub file: String,
    /// JSON name of the reason: `disk_full`.
    pub reason: &'static str,
    /// The error: "no space left on device".
    pub why: &'static str,
    pub events_written: u64,
    pub events_not_written: u64,
}

/// What the event stream showed so far.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub events: BTreeMap<&'static str, u64>,
    /// (event kind, errno) → count; every failure is sent, so this is exact.
    pub errors: BTreeMap<(&'static str, i32), u64>,
    /// The connect family's part (port search).
    pub connect: ConnectSummary,
    pub decode_errors: u64,
    /// PAWS rejects and received RSTs per peer.
    pub paws: PawsStats,
    pub syn: crate::syn::SynSummary,
    /// Set by the live run once its recording stopped early.
    pub recording: Option<RecordingStop>,
}

impl Summary {
    pub fn observe(&mut self, ev: &Event) {
        *self.events.entry(ev.kind.name()).or_default() += 1;
        if ev.errno() != 0 {
            *self.errors.entry((ev.kind.name(), ev.errno())).or_default() += 1;
        }
        self.connect.observe(ev);
        self.paws.observe(ev);
        self.syn.observe(ev);
    }

    pub fn render_text(&self, k: &KernelCounters, title: &str) -> String {
        let mut out = format!("--- {title} ---\n");
        for (id, h) in &k.hists {
            let total = h.total();
            let pct = |p| h.percentile(p).map(fmt_ns).unwrap_or_else(|| "-".into());
            let _ = writeln!(
                out,
                "{} latency: {total} calls, p50 {} p90 {} p99 {} max< {}",
                id.name(),
                pct(50.0),
                pct(90.0),
                pct(99.0),
                pct(100.0)
            );
            out.push_str(&h.render("  "));
        }
        if self.errors.is_empty() {
            out.push_str("errors: none\n");
        } else {
            out.push_str("errors:\n");
            for ((kind, errno), n) in &self.errors {
                let _ = writeln!(out, "  {kind:<12} {:<14} {n}", errno_name(*errno));
            }
        }
        self.connect.render_text(&mut out);
        self.paws.render_text(&k.rst_sent, &mut out);
        self.syn.render_text(&k.syn, &mut out);
        let lost = k.lost_total();
        let _ = write!(out, "lost events: {lost}");
        if lost > 0 {
            let per: Vec<String> = k
                .lost
                .iter()
                .filter(|(_, n)| *n > 0)
                .map(|(kind, n)| format!("{}={n}", kind.name()))
                .collect();
            let _ = write!(out, " ({})", per.join(", "));
        }
        out.push('\n');
        if !k.missed.is_empty() {
            let per: Vec<String> = k
                .missed
                .iter()
                .map(|(p, n)| format!("{}={n}", crate::escape::Escaped(p)))
                .collect();
            let _ = writeln!(
                out,
                "programs skipped by the kernel (another BPF program was running on that CPU): {} ({})",
                k.missed_total(),
                per.join(", ")
            );
        }
        crate::mapstats::render_text(&k.maps, &mut out);
        for (s, n) in k.stats.iter().filter(|(_, n)| *n > 0) {
            let _ = writeln!(out, "{}: {n}", stat_name(*s));
        }
        if self.decode_errors > 0 {
            let _ = writeln!(out, "undecodable records: {}", self.decode_errors);
        }
        if let Some(r) = &self.recording {
            let _ = writeln!(
                out,
                "recording: stopped writing {}: {}: {} events written, {} not written",
                crate::escape::Escaped(&r.file),
                r.why,
                r.events_written,
                r.events_not_written
            );
        }
        out
    }

    /// The summary object of JSON Lines (without findings).
    pub fn to_json(&self, k: &KernelCounters, final_: bool) -> SummaryJson {
        let histograms = k
            .hists
            .iter()
            .map(|(id, h)| {
                let slots = h
                    .slots
                    .iter()
                    .enumerate()
                    .filter(|(_, &c)| c > 0)
                    .map(|(s, &count)| SlotJson {
                        count,
                        high_ns: crate::hist::slot_high(s),
                        low_ns: crate::hist::slot_low(s),
                    })
                    .collect();
                let hist = HistJson {
                    count: h.total(),
                    p50_ns: h.percentile(50.0),
                    p90_ns: h.percentile(90.0),
                    p99_ns: h.percentile(99.0),
                    slots,
                };
                (id.name().to_owned(), hist)
            })
            .collect();
        let errors = self
            .errors
            .iter()
            .map(|((kind, errno), n)| ErrorCount {
                count: *n,
                errno: *errno,
                kind: (*kind).to_owned(),
                name: errno_name(*errno),
            })
            .collect();
        let (syn_answered, listeners) = self.syn.to_json(&k.syn);
        let paws = self.paws.to_json(&k.rst_sent);
        SummaryJson {
            kind: "summary".into(),
            syn_answered,
            listeners,
            final_,
            findings: None,
            histograms,
            events: self
                .events
                .iter()
                .map(|(k, n)| ((*k).to_owned(), *n))
                .collect(),
            errors,
            lost: k
                .lost
                .iter()
                .map(|(kind, n)| (kind.name().to_owned(), *n))
                .collect(),
            lost_total: k.lost_total(),
            missed: Some(k.missed.iter().cloned().collect()),
            missed_total: k.missed_total(),
            stats: k
                .stats
                .iter()
                .map(|(s, n)| (stat_name(*s).to_owned(), *n))
                .collect(),
            maps: crate::mapstats::to_json(&k.maps),
            decode_errors: self.decode_errors,
            paws: paws.paws,
            rst_received: paws.rst_received,
            rst_sent: paws.rst_sent,
            untracked_peers_events: paws.untracked_peers_events,
            // Only when it happened: summaries of every other run stay as
            // they were.
            recording: self.recording.as_ref().map(|r| RecordingJson {
                file: r.file.clone(),
                stopped: r.reason.into(),
                error: r.why.into(),
                events_written: r.events_written,
                events_not_written: r.events_not_written,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{decode, tests::raw_latency};
    use serde_json::json;

    #[test]
    fn a_stopped_recording_is_in_text_and_json_only_when_it_happened() {
        let k = KernelCounters::default();
        let mut s = Summary::default();
        let quiet_text = s.render_text(&k, "summary");
        let quiet = json!(s.to_json(&k, true));
        assert!(!quiet_text.contains("recording"), "{quiet_text}");
        assert!(quiet.get("recording").is_none(), "{quiet}");
        s.recording = Some(RecordingStop {
            file: "/mnt/run.rec".into(),
            reason: "disk_full",
            why: "no space left on device",
            events_written: 4000,
            events_not_written: 123,
        });
        let text = s.render_text(&k, "summary");
        assert!(
            text.ends_with(
                "recording: stopped writing /mnt/run.rec: no space left on device: \
                 4000 events written, 123 not written\n"
            ),
            "{text}"
        );
        assert_eq!(
            json!(s.to_json(&k, true))["recording"],
            json!({"file": "/mnt/run.rec", "stopped": "disk_full",
                   "error": "no space left on device",
                   "events_written": 4000, "events_not_written": 123})
        );
    }

    #[test]
    fn counts_errors_by_kind_and_errno() {
        let mut s = Summary::default();
        for errno in [0, 99, 99, 111] {
            s.observe(&decode(&raw_latency(EventKind::PortSearch, 2, errno)).unwrap());
        }
        assert_eq!(s.events["port_search"], 4);
        assert_eq!(s.errors[&("port_search", 99)], 2);
        assert_eq!(s.errors[&("port_search", 111)], 1);
        assert_eq!(s.connect.max_ports_probed, 7);
        let mut h = Histogram::default();
        h.record(1000);
        let k = KernelCounters {
            hists: vec![(HistId::PortSearch, h)],
            lost: vec![(EventKind::Connect, 3)],
            ..KernelCounters::default()
        };
        let text = s.render_text(&k, "summary");
        assert!(text.contains("EADDRNOTAVAIL  2"), "{text}");
        assert!(text.contains("lost events: 3 (connect=3)"), "{text}");
        let j = json!(s.to_json(&k, true));
        assert_eq!(j["lost_total"], 3);
        assert_eq!(j["histograms"]["port_search"]["count"], 1);
    }

    #[test]
    fn state_maps_in_text_and_json() {
        let s = Summary::default();
        let k = KernelCounters {
            maps: vec![crate::mapstats::MapFill {
                name: "port_search".into(),
                entries: 15000,
                capacity: 16384,
                lru: true,
                full_failures: 0,
            }],
            ..KernelCounters::default()
        };
        let text = s.render_text(&k, "summary");
        assert!(
            text.contains("state maps (LRU): port_search 15000/16384!\n"),
            "{text}"
        );
        assert!(
            text.contains("WARNING: state map port_search is 91% full"),
            "{text}"
        );
        let j = json!(s.to_json(&k, false));
        assert_eq!(j["maps"][0]["entries"], 15000);
        assert_eq!(j["maps"][0]["lru"], true);
        let empty = json!(s.to_json(&KernelCounters::default(), false));
        assert_eq!(empty["maps"], serde_json::json!([]));
    }

    #[test]
    fn paws_and_rst_per_peer() {
        use crate::event::tests::{raw_paws, raw_rst};
        use tcptrace_common::paws::{PawsSite, RstVerdict};
        let mut s = Summary::default();
        // 10.0.0.3 reuses a TIME_WAIT 4-tuple (one clock proven: stamps of
        // two connections say nothing about hosts), 10.0.0.4 sends a stale
        // segment, 10.0.0.5 two clocks on one connection.
        for raw in [
            raw_paws(PawsSite::TimeWait, [10, 0, 0, 3], 100_000, 1_500_000_020, 0),
            raw_paws(PawsSite::TimeWait, [10, 0, 0, 3], 100_001, 1_500_000_020, 0),
            raw_paws(PawsSite::Established, [10, 0, 0, 4], 7_000, 8_000, 0),
            raw_paws(
                PawsSite::Established,
                [10, 0, 0, 5],
                100_000,
                1_500_000_000,
                0,
            ),
            raw_rst(RstVerdict::Ignored, 5),
            raw_rst(RstVerdict::Accepted, 1000),
        ] {
            s.observe(&decode(&raw).unwrap());
        }
        let k = KernelCounters {
            rst_sent: vec![("NO_SOCKET".into(), 4), ("TCP_RFC7323_PAWS".into(), 1)],
            ..KernelCounters::default()
        };
        let j = json!(s.to_json(&k, true));
        assert_eq!(j["paws"]["rejects"], 4);
        assert_eq!(j["paws"]["by_site"]["time_wait"], 2);
        let top = &j["paws"]["top_peers"];
        assert_eq!(top[0]["peer"], "10.0.0.3");
        assert_eq!(top[0]["rejects"], 2);
        assert_eq!(top[0]["clocks"], 1);
        assert_eq!(top[0]["flows"], 1);
        assert_eq!(top[1]["peer"], "10.0.0.5");
        assert_eq!(top[1]["clocks"], 2);
        assert_eq!(top[2]["peer"], "10.0.0.4");
        assert_eq!(top[2]["clocks"], 1);
        assert_eq!(top[2]["reordered"], 0);
        assert_eq!(j["rst_received"]["by_verdict"]["ignored"], 1);
        assert_eq!(j["rst_received"]["top_peers"][0]["accepted"], 1);
        assert_eq!(j["rst_sent"]["total"], 5);
        assert_eq!(j["rst_sent"]["by_reason"]["NO_SOCKET"], 4);
        let text = s.render_text(&k, "summary");
        assert!(
            text.contains("paws rejects: 4 (established=2, time_wait=2)"),
            "{text}"
        );
        assert!(text.contains("(NAT?)"), "{text}");
        assert!(
            text.contains("rst received: accepted=1, ignored=1"),
            "{text}"
        );
        assert!(
            text.contains("rst sent: 5 (NO_SOCKET=4, TCP_RFC7323_PAWS=1)"),
            "{text}"
        );
    }
}
