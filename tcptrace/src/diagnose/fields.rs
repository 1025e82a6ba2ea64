//! Defensive access to events in their JSON form: a missing or mistyped
//! field is `None`, and the rule that needs it does not fire.

use std::{collections::BTreeMap, net::IpAddr};

use chrono::DateTime;
use serde_json::Value;

/// An event's `time`, parsed, with its original text for the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stamp {
    pub unix_ns: i64,
    pub text: String,
}

impl Stamp {
    pub fn parse(text: &str) -> Option<Self> {
        let t = DateTime::parse_from_rfc3339(text).ok()?;
        Some(Self {
            unix_ns: t.timestamp_nanos_opt()?,
            text: text.to_owned(),
        })
    }

    pub fn ms(&self) -> i64 {
        self.unix_ns.div_euclid(1_000_000)
    }
}

/// How many times something was seen, and when first and last.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Span {
    pub count: u64,
    pub first: Option<Stamp>,
    pub last: Option<Stamp>,
}

impl Span {
    pub fn add(&mut self, at: Option<&Stamp>) {
        self.count += 1;
        if let Some(at) = at {
            self.widen(at, at);
        }
    }

    fn widen(&mut self, first: &Stamp, last: &Stamp) {
        if self
            .first
            .as_ref()
            .is_none_or(|f| first.unix_ns < f.unix_ns)
        {
            self.first = Some(first.clone());
        }
        if self.last.as_ref().is_none_or(|l| last.unix_ns > l.unix_ns) {
            self.last = Some(last.clone());
        }
    }

    /// Both spans together.
    pub fn merge(&self, other: &Span) -> Span {
        let mut out = self.clone();
        out.count += other.count;
        if let (Some(f), Some(l)) = (&other.first, &other.last) {
            out.widen(f, l);
        }
        out
    }
}

/// One event in its documented JSON form.
#[derive(Clone, Copy, Debug)]
pub struct Ev<'a>(pub &'a Value);

impl<'a> Ev<'a> {
    pub fn kind(&self) -> Option<&'a str> {
        self.0.get("kind")?.as_str()
    }

    pub fn u64(&self, k: &str) -> Option<u64> {
        self.0.get(k)?.as_u64()
    }

    pub fn i64(&self, k: &str) -> Option<i64> {
        self.0.get(k)?.as_i64()
    }

    pub fn u16(&self, k: &str) -> Option<u16> {
        self.u64(k).and_then(|v| u16::try_from(v).ok())
    }

    pub fn str(&self, k: &str) -> Option<&'a str> {
        self.0.get(k)?.as_str()
    }

    /// A boolean, also accepted as 0/1.
    pub fn flag(&self, k: &str) -> Option<bool> {
        match self.0.get(k)? {
            Value::Bool(b) => Some(*b),
            v => v.as_u64().map(|n| n != 0),
        }
    }

    pub fn ip(&self, k: &str) -> Option<IpAddr> {
        self.str(k)?.parse().ok()
    }

    pub fn netns(&self) -> Option<u64> {
        self.u64("netns")
    }

    /// pid, when known (0 means unknown).
    pub fn pid(&self) -> Option<u32> {
        self.u64("pid")
            .and_then(|p| u32::try_from(p).ok())
            .filter(|&p| p != 0)
    }

    pub fn comm(&self) -> Option<&'a str> {
        self.str("comm").filter(|c| !c.is_empty())
    }

    pub fn time(&self) -> Option<Stamp> {
        Stamp::parse(self.str("time")?)
    }
}

/// Inserts into a map unless it already holds `cap` keys; says whether the
/// key is (now) present.
pub fn capped_insert<K: Ord, V: Default>(
    m: &mut BTreeMap<K, V>,
    k: K,
    cap: usize,
) -> Option<&mut V> {
    if m.len() >= cap && !m.contains_key(&k) {
        return None;
    }
    Some(m.entry(k).or_default())
}

/// The `n` largest entries of a count map, largest first.
pub fn top<K: Clone + Ord>(m: &BTreeMap<K, u64>, n: usize) -> Vec<(K, u64)> {
    let mut v: Vec<(K, u64)> = m.iter().map(|(k, c)| (k.clone(), *c)).collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    v.truncate(n);
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_are_read_defensively() {
        let v = json!({"kind": "rst", "netns": 7, "pid": 0, "flag": 1, "b": true, "time": "2026-01-02T03:04:05.000006Z", "saddr": "::1", "bad": "x"});
        let e = Ev(&v);
        assert_eq!(e.kind(), Some("rst"));
        assert_eq!(e.netns(), Some(7));
        assert_eq!(e.pid(), None);
        assert_eq!(e.flag("flag"), Some(true));
        assert_eq!(e.flag("b"), Some(true));
        assert_eq!(e.u64("bad"), None);
        assert_eq!(e.u64("missing"), None);
        assert_eq!(e.ip("saddr"), Some("::1".parse().unwrap()));
        assert_eq!(e.time().unwrap().unix_ns % 1_000_000_000, 6_000);
    }

    #[test]
    fn spans_keep_first_and_last() {
        let mut s = Span::default();
        let t = |x: &str| Stamp::parse(x).unwrap();
        s.add(Some(&t("2026-01-01T00:00:02Z")));
        s.add(Some(&t("2026-01-01T00:00:01Z")));
        s.add(None);
        assert_eq!(s.count, 3);
        assert_eq!(s.first.as_ref().unwrap().text, "2026-01-01T00:00:01Z");
        assert_eq!(s.last.as_ref().unwrap().text, "2026-01-01T00:00:02Z");
        let mut o = Span::default();
        o.add(Some(&t("2026-01-01T00:00:03Z")));
        let m = s.merge(&o);
        assert_eq!(m.count, 4);
        assert_eq!(m.last.unwrap().text, "2026-01-01T00:00:03Z");
    }
}
