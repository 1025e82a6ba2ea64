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
    output::{
        findings::FindingsOnly, findings_log::FindingsLog, human::Text, json::JsonLines, pcap::Pcap,
    },
    sink::{CountersAt, Lookups, Sink, SummaryStep},
    summary::{KernelCounters, RecordingStop, Summary},
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
    /// The daemon: findings as JSON lines when they appear or change, in
    /// place of the text or JSON output, and a summary (a diagnosis) at
    /// every interval.
    pub findings_log: bool,
}

/// The summary state and the sinks every event goes through.
pub struct Pipeline {
    pub summary: Summary,
    /// Records received, decoded or not (the daemon's events per second).
    pub received: u64,
    boot_offset_ns: i64,
    /// Periodic summaries reach the sinks only when events are printed.
    periodic: bool,
    hooks: HookSet,
    recorded_host: Option<String>,
    sinks: Vec<Box<dyn Sink>>,
    /// A sink that takes the raw records (a recorder) is in the list.
    raw: bool,
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
    if o.findings_log {
        sinks.push(Box::new(FindingsLog::new(out)));
    } else if o.only_findings {
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
        received: 0,
        boot_offset_ns,
        periodic: show_events || o.findings_log,
        raw: false,
        hooks: HookSet::default(),
        recorded_host: None,
        sinks,
    })
}

/// The diagnosis and `sinks` alone, no text or JSON output (the report):
/// every summary reaches them, as the outputs of a replay see them.
pub fn with_sinks(diagnosis: Session, sinks: Vec<Box<dyn Sink>>, boot_offset_ns: i64) -> Pipeline {
    let mut all: Vec<Box<dyn Sink>> = vec![Box::new(diagnosis)];
    all.extend(sinks);
    Pipeline {
        summary: Summary::default(),
        received: 0,
        boot_offset_ns,
        periodic: true,
        raw: false,
        hooks: HookSet::default(),
        recorded_host: None,
        sinks: all,
    }
}

impl Pipeline {
    /// A recorder, added once the hooks are attached (its header lists
    /// them); it takes the raw records from then on.
    pub fn add_recorder(&mut self, sink: Box<dyn Sink>) {
        self.sinks.push(sink);
        self.raw = true;
    }

    /// The daemon's metrics endpoint, started after the capability drop.
    pub fn add_metrics(&mut self, endpoint: &Endpoint) {
        self.sinks.push(Box::new(endpoint.sink()));
    }

    /// True once a recorder is in the list.
    pub fn records(&self) -> bool {
        self.raw
    }

    /// One raw record as received (and what was looked up for it) to the
    /// recorders; true when one wants the counters now ([`Pipeline::tick`]).
    pub fn raw(&mut self, raw: &[u8], found: &Lookups) -> bool {
        if !self.raw {
            return false;
        }
        let mut wants = false;
        for s in &mut self.sinks {
            wants |= s.raw(raw, found);
        }
        wants
    }

    /// The kernel counters, every second and when a recorder asked; true
    /// when a recorder says the run must stop.
    pub fn tick(&mut self, k: &KernelCounters) -> Result<bool> {
        let mut stop = false;
        for s in &mut self.sinks {
            stop |= s.tick(k)?;
        }
        Ok(stop)
    }

    /// A recording that stopped before the run did.
    pub fn recording_stop(&self) -> Option<RecordingStop> {
        self.sinks.iter().find_map(|s| s.recording_stop())
    }

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
        self.received += 1;
        self.summary.observe(ev);
        for s in &mut self.sinks {
            s.event(ev, self.boot_offset_ns)?;
        }
        Ok(())
    }

    /// Replay: one counter snapshot of the recording to every sink.
    pub fn counters(&mut self, at: &CountersAt<'_>) {
        for s in &mut self.sinks {
            s.counters(at);
        }
    }

    pub fn undecodable(&mut self, e: &DecodeError) {
        self.received += 1;
        self.summary.decode_errors += 1;
        log::warn!("{e}");
    }

    /// A periodic (`final_` false) or the final summary; the recorders
    /// note it with the host view the findings used (live).
    pub fn summary(&mut self, k: &KernelCounters, final_: bool) -> Result<()> {
        let host = self.summary_step(k, final_)?;
        for s in &mut self.sinks {
            s.marker(final_, k, host.as_deref());
        }
        Ok(())
    }

    fn summary_step(&mut self, k: &KernelCounters, final_: bool) -> Result<Option<String>> {
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
