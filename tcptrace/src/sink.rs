//! The outputs of a run as sinks behind one small trait: text or JSON
//! Lines, findings only, a pcapng capture, the diagnosis, the metrics
//! endpoint's totals (live only). The pipeline that
//! feeds them is in [`crate::pipeline`].
//!
//! At every summary the sinks see one [`SummaryStep`] in list order: the
//! diagnosis (first) adds its findings, the outputs after it print them.

use anyhow::Result;

use crate::{
    diagnose::{hookset::HookSet, Finding},
    event::Event,
    summary::{json::SummaryJson, KernelCounters, Summary},
};

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
