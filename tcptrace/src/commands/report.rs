//! `tcptrace report`: a recording (files or the daemon's segment
//! directory) read by replay's own reader and pipeline into one
//! self-contained HTML page (`report/`). The page's totals are the
//! replay's summary; what could not be read is said on the page and on
//! stderr, as replay says it.

use std::{
    cell::RefCell, fs::OpenOptions, io::Write as _, os::unix::fs::OpenOptionsExt as _,
    path::PathBuf, rc::Rc,
};

use anyhow::{Context as _, Result};
use clap::Args;

use crate::{
    args::FilterArgs,
    commands::replay::{self, parse_time, read_into, replay_session, Source, TimeArg, Window},
    pipeline,
    record::fmt_bytes,
    report::{
        html::{self, Page},
        Collected, Collector,
    },
};

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Recording to read: files oldest first, or the daemon's --record-dir
    /// (as `tcptrace replay` reads them).
    #[arg(required = true, value_name = "FILE|DIR")]
    pub files: Vec<PathBuf>,
    /// The HTML file to write (mode 0600: it holds addresses).
    #[arg(short, long, value_name = "OUT")]
    pub output: PathBuf,
    /// Start at this time: RFC 3339 or a duration after the recording
    /// started (as replay).
    #[arg(long, value_name = "T", allow_hyphen_values = true, value_parser = parse_time)]
    pub since: Option<TimeArg>,
    /// Stop before this time (same forms as --since).
    #[arg(long, value_name = "T", allow_hyphen_values = true, value_parser = parse_time)]
    pub until: Option<TimeArg>,
    /// Events listed in the table of each kind (the first ones).
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub events_per_kind: usize,
    #[command(flatten)]
    pub filter: FilterArgs,
}

/// `--since`/`--until` as the user gave them, for the page.
fn asked(args: &ReportArgs) -> String {
    let show = |t: &Option<TimeArg>| match t {
        Some(TimeArg::After(d)) => Some(humantime::format_duration(*d).to_string()),
        Some(TimeArg::Wall(ns)) => Some(
            chrono::DateTime::<chrono::Utc>::from_timestamp_nanos(*ns)
                .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        ),
        None => None,
    };
    let mut parts = Vec::new();
    if let Some(s) = show(&args.since) {
        parts.push(format!("--since {s}"));
    }
    if let Some(u) = show(&args.until) {
        parts.push(format!("--until {u}"));
    }
    parts.join(" ")
}

pub fn run(args: ReportArgs) -> Result<()> {
    let asked = asked(&args);
    let (mut since, mut until) = (args.since, args.until);
    let (files, first) = replay::open(&args.files, &mut since, &mut until)?;
    let meta = first.meta.clone();
    let window = Window::new(since, until, &meta);
    // The axis starts at --since, or where the recording started.
    let origin = if window.since > 0 {
        window.since
    } else {
        meta.start_boot_ns
    };
    let collected = Rc::new(RefCell::new(Collected::new(origin, args.events_per_kind)));
    let mut pipeline = pipeline::with_sinks(
        replay_session(&meta, &args.filter),
        vec![Box::new(Collector(Rc::clone(&collected)))],
        meta.boot_offset_ns,
    );
    let source = Source {
        files: &files,
        window,
        filter: &args.filter,
        keep_going: true,
    };
    let mut notes = Vec::new();
    read_into(&source, first, &mut pipeline, &mut |note| {
        eprintln!("tcptrace: {note}");
        notes.push(note);
    })?;
    pipeline.finish()?;
    let data = collected.borrow();
    let page = html::render(&Page {
        meta: &meta,
        files: &files,
        filter: args.filter.describe(),
        asked,
        notes: &notes,
        data: &data,
    });
    let out = &args.output;
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(out)
        .with_context(|| format!("{}: cannot create the report", out.display()))?;
    f.write_all(page.as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("{}: writing the report", out.display()))?;
    eprintln!(
        "tcptrace: wrote {} ({})",
        out.display(),
        fmt_bytes(page.len() as u64)
    );
    Ok(())
}
