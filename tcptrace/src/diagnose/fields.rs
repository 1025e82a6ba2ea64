//! Defensive access to events in their JSON form: a missing or mistyped
//! field is `None`, and the rule that needs it does not fire.

use std::{borrow::Cow, collections::BTreeMap, net::IpAddr};

use chrono::DateTime;
use serde_json::Value;

use crate::event::{errno_name, Detail, Event};

/// An event's `time`, parsed, with its original text for the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stamp {
    pub unix_ns: i64,
    /// The text it was parsed from; `None` for a decoded record, whose text
    /// is the JSON view's (`output::json::wall_time`), made when asked.
    text: Option<String>,
}

impl Stamp {
    pub fn parse(text: &str) -> Option<Self> {
        let t = DateTime::parse_from_rfc3339(text).ok()?;
        Some(Self {
            unix_ns: t.timestamp_nanos_opt()?,
            text: Some(text.to_owned()),
        })
    }

    /// The time of a decoded record (no text formatted until asked).
    pub fn at_unix_ns(unix_ns: i64) -> Self {
        Self {
            unix_ns,
            text: None,
        }
    }

    pub fn text(&self) -> Cow<'_, str> {
        match &self.text {
            Some(t) => Cow::Borrowed(t),
            None => Cow::Owned(crate::output::json::wall_time(self.unix_ns as u64, 0)),
        }
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

/// One event, read through the field names of its documented JSON form:
/// the JSON itself, or (live, for the high-volume connect and port_search
/// kinds) the decoded record with the boot-to-wall-clock offset, which
/// spares building and re-parsing a JSON object per event.
#[derive(Clone, Copy, Debug)]
pub enum Ev<'a> {
    Json(&'a Value),
    /// Only for `Detail::Connect` and `Detail::PortSearch`.
    Record(&'a Event, i64),
}

impl<'a> Ev<'a> {
    pub fn kind(&self) -> Option<&'a str> {
        match self {
            Self::Json(v) => v.get("kind")?.as_str(),
            Self::Record(e, _) => Some(e.kind.name()),
        }
    }

    /// A numeric field as JSON has it (`sport` is absent while 0).
    fn number(&self, k: &str) -> Option<i64> {
        let Self::Record(e, _) = self else {
            return None;
        };
        let (latency, errno, probed) = match e.detail {
            Detail::Connect { latency_ns, errno } => (latency_ns, errno, None),
            Detail::PortSearch {
                latency_ns,
                errno,
                ports_probed,
            } => (latency_ns, errno, Some(ports_probed)),
            _ => return None,
        };
        Some(match k {
            "pid" => e.pid.into(),
            "tid" => e.tid.into(),
            "netns" => e.netns.into(),
            "cgroup" => i64::try_from(e.cgroup).ok()?,
            "dport" => e.endpoints.dport.into(),
            "sport" if e.endpoints.sport != 0 => e.endpoints.sport.into(),
            "latency_ns" => i64::try_from(latency).ok()?,
            "errno" => errno.into(),
            "ports_probed" => probed?.into(),
            _ => return None,
        })
    }

    pub fn u64(&self, k: &str) -> Option<u64> {
        match self {
            Self::Json(v) => v.get(k)?.as_u64(),
            Self::Record(e, _) if k == "cgroup" => Some(e.cgroup),
            Self::Record(..) => u64::try_from(self.number(k)?).ok(),
        }
    }

    pub fn i64(&self, k: &str) -> Option<i64> {
        match self {
            Self::Json(v) => v.get(k)?.as_i64(),
            Self::Record(..) => self.number(k),
        }
    }

    pub fn u16(&self, k: &str) -> Option<u16> {
        self.u64(k).and_then(|v| u16::try_from(v).ok())
    }

    /// A string field. Records give `kind` and `comm`; their addresses are
    /// read with [`Ev::ip`], their errno name with [`Ev::error`].
    pub fn str(&self, k: &str) -> Option<&'a str> {
        match self {
            Self::Json(v) => v.get(k)?.as_str(),
            Self::Record(e, _) => match k {
                "kind" => Some(e.kind.name()),
                "comm" => Some(e.comm.as_str()),
                _ => None,
            },
        }
    }

    /// The errno name (`error`).
    pub fn error(&self) -> Option<Cow<'a, str>> {
        match self {
            Self::Json(_) => self.str("error").map(Cow::Borrowed),
            Self::Record(e, _) => match e.detail {
                Detail::Connect { errno, .. } | Detail::PortSearch { errno, .. } => {
                    Some(Cow::Owned(errno_name(errno)))
                }
                _ => None,
            },
        }
    }

    /// A boolean, also accepted as 0/1.
    pub fn flag(&self, k: &str) -> Option<bool> {
        match self {
            Self::Json(v) => match v.get(k)? {
                Value::Bool(b) => Some(*b),
                v => v.as_u64().map(|n| n != 0),
            },
            Self::Record(..) => None,
        }
    }

    pub fn ip(&self, k: &str) -> Option<IpAddr> {
        match self {
            Self::Json(_) => self.str(k)?.parse().ok(),
            Self::Record(e, _) => match k {
                "saddr" => Some(e.endpoints.saddr),
                "daddr" => Some(e.endpoints.daddr),
                _ => None,
            },
        }
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
        match self {
            Self::Json(_) => Stamp::parse(self.str("time")?),
            // Microseconds, as the JSON time has them.
            Self::Record(e, boot_offset_ns) => {
                let ns = (e.ts_ns as i64).saturating_add(*boot_offset_ns);
                Some(Stamp::at_unix_ns(ns - ns.rem_euclid(1000)))
            }
        }
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
        let e = Ev::Json(&v);
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

    /// The record view of connect and port_search events reads exactly
    /// what their JSON form holds, field by field.
    #[test]
    fn record_view_matches_json_view() {
        use crate::event::{decode, tests::raw_latency};
        use tcptrace_common::{
            event::{AF_INET, AF_INET6},
            EventKind,
        };
        let offset = 1_700_000_000_123_456_789;
        let mut events = Vec::new();
        for kind in [EventKind::Connect, EventKind::PortSearch] {
            for family in [AF_INET, AF_INET6] {
                for errno in [0, 99, 111, 115] {
                    events.push(decode(&raw_latency(kind, family, errno)).unwrap());
                }
            }
        }
        let mut unbound = events[0].clone();
        unbound.endpoints.sport = 0;
        unbound.comm = String::new();
        events.push(unbound);
        for ev in &events {
            let v = crate::output::json::event(ev, offset);
            let (j, r) = (Ev::Json(&v), Ev::Record(ev, offset));
            for k in [
                "pid",
                "tid",
                "netns",
                "cgroup",
                "sport",
                "dport",
                "latency_ns",
                "errno",
                "ports_probed",
                "missing",
            ] {
                assert_eq!(j.u64(k), r.u64(k), "u64 {k} of {v}");
                assert_eq!(j.i64(k), r.i64(k), "i64 {k} of {v}");
                assert_eq!(j.u16(k), r.u16(k), "u16 {k} of {v}");
            }
            for k in ["saddr", "daddr", "missing"] {
                assert_eq!(j.ip(k), r.ip(k), "ip {k} of {v}");
            }
            assert_eq!(j.kind(), r.kind());
            assert_eq!(j.str("kind"), r.str("kind"));
            assert_eq!(j.comm(), r.comm());
            assert_eq!(j.error(), r.error());
            assert_eq!((j.netns(), j.pid()), (r.netns(), r.pid()));
            let (jt, rt) = (j.time().unwrap(), r.time().unwrap());
            assert_eq!(jt.unix_ns, rt.unix_ns);
            assert_eq!(jt.text(), rt.text());
        }
    }

    #[test]
    fn spans_keep_first_and_last() {
        let mut s = Span::default();
        let t = |x: &str| Stamp::parse(x).unwrap();
        s.add(Some(&t("2026-01-01T00:00:02Z")));
        s.add(Some(&t("2026-01-01T00:00:01Z")));
        s.add(None);
        assert_eq!(s.count, 3);
        assert_eq!(s.first.as_ref().unwrap().text(), "2026-01-01T00:00:01Z");
        assert_eq!(s.last.as_ref().unwrap().text(), "2026-01-01T00:00:02Z");
        let mut o = Span::default();
        o.add(Some(&t("2026-01-01T00:00:03Z")));
        let m = s.merge(&o);
        assert_eq!(m.count, 4);
        assert_eq!(m.last.unwrap().text(), "2026-01-01T00:00:03Z");
    }
}
