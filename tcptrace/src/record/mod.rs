//! Recordings: the live run's raw ring-buffer records and kernel counter
//! snapshots, written to a versioned, block-compressed, checksummed file
//! (format in [`format`], described in docs/recording.md). The command is
//! `commands/record.rs`, replay `commands/replay.rs`.
//!
//! The live loop hands every record to a [`Recorder`] (a sink of the
//! pipeline, `sink.rs`), which batches them into blocks; a writer thread
//! compresses and writes each block with one write call at least every
//! second, so a killed recorder loses at most the last second. The writer
//! is one file ([`writer::FileWriter`], `tcptrace record`) or the daemon's
//! directory of segments ([`segments::SegmentWriter`]).

pub mod format;
pub mod reader;
pub mod reserve;
pub mod retention;
pub mod segments;
pub mod sink;
pub mod writer;

use std::{
    collections::BTreeMap,
    io::{IsTerminal as _, Write as _},
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc::{sync_channel, SyncSender},
        Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Context as _, Result};
use tcptrace_common::{
    paws::{PawsEvent, RstEvent},
    syn::SynEvent,
    EventHeader, EventKind, Flow, HandshakeEvent, LatencyEvent,
};

use self::{
    format::{Block, HookInfo, Marker, MarkerKind, Metadata, StopReason, BLOCK_TARGET},
    writer::{FileWriter, Written},
};
use crate::{
    container::Resolution,
    filter::FilterArgs,
    hooks::HookStatus,
    summary::{KernelCounters, RecordingStop},
    syn::OwnerLookup,
};

/// CLOCK_BOOTTIME now, in nanoseconds (the clock of every event's `ts_ns`).
pub fn boot_now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into a valid timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
}

/// (hostname, kernel release) from uname(2).
fn uname() -> (String, String) {
    // SAFETY: utsname is plain data; uname fills it in.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a utsname.
    if unsafe { libc::uname(&mut u) } != 0 {
        return (String::new(), String::new());
    }
    let field = |f: &[libc::c_char]| {
        let bytes: Vec<u8> = f
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    (field(&u.nodename), field(&u.release))
}

pub fn metadata(hooks: &[HookStatus], filter: &FilterArgs, boot_offset_ns: i64) -> Metadata {
    let (hostname, kernel_release) = uname();
    let command_line: Vec<String> = std::env::args().collect();
    let size = |n: usize| n as u32;
    Metadata {
        hostname,
        kernel_release,
        tcptrace_version: env!("CARGO_PKG_VERSION").to_owned(),
        boot_offset_ns,
        start_boot_ns: boot_now_ns(),
        file_sequence: 0,
        hooks: hooks
            .iter()
            .map(|h| HookInfo {
                hook: h.hook.to_owned(),
                mechanism: h.mechanism.map(|m| m.to_string()),
                notes: h.notes.clone(),
                programs: h.programs.iter().map(|p| (*p).to_owned()).collect(),
            })
            .collect(),
        filter: filter.describe(),
        command_line,
        record_sizes: BTreeMap::from([
            ("EventHeader".to_owned(), size(size_of::<EventHeader>())),
            ("Flow".to_owned(), size(size_of::<Flow>())),
            ("LatencyEvent".to_owned(), size(size_of::<LatencyEvent>())),
            (
                "HandshakeEvent".to_owned(),
                size(size_of::<HandshakeEvent>()),
            ),
            ("SynEvent".to_owned(), size(size_of::<SynEvent>())),
            ("PawsEvent".to_owned(), size(size_of::<PawsEvent>())),
            ("RstEvent".to_owned(), size(size_of::<RstEvent>())),
        ]),
        event_kinds: EventKind::ALL
            .iter()
            .map(|k| (k.name().to_owned(), *k as u8))
            .collect(),
    }
}

pub fn fmt_bytes(n: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (div, unit) in UNITS {
        if n >= div {
            return format!("{:.1} {unit}", n as f64 / div as f64);
        }
    }
    format!("{n} B")
}

struct Shared {
    bytes: AtomicU64,
    full: AtomicBool,
    /// Records written to files (final once `stopped` is set).
    written: AtomicU64,
    /// Set once a full disk stopped the writer.
    stopped: AtomicBool,
}

/// The status line on stderr: rewritten every second on a terminal, one
/// line every few seconds otherwise.
struct Status {
    tty: bool,
    every: Duration,
    last_print: Instant,
    last_events: u64,
    last_time: Instant,
    printed_tty: bool,
}

/// Where the recorder's writer thread puts the blocks.
pub trait BlockWriter: Send + 'static {
    fn write_block(&mut self, block: &Block) -> Result<Written>;
    /// Bytes written over all files.
    fn total_bytes(&self) -> u64;
    /// Records written over all files.
    fn total_records(&self) -> u64;
    /// Closes the files cleanly.
    fn finish(self: Box<Self>) -> Result<()>;
}

impl BlockWriter for FileWriter {
    fn write_block(&mut self, block: &Block) -> Result<Written> {
        FileWriter::write_block(self, block)
    }

    fn total_bytes(&self) -> u64 {
        self.total_bytes
    }

    fn total_records(&self) -> u64 {
        self.total_records
    }

    fn finish(self: Box<Self>) -> Result<()> {
        FileWriter::finish(*self)
    }
}

pub struct Recorder {
    path: PathBuf,
    /// The status line every few seconds on stderr (`tcptrace record`).
    status_line: bool,
    block: Block,
    tx: Option<SyncSender<Block>>,
    thread: Option<JoinHandle<Result<()>>>,
    shared: Arc<Shared>,
    events: u64,
    last_snapshot: Option<KernelCounters>,
    status: Status,
}

impl Recorder {
    /// Creates the file (header written at once) and starts the writer
    /// thread; `max_size` and `rotate` as `tcptrace record` documents them
    /// (`rotate` 0: stop when full).
    pub fn start(
        output: &Path,
        max_size: Option<u64>,
        rotate: u32,
        filter: &FilterArgs,
        hooks: &[HookStatus],
        boot_offset_ns: i64,
    ) -> Result<Self> {
        let meta = metadata(hooks, filter, boot_offset_ns);
        let file = FileWriter::create(output, meta, max_size, rotate)?;
        Self::with_writer(Box::new(file), output, true)
    }

    /// A recorder writing through `file` (named `label` in messages).
    pub fn with_writer(
        mut file: Box<dyn BlockWriter>,
        label: &Path,
        status_line: bool,
    ) -> Result<Self> {
        let output = label;
        let shared = Arc::new(Shared {
            bytes: AtomicU64::new(file.total_bytes()),
            full: AtomicBool::new(false),
            written: AtomicU64::new(0),
            stopped: AtomicBool::new(false),
        });
        let path = output.to_path_buf();
        // A few blocks of slack; if the disk is slower than the events the
        // loop waits, the ring buffer fills and the kernel counts lost events.
        let (tx, rx) = sync_channel::<Block>(4);
        let sh = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("recorder".into())
            .spawn(move || -> Result<()> {
                for block in rx {
                    let written = file.write_block(&block)?;
                    sh.bytes.store(file.total_bytes(), Ordering::Relaxed);
                    sh.written.store(file.total_records(), Ordering::Relaxed);
                    match written {
                        Written::Ok => {}
                        Written::Full => sh.full.store(true, Ordering::Relaxed),
                        // Said at once, from here: the live loop only
                        // looks once a second.
                        Written::Stopped(reason) => {
                            if !sh.stopped.swap(true, Ordering::Release) {
                                eprintln!(
                                    "tcptrace: {}: {}: recording stopped after {} events",
                                    path.display(),
                                    reason.error_text(),
                                    file.total_records()
                                );
                            }
                        }
                    }
                }
                file.finish()
            })
            .context("starting the recorder thread")?;
        let now = Instant::now();
        let tty = std::io::stderr().is_terminal();
        Ok(Self {
            path: output.to_path_buf(),
            status_line,
            block: Block::default(),
            tx: Some(tx),
            thread: Some(thread),
            shared,
            events: 0,
            last_snapshot: None,
            status: Status {
                tty,
                every: if tty {
                    Duration::from_secs(1)
                } else {
                    Duration::from_secs(5)
                },
                last_print: now,
                last_events: 0,
                last_time: now,
                printed_tty: false,
            },
        })
    }

    /// One raw ring-buffer record, as received. True when the block is full:
    /// the caller then closes it with [`Recorder::tick`], so every block
    /// ends with a counter snapshot (the exact baseline of a rotated file).
    #[must_use]
    pub fn push(&mut self, raw: &[u8]) -> bool {
        self.block.push(raw);
        self.events += 1;
        self.block.data.len() >= BLOCK_TARGET
    }

    /// A listener owner the live run looked up in /proc, stored with the
    /// current block so replay fills events in the same way.
    pub fn owner(&mut self, lookup: OwnerLookup) {
        self.block.owners.push(lookup);
    }

    /// A container resolution the live run made, stored with the current
    /// block so replay attributes events in the same way.
    pub fn container(&mut self, r: Resolution) {
        self.block.containers.push(r);
    }

    /// Stores counters at this point of the stream, and for a printed
    /// summary the host view its findings were computed from.
    pub fn marker(&mut self, kind: MarkerKind, k: &KernelCounters, host: Option<String>) {
        self.block.markers.push(Marker {
            pos: self.block.len() as u32,
            kind,
            boot_ns: boot_now_ns(),
            counters: k.clone(),
            host,
        });
        self.last_snapshot = Some(k.clone());
    }

    /// Every second and when a block is full: a counter snapshot, the block
    /// written, the status line.
    pub fn tick(&mut self, k: &KernelCounters) -> Result<()> {
        let changed = self.last_snapshot.as_ref() != Some(k);
        if changed || !self.block.is_empty() {
            self.marker(MarkerKind::Snapshot, k, None);
        }
        self.flush()?;
        if self.status_line {
            self.status(k);
        }
        Ok(())
    }

    /// True once --max-size is reached without --rotate.
    pub fn full(&self) -> bool {
        self.shared.full.load(Ordering::Relaxed)
    }

    /// Once a full disk stopped the writer: what the summary says about it.
    /// Every event handed over since the stop counts as not written.
    pub fn stopped(&self) -> Option<RecordingStop> {
        if !self.shared.stopped.load(Ordering::Acquire) {
            return None;
        }
        let written = self.shared.written.load(Ordering::Relaxed);
        Some(RecordingStop {
            file: self.path.display().to_string(),
            reason: StopReason::DiskFull.name(),
            why: StopReason::DiskFull.error_text(),
            events_written: written,
            events_not_written: self.events.saturating_sub(written),
        })
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    fn flush(&mut self) -> Result<()> {
        if self.block.is_empty() {
            return Ok(());
        }
        let block = std::mem::take(&mut self.block);
        let sent = self.tx.as_ref().map(|tx| tx.send(block).is_ok());
        if sent != Some(true) {
            return Err(self
                .stop_writer()
                .err()
                .unwrap_or_else(|| anyhow!("recorder stopped")));
        }
        Ok(())
    }

    fn stop_writer(&mut self) -> Result<()> {
        drop(self.tx.take());
        let Some(thread) = self.thread.take() else {
            return Ok(());
        };
        match thread.join() {
            Ok(r) => r.with_context(|| format!("recording to {}", self.path.display())),
            Err(_) => bail!("the recorder thread panicked"),
        }
    }

    fn status(&mut self, k: &KernelCounters) {
        let now = Instant::now();
        if now.duration_since(self.status.last_print) < self.status.every {
            return;
        }
        let secs = now.duration_since(self.status.last_time).as_secs_f64();
        let rate = (self.events - self.status.last_events) as f64 / secs.max(1e-3);
        let line = format!(
            "tcptrace: recording {}: {} events ({rate:.0}/s), {} written, {} lost",
            self.path.display(),
            self.events,
            fmt_bytes(self.shared.bytes.load(Ordering::Relaxed)),
            k.lost_total()
        );
        let mut err = std::io::stderr().lock();
        let _ = if self.status.tty {
            self.status.printed_tty = true;
            write!(err, "\r\x1b[K{line}")
        } else {
            writeln!(err, "{line}")
        };
        let _ = err.flush();
        self.status.last_print = now;
        self.status.last_events = self.events;
        self.status.last_time = now;
    }

    /// Writes what is left and closes the file cleanly (end block). A
    /// recording a full disk stopped is an error: not every event is in it.
    /// Once only: the sink calls it from [`crate::sink::Sink::finish`].
    pub fn finish(&mut self) -> Result<()> {
        if self.thread.is_none() {
            return Ok(());
        }
        let flushed = self.flush();
        let stopped = self.stop_writer();
        if self.status.printed_tty {
            eprintln!();
        }
        flushed.and(stopped)?;
        if let Some(s) = self.stopped() {
            bail!(
                "recording to {} stopped: {}: {} events written, {} not written",
                s.file,
                s.why,
                s.events_written,
                s.events_not_written
            );
        }
        eprintln!(
            "tcptrace: recorded {} events to {} ({})",
            self.events,
            self.path.display(),
            fmt_bytes(self.shared.bytes.load(Ordering::Relaxed))
        );
        Ok(())
    }
}
