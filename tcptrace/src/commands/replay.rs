//! `tcptrace replay`: a recording through the same decoder and sinks as the
//! live run, so it prints what the live run printed.

use std::{
    io::{BufWriter, Write as _},
    path::PathBuf,
    time::Duration,
};

use anyhow::{bail, Context as _, Result};
use chrono::DateTime;
use clap::Args;

use crate::{
    args::FilterArgs,
    container::Attributor,
    diagnose::session::{counter_scope, Session},
    escape::Escaped,
    event::{decode, json::wall_time},
    host::Scope,
    pipeline::{self, Outputs, Pipeline},
    record::{
        fmt_bytes,
        format::{Item, MarkerKind, Metadata, StopReason},
        reader::{Ending, Reader},
        retention::list,
    },
    sink::CountersAt,
    summary::KernelCounters,
    syn::Owners,
};

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Recording to read; after rotation, several files oldest first
    /// (FILE.2 FILE.1 FILE); or the daemon's --record-dir, whose segments
    /// are read in order, those wholly outside --since/--until skipped.
    #[arg(required = true, value_name = "FILE|DIR")]
    pub files: Vec<PathBuf>,
    /// Print JSON Lines instead of text.
    #[arg(long)]
    pub json: bool,
    /// Start at this time: RFC 3339 (2024-05-01T10:00:00Z) or a duration
    /// after the recording started (30s, 5m).
    #[arg(long, value_name = "T", allow_hyphen_values = true, value_parser = parse_time)]
    pub since: Option<TimeArg>,
    /// Stop before this time (same forms as --since).
    #[arg(long, value_name = "T", allow_hyphen_values = true, value_parser = parse_time)]
    pub until: Option<TimeArg>,
    /// Write the packets of events that carry them to a pcapng file.
    #[arg(long, value_name = "OUT")]
    pub pcap: Option<PathBuf>,
    /// Describe the recording (host, kernel, hooks, size per event) instead
    /// of replaying it.
    #[arg(long)]
    pub info: bool,
    #[command(flatten)]
    pub filter: FilterArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeArg {
    /// Unix time in nanoseconds.
    Wall(i64),
    /// Time after the recording started.
    After(Duration),
}

pub fn parse_time(s: &str) -> Result<TimeArg, String> {
    // RFC 3339 times never start with '-' (years before 0 are not ours).
    if crate::args::is_negative(s) {
        return Err(format!(
            "times cannot be negative: use an RFC 3339 time (2024-05-01T10:00:00Z) or a \
             duration after the recording started ({})",
            crate::args::DURATION_FORM
        ));
    }
    if let Ok(d) = humantime::parse_duration(s) {
        return Ok(TimeArg::After(d));
    }
    if s == "0" {
        return Ok(TimeArg::After(Duration::ZERO));
    }
    DateTime::parse_from_rfc3339(s)
        .ok()
        .and_then(|t| t.timestamp_nanos_opt())
        .map(TimeArg::Wall)
        .ok_or_else(|| {
            format!(
                "{s:?}: use an RFC 3339 time (2024-05-01T10:00:00Z) or a duration after \
                 the recording started (30s, 5m)"
            )
        })
}

/// [since, until) in CLOCK_BOOTTIME nanoseconds.
pub struct Window {
    pub since: u64,
    pub until: u64,
}

impl Window {
    pub fn new(since: Option<TimeArg>, until: Option<TimeArg>, meta: &Metadata) -> Self {
        let boot = |t: TimeArg| match t {
            TimeArg::Wall(unix) => unix.saturating_sub(meta.boot_offset_ns).max(0) as u64,
            TimeArg::After(d) => meta
                .start_boot_ns
                .saturating_add(d.as_nanos().min(u64::MAX as u128) as u64),
        };
        Self {
            since: since.map_or(0, boot),
            until: until.map_or(u64::MAX, boot),
        }
    }

    fn before(&self, t: u64) -> bool {
        t < self.since
    }

    fn after(&self, t: u64) -> bool {
        t >= self.until
    }
}

/// Counters for the summaries: what was counted since `base`.
#[derive(Default)]
struct Counters {
    /// Counters at the start of the window (a rotated file's baseline, or the
    /// last snapshot before --since); zero for a run's first file.
    base: Option<KernelCounters>,
    /// The newest counters inside the window.
    last: Option<KernelCounters>,
    /// The live run's final summary, when it is inside the window.
    final_: Option<KernelCounters>,
}

impl Counters {
    fn since_base(&self, k: &KernelCounters) -> KernelCounters {
        match &self.base {
            Some(b) => k.since(b),
            None => k.clone(),
        }
    }
}

fn ending_note(path: &std::path::Path, r: &Reader<impl std::io::Read>) -> Option<String> {
    Some(match r.ending {
        Ending::Truncated { offset } => format!(
            "{}: ends inside a block at byte {offset} (recorder killed while \
             writing?): read the {} complete blocks before it",
            path.display(),
            r.blocks
        ),
        Ending::Unclosed => format!(
            "{}: no end block (recorder stopped abruptly): read all {} blocks",
            path.display(),
            r.blocks
        ),
        Ending::Stopped { reason, records } => format!(
            "{}: recording stopped: {} after {records} events: read all of them",
            path.display(),
            reason.map_or(
                "for a reason this tcptrace does not know",
                StopReason::describe
            )
        ),
        Ending::Clean | Ending::Open => return None,
    })
}

/// How far before a segment's start (its name) an event in it can be:
/// the records of a block wait up to a second in the recorder, and in the
/// ring buffer while the hooks attach.
const SEGMENT_LEAD_NS: i64 = 30_000_000_000;

/// The files to read: each FILE as given, each DIR's segments oldest
/// first, less those wholly outside the window (from their names: a
/// segment ends where the next one starts). Durations in `since`/`until`
/// count from a directory's first segment; they become wall times here.
fn expand(
    files: &[PathBuf],
    since: &mut Option<TimeArg>,
    until: &mut Option<TimeArg>,
) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for path in files {
        if !path.is_dir() {
            out.push(path.clone());
            continue;
        }
        let segments = list(path)?;
        let Some(first) = segments.first() else {
            bail!(
                "{}: no recording segments in this directory",
                path.display()
            );
        };
        let wall = |t: &mut Option<TimeArg>| {
            if let Some(TimeArg::After(d)) = *t {
                let d = i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
                *t = Some(TimeArg::Wall(first.start_ns.saturating_add(d)));
            }
            match *t {
                Some(TimeArg::Wall(ns)) => Some(ns),
                _ => None,
            }
        };
        let (from, to) = (wall(since), wall(until));
        for (i, seg) in segments.iter().enumerate() {
            let ends = segments.get(i + 1).map(|n| n.start_ns);
            let before = matches!((from, ends), (Some(f), Some(e)) if e <= f);
            let after = to.is_some_and(|t| seg.start_ns >= t.saturating_add(SEGMENT_LEAD_NS));
            if !before && !after {
                out.push(seg.path.clone());
            }
        }
        if out.is_empty() {
            bail!(
                "{}: no segment covers the time asked for ({} segments, the first from {})",
                path.display(),
                segments.len(),
                wall_time_unix(first.start_ns)
            );
        }
    }
    Ok(out)
}

fn wall_time_unix(unix_ns: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_nanos(unix_ns)
        .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// Which namespaces' counters replay's findings weigh: those the live run
/// weighed when neither it nor the replay filters events (every namespace
/// its host views hold), else only the ones the events need.
fn replay_scope(meta: &Metadata, filter: &FilterArgs) -> Scope {
    if meta.filter.is_empty() {
        counter_scope(filter)
    } else {
        Scope::Needed
    }
}

pub fn run(mut args: ReplayArgs) -> Result<()> {
    args.files = expand(&args.files, &mut args.since, &mut args.until)?;
    if args.info {
        return info(&args.files);
    }
    let first = Reader::open(&args.files[0])?;
    let outputs = Outputs {
        json: args.json,
        show_events: true,
        only_findings: false,
        pcap: args.pcap.as_deref(),
        report_packets: true,
        // Replay serves no metrics: the endpoint reads the live kernel maps.
        metrics: None,
        findings_log: false,
    };
    let mut printer = pipeline::build(
        BufWriter::new(std::io::stdout().lock()),
        &outputs,
        Some(replay_session(&first.meta, &args.filter)),
        first.meta.boot_offset_ns,
    )?;
    let source = Source {
        files: &args.files,
        window: Window::new(args.since, args.until, &first.meta),
        filter: &args.filter,
        keep_going: false,
    };
    read_into(&source, first, &mut printer, &mut |note| {
        eprintln!("tcptrace: {note}")
    })?;
    printer.finish()
}

/// The diagnosis of a replay: from the recording only, weighing the
/// namespaces the live run weighed.
pub fn replay_session(meta: &Metadata, filter: &FilterArgs) -> Session {
    Session::offline_scoped(replay_scope(meta, filter))
}

/// What a replay reads: the files (directories expanded, oldest first),
/// the time window and the filters.
pub struct Source<'a> {
    pub files: &'a [PathBuf],
    pub window: Window,
    pub filter: &'a FilterArgs,
    /// A corrupt block ends its file with a note instead of the run with
    /// an error (the report covers what could be read).
    pub keep_going: bool,
}

/// Expands FILE|DIR arguments and opens the first file: what every reader
/// of recordings starts with.
pub fn open(
    files: &[PathBuf],
    since: &mut Option<TimeArg>,
    until: &mut Option<TimeArg>,
) -> Result<(Vec<PathBuf>, Reader<std::io::BufReader<std::fs::File>>)> {
    let files = expand(files, since, until)?;
    let first = Reader::open(&files[0])?;
    Ok((files, first))
}

/// Feeds every selected event and counter snapshot of `src` (its first
/// file already open as `first`) to `printer`, then the final summary.
/// What could not be read, or how a file ended, goes to `note` (one
/// line, without the `tcptrace: ` prefix) as each file ends.
pub fn read_into(
    src: &Source<'_>,
    first: Reader<std::io::BufReader<std::fs::File>>,
    printer: &mut Pipeline,
    note: &mut dyn FnMut(String),
) -> Result<()> {
    let window = &src.window;
    // The findings weigh which hooks the live run attached, as it did.
    printer.set_hooks(crate::diagnose::hookset::HookSet::from(
        first.meta.hooks.as_slice(),
    ));
    let mut counters = Counters::default();
    let mut final_host: Option<String> = None;
    // Listener owners come from what the live run found, never from this
    // host's /proc.
    let mut owners = Owners::offline();
    // Containers likewise: cgroup ids mean nothing on another host or a
    // day later.
    let mut containers = Attributor::offline();
    let mut started = false;
    let mut first = Some(first);
    for path in src.files {
        let mut reader = match first.take() {
            Some(r) => r,
            // A segment that never got its header (the daemon killed as
            // it started one) holds nothing: said, and the next is read.
            None => match Reader::open(path) {
                Ok(r) => r,
                Err(e) if src.files.len() > 1 => {
                    note(format!("skipping {}: {e:#}", path.display()));
                    continue;
                }
                Err(e) => return Err(e),
            },
        };
        printer.set_boot_offset(reader.meta.boot_offset_ns);
        loop {
            let block = match reader.next_block() {
                Ok(Some(block)) => block,
                Ok(None) => break,
                Err(e) if src.keep_going => {
                    note(format!(
                        "{}: {e:#}: the rest of this file was not read",
                        path.display()
                    ));
                    break;
                }
                Err(e) => return Err(e).with_context(|| path.display().to_string()),
            };
            for lookup in &block.owners {
                owners.learn(lookup.clone());
            }
            for resolved in &block.containers {
                containers.learn(resolved.clone());
            }
            for item in block.items() {
                match item {
                    Item::Record(raw) => match decode(raw) {
                        Ok(mut ev) => {
                            owners.fill(&mut ev);
                            containers.fill(&mut ev);
                            if !window.before(ev.ts_ns)
                                && !window.after(ev.ts_ns)
                                && src.filter.matches(&ev)
                            {
                                printer.event(&ev)?;
                            }
                        }
                        Err(e) => printer.undecodable(&e),
                    },
                    Item::Marker(m) => {
                        // Counters at the start: a rotated file's baseline, or
                        // the newest snapshot before --since.
                        let base_only = (m.kind == MarkerKind::Baseline && !started)
                            || window.before(m.boot_ns);
                        if !window.after(m.boot_ns) {
                            printer.counters(&CountersAt {
                                boot_ns: m.boot_ns,
                                counters: &m.counters,
                                host: m.host.as_deref(),
                                base_only,
                            });
                        }
                        if base_only {
                            counters.base = Some(m.counters.clone());
                        } else if !window.after(m.boot_ns) {
                            counters.last = Some(m.counters.clone());
                            match m.kind {
                                MarkerKind::Summary => {
                                    printer.set_recorded_host_view(m.host.as_deref());
                                    printer.summary(&counters.since_base(&m.counters), false)?;
                                }
                                MarkerKind::Final => {
                                    counters.final_ = Some(m.counters.clone());
                                    final_host = m.host.clone();
                                }
                                MarkerKind::Snapshot | MarkerKind::Baseline => {}
                            }
                        }
                    }
                }
                started = true;
            }
        }
        printer.flush()?;
        if let Some(text) = ending_note(path, &reader) {
            note(text);
        }
    }
    let end = counters
        .final_
        .clone()
        .or_else(|| counters.last.clone())
        .or_else(|| counters.base.clone())
        .unwrap_or_else(KernelCounters::zero);
    printer.set_recorded_host_view(final_host.as_deref());
    printer.summary(&counters.since_base(&end), true)
}

/// `replay --info`: header and size statistics of each file.
fn info(files: &[PathBuf]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    for path in files {
        let mut r = Reader::open(path)?;
        let size = std::fs::metadata(path)
            .with_context(|| path.display().to_string())?
            .len();
        let (mut first, mut last, mut markers) = (u64::MAX, 0u64, 0u64);
        while let Some(block) = r.next_block().with_context(|| path.display().to_string())? {
            markers += block.markers.len() as u64;
            for i in 0..block.len() {
                if let Ok(ev) = decode(block.record(i)) {
                    first = first.min(ev.ts_ns);
                    last = last.max(ev.ts_ns);
                }
            }
        }
        let m = &r.meta;
        writeln!(out, "file:        {}", path.display())?;
        // The header is whatever the file says: escape its strings.
        writeln!(
            out,
            "host:        {} (kernel {})",
            Escaped(&m.hostname),
            Escaped(&m.kernel_release)
        )?;
        writeln!(out, "tcptrace:    {}", Escaped(&m.tcptrace_version))?;
        writeln!(
            out,
            "started:     {} (file {} of the run)",
            wall_time(m.start_boot_ns, m.boot_offset_ns),
            m.file_sequence
        )?;
        if first <= last {
            writeln!(
                out,
                "events:      {} to {}",
                wall_time(first, m.boot_offset_ns),
                wall_time(last, m.boot_offset_ns)
            )?;
        }
        for h in &m.hooks {
            writeln!(
                out,
                "hook:        {:<12} {}",
                Escaped(&h.hook),
                Escaped(h.mechanism.as_deref().unwrap_or("UNAVAILABLE"))
            )?;
        }
        if !m.filter.is_empty() {
            writeln!(
                out,
                "filter:      {} (applied in the kernel)",
                Escaped(&m.filter)
            )?;
        }
        let ending = match r.ending {
            Ending::Clean => "closed cleanly".to_owned(),
            Ending::Unclosed => "not closed (recorder stopped abruptly)".to_owned(),
            Ending::Truncated { offset } => format!("cut inside a block at byte {offset}"),
            Ending::Open => "open".to_owned(),
            Ending::Stopped { reason, records } => format!(
                "stopped: {} after {records} events",
                reason.map_or(
                    "for a reason this tcptrace does not know",
                    StopReason::describe
                )
            ),
        };
        writeln!(
            out,
            "records:     {} in {} blocks, {markers} counter snapshots; {ending}",
            r.records, r.blocks
        )?;
        let per = if r.records > 0 {
            format!(", {:.2} bytes per event", size as f64 / r.records as f64)
        } else {
            String::new()
        };
        writeln!(out, "size:        {} ({size} bytes){per}", fmt_bytes(size))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(
            parse_time("30s"),
            Ok(TimeArg::After(Duration::from_secs(30)))
        );
        assert_eq!(parse_time("0"), Ok(TimeArg::After(Duration::ZERO)));
        assert_eq!(
            parse_time("2023-11-14T22:13:20Z"),
            Ok(TimeArg::Wall(1_700_000_000_000_000_000))
        );
        assert_eq!(
            parse_time("2023-11-14T23:13:20.5+01:00"),
            Ok(TimeArg::Wall(1_700_000_000_500_000_000))
        );
        assert!(parse_time("yesterday").unwrap_err().contains("RFC 3339"));
        assert_eq!(
            parse_time("-5s").unwrap_err(),
            "times cannot be negative: use an RFC 3339 time (2024-05-01T10:00:00Z) or a \
             duration after the recording started (a duration is a positive number with a \
             unit (us, ms, s, m, h), e.g. 30s or 500ms)"
        );
        let meta = Metadata {
            boot_offset_ns: 1_700_000_000_000_000_000,
            start_boot_ns: 5_000,
            ..Metadata::default()
        };
        let w = Window::new(
            Some(TimeArg::After(Duration::from_micros(1))),
            Some(TimeArg::Wall(1_700_000_000_000_010_000)),
            &meta,
        );
        assert_eq!((w.since, w.until), (6_000, 10_000));
        assert!(w.before(5_999) && !w.before(6_000));
        assert!(w.after(10_000) && !w.after(9_999));
    }
}
