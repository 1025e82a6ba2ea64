//! Kernel counter snapshots as a marker stores them: histograms, lost
//! events per kind and stats by id, then named sections (SYN answers per
//! listener, RSTs sent, programs skipped, state maps) that older readers
//! skip. The arithmetic on snapshots lives with the summary
//! (`summary::delta`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anyhow::{bail, Context as _, Result};
use tcptrace_common::{syn::ListenerCounters, EventKind, HistId, Stat, HIST_SLOTS};

use super::wire::{put_section, put_str, put_varint, Cursor};
use crate::{
    hist::Histogram,
    mapstats::MapFill,
    summary::KernelCounters,
    syn::{ListenerId, SynKernelCounters},
};

const _: () = assert!(HIST_SLOTS as usize <= 64);

pub fn encode_counters(out: &mut Vec<u8>, k: &KernelCounters) {
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

/// Reads counters; ids this build does not know (a newer tcptrace's
/// histograms, kinds or stats) are skipped.
pub fn decode_counters(c: &mut Cursor<'_>) -> Result<KernelCounters> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::summary::delta::tests::counters;

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
}
