//! The daemon's flight recorder: the event stream written continuously to
//! a directory of segment files, each a recording in the usual format
//! (header, blocks, end block), named by start time
//! ([`super::retention::segment_name`]). A segment is closed and the next
//! one started when it would pass `--segment-size` or is `--segment-time`
//! old; retention ([`super::retention`]) runs before every block.
//!
//! Trouble never stops the tracing: a full disk (ENOSPC, EDQUOT) closes
//! the segment with its stopped block, a directory that vanished is made
//! again, and each time the events of the block that could not be written
//! are counted, the error is counted by kind ([`SegmentStats`], the
//! `tcptrace_recorder_errors_total` metric) and said on stderr once, and
//! the next block tries a new segment. What was written stays as it is.

use std::{
    collections::BTreeMap,
    fs, io,
    os::unix::fs::DirBuilderExt as _,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};

use super::{
    boot_now_ns,
    format::{Block, Metadata},
    reserve::{self, RESERVE},
    retention::{segment_name, Retention},
    writer::{FileWriter, Written},
    BlockWriter,
};
use crate::summary::KernelCounters;

/// Disk blocks beyond the bytes a segment may still grow by: the
/// filesystem's rounding and the space reserved for the end block.
const DISK_SLACK: u64 = 8192 + RESERVE;

/// `--record-dir` and its bounds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentConfig {
    pub dir: PathBuf,
    pub segment_size: u64,
    pub segment_time: Duration,
    pub retention: Retention,
}

/// Error kinds, the `error` label of `tcptrace_recorder_errors_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum SegmentError {
    /// ENOSPC or EDQUOT.
    DiskFull,
    /// The directory (or the segment in it) was removed.
    DirMissing,
    /// Any other I/O error.
    Io,
}

impl SegmentError {
    pub fn name(self) -> &'static str {
        match self {
            Self::DiskFull => "disk_full",
            Self::DirMissing => "dir_missing",
            Self::Io => "io",
        }
    }

    fn of(e: &anyhow::Error) -> Self {
        match e.chain().find_map(|c| c.downcast_ref::<io::Error>()) {
            Some(io) if reserve::is_disk_full(io) => Self::DiskFull,
            Some(io) if io.kind() == io::ErrorKind::NotFound => Self::DirMissing,
            _ => Self::Io,
        }
    }
}

/// What the writer thread shares with the daemon's status and metrics.
#[derive(Debug, Default)]
pub struct SegmentStats {
    /// Disk use of the directory's segments, as of the last block.
    pub disk_bytes: AtomicU64,
    /// Segments started by this run.
    pub segments: AtomicU64,
    /// Segments retention removed.
    pub removed: AtomicU64,
    /// Events of blocks that could not be written.
    pub events_not_written: AtomicU64,
    pub errors: Mutex<BTreeMap<SegmentError, u64>>,
}

impl SegmentStats {
    pub fn errors(&self) -> BTreeMap<SegmentError, u64> {
        self.errors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn count(&self, kind: SegmentError) {
        *self
            .errors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(kind)
            .or_default() += 1;
    }
}

struct Open {
    writer: FileWriter,
    path: PathBuf,
    since: Instant,
    blocks: u64,
}

pub struct SegmentWriter {
    cfg: SegmentConfig,
    meta: Metadata,
    current: Option<Open>,
    stats: Arc<SegmentStats>,
    /// The newest counters handed over: the baseline of the next segment.
    last_counters: Option<(u64, KernelCounters)>,
    total_bytes: u64,
    total_records: u64,
    /// The error the last block met, said once until writing works again.
    failing: Option<SegmentError>,
}

/// Makes `dir` (mode 0700: segments hold real addresses) if it is missing.
fn make_dir(dir: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))
}

impl SegmentWriter {
    /// Makes the directory and starts the first segment; a directory that
    /// cannot be made or written is an error at start.
    pub fn start(cfg: SegmentConfig, meta: Metadata, stats: Arc<SegmentStats>) -> Result<Self> {
        make_dir(&cfg.dir)?;
        let mut w = Self {
            cfg,
            meta,
            current: None,
            stats,
            last_counters: None,
            total_bytes: 0,
            total_records: 0,
            failing: None,
        };
        w.open()?;
        Ok(w)
    }

    /// A new segment, named for now, after making room for it.
    fn open(&mut self) -> Result<()> {
        make_dir(&self.cfg.dir)?;
        self.retain(self.cfg.segment_size)?;
        let unix_now = crate::kernel::boot_to_unix_offset_ns()
            .saturating_add(i64::try_from(boot_now_ns()).unwrap_or(i64::MAX));
        // Never over an existing segment (a restart within the same
        // nanosecond, a clock set back).
        let mut start = unix_now;
        let mut path = self.cfg.dir.join(segment_name(start));
        while path.exists() {
            start += 1;
            path = self.cfg.dir.join(segment_name(start));
        }
        self.meta.start_boot_ns = boot_now_ns();
        let created = FileWriter::create(&path, self.meta.clone(), Some(self.cfg.segment_size), 0);
        let writer = match created {
            Ok(w) => w,
            Err(e) => {
                // No half-written header left for replay to stumble on.
                let _ = fs::remove_file(&path);
                return Err(e);
            }
        };
        self.total_bytes += writer.size();
        self.meta.file_sequence += 1;
        self.stats.segments.fetch_add(1, Ordering::Relaxed);
        self.current = Some(Open {
            writer,
            path,
            since: Instant::now(),
            blocks: 0,
        });
        Ok(())
    }

    /// Retention, with room for the current segment to grow by `grow`.
    fn retain(&self, grow: u64) -> Result<()> {
        let current = self.current.as_ref().map(|o| o.path.as_path());
        let unix_now = crate::kernel::boot_to_unix_offset_ns()
            .saturating_add(i64::try_from(boot_now_ns()).unwrap_or(i64::MAX));
        let done =
            self.cfg
                .retention
                .enforce(&self.cfg.dir, current, grow + DISK_SLACK, unix_now)?;
        self.stats
            .removed
            .fetch_add(done.removed, Ordering::Relaxed);
        self.stats
            .disk_bytes
            .store(done.disk_bytes, Ordering::Relaxed);
        Ok(())
    }

    /// Closes the current segment (end block); errors are reported, the
    /// next segment starts anyway.
    fn close(&mut self) {
        if let Some(open) = self.current.take() {
            if let Err(e) = open.writer.finish() {
                self.failed(SegmentError::of(&e), &e, 0);
            }
        }
    }

    /// The current segment is gone (its directory removed).
    fn vanished(&self) -> bool {
        self.current
            .as_ref()
            .is_some_and(|o| fs::symlink_metadata(&o.path).is_err())
    }

    /// Counts an error, says it once, counts the block's events as lost.
    fn failed(&mut self, kind: SegmentError, e: &anyhow::Error, records: u64) {
        self.stats.count(kind);
        self.stats
            .events_not_written
            .fetch_add(records, Ordering::Relaxed);
        if self.failing != Some(kind) {
            eprintln!(
                "tcptrace: recorder: {}: {e:#}: {records} events not written; tracing goes on, \
                 the next block tries a new segment",
                kind.name()
            );
        }
        self.failing = Some(kind);
    }

    /// The block with the counters it continues from, for the first block
    /// of a segment.
    fn with_baseline(&self, block: &Block) -> Block {
        match &self.last_counters {
            Some((boot_ns, counters)) => block.with_baseline(*boot_ns, counters),
            None => block.clone(),
        }
    }

    fn write(&mut self, block: &Block) -> Result<(), (SegmentError, anyhow::Error)> {
        if self.vanished() {
            // Nothing to close: the file is gone with its directory.
            self.current = None;
            let dir = self.cfg.dir.display().to_string();
            return Err((
                SegmentError::DirMissing,
                anyhow::anyhow!("{dir}: the segment being written was removed"),
            ));
        }
        let due = self
            .current
            .as_ref()
            .is_some_and(|o| o.blocks > 0 && o.since.elapsed() >= self.cfg.segment_time);
        if due {
            self.close();
        }
        for _ in 0..2 {
            if self.current.is_none() {
                self.open().map_err(|e| (SegmentError::of(&e), e))?;
            }
            let size = self.current.as_ref().map_or(0, |o| o.writer.size());
            self.retain(self.cfg.segment_size.saturating_sub(size))
                .map_err(|e| (SegmentError::of(&e), e))?;
            let first = self.current.as_ref().is_some_and(|o| o.blocks == 0);
            let with_base;
            let framed = if first {
                with_base = self.with_baseline(block);
                &with_base
            } else {
                block
            };
            let Some(open) = self.current.as_mut() else {
                continue;
            };
            let before = open.writer.size();
            let written = open
                .writer
                .write_block(framed)
                .map_err(|e| (SegmentError::of(&e), e))?;
            match written {
                Written::Ok => {
                    open.blocks += 1;
                    self.total_bytes += open.writer.size() - before;
                    self.total_records += block.len() as u64;
                    return Ok(());
                }
                // Past --segment-size: the next segment takes it.
                Written::Full => self.close(),
                Written::Stopped(reason) => {
                    let path = open.path.display().to_string();
                    self.total_bytes += open.writer.size().saturating_sub(before);
                    self.current = None;
                    return Err((
                        SegmentError::DiskFull,
                        anyhow::anyhow!("{path}: {}", reason.error_text()),
                    ));
                }
            }
        }
        Err((
            SegmentError::Io,
            anyhow::anyhow!("a block larger than --segment-size"),
        ))
    }
}

impl BlockWriter for SegmentWriter {
    fn write_block(&mut self, block: &Block) -> Result<Written> {
        if block.is_empty() {
            return Ok(Written::Ok);
        }
        let result = self.write(block);
        if let Some(m) = block.markers.last() {
            self.last_counters = Some((m.boot_ns, m.counters.clone()));
        }
        match result {
            Ok(()) => {
                if self.failing.take().is_some() {
                    let path = self.current.as_ref().map(|o| o.path.display().to_string());
                    eprintln!(
                        "tcptrace: recorder: writing again ({})",
                        path.unwrap_or_default()
                    );
                }
            }
            Err((kind, e)) => self.failed(kind, &e, block.len() as u64),
        }
        Ok(Written::Ok)
    }

    fn total_bytes(&self) -> u64 {
        self.total_bytes
    }

    fn total_records(&self) -> u64 {
        self.total_records
    }

    fn finish(mut self: Box<Self>) -> Result<()> {
        if let Some(open) = self.current.take() {
            if fs::symlink_metadata(&open.path).is_ok() {
                open.writer.finish()?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{
        format::block::tests::sample_block,
        reader::{Ending, Reader},
        retention::list,
    };

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tcptrace-seg-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    fn config(dir: &Path, segment_size: u64, max_disk: Option<u64>) -> SegmentConfig {
        SegmentConfig {
            dir: dir.to_owned(),
            segment_size,
            segment_time: Duration::from_secs(3600),
            retention: Retention {
                keep: None,
                max_disk,
            },
        }
    }

    fn records(path: &Path) -> (u64, Ending) {
        let mut r = Reader::open(path).unwrap();
        while r.next_block().unwrap().is_some() {}
        (r.records, r.ending)
    }

    #[test]
    fn rotates_by_size_and_every_segment_reads_back() {
        let dir = temp_dir("size");
        let stats = Arc::new(SegmentStats::default());
        let mut w = Box::new(
            SegmentWriter::start(
                config(&dir, 64 << 10, None),
                Metadata::default(),
                stats.clone(),
            )
            .unwrap(),
        );
        // Until the fourth segment has started.
        let mut blocks = 0;
        while stats.segments.load(Ordering::Relaxed) < 4 && blocks < 10_000 {
            assert_eq!(w.write_block(&sample_block(100)).unwrap(), Written::Ok);
            blocks += 1;
        }
        assert_eq!(w.total_records(), blocks * 101);
        w.finish().unwrap();
        let segs = list(&dir).unwrap();
        assert_eq!(segs.len(), 4, "{segs:?}");
        assert_eq!(stats.segments.load(Ordering::Relaxed), segs.len() as u64);
        let mut total = 0;
        for s in &segs {
            assert!(fs::metadata(&s.path).unwrap().len() <= 64 << 10);
            let (n, ending) = records(&s.path);
            assert_eq!(ending, Ending::Clean);
            total += n;
        }
        assert_eq!(total, blocks * 101);
        assert!(stats.errors().is_empty());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn max_disk_keeps_the_newest_and_a_vanished_directory_comes_back() {
        let dir = temp_dir("disk");
        let stats = Arc::new(SegmentStats::default());
        let max = 256 << 10;
        let mut w = Box::new(
            SegmentWriter::start(
                config(&dir, 64 << 10, Some(max)),
                Metadata::default(),
                stats.clone(),
            )
            .unwrap(),
        );
        for _ in 0..2_000 {
            w.write_block(&sample_block(100)).unwrap();
            let used: u64 = list(&dir).unwrap().iter().map(|s| s.disk_bytes).sum();
            assert!(used <= max, "{used} > {max}");
        }
        assert!(stats.removed.load(Ordering::Relaxed) > 0);
        let newest = list(&dir).unwrap().last().unwrap().path.clone();
        assert_eq!(w.current.as_ref().unwrap().path, newest);

        fs::remove_dir_all(&dir).unwrap();
        w.write_block(&sample_block(100)).unwrap();
        assert_eq!(stats.errors()[&SegmentError::DirMissing], 1);
        assert_eq!(stats.events_not_written.load(Ordering::Relaxed), 101);
        // The next block makes the directory again.
        w.write_block(&sample_block(100)).unwrap();
        w.finish().unwrap();
        let segs = list(&dir).unwrap();
        assert_eq!(segs.len(), 1);
        assert_eq!(records(&segs[0].path), (101, Ending::Clean));
        fs::remove_dir_all(&dir).unwrap();
    }
}
