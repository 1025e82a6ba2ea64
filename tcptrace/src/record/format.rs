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

use std::{
    collections::{BTreeMap, HashMap},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use anyhow::{bail, ensure, Context as _, Result};
use serde::{Deserialize, Serialize};
use tcptrace_common::{syn::ListenerCounters, EventKind, HistId, Stat, HIST_SLOTS};

use crate::{
    hist::Histogram,
    mapstats::MapFill,
    summary::KernelCounters,
    syn::{ListenerId, OwnerLookup, SynKernelCounters},
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
/// Where `ts_ns` sits in every record (tcptrace_common::EventHeader).
const TS_AT: usize = 16;
const TS_END: usize = TS_AT + 8;
const ZSTD_LEVEL: i32 = 3;

pub mod block_type {
    pub const EVENTS: u8 = 1;
    pub const END: u8 = 2;
    /// The recorder stopped before it could write everything: why, and how
    /// much the file holds. Readers from before it skip it as unknown and
    /// see a file without an end block.
    pub const STOPPED: u8 = 3;
}

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

pub mod codec {
    pub const NONE: u8 = 0;
    pub const ZSTD: u8 = 1;
}

/// Host and run facts stored in the header as a JSON object. Unknown fields
/// are ignored and missing ones default, so fields can be added within a
/// format version.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Metadata {
    pub hostname: String,
    pub kernel_release: String,
    pub tcptrace_version: String,
    /// Add to a record's CLOCK_BOOTTIME `ts_ns` to get Unix time in ns.
    pub boot_offset_ns: i64,
    /// CLOCK_BOOTTIME when this file was started.
    pub start_boot_ns: u64,
    /// 0 for the first file of a run, then 1, 2, … for files opened by rotation.
    pub file_sequence: u32,
    pub hooks: Vec<HookInfo>,
    /// The filter the kernel applied, as options (`--port 80 --pid 42`);
    /// empty when unfiltered.
    pub filter: String,
    pub command_line: Vec<String>,
    /// Sizes of the shared record structs, by name.
    pub record_sizes: BTreeMap<String, u32>,
    /// Event kind names and their record discriminants.
    pub event_kinds: BTreeMap<String, u8>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HookInfo {
    pub hook: String,
    pub mechanism: Option<String>,
    pub notes: Vec<String>,
    /// Every program the hook may run (the diagnosis sums their skips);
    /// empty in recordings made before it was stored.
    pub programs: Vec<String>,
}

/// When and why kernel counters were stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MarkerKind {
    /// Periodic snapshot with a block flush (at least every second).
    Snapshot = 0,
    /// The live run printed a periodic summary here.
    Summary = 1,
    /// The live run printed its final summary here.
    Final = 2,
    /// Counters when this file was opened by rotation: replay subtracts them.
    Baseline = 3,
}

impl MarkerKind {
    fn from_u8(v: u8) -> Option<Self> {
        [Self::Snapshot, Self::Summary, Self::Final, Self::Baseline]
            .into_iter()
            .find(|k| *k as u8 == v)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Marker {
    /// Records of the block that come before this marker.
    pub pos: u32,
    pub kind: MarkerKind,
    /// CLOCK_BOOTTIME when the counters were read.
    pub boot_ns: u64,
    pub counters: KernelCounters,
    /// Summary and final markers: the host view (JSON of
    /// `diagnose::session::HostPair`) the live findings were computed from.
    pub host: Option<String>,
}

/// Raw records (as the ring buffer delivered them) and markers of one block.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Block {
    pub data: Vec<u8>,
    /// End offset of each record in `data`.
    pub ends: Vec<u32>,
    pub markers: Vec<Marker>,
    /// Listener owners the live run found in /proc while these records came in.
    pub owners: Vec<OwnerLookup>,
}

impl Block {
    pub fn push(&mut self, record: &[u8]) {
        self.data.extend_from_slice(record);
        self.ends.push(self.data.len() as u32);
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty() && self.markers.is_empty() && self.owners.is_empty()
    }

    pub fn record(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.data[start..self.ends[i] as usize]
    }
}

/// One item of a decoded block, in recorded order.
pub enum Item<'a> {
    Record(&'a [u8]),
    Marker(&'a Marker),
}

impl Block {
    pub fn items(&self) -> impl Iterator<Item = Item<'_>> {
        let mut markers = self.markers.iter().peekable();
        let mut i = 0usize;
        std::iter::from_fn(move || {
            if let Some(m) = markers.next_if(|m| m.pos as usize <= i) {
                return Some(Item::Marker(m));
            }
            if i < self.len() {
                i += 1;
                return Some(Item::Record(self.record(i - 1)));
            }
            None
        })
    }
}

// ---- primitives -------------------------------------------------------

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Bounds-checked reading of a payload; every failure is an error, never a panic.
pub struct Cursor<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, at: 0 }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.at
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8]> {
        ensure!(
            n <= self.remaining(),
            "payload ends early (need {n} bytes at {}, have {})",
            self.at,
            self.remaining()
        );
        let out = &self.buf[self.at..self.at + n];
        self.at += n;
        Ok(out)
    }

    pub fn u8(&mut self) -> Result<u8> {
        Ok(self.bytes(1)?[0])
    }

    pub fn varint(&mut self) -> Result<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                ensure!(shift < 63 || b <= 1, "varint overflows 64 bits");
                return Ok(v);
            }
        }
        bail!("varint longer than 10 bytes")
    }

    /// A count of things each taking at least one more byte: bounded by what is left.
    fn count(&mut self, what: &str) -> Result<usize> {
        let n = self.varint()?;
        ensure!(
            n <= self.remaining() as u64,
            "{what} count {n} exceeds the payload"
        );
        Ok(n as usize)
    }
}

/// A named, length-prefixed part: readers skip names they do not know, so
/// counters and annotations can be added within a format version.
fn put_section(out: &mut Vec<u8>, name: &str, body: &[u8]) {
    put_varint(out, name.len() as u64);
    out.extend_from_slice(name.as_bytes());
    put_varint(out, body.len() as u64);
    out.extend_from_slice(body);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

impl<'a> Cursor<'a> {
    fn str(&mut self) -> Result<&'a str> {
        let n = self.count("string byte")?;
        std::str::from_utf8(self.bytes(n)?).context("string is not UTF-8")
    }

    /// `count` sections of (name, body).
    fn sections(&mut self) -> Result<Vec<(&'a str, &'a [u8])>> {
        let n = self.count("section")?;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let name = self.str()?;
            let len = self.count("section byte")?;
            out.push((name, self.bytes(len)?));
        }
        Ok(out)
    }
}

// ---- header -------------------------------------------------------------

pub fn encode_header(meta: &Metadata) -> Result<Vec<u8>> {
    let json = serde_json::to_vec(meta).context("encoding the recording header")?;
    ensure!(json.len() <= MAX_METADATA, "recording header too large");
    let mut out = Vec::with_capacity(HEADER_FIXED + json.len() + 4);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&(json.len() as u32).to_le_bytes());
    out.extend_from_slice(&json);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(out)
}

/// Checks the fixed part of a header; returns the metadata length.
pub fn check_header_fixed(fixed: &[u8; HEADER_FIXED]) -> Result<usize> {
    if fixed[..8] != MAGIC {
        bail!("not a tcptrace recording (no TCPTRREC signature at the start)");
    }
    let version = u16::from_le_bytes([fixed[8], fixed[9]]);
    if version > VERSION {
        bail!(
            "recorded with a newer tcptrace (format version {version}; this tcptrace reads \
             version {VERSION}): replay it with a newer tcptrace"
        );
    }
    if version == 0 {
        bail!("corrupt header (format version 0)");
    }
    let len = u32::from_le_bytes([fixed[12], fixed[13], fixed[14], fixed[15]]) as usize;
    ensure!(
        len <= MAX_METADATA,
        "corrupt header (metadata length {len})"
    );
    Ok(len)
}

/// Parses metadata and checks the header CRC (`header` = fixed part + metadata).
pub fn parse_header(header: &[u8], crc: u32) -> Result<Metadata> {
    ensure!(
        crc32fast::hash(header) == crc,
        "corrupt header (checksum mismatch)"
    );
    serde_json::from_slice(&header[HEADER_FIXED..])
        .map_err(|e| anyhow::anyhow!("corrupt header (metadata: {e})"))
}

// ---- counters -------------------------------------------------------------

fn encode_counters(out: &mut Vec<u8>, k: &KernelCounters) {
    put_varint(out, k.hists.len() as u64);
    for (id, h) in &k.hists {
        put_varint(out, *id as u64);
        put_varint(out, h.slots.len() as u64);
        for &c in &h.slots {
            put_varint(out, c);
        }
    }
    put_varint(out, k.lost.len() as u64);
    for (kind, n) in &k.lost {
        put_varint(out, *kind as u64);
        put_varint(out, *n);
    }
    put_varint(out, k.stats.len() as u64);
    for (s, n) in &k.stats {
        put_varint(out, *s as u64);
        put_varint(out, *n);
    }
    put_varint(out, 4);
    put_section(out, "syn", &encode_syn(&k.syn));
    put_section(out, "rst_sent", &encode_named(&k.rst_sent));
    put_section(out, "missed", &encode_named(&k.missed));
    put_section(out, "maps", &encode_maps(&k.maps));
}

/// State map fullness: name, entries, capacity, LRU flag, failed inserts.
fn encode_maps(maps: &[MapFill]) -> Vec<u8> {
    let mut out = Vec::new();
    put_varint(&mut out, maps.len() as u64);
    for m in maps {
        put_str(&mut out, &m.name);
        put_varint(&mut out, m.entries);
        put_varint(&mut out, m.capacity);
        out.push(u8::from(m.lru));
        put_varint(&mut out, m.full_failures);
    }
    out
}

fn decode_maps(body: &[u8]) -> Result<Vec<MapFill>> {
    let mut c = Cursor::new(body);
    let mut maps = Vec::new();
    for _ in 0..c.count("state map")? {
        maps.push(MapFill {
            name: c.str()?.to_owned(),
            entries: c.varint()?,
            capacity: c.varint()?,
            lru: c.u8()? != 0,
            full_failures: c.varint()?,
        });
    }
    Ok(maps)
}

/// (name, count) pairs, e.g. RSTs sent by reason name.
fn encode_named(pairs: &[(String, u64)]) -> Vec<u8> {
    let mut out = Vec::new();
    put_varint(&mut out, pairs.len() as u64);
    for (name, n) in pairs {
        put_str(&mut out, name);
        put_varint(&mut out, *n);
    }
    out
}

fn decode_named(body: &[u8]) -> Result<Vec<(String, u64)>> {
    let mut c = Cursor::new(body);
    let mut pairs = Vec::new();
    for _ in 0..c.count("named counter")? {
        let name = c.str()?.to_owned();
        pairs.push((name, c.varint()?));
    }
    Ok(pairs)
}

fn encode_syn(k: &SynKernelCounters) -> Vec<u8> {
    let mut out = Vec::new();
    put_varint(&mut out, k.answered.len() as u64);
    for &n in &k.answered {
        put_varint(&mut out, n);
    }
    put_varint(&mut out, k.listeners.len() as u64);
    for (id, c) in &k.listeners {
        put_varint(&mut out, u64::from(id.netns));
        match id.addr {
            IpAddr::V4(a) => {
                out.push(4);
                out.extend_from_slice(&a.octets());
            }
            IpAddr::V6(a) => {
                out.push(6);
                out.extend_from_slice(&a.octets());
            }
        }
        put_varint(&mut out, u64::from(id.port));
        for v in [
            c.answered_normal,
            c.answered_cookie,
            c.answered_fastopen,
            c.last_ns,
        ] {
            put_varint(&mut out, v);
        }
        for v in [c.backlog, c.backlog_max, c.syn_queue] {
            put_varint(&mut out, u64::from(v));
        }
    }
    out
}

fn decode_syn(body: &[u8]) -> Result<SynKernelCounters> {
    let mut c = Cursor::new(body);
    let mut k = SynKernelCounters::default();
    for i in 0..c.count("answered counter")? {
        let v = c.varint()?;
        if let Some(slot) = k.answered.get_mut(i) {
            *slot = v;
        }
    }
    for _ in 0..c.count("listener")? {
        let netns = u32::try_from(c.varint()?).context("listener netns")?;
        let addr = match c.u8()? {
            4 => {
                let b: [u8; 4] = c.bytes(4)?.try_into().context("IPv4 address")?;
                IpAddr::V4(Ipv4Addr::from(b))
            }
            6 => {
                let b: [u8; 16] = c.bytes(16)?.try_into().context("IPv6 address")?;
                IpAddr::V6(Ipv6Addr::from(b))
            }
            other => bail!("listener address family {other}"),
        };
        let port = u16::try_from(c.varint()?).context("listener port")?;
        let small = |c: &mut Cursor<'_>| -> Result<u32> {
            u32::try_from(c.varint()?).context("listener queue length")
        };
        let counters = ListenerCounters {
            answered_normal: c.varint()?,
            answered_cookie: c.varint()?,
            answered_fastopen: c.varint()?,
            last_ns: c.varint()?,
            backlog: small(&mut c)?,
            backlog_max: small(&mut c)?,
            syn_queue: small(&mut c)?,
            ..ListenerCounters::default()
        };
        k.listeners
            .push((ListenerId { netns, addr, port }, counters));
    }
    Ok(k)
}

/// Reads counters; ids this build does not know (a newer tcptrace's
/// histograms, kinds or stats) are skipped.
fn decode_counters(c: &mut Cursor<'_>) -> Result<KernelCounters> {
    let mut k = KernelCounters::default();
    for _ in 0..c.count("histogram")? {
        let id = c.varint()?;
        let slots = c.count("histogram slot")?;
        let mut h = Histogram::default();
        for s in 0..slots {
            let v = c.varint()?;
            if let Some(slot) = h.slots.get_mut(s) {
                *slot = v;
            }
        }
        if let Some(id) = HistId::ALL.into_iter().find(|h| *h as u64 == id) {
            k.hists.push((id, h));
        }
    }
    for _ in 0..c.count("lost counter")? {
        let (kind, n) = (c.varint()?, c.varint()?);
        if let Some(kind) = u8::try_from(kind).ok().and_then(EventKind::from_u8) {
            k.lost.push((kind, n));
        }
    }
    for _ in 0..c.count("stat")? {
        let (stat, n) = (c.varint()?, c.varint()?);
        if let Some(s) = Stat::ALL.into_iter().find(|s| *s as u64 == stat) {
            k.stats.push((s, n));
        }
    }
    for (name, body) in c.sections()? {
        match name {
            "syn" => k.syn = decode_syn(body).context("SYN counters")?,
            "rst_sent" => k.rst_sent = decode_named(body).context("RSTs sent")?,
            "missed" => k.missed = decode_named(body).context("programs skipped")?,
            "maps" => k.maps = decode_maps(body).context("state maps")?,
            _ => {}
        }
    }
    Ok(k)
}

/// `a - b` slot by slot and counter by counter (counters only grow, so this is
/// what happened between two snapshots).
pub fn counters_since(a: &KernelCounters, b: &KernelCounters) -> KernelCounters {
    KernelCounters {
        hists: a
            .hists
            .iter()
            .map(|(id, h)| {
                let mut d = h.clone();
                if let Some((_, base)) = b.hists.iter().find(|(i, _)| i == id) {
                    for (x, y) in d.slots.iter_mut().zip(base.slots.iter()) {
                        *x = x.saturating_sub(*y);
                    }
                }
                (*id, d)
            })
            .collect(),
        lost: a
            .lost
            .iter()
            .map(|(kind, n)| {
                let base = b.lost.iter().find(|(k, _)| k == kind).map_or(0, |x| x.1);
                (*kind, n.saturating_sub(base))
            })
            .collect(),
        stats: a
            .stats
            .iter()
            .map(|(s, n)| {
                let base = b.stats.iter().find(|(x, _)| x == s).map_or(0, |x| x.1);
                (*s, n.saturating_sub(base))
            })
            .collect(),
        syn: SynKernelCounters {
            answered: std::array::from_fn(|i| a.syn.answered[i].saturating_sub(b.syn.answered[i])),
            // Answer counts since `b`; queue state as of `a`.
            listeners: a
                .syn
                .listeners
                .iter()
                .map(|(id, c)| {
                    let mut d = *c;
                    if let Some((_, base)) = b.syn.listeners.iter().find(|(i, _)| i == id) {
                        d.answered_normal = c.answered_normal.saturating_sub(base.answered_normal);
                        d.answered_cookie = c.answered_cookie.saturating_sub(base.answered_cookie);
                        d.answered_fastopen =
                            c.answered_fastopen.saturating_sub(base.answered_fastopen);
                    }
                    (id.clone(), d)
                })
                .collect(),
        },
        rst_sent: named_since(&a.rst_sent, &b.rst_sent),
        missed: named_since(&a.missed, &b.missed),
        // Entries as of `a`; failed inserts since `b`.
        maps: a
            .maps
            .iter()
            .map(|m| {
                let base = b.maps.iter().find(|x| x.name == m.name);
                MapFill {
                    full_failures: m
                        .full_failures
                        .saturating_sub(base.map_or(0, |x| x.full_failures)),
                    ..m.clone()
                }
            })
            .collect(),
    }
}

/// `a - b` for (name, count) counters.
fn named_since(a: &[(String, u64)], b: &[(String, u64)]) -> Vec<(String, u64)> {
    a.iter()
        .map(|(name, n)| {
            let base = b.iter().find(|(x, _)| x == name).map_or(0, |x| x.1);
            (name.clone(), n.saturating_sub(base))
        })
        .collect()
}

/// Counters of a fresh run: every histogram, kind and stat at zero.
pub fn zero_counters() -> KernelCounters {
    KernelCounters {
        hists: HistId::ALL
            .iter()
            .map(|&id| (id, Histogram::default()))
            .collect(),
        lost: EventKind::ALL.iter().map(|&k| (k, 0)).collect(),
        stats: Stat::ALL.iter().map(|&s| (s, 0)).collect(),
        syn: SynKernelCounters::default(),
        rst_sent: Vec::new(),
        missed: Vec::new(),
        maps: Vec::new(),
    }
}

const _: () = assert!(HIST_SLOTS as usize <= 64);

// ---- blocks -------------------------------------------------------------

/// The record as stored: without its timestamp when it has one.
fn stored_len(len: usize) -> usize {
    if len >= TS_END {
        len - 8
    } else {
        len
    }
}

/// Payload of an events block, before compression:
///
/// ```text
/// n                  varint, number of records
/// len[n]             varint each, record lengths in bytes
/// ts_delta[..]       zigzag varint each, for records of >= 24 bytes: ts_ns minus
///                    the previous such record's ts_ns (the first from 0)
/// groups             for each distinct length, in order of first appearance:
///                    the records of that length without bytes 16..24 (ts_ns),
///                    byte-transposed (byte 0 of every record, then byte 1, …),
///                    each byte stored as the difference (mod 256) from the
///                    same byte of the previous record of the group
/// m                  varint, number of markers
/// marker[m]          pos varint | kind u8 | boot_ns varint | counters | sections
///                    ("host": the host view the live findings used, JSON)
/// sections           varint count, then (name, length, body) each:
///                    "owners": listener owners found in /proc
/// ```
/// Repeated fields (pid, comm, addresses, kind) become runs of zeros and
/// timestamps small deltas, which zstd then squeezes.
pub fn encode_block(block: &Block) -> Vec<u8> {
    let n = block.len();
    let mut out = Vec::with_capacity(block.data.len() + 16);
    put_varint(&mut out, n as u64);
    let mut groups: Vec<(usize, Vec<usize>)> = Vec::new();
    let mut group_of: HashMap<usize, usize> = HashMap::new();
    for i in 0..n {
        let len = block.record(i).len();
        put_varint(&mut out, len as u64);
        let g = *group_of.entry(len).or_insert_with(|| {
            groups.push((len, Vec::new()));
            groups.len() - 1
        });
        groups[g].1.push(i);
    }
    let mut prev_ts = 0u64;
    for i in 0..n {
        let r = block.record(i);
        if r.len() >= TS_END {
            let mut ts = [0u8; 8];
            ts.copy_from_slice(&r[TS_AT..TS_END]);
            let ts = u64::from_le_bytes(ts);
            put_varint(&mut out, zigzag(ts.wrapping_sub(prev_ts) as i64));
            prev_ts = ts;
        }
    }
    let mut row = Vec::new();
    for (len, members) in &groups {
        let width = stored_len(*len);
        let start = out.len();
        out.resize(start + width * members.len(), 0);
        let mut prev = vec![0u8; width];
        for (r, &i) in members.iter().enumerate() {
            let rec = block.record(i);
            row.clear();
            if *len >= TS_END {
                row.extend_from_slice(&rec[..TS_AT]);
                row.extend_from_slice(&rec[TS_END..]);
            } else {
                row.extend_from_slice(rec);
            }
            for (j, (&b, p)) in row.iter().zip(prev.iter_mut()).enumerate() {
                out[start + j * members.len() + r] = b.wrapping_sub(*p);
                *p = b;
            }
        }
    }
    put_varint(&mut out, block.markers.len() as u64);
    for m in &block.markers {
        put_varint(&mut out, u64::from(m.pos));
        out.push(m.kind as u8);
        put_varint(&mut out, m.boot_ns);
        encode_counters(&mut out, &m.counters);
        match &m.host {
            Some(host) => {
                put_varint(&mut out, 1);
                put_section(&mut out, "host", host.as_bytes());
            }
            None => put_varint(&mut out, 0),
        }
    }
    if block.owners.is_empty() {
        put_varint(&mut out, 0);
    } else {
        let mut owners = Vec::new();
        put_varint(&mut owners, block.owners.len() as u64);
        for (ino, found) in &block.owners {
            put_varint(&mut owners, *ino);
            match found {
                Some((pid, comm)) => {
                    owners.push(1);
                    put_varint(&mut owners, u64::from(*pid));
                    put_str(&mut owners, comm);
                }
                None => owners.push(0),
            }
        }
        put_varint(&mut out, 1);
        put_section(&mut out, "owners", &owners);
    }
    out
}

fn decode_owners(body: &[u8]) -> Result<Vec<OwnerLookup>> {
    let mut c = Cursor::new(body);
    let mut out = Vec::new();
    for _ in 0..c.count("owner")? {
        let ino = c.varint()?;
        let found = match c.u8()? {
            0 => None,
            1 => {
                let pid = u32::try_from(c.varint()?).context("owner pid")?;
                Some((pid, c.str()?.to_owned()))
            }
            other => bail!("owner flag {other}"),
        };
        out.push((ino, found));
    }
    Ok(out)
}

pub fn decode_block(payload: &[u8]) -> Result<Block> {
    let mut c = Cursor::new(payload);
    let n = c.count("record")?;
    let mut lens = Vec::with_capacity(n);
    let mut groups: Vec<(usize, usize)> = Vec::new(); // (len, count)
    let mut group_of: HashMap<usize, usize> = HashMap::new();
    let mut total = 0usize;
    for _ in 0..n {
        let len = c.varint()?;
        ensure!(len <= MAX_RAW as u64, "record length {len} too large");
        let len = len as usize;
        total += len;
        ensure!(total <= MAX_RAW, "records exceed the block size limit");
        lens.push(len);
        let g = *group_of.entry(len).or_insert_with(|| {
            groups.push((len, 0));
            groups.len() - 1
        });
        groups[g].1 += 1;
    }
    let mut ts = Vec::new();
    let mut prev = 0u64;
    for &len in &lens {
        if len >= TS_END {
            prev = prev.wrapping_add(unzigzag(c.varint()?) as u64);
            ts.push(prev);
        }
    }
    // Undo the transposition and byte deltas, one group at a time.
    let mut rows: Vec<Vec<u8>> = Vec::with_capacity(groups.len());
    for &(len, count) in &groups {
        let width = stored_len(len);
        let cols = c.bytes(width.checked_mul(count).context("group size overflows")?)?;
        let mut g = vec![0u8; width * count];
        for j in 0..width {
            let mut acc = 0u8;
            for r in 0..count {
                acc = acc.wrapping_add(cols[j * count + r]);
                g[r * width + j] = acc;
            }
        }
        rows.push(g);
    }
    let mut block = Block {
        data: Vec::with_capacity(total),
        ends: Vec::with_capacity(n),
        ..Block::default()
    };
    let mut next_row = vec![0usize; groups.len()];
    let mut ts_iter = ts.into_iter();
    for &len in &lens {
        let g = *group_of.get(&len).context("record group")?;
        let width = stored_len(len);
        let row = &rows[g][next_row[g] * width..(next_row[g] + 1) * width];
        next_row[g] += 1;
        if len >= TS_END {
            block.data.extend_from_slice(&row[..TS_AT]);
            let t = ts_iter.next().context("timestamp column too short")?;
            block.data.extend_from_slice(&t.to_le_bytes());
            block.data.extend_from_slice(&row[TS_AT..]);
        } else {
            block.data.extend_from_slice(row);
        }
        block.ends.push(block.data.len() as u32);
    }
    for _ in 0..c.count("marker")? {
        let pos = c.varint()?;
        ensure!(pos <= n as u64, "marker after record {pos} of {n}");
        if let Some(last) = block.markers.last() {
            ensure!(u64::from(last.pos) <= pos, "markers out of order");
        }
        let kind = c.u8()?;
        let kind =
            MarkerKind::from_u8(kind).with_context(|| format!("unknown marker kind {kind}"))?;
        let boot_ns = c.varint()?;
        let counters = decode_counters(&mut c)?;
        let mut host = None;
        for (name, body) in c.sections()? {
            if name == "host" {
                host = Some(String::from_utf8(body.to_vec()).context("marker host view")?);
            }
        }
        block.markers.push(Marker {
            pos: pos as u32,
            kind,
            boot_ns,
            counters,
            host,
        });
    }
    for (name, body) in c.sections()? {
        if name == "owners" {
            block.owners = decode_owners(body).context("listener owners")?;
        }
    }
    ensure!(
        c.remaining() == 0,
        "{} stray bytes after the block",
        c.remaining()
    );
    Ok(block)
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::event::tests::raw_latency;

    pub fn counters(seed: u64) -> KernelCounters {
        let mut k = zero_counters();
        k.rst_sent = vec![
            ("NO_SOCKET".into(), seed * 5),
            ("TCP_RFC7323_PAWS".into(), seed),
        ];
        k.syn.answered[1] = seed * 3;
        k.syn.listeners.push((
            ListenerId {
                netns: 4026531840,
                addr: IpAddr::V6(Ipv6Addr::LOCALHOST),
                port: 8080,
            },
            ListenerCounters {
                answered_normal: seed * 11,
                answered_cookie: seed,
                last_ns: 77,
                backlog: 5,
                backlog_max: 128,
                syn_queue: 2,
                ..ListenerCounters::default()
            },
        ));
        for (i, (_, h)) in k.hists.iter_mut().enumerate() {
            h.slots[10 + i] = seed + 3;
            h.slots[20] = seed * 7;
        }
        k.lost[0].1 = seed;
        k.stats[1].1 = seed + 1;
        k.maps = vec![
            MapFill {
                name: "connect".into(),
                entries: seed * 2,
                capacity: 16384,
                lru: true,
                full_failures: seed,
            },
            MapFill {
                name: "syn_ghosts".into(),
                entries: 1,
                capacity: 8192,
                lru: false,
                full_failures: 0,
            },
        ];
        k
    }

    pub fn sample_block(n: usize) -> Block {
        let mut b = Block::default();
        for i in 0..n {
            let mut r = raw_latency(
                if i % 3 == 0 {
                    EventKind::PortSearch
                } else {
                    EventKind::Connect
                },
                if i % 5 == 0 { 10 } else { 2 },
                if i % 7 == 0 { 111 } else { 0 },
            );
            r[TS_AT..TS_END].copy_from_slice(&(1_000_000_000u64 + i as u64 * 37_123).to_le_bytes());
            r[80..82].copy_from_slice(&(40000 + i as u16).to_le_bytes());
            b.push(&r);
            if i == 3 {
                b.push(&[9, 1, 2]); // short record of an unknown kind
            }
        }
        b.owners.push((12345, Some((77, "nginx".into()))));
        b.owners.push((12346, None));
        b.markers.push(Marker {
            pos: 0,
            kind: MarkerKind::Baseline,
            boot_ns: 5,
            counters: counters(1),
            host: None,
        });
        b.markers.push(Marker {
            pos: b.len() as u32,
            kind: MarkerKind::Final,
            boot_ns: 99,
            counters: counters(2),
            host: Some("{\"start\":{}}".into()),
        });
        b
    }

    #[test]
    fn varints_round_trip() {
        for v in [0u64, 1, 127, 128, 300, u64::MAX >> 1, u64::MAX] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            assert_eq!(Cursor::new(&out).varint().unwrap(), v);
        }
        for v in [0i64, -1, 1, i64::MIN, i64::MAX] {
            assert_eq!(unzigzag(zigzag(v)), v);
        }
        assert!(Cursor::new(&[0xff; 11]).varint().is_err());
        assert!(
            Cursor::new(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f])
                .varint()
                .is_err()
        );
    }

    #[test]
    fn blocks_round_trip_exactly() {
        for n in [0, 1, 2, 50, 1000] {
            let b = sample_block(n);
            let enc = encode_block(&b);
            assert_eq!(decode_block(&enc).unwrap(), b, "n={n}");
            let framed = frame(block_type::EVENTS, b.len() as u32, &enc).unwrap();
            let h: [u8; BLOCK_HEADER] = framed[..BLOCK_HEADER].try_into().unwrap();
            let bh = parse_block_header(&h).unwrap();
            let raw = unframe(&h, &bh, &framed[BLOCK_HEADER..]).unwrap();
            assert_eq!(decode_block(&raw).unwrap(), b);
        }
    }

    #[test]
    fn items_interleave_markers_and_records() {
        let b = sample_block(3);
        let kinds: Vec<char> = b
            .items()
            .map(|i| match i {
                Item::Record(_) => 'r',
                Item::Marker(_) => 'm',
            })
            .collect();
        assert_eq!(kinds.iter().collect::<String>(), "mrrrm");
    }

    /// Counters as the writers before the "maps" section stored them still
    /// read, with no state maps.
    #[test]
    fn counters_without_maps_section() {
        let k = counters(3);
        let mut old = Vec::new();
        put_varint(&mut old, k.hists.len() as u64);
        for (id, h) in &k.hists {
            put_varint(&mut old, *id as u64);
            put_varint(&mut old, h.slots.len() as u64);
            for &c in &h.slots {
                put_varint(&mut old, c);
            }
        }
        put_varint(&mut old, k.lost.len() as u64);
        for (kind, n) in &k.lost {
            put_varint(&mut old, *kind as u64);
            put_varint(&mut old, *n);
        }
        put_varint(&mut old, k.stats.len() as u64);
        for (st, n) in &k.stats {
            put_varint(&mut old, *st as u64);
            put_varint(&mut old, *n);
        }
        put_varint(&mut old, 3);
        put_section(&mut old, "syn", &encode_syn(&k.syn));
        put_section(&mut old, "rst_sent", &encode_named(&k.rst_sent));
        put_section(&mut old, "missed", &encode_named(&k.missed));
        let back = decode_counters(&mut Cursor::new(&old)).unwrap();
        assert!(back.maps.is_empty());
        assert_eq!(
            KernelCounters {
                maps: k.maps.clone(),
                ..back
            },
            k
        );
        let mut new = Vec::new();
        encode_counters(&mut new, &k);
        assert_eq!(decode_counters(&mut Cursor::new(&new)).unwrap(), k);
    }

    #[test]
    fn counters_subtract() {
        let d = counters_since(&counters(5), &counters(2));
        assert_eq!(d.lost[0].1, 3);
        assert_eq!(d.hists[0].1.slots[20], 21);
        assert_eq!(d.syn.answered[1], 9);
        assert_eq!(d.syn.listeners[0].1.answered_normal, 33);
        assert_eq!(d.syn.listeners[0].1.backlog, 5);
        assert_eq!(d.maps[0].entries, 10, "entries are a level, not a count");
        assert_eq!(d.maps[0].full_failures, 3);
        assert!(!d.maps[1].lru);
        assert_eq!(counters_since(&counters(2), &zero_counters()), counters(2));
    }

    #[test]
    fn header_checks() {
        let meta = Metadata {
            hostname: "h".into(),
            ..Metadata::default()
        };
        let h = encode_header(&meta).unwrap();
        let fixed: [u8; HEADER_FIXED] = h[..HEADER_FIXED].try_into().unwrap();
        let len = check_header_fixed(&fixed).unwrap();
        let crc = u32::from_le_bytes(h[HEADER_FIXED + len..].try_into().unwrap());
        assert_eq!(parse_header(&h[..HEADER_FIXED + len], crc).unwrap(), meta);
        let mut future = fixed;
        future[8] = 2;
        let err = check_header_fixed(&future).unwrap_err().to_string();
        assert!(err.contains("newer tcptrace"), "{err}");
        let mut foreign = fixed;
        foreign[..4].copy_from_slice(b"\x0a\x0d\x0d\x0a");
        let err = check_header_fixed(&foreign).unwrap_err().to_string();
        assert!(err.contains("not a tcptrace recording"), "{err}");
    }
}
