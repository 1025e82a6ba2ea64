//! Reading a recording back, block by block. Every problem is one line of
//! error text; a file that ends inside a block (a recorder killed mid-write)
//! reads up to its last complete block.

use std::{
    fs::File,
    io::{self, BufReader, Read},
    path::Path,
};

use anyhow::{bail, Context as _, Result};

use super::format::{self, block_type, Block, Metadata, StopReason, BLOCK_HEADER, HEADER_FIXED};

/// How the file ended, known once [`Reader::next_block`] returned `None`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ending {
    /// Not read to the end yet.
    Open,
    /// The recorder closed the file (end block present).
    Clean,
    /// No end block: the recorder was stopped before closing the file.
    Unclosed,
    /// The file stops inside a block at this offset: the recorder was killed
    /// while writing it; everything before it was read.
    Truncated { offset: u64 },
    /// The recorder stopped writing early and said why (a stopped block);
    /// the file holds `records` events, all read. `None`: a reason this
    /// build does not know.
    Stopped {
        reason: Option<StopReason>,
        records: u64,
    },
}

pub struct Reader<R: Read> {
    input: R,
    pub meta: Metadata,
    offset: u64,
    pub blocks: u64,
    pub records: u64,
    pub ending: Ending,
}

impl Reader<BufReader<File>> {
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        Reader::new(BufReader::with_capacity(1 << 16, file))
            .with_context(|| path.display().to_string())
    }
}

/// Reads as much of `buf` as the input has; returns how much that was.
fn read_up_to(input: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match input.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

impl<R: Read> Reader<R> {
    pub fn new(mut input: R) -> Result<Self> {
        let mut fixed = [0u8; HEADER_FIXED];
        let got = read_up_to(&mut input, &mut fixed).context("reading the header")?;
        if got == 0 {
            bail!("empty file, not a tcptrace recording");
        }
        if got < HEADER_FIXED {
            if fixed[..got.min(8)] != format::MAGIC[..got.min(8)] {
                bail!("not a tcptrace recording (no TCPTRREC signature at the start)");
            }
            bail!("truncated header ({got} bytes)");
        }
        let meta_len = format::check_header_fixed(&fixed)?;
        let mut header = vec![0u8; HEADER_FIXED + meta_len + 4];
        header[..HEADER_FIXED].copy_from_slice(&fixed);
        let got =
            read_up_to(&mut input, &mut header[HEADER_FIXED..]).context("reading the header")?;
        if got < meta_len + 4 {
            bail!("truncated header");
        }
        let crc_at = HEADER_FIXED + meta_len;
        let crc = u32::from_le_bytes([
            header[crc_at],
            header[crc_at + 1],
            header[crc_at + 2],
            header[crc_at + 3],
        ]);
        let meta = format::parse_header(&header[..crc_at], crc)?;
        Ok(Self {
            input,
            meta,
            offset: header.len() as u64,
            blocks: 0,
            records: 0,
            ending: Ending::Open,
        })
    }

    /// The next events block, or None at the end of the recording (see
    /// [`Reader::ending`] for how it ended).
    pub fn next_block(&mut self) -> Result<Option<Block>> {
        loop {
            if self.ending != Ending::Open {
                return Ok(None);
            }
            let at = self.offset;
            let mut h = [0u8; BLOCK_HEADER];
            let got = read_up_to(&mut self.input, &mut h).context("reading a block header")?;
            if got == 0 {
                self.ending = Ending::Unclosed;
                return Ok(None);
            }
            if got < BLOCK_HEADER {
                self.ending = Ending::Truncated { offset: at };
                return Ok(None);
            }
            let n = self.blocks + 1;
            let bh = format::parse_block_header(&h)
                .with_context(|| format!("block {n} at byte {at}"))?;
            let mut stored = vec![0u8; bh.stored_len];
            let got = read_up_to(&mut self.input, &mut stored).context("reading a block")?;
            if got < bh.stored_len {
                self.ending = Ending::Truncated { offset: at };
                return Ok(None);
            }
            let raw = format::unframe(&h, &bh, &stored)
                .with_context(|| format!("block {n} at byte {at} is corrupt"))?;
            self.offset += (BLOCK_HEADER + bh.stored_len) as u64;
            self.blocks = n;
            match bh.kind {
                block_type::EVENTS => {
                    let block = format::decode_block(&raw)
                        .with_context(|| format!("block {n} at byte {at} is corrupt"))?;
                    if block.len() as u64 != u64::from(bh.records) {
                        bail!("block {n} at byte {at} is corrupt (record count differs)");
                    }
                    self.records += block.len() as u64;
                    return Ok(Some(block));
                }
                block_type::END | block_type::STOPPED => {
                    let (reason, records) = if bh.kind == block_type::END {
                        let (records, _) = format::decode_end(&raw)
                            .with_context(|| format!("end block at byte {at} is corrupt"))?;
                        (None, records)
                    } else {
                        let (reason, records, _) = format::decode_stopped(&raw)
                            .with_context(|| format!("stopped block at byte {at} is corrupt"))?;
                        (Some(reason), records)
                    };
                    if records != self.records {
                        bail!(
                            "end block at byte {at} counts {records} records, the file holds {}",
                            self.records
                        );
                    }
                    let mut probe = [0u8; 1];
                    if read_up_to(&mut self.input, &mut probe)? != 0 {
                        bail!("data after the end block at byte {}", self.offset);
                    }
                    self.ending = match reason {
                        None => Ending::Clean,
                        Some(reason) => Ending::Stopped { reason, records },
                    };
                    return Ok(None);
                }
                // Block types added later within this format version carry
                // optional data: skip what this build does not know.
                _ => continue,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::format::{
        block::tests::sample_block, encode_block, encode_end, encode_header, encode_stopped, frame,
    };

    fn sample_file(blocks: usize, end: bool) -> Vec<u8> {
        let meta = Metadata {
            hostname: "host".into(),
            kernel_release: "6.18.0".into(),
            boot_offset_ns: 1_700_000_000_000_000_000,
            ..Metadata::default()
        };
        let mut out = encode_header(&meta).unwrap();
        let mut records = 0;
        for i in 0..blocks {
            let b = sample_block(20 + i * 7);
            records += b.len() as u64;
            out.extend(frame(block_type::EVENTS, b.len() as u32, &encode_block(&b)).unwrap());
        }
        if end {
            out.extend(frame(block_type::END, 0, &encode_end(records, blocks as u64)).unwrap());
        }
        out
    }

    /// Reads everything; Ok((records, ending)) or the error line.
    fn read_all(bytes: &[u8]) -> Result<(u64, Ending)> {
        let mut r = Reader::new(bytes)?;
        while r.next_block()?.is_some() {}
        Ok((r.records, r.ending))
    }

    fn error(bytes: &[u8]) -> String {
        format!("{:#}", read_all(bytes).unwrap_err())
    }

    #[test]
    fn clean_file_reads_whole() {
        let bytes = sample_file(3, true);
        assert_eq!(
            read_all(&bytes).unwrap(),
            (20 + 1 + 27 + 1 + 34 + 1, Ending::Clean)
        );
        let r = Reader::new(&bytes[..]).unwrap();
        assert_eq!(r.meta.hostname, "host");
    }

    #[test]
    fn killed_recorder_reads_to_last_complete_block() {
        let bytes = sample_file(3, false);
        assert_eq!(read_all(&bytes).unwrap().1, Ending::Unclosed);
        let header_len = encode_header(&Metadata {
            hostname: "host".into(),
            kernel_release: "6.18.0".into(),
            boot_offset_ns: 1_700_000_000_000_000_000,
            ..Metadata::default()
        })
        .unwrap()
        .len();
        // Every cut inside the third block keeps the first two.
        let two = sample_file(2, false).len();
        for cut in [two + 1, two + BLOCK_HEADER, bytes.len() - 1] {
            let (records, ending) = read_all(&bytes[..cut]).unwrap();
            assert_eq!(records, 21 + 28, "cut at {cut}");
            assert_eq!(ending, Ending::Truncated { offset: two as u64 });
        }
        assert_eq!(
            read_all(&bytes[..header_len]).unwrap(),
            (0, Ending::Unclosed)
        );
    }

    #[test]
    fn stopped_file_says_why_and_reads_whole() {
        let mut bytes = sample_file(2, false);
        let records = 20 + 1 + 27 + 1;
        bytes.extend(
            frame(
                block_type::STOPPED,
                0,
                &encode_stopped(StopReason::DiskFull, records, 2),
            )
            .unwrap(),
        );
        assert_eq!(
            read_all(&bytes).unwrap(),
            (
                records,
                Ending::Stopped {
                    reason: Some(StopReason::DiskFull),
                    records
                }
            )
        );
        // A reason from a newer writer still reads.
        let mut newer = sample_file(2, false);
        let mut payload = encode_stopped(StopReason::DiskFull, records, 2);
        payload[0] = 9;
        newer.extend(frame(block_type::STOPPED, 0, &payload).unwrap());
        assert_eq!(
            read_all(&newer).unwrap().1,
            Ending::Stopped {
                reason: None,
                records
            }
        );
        let mut wrong = sample_file(2, false);
        wrong.extend(
            frame(
                block_type::STOPPED,
                0,
                &encode_stopped(StopReason::DiskFull, 5, 2),
            )
            .unwrap(),
        );
        assert_eq!(
            error(&wrong),
            format!(
                "end block at byte {} counts 5 records, the file holds {records}",
                sample_file(2, false).len()
            )
        );
    }

    #[test]
    fn bad_files_give_one_line_errors() {
        assert!(error(b"").contains("empty file"));
        assert!(error(b"GIF89a....").contains("not a tcptrace recording"));
        assert!(
            error(&[0x0a, 0x0d, 0x0d, 0x0a, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
                .contains("not a tcptrace recording")
        );
        let good = sample_file(1, true);
        assert!(error(&good[..10]).contains("truncated header"));
        let mut future = good.clone();
        future[8] = 9;
        assert!(error(&future).contains("format version 9"));
        let mut flipped = good.clone();
        flipped[20] ^= 1;
        assert!(error(&flipped).contains("corrupt header"));
        let mut flipped = good.clone();
        let n = flipped.len();
        flipped[n - 30] ^= 0x40;
        let e = error(&flipped);
        assert!(e.contains("corrupt") || e.contains("end block"), "{e}");
        let mut extra = good;
        extra.push(0);
        assert!(error(&extra).contains("after the end block"));
    }

    /// Seeded random corruption: flips, truncations and splices never panic,
    /// and always give either an error line or a prefix of the records.
    #[test]
    fn random_corruption_never_panics() {
        let good = sample_file(4, true);
        let (all, _) = read_all(&good).unwrap();
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut rand = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut errors = 0;
        for round in 0..3000 {
            let mut bytes = good.clone();
            match round % 4 {
                0 => {
                    let flips = 1 + rand() % 4;
                    for _ in 0..flips {
                        let at = (rand() % bytes.len() as u64) as usize;
                        bytes[at] ^= 1 << (rand() % 8);
                    }
                }
                1 => bytes.truncate((rand() % bytes.len() as u64) as usize),
                2 => {
                    let at = (rand() % bytes.len() as u64) as usize;
                    let n = (rand() % 64) as usize;
                    for b in bytes.iter_mut().skip(at).take(n) {
                        *b = rand() as u8;
                    }
                }
                _ => {
                    let at = (rand() % bytes.len() as u64) as usize;
                    let junk: Vec<u8> = (0..rand() % 40).map(|_| rand() as u8).collect();
                    bytes.splice(at..at, junk);
                }
            }
            match read_all(&bytes) {
                Ok((records, _)) => assert!(records <= all, "round {round}"),
                Err(e) => {
                    errors += 1;
                    let line = format!("{e:#}");
                    assert!(!line.contains('\n'), "multi-line error: {line}");
                }
            }
        }
        assert!(errors > 500, "only {errors} corruptions detected");
    }
}
