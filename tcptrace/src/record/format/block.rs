//! An events block: the raw ring-buffer records of about a second, the
//! counter snapshots ("markers") taken between them, and the listener
//! owners and containers the live run looked up meanwhile.

use anyhow::{bail, ensure, Context as _, Result};

use super::{
    columns::{decode_records, encode_records},
    counters::{decode_counters, encode_counters},
    wire::{put_section, put_str, put_varint, Cursor},
};
use crate::{container::Resolution, summary::KernelCounters, syn::OwnerLookup};

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
    /// Containers the live run resolved from cgroup ids meanwhile.
    pub containers: Vec<Resolution>,
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
        self.ends.is_empty()
            && self.markers.is_empty()
            && self.owners.is_empty()
            && self.containers.is_empty()
    }

    /// A copy that starts with a baseline marker: the counters at
    /// `boot_ns`, which a file opened by rotation continues from.
    pub fn with_baseline(&self, boot_ns: u64, counters: &KernelCounters) -> Block {
        let mut b = self.clone();
        b.markers.insert(
            0,
            Marker {
                pos: 0,
                kind: MarkerKind::Baseline,
                boot_ns,
                counters: counters.clone(),
                host: None,
            },
        );
        b
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

/// Payload of an events block, before compression:
///
/// ```text
/// records            the records in column form (see `columns`)
/// m                  varint, number of markers
/// marker[m]          pos varint | kind u8 | boot_ns varint | counters | sections
///                    ("host": the host view the live findings used, JSON)
/// sections           varint count, then (name, length, body) each:
///                    "owners": listener owners found in /proc
///                    "containers": cgroup ids resolved (varint count, then
///                    one JSON `container::Resolution` string each)
/// ```
pub fn encode_block(block: &Block) -> Vec<u8> {
    let mut out = Vec::with_capacity(block.data.len() + 16);
    encode_records(&mut out, &block.data, &block.ends);
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
    let sections = u64::from(!block.owners.is_empty()) + u64::from(!block.containers.is_empty());
    put_varint(&mut out, sections);
    if !block.owners.is_empty() {
        put_section(&mut out, "owners", &encode_owners(&block.owners));
    }
    if !block.containers.is_empty() {
        put_section(
            &mut out,
            "containers",
            &encode_containers(&block.containers),
        );
    }
    out
}

pub fn decode_block(payload: &[u8]) -> Result<Block> {
    let mut c = Cursor::new(payload);
    let (data, ends) = decode_records(&mut c)?;
    let n = ends.len();
    let mut block = Block {
        data,
        ends,
        ..Block::default()
    };
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
        match name {
            "owners" => block.owners = decode_owners(body).context("listener owners")?,
            "containers" => {
                block.containers = decode_containers(body).context("containers")?;
            }
            // A section a newer tcptrace wrote: not needed to read the rest.
            _ => {}
        }
    }
    ensure!(
        c.remaining() == 0,
        "{} stray bytes after the block",
        c.remaining()
    );
    Ok(block)
}

/// The "owners" section: socket inode, then 1, pid, comm when found, or 0.
fn encode_owners(owners: &[OwnerLookup]) -> Vec<u8> {
    let mut out = Vec::new();
    put_varint(&mut out, owners.len() as u64);
    for (ino, found) in owners {
        put_varint(&mut out, *ino);
        match found {
            Some((pid, comm)) => {
                out.push(1);
                put_varint(&mut out, u64::from(*pid));
                put_str(&mut out, comm);
            }
            None => out.push(0),
        }
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

fn encode_containers(resolved: &[Resolution]) -> Vec<u8> {
    let mut out = Vec::new();
    put_varint(&mut out, resolved.len() as u64);
    for r in resolved {
        put_str(&mut out, &r.to_json());
    }
    out
}

fn decode_containers(body: &[u8]) -> Result<Vec<Resolution>> {
    let mut c = Cursor::new(body);
    let mut out = Vec::new();
    for _ in 0..c.count("container")? {
        out.push(Resolution::from_json(c.str()?)?);
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use tcptrace_common::EventKind;

    use super::{
        super::{
            columns::{TS_AT, TS_END},
            frame::{block_type, frame, parse_block_header, unframe},
            BLOCK_HEADER,
        },
        *,
    };
    use crate::{event::tests::raw_latency, summary::delta::tests::counters};

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
        if n > 0 {
            b.containers.push(Resolution {
                cgroup: 4242,
                container: Some(crate::container::tests::container()),
            });
            b.containers.push(Resolution {
                cgroup: 4243,
                container: None,
            });
        }
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
}
