//! Replay's reading, shared with `tcptrace report`: the files to read (a
//! daemon's segment directory expanded, segments outside the window
//! skipped), the time window, and the loop that feeds every selected
//! event and counter snapshot to a pipeline, then the final summary.

use std::path::PathBuf;

use anyhow::{bail, Context as _, Result};

use super::TimeArg;
use crate::{
    args::FilterArgs,
    container::Attributor,
    diagnose::session::{counter_scope, Session},
    event::decode,
    host::Scope,
    pipeline::Pipeline,
    record::{
        format::{Item, MarkerKind, Metadata, StopReason},
        reader::{Ending, Reader},
        retention::list,
    },
    sink::CountersAt,
    summary::KernelCounters,
    syn::Owners,
};

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

    pub fn before(&self, t: u64) -> bool {
        t < self.since
    }

    pub fn after(&self, t: u64) -> bool {
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
pub(super) fn expand(
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
