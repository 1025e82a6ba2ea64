//! `tcptrace report`'s page: a sink of the replay pipeline that keeps, in
//! bounded memory, what the page draws ([`Collected`]: the time axis of
//! `timeline.rs`, the first events of each kind, the final summary and
//! findings the replay computes), then one self-contained HTML file
//! (`html.rs`, the sections over time in `over_time.rs`) with SVG charts
//! drawn here (`svg.rs`). The command is `commands/report.rs`. Every total
//! comes from the replay's summary; the page only draws it.

pub mod html;
mod over_time;
pub mod svg;
pub mod timeline;

use std::{cell::RefCell, collections::BTreeMap, rc::Rc};

use anyhow::Result;
use tcptrace_common::{syn::SynDropCause, EventKind};

use crate::{
    diagnose::session::HostPair,
    event::{json::EventJson, Event},
    sink::{CountersAt, Sink, SummaryStep},
    summary::{
        json::{FindingJson, SummaryJson},
        KernelCounters,
    },
};

use self::timeline::{Timeline, TCPEXT};

/// One event of the table: its JSON fields, in their documented order.
pub type Sample = Vec<(String, String)>;

/// What the page is drawn from.
#[derive(Debug)]
pub struct Collected {
    pub timeline: Timeline,
    /// The first `samples_per_kind` events of each kind.
    pub samples: BTreeMap<&'static str, Vec<Sample>>,
    pub samples_per_kind: usize,
    /// The replay's final summary, exactly as `replay --json` prints it
    /// (without its findings).
    pub summary: Option<SummaryJson>,
    pub findings: Vec<FindingJson>,
    /// A recording carried TcpExt counters (in its host views).
    pub tcpext_seen: bool,
    /// The counters of the previous snapshot, for the interval's share.
    prev: Option<KernelCounters>,
    /// TcpExt counters of [`TCPEXT`] at the previous host view, per netns.
    prev_netstat: BTreeMap<u64, BTreeMap<&'static str, u64>>,
}

impl Collected {
    pub fn new(origin: u64, samples_per_kind: usize) -> Self {
        Self {
            timeline: Timeline::new(origin),
            samples: BTreeMap::new(),
            samples_per_kind,
            summary: None,
            findings: Vec::new(),
            tcpext_seen: false,
            prev: None,
            prev_netstat: BTreeMap::new(),
        }
    }

    fn event(&mut self, ev: &Event, boot_offset_ns: i64) -> Result<()> {
        let j = EventJson::of(ev, boot_offset_ns);
        let kind = ev.kind.name();
        // SYN family: saddr/sport are the listener.
        let listener = matches!(ev.kind, EventKind::SynDrop | EventKind::ListenOverflow)
            .then(|| {
                let addr = j.saddr.map(|a| a.to_string()).unwrap_or_default();
                let key = (j.netns.unwrap_or(0), addr, j.sport.unwrap_or(0));
                self.timeline.listener(key)
            })
            .flatten();
        let bucket = self.timeline.at(ev.ts_ns);
        *bucket.events.entry(kind).or_default() += 1;
        if let Some(i) = listener {
            let slot = bucket.listener(i);
            if let Some(cause) = j.cause {
                let c = match cause {
                    SynDropCause::AcceptQueueFull => 0,
                    SynDropCause::SynQueueFull => 1,
                    SynDropCause::Other => 2,
                };
                slot.drops[c] += 1;
            }
            if let Some(b) = j.backlog {
                slot.backlog = Some(slot.backlog.map_or(b, |s| s.max(b)));
            }
            slot.backlog_max = slot.backlog_max.max(j.backlog_max.unwrap_or(0));
        }
        let kept = self.samples.entry(kind).or_default();
        if kept.len() < self.samples_per_kind {
            kept.push(sample(&j)?);
        }
        Ok(())
    }

    fn counters(&mut self, at: &CountersAt<'_>) {
        let pair = at
            .host
            .and_then(|h| serde_json::from_str::<HostPair>(h).ok());
        if at.base_only {
            self.prev = Some(at.counters.clone());
            if let Some(p) = pair {
                self.prev_netstat = picked(&p.now.netstat);
            }
            return;
        }
        let delta = match &self.prev {
            Some(p) => at.counters.since(p),
            None => at.counters.clone(),
        };
        self.prev = Some(at.counters.clone());
        let bucket = self.timeline.at(at.boot_ns);
        for (id, h) in &delta.hists {
            let mine = bucket.hists.entry(id.name()).or_default();
            for (a, b) in mine.slots.iter_mut().zip(h.slots.iter()) {
                *a += b;
            }
        }
        if let Some(p) = pair {
            self.tcpext_seen = true;
            let now = picked(&p.now.netstat);
            // A namespace not seen before counts from the live run's
            // baseline (taken when it started).
            let start = picked(&p.start.netstat);
            for (ns, counters) in &now {
                let Some(before) = self.prev_netstat.get(ns).or_else(|| start.get(ns)) else {
                    continue;
                };
                for (name, v) in counters {
                    if let Some(b) = before.get(name) {
                        *bucket.tcpext.entry(name).or_default() += v.saturating_sub(*b);
                    }
                }
            }
            self.prev_netstat = now;
        }
    }
}

/// The counters of [`TCPEXT`] out of a host view's TcpExt, per netns.
fn picked(
    netstat: &BTreeMap<u64, BTreeMap<String, u64>>,
) -> BTreeMap<u64, BTreeMap<&'static str, u64>> {
    netstat
        .iter()
        .map(|(ns, m)| {
            let kept = TCPEXT
                .iter()
                .filter_map(|&name| m.get(name).map(|v| (name, *v)))
                .collect();
            (*ns, kept)
        })
        .collect()
}

/// An event's fields as `--json` writes them, each value as text.
fn sample(j: &EventJson<'_>) -> Result<Sample> {
    let serde_json::Value::Object(map) = serde_json::to_value(j)? else {
        return Ok(Vec::new());
    };
    Ok(map
        .into_iter()
        .map(|(k, v)| {
            let text = match v {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            (k, text)
        })
        .collect())
}

/// The report as a sink; the command keeps the other handle and draws
/// the page from it once the replay is over.
pub struct Collector(pub Rc<RefCell<Collected>>);

impl Sink for Collector {
    fn event(&mut self, ev: &Event, boot_offset_ns: i64) -> Result<()> {
        self.0.borrow_mut().event(ev, boot_offset_ns)
    }

    fn summary(&mut self, step: &mut SummaryStep<'_>) -> Result<()> {
        if step.final_ {
            let mut c = self.0.borrow_mut();
            c.summary = Some(step.json.clone());
            c.findings = step
                .findings
                .iter()
                .flatten()
                .map(crate::diagnose::Finding::to_json)
                .collect();
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        Ok(())
    }

    fn counters(&mut self, at: &CountersAt<'_>) {
        self.0.borrow_mut().counters(at);
    }
}
