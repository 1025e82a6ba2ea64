//! The metrics output of a live run: the [`Endpoint`] (the HTTP server and
//! the kernel reader it scrapes through), started before the programs
//! load, and the [`MetricsSink`] the pipeline feeds like its other outputs
//! (event, summary, flush, finish). The sink keeps the event totals where
//! the endpoint reads them, without ever waiting for a scrape.

use std::{
    sync::{atomic::AtomicBool, Arc, Mutex, TryLockError},
    thread::JoinHandle,
};

use anyhow::Result;

use super::{
    addr::Bound, collector::Exporter, findings::FindingsView, health::Health, kernel::KernelReader,
    server, totals::Totals, Bounds,
};
use crate::{
    event::Event,
    hooks::HookStatus,
    sink::{Sink, SummaryStep},
};

/// What the drain shares with the endpoint.
#[derive(Debug, Default)]
pub struct Shared {
    pub totals: Mutex<Totals>,
    pub findings: Mutex<FindingsView>,
    /// (hook, mechanism or "none"), once attached.
    pub hooks: Mutex<Vec<(String, String)>>,
    /// Every hook has been attached (or failed to): `/healthz` says ok.
    pub ready: AtomicBool,
    /// The daemon's health, refreshed every second (`None` elsewhere).
    pub health: Mutex<Option<Health>>,
}

/// The running endpoint; it stops when dropped.
pub struct Endpoint {
    shared: Arc<Shared>,
    kernel: Option<Arc<KernelReader>>,
    per_peer: bool,
    server: Option<server::Handle>,
    thread: Option<JoinHandle<()>>,
}

impl Endpoint {
    /// Starts the endpoint on `bound`; `kernel` reads the maps at scrape
    /// time (`None` in tests without BPF).
    pub fn start(bound: Bound, kernel: Option<KernelReader>, bounds: Bounds) -> Result<Self> {
        let per_peer = bounds.peers.is_some();
        let shared = Arc::new(Shared {
            totals: Mutex::new(Totals::new(per_peer)),
            ..Shared::default()
        });
        let kernel = kernel.map(Arc::new);
        let exporter = Exporter::new(shared.clone(), kernel.clone(), bounds);
        let (server, thread) = server::spawn(bound, exporter, shared.clone())?;
        Ok(Self {
            shared,
            kernel,
            per_peer,
            server: Some(server),
            thread: Some(thread),
        })
    }

    /// The sink that feeds this endpoint (the pipeline builds it).
    pub fn sink(&self) -> MetricsSink {
        MetricsSink {
            shared: self.shared.clone(),
            pending: Totals::new(self.per_peer),
        }
    }

    /// The hooks of this run are attached: they are listed, every program
    /// is watched for kernel skips, and `/healthz` turns ok.
    pub fn attached(&self, ebpf: &aya::Ebpf, hooks: &[HookStatus]) {
        if let Some(k) = &self.kernel {
            k.set_programs(crate::progstats::ProgramStats::new(ebpf));
        }
        *self.shared.hooks.lock().unwrap_or_else(|e| e.into_inner()) = hooks
            .iter()
            .map(|h| {
                let mech = h.mechanism.map_or_else(|| "none".into(), |m| m.to_string());
                (h.hook.to_owned(), mech)
            })
            .collect();
        self.shared
            .ready
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// The daemon's health now: `/healthz` details and recorder metrics.
    pub fn set_health(&self, health: Health) {
        *self.shared.health.lock().unwrap_or_else(|e| e.into_inner()) = Some(health);
    }

    fn stop(&mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The metrics output: event totals and findings, published to the
/// endpoint.
pub struct MetricsSink {
    shared: Arc<Shared>,
    /// Increments made while a scrape held the shared totals.
    pending: Totals,
}

impl MetricsSink {
    /// Increments kept aside into the shared totals: only if no scrape
    /// holds them (`wait` false), or waiting for one to finish at most.
    fn merge_pending(&mut self, wait: bool) {
        if self.pending.events == 0 {
            return;
        }
        let mut t = match self.shared.totals.try_lock() {
            Ok(t) => t,
            Err(TryLockError::Poisoned(e)) => e.into_inner(),
            Err(TryLockError::WouldBlock) if !wait => return,
            Err(TryLockError::WouldBlock) => {
                self.shared.totals.lock().unwrap_or_else(|e| e.into_inner())
            }
        };
        let per_peer = t.per_peer;
        t.merge(std::mem::replace(&mut self.pending, Totals::new(per_peer)));
    }
}

impl Sink for MetricsSink {
    /// One event: into the shared totals when no scrape holds them, else
    /// aside until the next event, flush or summary.
    fn event(&mut self, ev: &Event, _boot_offset_ns: i64) -> Result<()> {
        match self.shared.totals.try_lock() {
            Ok(mut t) => {
                if self.pending.events > 0 {
                    let per_peer = t.per_peer;
                    t.merge(std::mem::replace(&mut self.pending, Totals::new(per_peer)));
                }
                t.observe(ev);
            }
            Err(TryLockError::WouldBlock | TryLockError::Poisoned(_)) => self.pending.observe(ev),
        }
        Ok(())
    }

    /// A summary: increments kept aside are merged (waiting for a scrape to
    /// finish at most), and the findings the diagnosis (earlier in the
    /// list) set on this step published. The kernel counters themselves
    /// are read by the endpoint at scrape time.
    fn summary(&mut self, step: &mut SummaryStep<'_>) -> Result<()> {
        self.merge_pending(true);
        if let Some(findings) = &step.findings {
            self.shared
                .findings
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .update(findings);
        }
        Ok(())
    }

    /// After every batch of events: what was kept aside, if no scrape
    /// holds the totals now.
    fn flush(&mut self) -> Result<()> {
        self.merge_pending(false);
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        self.merge_pending(true);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::{
        diagnose::{hookset::HookSet, Finding, Severity},
        summary::{KernelCounters, Summary},
    };

    fn sink() -> MetricsSink {
        MetricsSink {
            shared: Arc::new(Shared {
                totals: Mutex::new(Totals::new(false)),
                ..Shared::default()
            }),
            pending: Totals::new(false),
        }
    }

    fn connect_ev() -> Event {
        crate::event::decode(&crate::event::tests::raw_latency(
            tcptrace_common::EventKind::Connect,
            tcptrace_common::event::AF_INET,
            0,
        ))
        .unwrap()
    }

    /// One summary step, with `findings` as a diagnosis earlier in the
    /// list would have set them.
    fn summary(s: &mut MetricsSink, findings: Option<Vec<Finding>>) {
        let (state, k, hooks) = (
            Summary::default(),
            KernelCounters::default(),
            HookSet::default(),
        );
        let mut step = SummaryStep {
            summary: &state,
            counters: &k,
            json: serde_json::from_value(json!({"kind": "summary"})).unwrap(),
            final_: false,
            hooks: &hooks,
            recorded_host: None,
            findings,
            host_view: None,
        };
        s.summary(&mut step).unwrap();
    }

    #[test]
    fn findings_come_from_the_summary_step() {
        let mut s = sink();
        let finding = Finding {
            id: "accept_queue_overflow",
            severity: Severity::Critical,
            subject: "10.0.0.1:80".into(),
            summary: String::new(),
            evidence: serde_json::Map::new(),
            advice: Vec::new(),
            count: 3,
            first_seen: None,
            last_seen: None,
        };
        summary(&mut s, Some(vec![finding]));
        let key = ("accept_queue_overflow", "critical");
        assert_eq!(s.shared.findings.lock().unwrap().rules[&key], (true, 3));
        // A step no diagnosis evaluated leaves the published findings.
        summary(&mut s, None);
        assert_eq!(s.shared.findings.lock().unwrap().rules[&key], (true, 3));
        summary(&mut s, Some(Vec::new()));
        assert_eq!(s.shared.findings.lock().unwrap().rules[&key], (false, 3));
    }

    #[test]
    fn events_during_a_scrape_wait_aside_until_the_flush() {
        let mut s = sink();
        let shared = s.shared.clone();
        let scrape = shared.totals.lock().unwrap();
        s.event(&connect_ev(), 0).unwrap();
        s.flush().unwrap();
        assert_eq!((scrape.events, s.pending.events), (0, 1));
        drop(scrape);
        s.flush().unwrap();
        assert_eq!(
            (shared.totals.lock().unwrap().events, s.pending.events),
            (1, 0)
        );
    }
}
