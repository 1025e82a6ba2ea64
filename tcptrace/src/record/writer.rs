//! Writing recording files: header, one `write` per block (so a killed
//! recorder leaves whole blocks only, plus at most one cut-off block the
//! reader ignores), size limit and rotation, and a full disk: the writer
//! stops and closes the file with a stopped block saying so (room for it is
//! kept allocated, see [`super::reserve`]).

use std::{
    fs::{self, File, OpenOptions},
    io::{self, Seek as _, SeekFrom, Write as _},
    os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result};

use super::{
    format::{self, block_type, Block, Metadata, StopReason},
    reserve::{self, RESERVE},
};
use crate::summary::KernelCounters;

/// Creates (or truncates) a file only its owner can read: recordings and
/// captures hold real users' addresses.
pub fn create_private(path: &Path) -> Result<File> {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    // `mode` only applies to new files: tighten an existing one too.
    file.set_permissions(fs::Permissions::from_mode(0o600))
        .with_context(|| format!("setting mode 0600 on {}", path.display()))?;
    Ok(file)
}

/// `FILE.N` for rotation.
pub fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

/// Room kept for the end block so a closed file stays within `--max-size`.
const END_RESERVE: u64 = RESERVE;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Written {
    Ok,
    /// `--max-size` reached without `--rotate`: nothing more is written.
    Full,
    /// The disk is full: this block and every later one are not written.
    Stopped(StopReason),
}

pub struct FileWriter {
    path: PathBuf,
    file: File,
    meta: Metadata,
    max_size: Option<u64>,
    rotate: u32,
    /// Bytes in the current file.
    size: u64,
    blocks: u64,
    records: u64,
    /// Bytes written over all files.
    pub total_bytes: u64,
    /// Records written over all files.
    pub total_records: u64,
    /// The newest counters written, the baseline of a rotated file.
    last_counters: Option<(u64, KernelCounters)>,
    full: bool,
    /// Where the space allocated for the current file ends; None once
    /// fallocate proved unsupported here.
    reserved_to: Option<u64>,
    stopped: Option<StopReason>,
}

impl FileWriter {
    pub fn create(path: &Path, meta: Metadata, max_size: Option<u64>, rotate: u32) -> Result<Self> {
        let mut w = Self {
            path: path.to_owned(),
            file: create_private(path)?,
            meta,
            max_size,
            rotate,
            size: 0,
            blocks: 0,
            records: 0,
            total_bytes: 0,
            total_records: 0,
            last_counters: None,
            full: false,
            reserved_to: Some(0),
            stopped: None,
        };
        let header = format::encode_header(&w.meta)?;
        w.write(&header)
            .with_context(|| format!("writing {}", w.path.display()))?;
        Ok(w)
    }

    /// Bytes in the current file.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends `bytes`, first allocating them and the reserve behind them.
    /// An ENOSPC from either comes back as is (see [`reserve::is_disk_full`]).
    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        if let Some(to) = self.reserved_to {
            let want = bytes.len() as u64 + RESERVE;
            match reserve::allocate(&self.file, self.size, want) {
                Ok(()) => self.reserved_to = Some(to.max(self.size + want)),
                Err(e) if reserve::is_disk_full(&e) => return Err(e),
                // EOPNOTSUPP and the like: plain writes from now on.
                Err(_) => self.reserved_to = None,
            }
        }
        self.file.write_all(bytes)?;
        self.size += bytes.len() as u64;
        self.total_bytes += bytes.len() as u64;
        Ok(())
    }

    /// The disk is full: drop whatever a failed write left of its block,
    /// close the file with a stopped block in the reserved room (written
    /// without a new allocation), and write nothing more.
    fn stop(&mut self, reason: StopReason) -> Result<()> {
        self.stopped = Some(reason);
        let path = self.path.display().to_string();
        self.file
            .set_len(self.size)
            .and_then(|()| self.file.seek(SeekFrom::Start(self.size)))
            .with_context(|| format!("cutting {path} back to its last whole block"))?;
        // A file whose header did not fit holds nothing worth closing.
        if self.size > 0 {
            let stopped = format::frame(
                block_type::STOPPED,
                0,
                &format::encode_stopped(reason, self.records, self.blocks),
            )?;
            match self.file.write_all(&stopped) {
                Ok(()) => {
                    self.size += stopped.len() as u64;
                    self.total_bytes += stopped.len() as u64;
                }
                // No reserve here (no fallocate): the reader sees the
                // file end after its last whole block.
                Err(_) => {
                    let _ = self.file.set_len(self.size);
                }
            }
        }
        let _ = self.file.sync_all();
        reserve::release(&self.file, self.size, self.reserved_to.unwrap_or(0));
        Ok(())
    }

    /// Writes one block with a single write call, rotating or stopping first
    /// when it would take the file past `--max-size`.
    pub fn write_block(&mut self, block: &Block) -> Result<Written> {
        if let Some(reason) = self.stopped {
            return Ok(Written::Stopped(reason));
        }
        if self.full {
            return Ok(Written::Full);
        }
        if block.is_empty() {
            return Ok(Written::Ok);
        }
        let mut framed = frame(block)?;
        if let Some(max) = self.max_size {
            if self.blocks > 0 && self.size + framed.len() as u64 + END_RESERVE > max {
                if self.rotate == 0 {
                    self.full = true;
                    return Ok(Written::Full);
                }
                if let Err(e) = self.rotate_files() {
                    return self.failed(e, "rotating");
                }
                if let Some((boot_ns, counters)) = &self.last_counters {
                    framed = frame(&block.with_baseline(*boot_ns, counters))?;
                }
            }
        }
        if let Err(e) = self.write(&framed) {
            return self.failed(e, "writing");
        }
        self.blocks += 1;
        self.records += block.len() as u64;
        self.total_records += block.len() as u64;
        if let Some(m) = block.markers.last() {
            self.last_counters = Some((m.boot_ns, m.counters.clone()));
        }
        Ok(Written::Ok)
    }

    /// Writing or rotating failed: a full disk stops the recording (the
    /// caller reports it), anything else is an error naming the file.
    fn failed(&mut self, e: io::Error, doing: &str) -> Result<Written> {
        if reserve::is_disk_full(&e) {
            self.stop(StopReason::DiskFull)?;
            return Ok(Written::Stopped(StopReason::DiskFull));
        }
        Err(e).with_context(|| format!("{doing} {}", self.path.display()))
    }

    /// FILE.N-1 → FILE.N, …, FILE → FILE.1, then a fresh FILE. Errors are
    /// returned raw for [`FileWriter::failed`] (a full disk shows here too).
    fn rotate_files(&mut self) -> io::Result<()> {
        self.finish_file()?;
        for n in (1..self.rotate).rev() {
            let from = rotated(&self.path, n);
            if from.exists() {
                fs::rename(&from, rotated(&self.path, n + 1))?;
            }
        }
        fs::rename(&self.path, rotated(&self.path, 1))?;
        self.file = create_private(&self.path).map_err(io::Error::other)?;
        self.size = 0;
        self.blocks = 0;
        self.records = 0;
        self.reserved_to = self.reserved_to.map(|_| 0);
        self.meta.file_sequence += 1;
        self.meta.start_boot_ns = crate::record::boot_now_ns();
        let header = format::encode_header(&self.meta).map_err(io::Error::other)?;
        self.write(&header)
    }

    /// The end block, written into the reserved room, then the reserve
    /// given back.
    fn finish_file(&mut self) -> io::Result<()> {
        let end = format::frame(
            block_type::END,
            0,
            &format::encode_end(self.records, self.blocks),
        )
        .map_err(io::Error::other)?;
        self.file.write_all(&end)?;
        self.size += end.len() as u64;
        self.total_bytes += end.len() as u64;
        self.file.sync_all()?;
        reserve::release(&self.file, self.size, self.reserved_to.unwrap_or(0));
        Ok(())
    }

    /// Writes the end block: the recording was closed cleanly. A writer
    /// stopped by a full disk closed its file already.
    pub fn finish(mut self) -> Result<()> {
        if self.stopped.is_some() {
            return Ok(());
        }
        self.finish_file()
            .with_context(|| format!("closing {}", self.path.display()))
    }
}

fn frame(block: &Block) -> Result<Vec<u8>> {
    format::frame(
        block_type::EVENTS,
        block.len() as u32,
        &format::encode_block(block),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{
        format::block::tests::sample_block,
        reader::{Ending, Reader},
    };

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tcptrace-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn records_in(path: &Path) -> (u64, Ending, u32) {
        let mut r = Reader::open(path).unwrap();
        while r.next_block().unwrap().is_some() {}
        (r.records, r.ending, r.meta.file_sequence)
    }

    #[test]
    fn files_are_private_and_read_back() {
        let dir = temp_dir("writer");
        let path = dir.join("rec");
        fs::write(&path, "old contents").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let mut w = FileWriter::create(&path, Metadata::default(), None, 0).unwrap();
        assert_eq!(w.write_block(&sample_block(10)).unwrap(), Written::Ok);
        w.finish().unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(records_in(&path), (11, Ending::Clean, 0));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn rotation_keeps_n_files_and_max_size_stops() {
        let dir = temp_dir("rotate");
        let path = dir.join("rec");
        let one = frame(&sample_block(100)).unwrap().len() as u64;
        let header = format::encode_header(&Metadata::default()).unwrap().len() as u64;
        let max = header + one * 2 + 300;
        let mut w = FileWriter::create(&path, Metadata::default(), Some(max), 2).unwrap();
        for _ in 0..9 {
            assert_eq!(w.write_block(&sample_block(100)).unwrap(), Written::Ok);
        }
        w.finish().unwrap();
        // 9 blocks, two per file: rec.3 would be the oldest and is gone.
        assert!(!rotated(&path, 3).exists());
        assert_eq!(records_in(&rotated(&path, 2)), (202, Ending::Clean, 2));
        assert_eq!(records_in(&rotated(&path, 1)), (202, Ending::Clean, 3));
        assert_eq!(records_in(&path), (101, Ending::Clean, 4));
        for p in [path.clone(), rotated(&path, 1), rotated(&path, 2)] {
            assert!(fs::metadata(&p).unwrap().len() <= max);
            assert_eq!(
                fs::metadata(&p).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        // A rotated file starts with the counters it continues from.
        let mut r = Reader::open(&path).unwrap();
        let first = r.next_block().unwrap().unwrap();
        assert_eq!(first.markers[0].kind, format::MarkerKind::Baseline);

        let mut w =
            FileWriter::create(&path, Metadata::default(), Some(header + one + 10), 0).unwrap();
        assert_eq!(w.write_block(&sample_block(100)).unwrap(), Written::Ok);
        assert_eq!(w.write_block(&sample_block(100)).unwrap(), Written::Full);
        w.finish().unwrap();
        assert_eq!(records_in(&path).0, 101);
        fs::remove_dir_all(&dir).unwrap();
    }
}
