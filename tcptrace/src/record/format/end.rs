//! The blocks that close a file: the end block (a clean close) and the
//! stopped block (the recorder gave up early, and why).

use anyhow::Result;

use super::wire::{put_varint, Cursor};

/// Why a recorder stopped writing early (the stopped block's reason code).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// A write failed with ENOSPC (or EDQUOT).
    DiskFull = 1,
}

impl StopReason {
    pub fn from_u64(v: u64) -> Option<Self> {
        (v == Self::DiskFull as u64).then_some(Self::DiskFull)
    }

    /// For people: "disk full (no space left on device)".
    pub fn describe(self) -> &'static str {
        match self {
            Self::DiskFull => "disk full (no space left on device)",
        }
    }

    /// The error behind it, as strerror words it.
    pub fn error_text(self) -> &'static str {
        match self {
            Self::DiskFull => "no space left on device",
        }
    }

    /// Its name in JSON (`recording.stopped`).
    pub fn name(self) -> &'static str {
        match self {
            Self::DiskFull => "disk_full",
        }
    }
}

/// Payload of the end block: records and blocks in the file.
pub fn encode_end(records: u64, blocks: u64) -> Vec<u8> {
    let mut out = Vec::new();
    put_varint(&mut out, records);
    put_varint(&mut out, blocks);
    out
}

pub fn decode_end(payload: &[u8]) -> Result<(u64, u64)> {
    let mut c = Cursor::new(payload);
    Ok((c.varint()?, c.varint()?))
}

/// Payload of the stopped block: reason code, then records and events
/// blocks in the file, as in the end block.
pub fn encode_stopped(reason: StopReason, records: u64, blocks: u64) -> Vec<u8> {
    let mut out = Vec::new();
    put_varint(&mut out, reason as u64);
    out.extend(encode_end(records, blocks));
    out
}

/// The reason (None for a code this build does not know), records, blocks.
pub fn decode_stopped(payload: &[u8]) -> Result<(Option<StopReason>, u64, u64)> {
    let mut c = Cursor::new(payload);
    Ok((StopReason::from_u64(c.varint()?), c.varint()?, c.varint()?))
}
