//! The recording file format, version 1 (docs/recording.md describes it for
//! people; this module is the one implementation both sides use).
//!
//! ```text
//! file    = header block* [end-block | stopped-block]
//! header  = magic "TCPTRREC" | version u16 | flags u16 | meta_len u32 | metadata (JSON) | crc32 u32
//! block   = type u8 | codec u8 | reserved u16 | stored_len u32 | raw_len u32 | records u32 | crc32 u32 | payload
//! ```
//! All integers little endian; the block CRC covers its first 16 bytes and the
//! stored payload. An events block's payload (zstd-compressed) holds the raw
//! ring-buffer records column by column (see [`encode_block`]) and the counter
//! snapshots ("markers") taken between them.
//!
//! One file per part: [`header`] (the file header and its metadata),
//! [`frame`] (block header, checksum, compression), [`block`] (an events
//! block: records, markers, listener owners), [`columns`] (how its records
//! are stored), [`counters`] (kernel counter snapshots inside markers),
//! [`end`] (the end and stopped blocks), and [`wire`] (varints, strings and
//! named sections every part is built from).

pub mod block;
pub mod columns;
pub mod counters;
pub mod end;
pub mod frame;
pub mod header;
pub mod wire;

pub use self::{
    block::{decode_block, encode_block, Block, Item, Marker, MarkerKind},
    end::{decode_end, decode_stopped, encode_end, encode_stopped, StopReason},
    frame::{block_type, frame, parse_block_header, unframe},
    header::{check_header_fixed, encode_header, parse_header, HookInfo, Metadata},
};

pub const MAGIC: [u8; 8] = *b"TCPTRREC";
/// Bumped only for changes an older reader cannot skip (see docs/recording.md).
pub const VERSION: u16 = 1;
/// magic, version, flags, metadata length.
pub const HEADER_FIXED: usize = 16;
pub const BLOCK_HEADER: usize = 20;
/// Readers refuse larger values so corrupt lengths never cause huge allocations.
pub const MAX_METADATA: usize = 1 << 20;
pub const MAX_STORED: usize = 64 << 20;
pub const MAX_RAW: usize = 64 << 20;
/// The writer closes a block once its raw records reach this many bytes.
pub const BLOCK_TARGET: usize = 1 << 20;
