//! Block framing: the 20-byte block header, the CRC over header and stored
//! payload, and zstd compression where it makes the payload smaller.

use anyhow::{bail, ensure, Context as _, Result};

use super::{BLOCK_HEADER, MAX_RAW, MAX_STORED};

const ZSTD_LEVEL: i32 = 3;

pub mod block_type {
    pub const EVENTS: u8 = 1;
    pub const END: u8 = 2;
    /// The recorder stopped before it could write everything: why, and how
    /// much the file holds. Readers from before it skip it as unknown and
    /// see a file without an end block.
    pub const STOPPED: u8 = 3;
}

pub mod codec {
    pub const NONE: u8 = 0;
    pub const ZSTD: u8 = 1;
}

/// Frames a payload: compresses it when that helps, adds the block header and CRC.
pub fn frame(kind: u8, records: u32, raw: &[u8]) -> Result<Vec<u8>> {
    let compressed = zstd::bulk::compress(raw, ZSTD_LEVEL).context("zstd compression")?;
    let (codec, stored) = if compressed.len() < raw.len() {
        (codec::ZSTD, compressed.as_slice())
    } else {
        (codec::NONE, raw)
    };
    ensure!(
        stored.len() <= MAX_STORED && raw.len() <= MAX_RAW,
        "block too large"
    );
    let mut out = Vec::with_capacity(BLOCK_HEADER + stored.len());
    out.push(kind);
    out.push(codec);
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&(stored.len() as u32).to_le_bytes());
    out.extend_from_slice(&(raw.len() as u32).to_le_bytes());
    out.extend_from_slice(&records.to_le_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(&out);
    crc.update(stored);
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(stored);
    Ok(out)
}

/// The fields of a block header.
#[derive(Clone, Copy, Debug)]
pub struct BlockHeader {
    pub kind: u8,
    pub codec: u8,
    pub stored_len: usize,
    pub raw_len: usize,
    pub records: u32,
    pub crc: u32,
}

pub fn parse_block_header(h: &[u8; BLOCK_HEADER]) -> Result<BlockHeader> {
    let u32_at = |at: usize| u32::from_le_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]]);
    let bh = BlockHeader {
        kind: h[0],
        codec: h[1],
        stored_len: u32_at(4) as usize,
        raw_len: u32_at(8) as usize,
        records: u32_at(12),
        crc: u32_at(16),
    };
    ensure!(
        bh.stored_len <= MAX_STORED && bh.raw_len <= MAX_RAW,
        "corrupt block header (lengths {} / {})",
        bh.stored_len,
        bh.raw_len
    );
    Ok(bh)
}

/// Checks the CRC and decompresses a block's payload.
pub fn unframe(h: &[u8; BLOCK_HEADER], bh: &BlockHeader, stored: &[u8]) -> Result<Vec<u8>> {
    let mut crc = crc32fast::Hasher::new();
    crc.update(&h[..16]);
    crc.update(stored);
    ensure!(crc.finalize() == bh.crc, "checksum mismatch");
    match bh.codec {
        codec::NONE => {
            ensure!(stored.len() == bh.raw_len, "stored and raw lengths differ");
            Ok(stored.to_vec())
        }
        codec::ZSTD => {
            let raw = zstd::bulk::decompress(stored, bh.raw_len)
                .map_err(|e| anyhow::anyhow!("zstd: {e}"))?;
            ensure!(raw.len() == bh.raw_len, "decompressed length differs");
            Ok(raw)
        }
        other => bail!("unknown compression {other}"),
    }
}
