//! The outputs of a run as sinks behind one small trait: text or JSON
//! Lines, findings only, a pcapng capture, the diagnosis, the metrics
//! endpoint's totals (live only), the findings log (daemon) and the
//! recorders (a recording file, the daemon's segments), which also take
//! the raw ring-buffer records and the counters. The pipeline that
//! feeds them is in [`crate::pipeline`].
//!
//! At every summary the sinks see one [`SummaryStep`] in list order: the
//! diagnosis (first) adds its findings, the outputs after it print them.

use anyhow::Result;

use crate::{
    container::Resolution,
    diagnose::{hookset::HookSet, Finding},
    event::Event,
    summary::{json::SummaryJson, KernelCounters, RecordingStop, Summary},
    syn::OwnerLookup,
};

/// What the live run looked up on the host for one record, new since the
/// last: recordings keep it, so replay fills events in the same way
/// without this host's /proc or cgroup tree.
#[derive(Default)]
pub struct Lookups {
    /// A listener's owner, from /proc.
    pub owner: Option<OwnerLookup>,
    /// The container of the event's cgroup.
    pub container: Option<Resolution>,
}

/// One output: text or JSON lines, a pcapng capture, the diagnosis, the
/// metrics.
pub trait Sink {
    /// One decoded event; `boot_offset_ns` turns its CLOCK_BOOTTIME stamp
    /// into wall-clock time.
    fn event(&mut self, ev: &Event, boot_offset_ns: i64) -> Result<()>;
    /// A periodic or the final summary.
    fn summary(&mut self, step: &mut SummaryStep<'_>) -> Result<()>;
    /// Out of the buffers what was written so far (after every batch of
    /// events and every summary).
    fn flush(&mut self) -> Result<()>;
    /// The run is over.
    fn finish(&mut self) -> Result<()> {
        self.flush()
    }

    /// One raw ring-buffer record as received, before it is decoded, with
    /// what the live run looked up on the host for it (the recorders).
    /// True when the sink wants the counters now ([`Sink::tick`]): its
    /// block is full.
    fn raw(&mut self, _raw: &[u8], _found: &Lookups) -> bool {
        false
    }

    /// Every second of a live run, and when [`Sink::raw`] asked: the kernel
    /// counters. True when the run must stop (a recording that is full or
    /// stopped; the sink said why).
    fn tick(&mut self, _k: &KernelCounters) -> Result<bool> {
        Ok(false)
    }

    /// Every summary of a live run, printed or not: the counters it was
    /// taken with and the host view its findings used (the recorders keep
    /// them, so replay prints the same summaries).
    fn marker(&mut self, _final: bool, _k: &KernelCounters, _host: Option<&str>) {}

    /// A recording that stopped before the run did (a full disk).
    fn recording_stop(&self) -> Option<RecordingStop> {
        None
    }

    /// Replay: every counter snapshot of the recording up to the end of
    /// the window, as read (the report draws them over time).
    fn counters(&mut self, _at: &CountersAt<'_>) {}
}

/// One counter snapshot of a recording, as replay reads it.
pub struct CountersAt<'a> {
    /// When it was taken (CLOCK_BOOTTIME).
    pub boot_ns: u64,
    /// The kernel's counters then, since its run started.
    pub counters: &'a KernelCounters,
    /// The host view the live findings used then (JSON), at summaries.
    pub host: Option<&'a str>,
    /// Counters to count from, not an interval of their own: taken before
    /// `--since`, or a rotated file's baseline.
    pub base_only: bool,
}

/// What a summary hands the sinks, in list order.
pub struct SummaryStep<'a> {
    pub summary: &'a Summary,
    pub counters: &'a KernelCounters,
    /// The summary object of JSON Lines (and the rules' view of it).
    pub json: SummaryJson,
    pub final_: bool,
    /// Which hooks attached (live, or in the recording); empty when unknown.
    pub hooks: &'a HookSet,
    /// Replay: the host view the live run recorded for this summary.
    pub recorded_host: Option<&'a str>,
    /// Set by the diagnosis: every finding now.
    pub findings: Option<Vec<Finding>>,
    /// Set by a live diagnosis: the host view its findings used (JSON, for
    /// the recording).
    pub host_view: Option<String>,
}
