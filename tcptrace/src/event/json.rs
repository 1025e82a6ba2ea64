//! The documented JSON form of an [`Event`] (README "JSON events",
//! docs/events-*.md), as one typed struct: the `--json` writer serializes
//! it, `tcptrace diagnose --input` deserializes saved streams into it, and
//! the diagnosis rules read its fields.
//!
//! Fields are declared in the order JSON Lines have always printed them
//! (sorted by name). Every field is optional when reading: a saved stream
//! may come from an older tcptrace or be written by hand, and a rule that
//! needs a missing field does not fire.

use std::{borrow::Cow, net::IpAddr};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{de, Deserialize, Deserializer, Serialize, Serializer};
use tcptrace_common::{
    paws::{PawsSite, RstVerdict},
    syn::SynDropCause,
    EventKind,
};

use super::{errno_name, Event};
use crate::syn::Owner;

/// `outcome`: how it ended for the client. `listen_overflow`: `reset` or
/// `ghost`; `handshake`: `established`, `reset`, `timeout`, `closed` or
/// `error`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Reset,
    Ghost,
    Established,
    Timeout,
    Closed,
    Error,
}

impl Outcome {
    pub const fn name(self) -> &'static str {
        match self {
            Self::Reset => "reset",
            Self::Ghost => "ghost",
            Self::Established => "established",
            Self::Timeout => "timeout",
            Self::Closed => "closed",
            Self::Error => "error",
        }
    }
}

impl From<crate::syn::Outcome> for Outcome {
    fn from(o: crate::syn::Outcome) -> Self {
        match o {
            crate::syn::Outcome::Reset => Self::Reset,
            crate::syn::Outcome::Ghost => Self::Ghost,
        }
    }
}

impl From<tcptrace_common::HandshakeOutcome> for Outcome {
    fn from(o: tcptrace_common::HandshakeOutcome) -> Self {
        use tcptrace_common::HandshakeOutcome as H;
        match o {
            H::Established => Self::Established,
            H::Reset => Self::Reset,
            H::TimedOut => Self::Timeout,
            H::Closed => Self::Closed,
            H::Error => Self::Error,
        }
    }
}

/// RFC 3339 wall-clock time of a CLOCK_BOOTTIME stamp.
pub fn wall_time(ts_ns: u64, boot_offset_ns: i64) -> String {
    let unix_ns = ts_ns as i64 + boot_offset_ns;
    DateTime::<Utc>::from_timestamp_nanos(unix_ns).to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// An event's `time`: Unix nanoseconds (microsecond precision, as
/// printed), with the text it was read from; a decoded record's text is
/// formatted only when asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stamp {
    pub unix_ns: i64,
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

    /// The wall-clock time of a CLOCK_BOOTTIME stamp, cut to microseconds.
    pub fn from_boot(ts_ns: u64, boot_offset_ns: i64) -> Self {
        let ns = (ts_ns as i64).saturating_add(boot_offset_ns);
        Self {
            unix_ns: ns - ns.rem_euclid(1000),
            text: None,
        }
    }

    pub fn text(&self) -> Cow<'_, str> {
        match &self.text {
            Some(t) => Cow::Borrowed(t),
            None => Cow::Owned(wall_time(self.unix_ns as u64, 0)),
        }
    }
}

impl Serialize for Stamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text())
    }
}

/// `error`: the name of `errno`, made only when written or read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ErrorName {
    /// From a decoded record.
    Of(i32),
    /// As a saved stream has it.
    Text(String),
}

impl ErrorName {
    pub fn text(&self) -> Cow<'_, str> {
        match self {
            Self::Of(errno) => Cow::Owned(errno_name(*errno)),
            Self::Text(t) => Cow::Borrowed(t),
        }
    }
}

impl Serialize for ErrorName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text())
    }
}

impl<'de> Deserialize<'de> for ErrorName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Self::Text)
    }
}

/// Kernel enums written by their names.
pub trait Named: Copy + Sized + 'static {
    const ALL: &'static [Self];
    fn name(self) -> &'static str;
}

impl Named for EventKind {
    const ALL: &'static [Self] = &EventKind::ALL;
    fn name(self) -> &'static str {
        EventKind::name(self)
    }
}

impl Named for PawsSite {
    const ALL: &'static [Self] = &PawsSite::ALL;
    fn name(self) -> &'static str {
        PawsSite::name(self)
    }
}

impl Named for RstVerdict {
    const ALL: &'static [Self] = &RstVerdict::ALL;
    fn name(self) -> &'static str {
        RstVerdict::name(self)
    }
}

impl Named for SynDropCause {
    const ALL: &'static [Self] = &[
        SynDropCause::AcceptQueueFull,
        SynDropCause::SynQueueFull,
        SynDropCause::Other,
    ];
    fn name(self) -> &'static str {
        SynDropCause::name(self)
    }
}

/// `#[serde(with = "named")]` for an `Option` of a [`Named`] enum.
mod named {
    use super::*;

    pub fn serialize<S: Serializer, T: Named>(v: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_str(v.name()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>, T: Named>(d: D) -> Result<Option<T>, D::Error> {
        let Some(name) = Option::<String>::deserialize(d)? else {
            return Ok(None);
        };
        T::ALL
            .iter()
            .copied()
            .find(|v| v.name() == name)
            .map(Some)
            .ok_or_else(|| de::Error::unknown_variant(&name, &[]))
    }
}

/// A boolean, also accepted as 0/1.
fn flag<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Flag {
        Bool(bool),
        Number(u64),
    }
    Ok(Option::<Flag>::deserialize(d)?.map(|f| match f {
        Flag::Bool(b) => b,
        Flag::Number(n) => n != 0,
    }))
}

/// A field written as `null` when unknown: absent is `None`, `null` is
/// `Some(None)`.
fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// A time that does not parse is unknown, not an unreadable event.
fn time<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Stamp>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.and_then(|t| Stamp::parse(&t)))
}

/// One event in its documented JSON form.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EventJson<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub abort_on_overflow: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "flag")]
    pub after_overflow: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backlog: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backlog_max: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none", with = "named")]
    pub cause: Option<SynDropCause>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<u64>,
    /// Empty when unknown.
    pub comm: Cow<'a, str>,
    /// Container name in its pod (Kubernetes), when attributed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<Cow<'a, str>>,
    /// 64 hex digits, when the task ran in a container.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_id: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub daddr: Option<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dport: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errno: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorName>,
    #[serde(skip_serializing_if = "Option::is_none", with = "named")]
    pub kind: Option<EventKind>,
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "flag")]
    pub last_quarter: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handshake_ns: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ns: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen_addr: Option<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_syn_backlog: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub netns: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "flag")]
    pub old_ack: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    /// SYN kinds: `listen`, `proc`, or `null` when unknown.
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "nullable")]
    pub owner: Option<Option<Owner>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub packet_len: Option<usize>,
    /// 0 when unknown.
    pub pid: u32,
    /// Pod name (Kubernetes), when attributed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod_namespace: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ports_probed: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rcv_nxt: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rcv_wnd: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rcv_wup: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retransmit: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "flag")]
    pub rst: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub saddr: Option<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "flag")]
    pub seq_inferred: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since_overflow_ns: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none", with = "named")]
    pub site: Option<PawsSite>,
    /// Absent while the kernel has not chosen one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sport: Option<u16>,
    /// TCP state name (`ESTABLISHED`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub syn_queue: Option<u32>,
    /// `handshake`: when each timed SYN retransmission went out, in µs
    /// after the handshake started (the first 6; absent when none was).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub syn_retransmit_us: Option<Cow<'a, [u32]>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub syn_retransmits: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub syncookies: Option<u8>,
    pub tid: u32,
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "time")]
    pub time: Option<Stamp>,
    /// `null` where the kernel path does not expose it.
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "nullable")]
    pub ts_recent: Option<Option<u32>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tsecr: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tsval: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none", with = "named")]
    pub verdict: Option<RstVerdict>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window_distance: Option<i64>,
    /// `rst`: `below`, `beyond` or `inside` the receive window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window_side: Option<Cow<'a, str>>,
}

impl<'a> EventJson<'a> {
    /// The JSON form of a decoded event, its time on the wall clock.
    #[inline]
    pub fn of(ev: &'a Event, boot_offset_ns: i64) -> Self {
        let e = &ev.endpoints;
        let mut v = Self {
            kind: Some(ev.kind),
            time: Some(Stamp::from_boot(ev.ts_ns, boot_offset_ns)),
            pid: ev.pid,
            tid: ev.tid,
            comm: Cow::Borrowed(&ev.comm),
            netns: Some(ev.netns),
            cgroup: Some(ev.cgroup),
            saddr: Some(e.saddr),
            sport: (e.sport != 0).then_some(e.sport),
            daddr: Some(e.daddr),
            dport: Some(e.dport),
            packet_len: ev.carries_packet().then_some(ev.packet.len()),
            ..Self::default()
        };
        if let Some(c) = ev.container.as_deref() {
            v.container_id = Some(Cow::Borrowed(c.id.as_str()));
            v.container = c.name.as_deref().map(Cow::Borrowed);
            v.pod = c.pod.as_deref().map(Cow::Borrowed);
            v.pod_namespace = c.namespace.as_deref().map(Cow::Borrowed);
        }
        ev.detail.family().json(ev, &mut v);
        v
    }

    /// The pid, when known.
    pub fn known_pid(&self) -> Option<u32> {
        (self.pid != 0).then_some(self.pid)
    }

    /// The task name, when known.
    pub fn known_comm(&self) -> Option<&str> {
        (!self.comm.is_empty()).then_some(&*self.comm)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{decode, tests::raw_latency};
    use serde_json::json;

    #[test]
    fn port_search_json_has_documented_fields() {
        let ev = decode(&raw_latency(EventKind::PortSearch, 2, 99)).unwrap();
        let v = serde_json::to_value(EventJson::of(&ev, 1_700_000_000_000_000_000)).unwrap();
        assert_eq!(v["kind"], "port_search");
        assert_eq!(v["time"], "2023-11-14T22:13:21.000000Z");
        for (k, want) in [
            ("pid", json!(42)),
            ("comm", json!("curl")),
            ("saddr", json!("127.0.0.1")),
            ("sport", json!(40000)),
            ("daddr", json!("10.1.2.3")),
            ("dport", json!(8080)),
            ("latency_ns", json!(1500)),
            ("errno", json!(99)),
            ("error", json!("EADDRNOTAVAIL")),
            ("ports_probed", json!(7)),
            ("netns", json!(4026531840u32)),
        ] {
            assert_eq!(v[k], want, "{k}");
        }
    }

    #[test]
    fn paws_and_rst_json_fields() {
        use crate::event::tests::{raw_paws, raw_rst};
        let ev = decode(&raw_paws(
            PawsSite::Established,
            [10, 0, 0, 3],
            100,
            5000,
            0,
        ))
        .unwrap();
        let v = serde_json::to_value(EventJson::of(&ev, 0)).unwrap();
        assert_eq!(v["kind"], "paws_reject");
        assert_eq!(v["site"], "established");
        assert_eq!(v["state"], "TIME_WAIT");
        assert_eq!(v["tsval"], 100);
        assert_eq!(v["ts_recent"], 5000);
        assert_eq!(v["daddr"], "10.0.0.3");
        assert_eq!(v["old_ack"], false);
        let ev = decode(&raw_rst(RstVerdict::Ignored, 1500)).unwrap();
        let v = serde_json::to_value(EventJson::of(&ev, 0)).unwrap();
        assert_eq!(v["kind"], "rst");
        assert_eq!(v["verdict"], "ignored");
        assert_eq!(v["seq"], 1500);
        assert_eq!(v["rcv_nxt"], 1000);
        assert_eq!(v["rcv_wup"], 900);
        assert_eq!(v["rcv_wnd"], 500);
        assert_eq!(v["window_distance"], 100);
        assert_eq!(v["seq_inferred"], false);
        assert_eq!(v["state"], "ESTABLISHED");
    }

    /// What is written reads back as the same typed form, field by field.
    #[test]
    fn written_events_read_back_the_same() {
        use crate::event::tests::{raw_paws, raw_rst};
        use tcptrace_common::paws::PAWS_TS_RECENT_UNKNOWN;
        let offset = 1_700_000_000_123_456_789;
        let mut events = vec![
            decode(&raw_paws(
                PawsSite::SynRecv,
                [10, 0, 0, 3],
                1,
                0,
                PAWS_TS_RECENT_UNKNOWN,
            ))
            .unwrap(),
            decode(&raw_rst(RstVerdict::ChallengeAck, 1100)).unwrap(),
        ];
        for kind in [EventKind::Connect, EventKind::PortSearch] {
            for family in [2, tcptrace_common::event::AF_INET6] {
                for errno in [0, 99, 111, 115] {
                    events.push(decode(&raw_latency(kind, family, errno)).unwrap());
                }
            }
        }
        let mut unbound = events[2].clone();
        unbound.endpoints.sport = 0;
        unbound.comm = String::new();
        events.push(unbound);
        for ev in &events {
            let written = EventJson::of(ev, offset);
            let text = serde_json::to_string(&written).unwrap();
            let read: EventJson<'_> = serde_json::from_str(&text).unwrap();
            assert_eq!(serde_json::to_string(&read).unwrap(), text);
            assert_eq!(
                read.time.as_ref().map(|t| t.unix_ns),
                written.time.as_ref().map(|t| t.unix_ns),
                "{text}"
            );
            assert_eq!(
                (read.known_pid(), read.known_comm(), read.sport, read.errno),
                (
                    written.known_pid(),
                    written.known_comm(),
                    written.sport,
                    written.errno
                ),
                "{text}"
            );
            assert_eq!(
                read.error.map(|e| e.text().into_owned()),
                written.error.map(|e| e.text().into_owned())
            );
        }
    }

    /// Saved streams are read defensively: flags as 0/1, an unknown time,
    /// pid 0 and an empty comm as unknown, missing fields as `None`.
    #[test]
    fn fields_are_read_defensively() {
        let e: EventJson<'_> = serde_json::from_str(
            r#"{"kind": "rst", "netns": 7, "pid": 0, "old_ack": 1, "rst": true, "time": "2026-01-02T03:04:05.000006Z", "saddr": "::1", "ts_recent": null, "extra": "x"}"#,
        )
        .unwrap();
        assert_eq!(e.kind, Some(EventKind::Rst));
        assert_eq!(e.netns, Some(7));
        assert_eq!(e.known_pid(), None);
        assert_eq!(e.known_comm(), None);
        assert_eq!(e.old_ack, Some(true));
        assert_eq!(e.rst, Some(true));
        assert_eq!(e.ts_recent, Some(None));
        assert_eq!(e.tsval, None);
        assert_eq!(e.saddr, Some("::1".parse().unwrap()));
        assert_eq!(e.time.unwrap().unix_ns % 1_000_000_000, 6_000);
        let e: EventJson<'_> = serde_json::from_str(r#"{"time": "yesterday"}"#).unwrap();
        assert_eq!((e.kind, e.time), (None, None));
        assert!(serde_json::from_str::<EventJson<'_>>(r#"{"daddr": "nope"}"#).is_err());
        assert!(serde_json::from_str::<EventJson<'_>>(r#"{"kind": "nope"}"#).is_err());
    }

    #[test]
    fn container_fields_sit_in_name_order() {
        use crate::container::{Container, ContainerId, Runtime};
        let mut ev = decode(&raw_latency(EventKind::Connect, 2, 0)).unwrap();
        ev.container = Some(std::sync::Arc::new(Container {
            runtime: Runtime::Containerd,
            id: ContainerId::parse(&"ab".repeat(32)).unwrap(),
            pod_uid: None,
            pod: Some("web\u{1b}".into()),
            namespace: Some("prod".into()),
            name: Some("app".into()),
        }));
        let id = "ab".repeat(32);
        assert_eq!(
            serde_json::to_string(&EventJson::of(&ev, 1_700_000_000_123_456_789)).unwrap(),
            format!(
                r#"{{"cgroup":7,"comm":"curl","container":"app","container_id":"{id}","daddr":"10.1.2.3","dport":8080,"errno":0,"error":"OK","kind":"connect","latency_ns":1500,"netns":4026531840,"pid":42,"pod":"web\u001b","pod_namespace":"prod","saddr":"127.0.0.1","sport":40000,"tid":43,"time":"2023-11-14T22:13:21.123456Z"}}"#
            )
        );
        // A container outside Kubernetes: the id alone.
        ev.container = ev.container.map(|c| {
            std::sync::Arc::new(Container {
                pod: None,
                namespace: None,
                name: None,
                ..(*c).clone()
            })
        });
        let v = serde_json::to_value(EventJson::of(&ev, 0)).unwrap();
        assert_eq!(v["container_id"], id.as_str());
        assert!(
            v.get("pod").is_none() && v.get("container").is_none(),
            "{v}"
        );
    }

    #[test]
    fn stamps_keep_their_text() {
        let t = Stamp::parse("2026-01-01T00:00:02Z").unwrap();
        assert_eq!(t.text(), "2026-01-01T00:00:02Z");
        let b = Stamp::from_boot(1_000_001_999, 1_700_000_000_000_000_000);
        assert_eq!(
            b.text(),
            wall_time(1_000_001_999, 1_700_000_000_000_000_000)
        );
        assert_eq!(b.unix_ns % 1000, 0);
    }

    /// Lines are byte for byte what tcptrace has always printed (these
    /// were printed by the JSON writer this typed form replaced).
    #[test]
    fn lines_keep_their_bytes() {
        use crate::{
            event::tests::{raw_paws, raw_rst, raw_rst_flags},
            syn::tests::raw_syn,
        };
        use tcptrace_common::{
            paws::{PAWS_TS_RECENT_UNKNOWN, RST_BELOW_WINDOW, SOCKET_UNREAD},
            syn::flags,
        };
        let line = |ev: &Event| {
            serde_json::to_string(&EventJson::of(ev, 1_700_000_000_123_456_789)).unwrap()
        };
        let mut unbound = decode(&raw_latency(EventKind::Connect, 2, 0)).unwrap();
        unbound.endpoints.sport = 0;
        unbound.comm = "\x1b[31mEVIL\"\\".into();
        assert_eq!(
            line(&unbound),
            r#"{"cgroup":7,"comm":"\u001b[31mEVIL\"\\","daddr":"10.1.2.3","dport":8080,"errno":0,"error":"OK","kind":"connect","latency_ns":1500,"netns":4026531840,"pid":42,"saddr":"127.0.0.1","tid":43,"time":"2023-11-14T22:13:21.123456Z"}"#
        );
        let paws = raw_paws(
            PawsSite::Established,
            [10, 0, 0, 3],
            100,
            5000,
            PAWS_TS_RECENT_UNKNOWN,
        );
        assert_eq!(
            line(&decode(&paws).unwrap()),
            r#"{"cgroup":0,"comm":"","daddr":"10.0.0.3","dport":40000,"kind":"paws_reject","netns":7,"old_ack":false,"packet_len":0,"pid":0,"rst":false,"saddr":"10.0.0.1","site":"established","sport":8080,"state":"TIME_WAIT","tid":0,"time":"2023-11-14T22:13:25.123456Z","ts_recent":null,"tsecr":9,"tsval":100}"#
        );
        assert_eq!(
            line(&decode(&raw_rst(RstVerdict::Ignored, 1500)).unwrap()),
            r#"{"cgroup":0,"comm":"","daddr":"10.0.0.3","dport":40001,"kind":"rst","netns":7,"packet_len":0,"pid":0,"rcv_nxt":1000,"rcv_wnd":500,"rcv_wup":900,"saddr":"10.0.0.1","seq":1500,"seq_inferred":false,"sport":8080,"state":"ESTABLISHED","tid":0,"time":"2023-11-14T22:13:25.123456Z","verdict":"ignored","window_distance":100,"window_side":"beyond"}"#
        );
        // The socket not read: no state, no window, the side the kernel named.
        let unread = raw_rst_flags(RstVerdict::Ignored, 1500, SOCKET_UNREAD | RST_BELOW_WINDOW);
        let mut unread = decode(&unread).unwrap();
        if let crate::event::Detail::Rst(r) = &mut unread.detail {
            r.state = 0;
        }
        assert_eq!(
            line(&unread),
            r#"{"cgroup":0,"comm":"","daddr":"10.0.0.3","dport":40001,"kind":"rst","netns":7,"packet_len":0,"pid":0,"saddr":"10.0.0.1","seq":1500,"seq_inferred":false,"sport":8080,"tid":0,"time":"2023-11-14T22:13:25.123456Z","verdict":"ignored","window_side":"below"}"#
        );
        let drop = raw_syn(EventKind::SynDrop, 1, flags::OWNER_KNOWN);
        assert_eq!(
            line(&decode(&drop).unwrap()),
            r#"{"backlog":5,"backlog_max":4,"cause":"accept_queue_full","cgroup":0,"comm":"nginx","daddr":"10.9.0.3","dport":40001,"kind":"syn_drop","last_quarter":false,"listen_addr":"::","max_syn_backlog":128,"netns":4026532000,"owner":"listen","packet_len":0,"pid":7,"saddr":"10.9.0.1","sport":8080,"syn_queue":1,"syncookies":1,"tid":7,"time":"2023-11-14T22:13:22.123456Z"}"#
        );
        let overflow = raw_syn(EventKind::ListenOverflow, 0, 0);
        assert_eq!(
            line(&decode(&overflow).unwrap()),
            r#"{"abort_on_overflow":0,"backlog":5,"backlog_max":4,"cgroup":0,"comm":"nginx","daddr":"10.9.0.3","dport":40001,"kind":"listen_overflow","listen_addr":"::","netns":4026532000,"outcome":"ghost","owner":null,"packet_len":0,"pid":7,"saddr":"10.9.0.1","sport":8080,"syn_queue":1,"syncookies":1,"tid":7,"time":"2023-11-14T22:13:22.123456Z"}"#
        );
        let rtx = raw_syn(EventKind::SynackRetransmit, 0, flags::AFTER_OVERFLOW);
        assert_eq!(
            line(&decode(&rtx).unwrap()),
            r#"{"after_overflow":true,"backlog":5,"backlog_max":4,"cgroup":0,"comm":"nginx","daddr":"10.9.0.3","dport":40001,"kind":"synack_retransmit","listen_addr":"::","netns":4026532000,"owner":null,"pid":7,"retransmit":2,"saddr":"10.9.0.1","since_overflow_ns":1500000000,"sport":8080,"syn_queue":1,"syncookies":1,"tid":7,"time":"2023-11-14T22:13:22.123456Z"}"#
        );
    }
}
