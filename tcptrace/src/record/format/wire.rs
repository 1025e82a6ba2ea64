//! The primitives every part of a recording is built from: LEB128 varints,
//! zigzag for signed deltas, length-prefixed strings, named sections, and a
//! bounds-checked [`Cursor`] that reads them back.

use anyhow::{bail, ensure, Context as _, Result};

pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

pub fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// A named, length-prefixed part: readers skip names they do not know, so
/// counters and annotations can be added within a format version.
pub fn put_section(out: &mut Vec<u8>, name: &str, body: &[u8]) {
    put_varint(out, name.len() as u64);
    out.extend_from_slice(name.as_bytes());
    put_varint(out, body.len() as u64);
    out.extend_from_slice(body);
}

pub fn put_str(out: &mut Vec<u8>, s: &str) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
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
    pub fn count(&mut self, what: &str) -> Result<usize> {
        let n = self.varint()?;
        ensure!(
            n <= self.remaining() as u64,
            "{what} count {n} exceeds the payload"
        );
        Ok(n as usize)
    }

    pub fn str(&mut self) -> Result<&'a str> {
        let n = self.count("string byte")?;
        std::str::from_utf8(self.bytes(n)?).context("string is not UTF-8")
    }

    /// `count` sections of (name, body).
    pub fn sections(&mut self) -> Result<Vec<(&'a str, &'a [u8])>> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
