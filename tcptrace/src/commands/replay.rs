//! `tcptrace replay`: a recording through the same decoder and sinks as the
//! live run, so it prints what the live run printed. The reading itself
//! (`read.rs`) is shared with `tcptrace report`.

mod read;

use std::{
    io::{BufWriter, Write as _},
    path::PathBuf,
    time::Duration,
};

use anyhow::{Context as _, Result};
use chrono::DateTime;
use clap::Args;

use self::read::expand;
pub use self::read::{open, read_into, replay_session, Source, Window};
use crate::{
    args::FilterArgs,
    escape::Escaped,
    event::{decode, json::wall_time},
    pipeline::{self, Outputs},
    record::{
        fmt_bytes,
        format::StopReason,
        reader::{Ending, Reader},
    },
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
    use crate::record::format::Metadata;

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
