//! The pipeline every decoded event goes through, shared by the live run
//! and replay: the summary state, then each sink of a list that both build
//! from the same arguments ([`build`]), so both print exactly the same.
//! Only the live run serves metrics (its endpoint reads the kernel maps).

use std::{io::Write, path::Path};

use anyhow::Result;

use crate::{
    diagnose::{hookset::HookSet, session::Session},
    event::{DecodeError, Event},
    metrics::Endpoint,
    output::{findings::FindingsOnly, human::Text, json::JsonLines, pcap::Pcap},
    sink::{Sink, SummaryStep},
    summary::{KernelCounters, Summary},
};

/// How the outputs of a run are chosen (from the command line).
pub struct Outputs<'a> {
    pub json: bool,
    /// Print every event and the periodic summaries (the final summary
    /// always prints).
    pub show_events: bool,
    /// `tcptrace diagnose`: nothing but the findings, at the end.
    pub only_findings: bool,
    pub pcap: Option<&'a Path>,
    /// Say on stderr how many packets went to the capture (replay).
    pub report_packets: bool,
    /// `--metrics` (live only): the endpoint the metrics sink feeds.
    pub metrics: Option<&'a Endpoint>,
}

/// The summary state and the sinks every event goes through.
pub struct Pipeline {
    pub summary: Summary,
    boot_offset_ns: i64,
    /// Periodic summaries reach the sinks only when events are printed.
    periodic: bool,
    hooks: HookSet,
    recorded_host: Option<String>,
    sinks: Vec<Box<dyn Sink>>,
}

/// The sinks for `o`, writing to `out`: the diagnosis first (its findings
/// join every summary), then the text, JSON or findings output, then the
/// capture, then the metrics.
pub fn build<W: Write + 'static>(
    out: W,
    o: &Outputs<'_>,
    diagnosis: Option<Session>,
    boot_offset_ns: i64,
) -> Result<Pipeline> {
    let show_events = o.show_events && !o.only_findings;
    let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
    if let Some(d) = diagnosis {
        sinks.push(Box::new(d));
    }
    if o.only_findings {
        sinks.push(Box::new(FindingsOnly::new(out, o.json)));
    } else if o.json {
        sinks.push(Box::new(JsonLines::new(out, show_events)));
    } else {
        sinks.push(Box::new(Text::new(out, show_events)?));
    }
    if let Some(path) = o.pcap {
        sinks.push(Box::new(Pcap::create(path, o.report_packets)?));
    }
    if let Some(endpoint) = o.metrics {
        sinks.push(Box::new(endpoint.sink()));
    }
    Ok(Pipeline {
        summary: Summary::default(),
        boot_offset_ns,
        periodic: show_events,
        hooks: HookSet::default(),
        recorded_host: None,
        sinks,
    })
}

impl Pipeline {
    pub fn set_boot_offset(&mut self, boot_offset_ns: i64) {
        self.boot_offset_ns = boot_offset_ns;
    }

    /// Which hooks attached (live, or in a recording), for the findings.
    pub fn set_hooks(&mut self, hooks: HookSet) {
        self.hooks = hooks;
    }

    /// Replay: the host view the live run recorded at the next summary.
    pub fn set_recorded_host_view(&mut self, json: Option<&str>) {
        self.recorded_host = json.map(str::to_owned);
    }

    /// One decoded event into the summary and every sink.
    pub fn event(&mut self, ev: &Event) -> Result<()> {
        self.summary.observe(ev);
        for s in &mut self.sinks {
            s.event(ev, self.boot_offset_ns)?;
        }
        Ok(())
    }

    pub fn undecodable(&mut self, e: &DecodeError) {
        self.summary.decode_errors += 1;
        log::warn!("{e}");
    }

    /// A periodic (`final_` false) or the final summary; returns the host
    /// view the findings used (live), for the recording.
    pub fn summary(&mut self, k: &KernelCounters, final_: bool) -> Result<Option<String>> {
        if !final_ && !self.periodic {
            return Ok(None);
        }
        let mut step = SummaryStep {
            summary: &self.summary,
            counters: k,
            json: self.summary.to_json(k, final_),
            final_,
            hooks: &self.hooks,
            recorded_host: self.recorded_host.as_deref(),
            findings: None,
            host_view: None,
        };
        for s in &mut self.sinks {
            s.summary(&mut step)?;
            s.flush()?;
        }
        Ok(step.host_view)
    }

    /// Everything written so far out of the buffers.
    pub fn flush(&mut self) -> Result<()> {
        self.sinks.iter_mut().try_for_each(|s| s.flush())
    }

    /// The end of the run.
    pub fn finish(&mut self) -> Result<()> {
        self.sinks.iter_mut().try_for_each(|s| s.finish())
    }
}
