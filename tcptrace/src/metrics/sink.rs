//! The metrics output of a run: fed like the other outputs (event,
//! summary, finish), it keeps the event totals where the endpoint reads
//! them, without ever waiting for a scrape.

use std::{
    sync::{atomic::AtomicBool, Arc, Mutex, TryLockError},
    thread::JoinHandle,
};

use anyhow::Result;

use super::{
    addr::Bound, collector::Exporter, findings::FindingsView, kernel::KernelReader, server,
    totals::Totals, Bounds,
};
use crate::{diagnose::Finding, event::Event, hooks::HookStatus, summary::KernelCounters};

/// What the drain shares with the endpoint.
#[derive(Debug, Default)]
pub struct Shared {
    pub totals: Mutex<Totals>,
    pub findings: Mutex<FindingsView>,
    /// (hook, mechanism or "none"), once attached.
    pub hooks: Mutex<Vec<(String, String)>>,
    /// Every hook has been attached (or failed to): `/healthz` says ok.
    pub ready: AtomicBool,
}

pub struct MetricsSink {
    shared: Arc<Shared>,
    kernel: Option<Arc<KernelReader>>,
    /// Increments made while a scrape held the shared totals.
    pending: Totals,
    server: Option<server::Handle>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsSink {
    /// Starts the endpoint on `bound`; `kernel` reads the maps at scrape
    /// time (`None` in tests without BPF).
    pub fn start(bound: Bound, kernel: Option<KernelReader>, bounds: Bounds) -> Result<Self> {
        let shared = Arc::new(Shared {
            totals: Mutex::new(Totals::new(bounds.peers.is_some())),
            ..Shared::default()
        });
        let kernel = kernel.map(Arc::new);
        let exporter = Exporter::new(shared.clone(), kernel.clone(), bounds);
        let (server, thread) = server::spawn(bound, exporter, shared.clone())?;
        Ok(Self {
            shared,
            kernel,
            pending: Totals::new(bounds.peers.is_some()),
            server: Some(server),
            thread: Some(thread),
        })
    }

    /// The hooks of this run are attached: they are listed, every program
    /// is watched for kernel skips, and `/healthz` turns ok.
    pub fn attached(&mut self, ebpf: &aya::Ebpf, hooks: &[HookStatus]) {
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

    /// One event: into the shared totals when no scrape holds them (a
    /// compare-and-swap), else aside until the next event or summary.
    pub fn event(&mut self, ev: &Event) {
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
    }

    /// A summary: increments kept aside are merged (waiting for a scrape
    /// to finish at most), and the findings of this evaluation published.
    /// The kernel counters themselves are read by the endpoint at scrape
    /// time.
    pub fn summary(&mut self, _k: &KernelCounters, findings: &[Finding]) {
        self.merge_pending();
        self.shared
            .findings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .update(findings);
    }

    fn merge_pending(&mut self) {
        if self.pending.events > 0 {
            let mut t = self.shared.totals.lock().unwrap_or_else(|e| e.into_inner());
            let per_peer = t.per_peer;
            t.merge(std::mem::replace(&mut self.pending, Totals::new(per_peer)));
        }
    }

    /// The end of the run: the endpoint stops.
    pub fn finish(mut self) {
        self.merge_pending();
        self.stop();
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

impl Drop for MetricsSink {
    fn drop(&mut self) {
        self.stop();
    }
}
