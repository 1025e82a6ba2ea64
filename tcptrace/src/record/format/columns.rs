//! How an events block stores its records: lengths, then timestamps as
//! deltas, then the records of each length byte-transposed and
//! delta-coded, so repeated fields become runs of zeros for zstd.
//!
//! ```text
//! n                  varint, number of records
//! len[n]             varint each, record lengths in bytes
//! ts_delta[..]       zigzag varint each, for records of >= 24 bytes: ts_ns minus
//!                    the previous such record's ts_ns (the first from 0)
//! groups             for each distinct length, in order of first appearance:
//!                    the records of that length without bytes 16..24 (ts_ns),
//!                    byte-transposed (byte 0 of every record, then byte 1, …),
//!                    each byte stored as the difference (mod 256) from the
//!                    same byte of the previous record of the group
//! ```

use std::collections::HashMap;

use anyhow::{ensure, Context as _, Result};

use super::{
    wire::{put_varint, unzigzag, zigzag, Cursor},
    MAX_RAW,
};

/// Where `ts_ns` sits in every record (tcptrace_common::EventHeader).
pub const TS_AT: usize = 16;
pub const TS_END: usize = TS_AT + 8;

/// The record as stored: without its timestamp when it has one.
fn stored_len(len: usize) -> usize {
    if len >= TS_END {
        len - 8
    } else {
        len
    }
}

/// Record `i` of records laid end to end in `data`, ending at `ends`.
fn record<'a>(data: &'a [u8], ends: &[u32], i: usize) -> &'a [u8] {
    let start = if i == 0 { 0 } else { ends[i - 1] as usize };
    &data[start..ends[i] as usize]
}

/// Appends the records (laid end to end in `data`, each ending at its
/// `ends` offset) in column form.
pub fn encode_records(out: &mut Vec<u8>, data: &[u8], ends: &[u32]) {
    let n = ends.len();
    put_varint(out, n as u64);
    let mut groups: Vec<(usize, Vec<usize>)> = Vec::new();
    let mut group_of: HashMap<usize, usize> = HashMap::new();
    for i in 0..n {
        let len = record(data, ends, i).len();
        put_varint(out, len as u64);
        let g = *group_of.entry(len).or_insert_with(|| {
            groups.push((len, Vec::new()));
            groups.len() - 1
        });
        groups[g].1.push(i);
    }
    let mut prev_ts = 0u64;
    for i in 0..n {
        let r = record(data, ends, i);
        if r.len() >= TS_END {
            let mut ts = [0u8; 8];
            ts.copy_from_slice(&r[TS_AT..TS_END]);
            let ts = u64::from_le_bytes(ts);
            put_varint(out, zigzag(ts.wrapping_sub(prev_ts) as i64));
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
            let rec = record(data, ends, i);
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
}

/// Reads records back: (records end to end, end offset of each).
pub fn decode_records(c: &mut Cursor<'_>) -> Result<(Vec<u8>, Vec<u32>)> {
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
    let mut data = Vec::with_capacity(total);
    let mut ends = Vec::with_capacity(n);
    let mut next_row = vec![0usize; groups.len()];
    let mut ts_iter = ts.into_iter();
    for &len in &lens {
        let g = *group_of.get(&len).context("record group")?;
        let width = stored_len(len);
        let row = &rows[g][next_row[g] * width..(next_row[g] + 1) * width];
        next_row[g] += 1;
        if len >= TS_END {
            data.extend_from_slice(&row[..TS_AT]);
            let t = ts_iter.next().context("timestamp column too short")?;
            data.extend_from_slice(&t.to_le_bytes());
            data.extend_from_slice(&row[TS_AT..]);
        } else {
            data.extend_from_slice(row);
        }
        ends.push(data.len() as u32);
    }
    Ok((data, ends))
}
