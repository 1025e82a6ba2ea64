//! Decoding ring-buffer records into [`Event`], the one type every sink reads;
//! [`json`] is its documented JSON form. Each hook family defines its detail
//! type and how it reads ([`Family`]) in its own folder; this file only
//! picks the family by kind.

pub mod json;

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use tcptrace_common::{
    event::{AF_INET6, HANDSHAKE_EVENT_V1_SIZE},
    packet::Packet,
    paws::{PawsEvent, RstEvent},
    syn::SynEvent,
    EventHeader, EventKind, Flow, HandshakeEvent, LatencyEvent,
};

use crate::{connect, paws, syn};
pub use crate::{
    connect::{ConnectDetail, HandshakeDetail, PortSearchDetail},
    paws::{PawsDetail, RstDetail},
    syn::SynDetail,
};

/// A TCP 4-tuple with real addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Endpoints {
    pub saddr: IpAddr,
    pub sport: u16,
    pub daddr: IpAddr,
    pub dport: u16,
}

impl From<&Flow> for Endpoints {
    fn from(f: &Flow) -> Self {
        let addr = |a: &[u8; 16]| -> IpAddr {
            if f.family == AF_INET6 {
                IpAddr::V6(Ipv6Addr::from(*a))
            } else {
                IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3]))
            }
        };
        Self {
            saddr: addr(&f.saddr),
            sport: f.sport,
            daddr: addr(&f.daddr),
            dport: f.dport,
        }
    }
}

/// What happened, per event kind: each variant holds its family's detail
/// type, defined in the family's folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Detail {
    Connect(ConnectDetail),
    PortSearch(PortSearchDetail),
    Handshake(HandshakeDetail),
    /// syn_drop, listen_overflow, synack_retransmit.
    Syn(SynDetail),
    PawsReject(PawsDetail),
    Rst(RstDetail),
}

impl Detail {
    /// The family that knows how this event reads. The one place, beside
    /// [`decode`], that dispatches on the kind: every output asks here.
    pub fn family(&self) -> &dyn Family {
        match self {
            Self::Connect(d) => d,
            Self::PortSearch(d) => d,
            Self::Handshake(d) => d,
            Self::Syn(d) => d,
            Self::PawsReject(d) => d,
            Self::Rst(d) => d,
        }
    }
}

/// What a hook family provides for its events, implemented in the family's
/// folder (`connect/output.rs`, `syn/output.rs`, `paws/output.rs`): the
/// text line's columns, the JSON fields and the pcapng comment.
pub trait Family {
    /// The errno of a failed call; 0 for events without one.
    fn errno(&self) -> i32 {
        0
    }

    /// Whether records of this kind carry the headers of the packet behind
    /// them (the JSON form then says `packet_len`; pcapng writes them).
    fn carries_packet(&self, _kind: EventKind) -> bool {
        false
    }

    /// The LATENCY and RESULT columns of the live view.
    fn text(&self, ev: &Event) -> Columns;

    /// The family's fields in the JSON form, beside the common ones (which
    /// may borrow from the detail, like the common ones from the event).
    fn json<'a>(&'a self, ev: &'a Event, v: &mut json::EventJson<'a>);

    /// One line saying what the kernel did with the captured packet
    /// (`local` and `peer` already formatted); None for events without one.
    fn pcap_comment(&self, _ev: &Event, _local: &str, _peer: &str) -> Option<String> {
        None
    }
}

/// A family's columns of the live view.
pub struct Columns {
    pub latency_ns: Option<u64>,
    pub result: String,
    /// Shown in red on a terminal.
    pub failed: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    /// CLOCK_BOOTTIME nanoseconds.
    pub ts_ns: u64,
    pub pid: u32,
    pub tid: u32,
    pub netns: u32,
    pub cgroup: u64,
    pub comm: String,
    pub endpoints: Endpoints,
    pub detail: Detail,
    /// IP + TCP headers captured with the event (SYN, PAWS and RST kinds);
    /// empty when none were captured.
    pub packet: Vec<u8>,
    /// The container the task ran in, when attribution found one
    /// ([`crate::container::Attributor::fill`]); never decoded.
    pub container: Option<std::sync::Arc<crate::container::Container>>,
}

impl Event {
    /// An event to decode into ([`decode_into`]).
    pub fn blank() -> Self {
        Self {
            kind: EventKind::Connect,
            ts_ns: 0,
            pid: 0,
            tid: 0,
            netns: 0,
            cgroup: 0,
            comm: String::new(),
            endpoints: Endpoints::from(&Flow::default()),
            detail: Detail::Connect(ConnectDetail {
                latency_ns: 0,
                errno: 0,
            }),
            packet: Vec::new(),
            container: None,
        }
    }

    /// The errno of a failed call; 0 for events without one.
    pub fn errno(&self) -> i32 {
        self.detail.family().errno()
    }

    /// Whether this kind of record carries the headers of its packet.
    pub fn carries_packet(&self) -> bool {
        self.detail.family().carries_packet(self.kind)
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum DecodeError {
    Empty,
    UnknownKind(u8),
    Short {
        kind: EventKind,
        len: usize,
        want: usize,
    },
    BadField {
        kind: EventKind,
        field: &'static str,
        value: u8,
    },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => write!(f, "empty record"),
            Self::UnknownKind(k) => write!(f, "unknown record kind {k}"),
            Self::Short { kind, len, want } => {
                write!(f, "{} record of {len} bytes, expected {want}", kind.name())
            }
            Self::BadField { kind, field, value } => {
                write!(f, "{} record with unknown {field} {value}", kind.name())
            }
        }
    }
}

impl std::error::Error for DecodeError {}

/// Copies a `#[repr(C)]` record out of a byte slice of at least its size.
fn read_record<T: Copy>(kind: EventKind, bytes: &[u8]) -> Result<T, DecodeError> {
    let want = std::mem::size_of::<T>();
    if bytes.len() < want {
        return Err(DecodeError::Short {
            kind,
            len: bytes.len(),
            want,
        });
    }
    // SAFETY: the length is checked above and T is a plain-old-data record
    // from tcptrace-common for which any bit pattern is valid.
    Ok(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

/// The task name into `out`, replacing what it held (its allocation is
/// kept for the next event).
fn set_comm(out: &mut String, raw: &[u8; 16]) {
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    out.clear();
    match std::str::from_utf8(&raw[..end]) {
        Ok(s) => out.push_str(s),
        Err(_) => out.push_str(&String::from_utf8_lossy(&raw[..end])),
    }
}

fn set_header(ev: &mut Event, h: &EventHeader, kind: EventKind, flow: &Flow, detail: Detail) {
    ev.kind = kind;
    ev.ts_ns = h.ts_ns;
    ev.pid = h.pid;
    ev.tid = h.tid;
    ev.netns = h.netns;
    ev.cgroup = h.cgroup;
    set_comm(&mut ev.comm, &h.comm);
    ev.endpoints = Endpoints::from(flow);
    ev.detail = detail;
    ev.packet.clear();
    ev.container = None;
}

/// A record that ends in a [`Packet`]: records written before packets were
/// captured (that much shorter) decode with an empty packet.
fn read_packet_record<T: Copy + Default>(kind: EventKind, bytes: &[u8]) -> Result<T, DecodeError> {
    let without = std::mem::size_of::<T>() - std::mem::size_of::<Packet>();
    read_grown_record(kind, bytes, without)
}

/// A record that grew at its end: one of at least `older` bytes (written
/// by a tcptrace before the growth, in a recording) decodes with the new
/// fields zero.
fn read_grown_record<T: Copy + Default>(
    kind: EventKind,
    bytes: &[u8],
    older: usize,
) -> Result<T, DecodeError> {
    let want = std::mem::size_of::<T>();
    if bytes.len() >= want || bytes.len() < older {
        return read_record(kind, bytes);
    }
    let mut rec = T::default();
    // SAFETY: T is a repr(C) plain-data record (every byte pattern valid);
    // the copy stays inside both.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), (&raw mut rec).cast::<u8>(), bytes.len())
    };
    Ok(rec)
}

/// Decodes one ring-buffer record.
pub fn decode(bytes: &[u8]) -> Result<Event, DecodeError> {
    let mut ev = Event::blank();
    decode_into(bytes, &mut ev)?;
    Ok(ev)
}

/// Decodes one ring-buffer record into `ev`, reusing its buffers: the
/// drain decodes millions a second. On error `ev` is not changed.
pub fn decode_into(bytes: &[u8], ev: &mut Event) -> Result<(), DecodeError> {
    let first = *bytes.first().ok_or(DecodeError::Empty)?;
    let kind = EventKind::from_u8(first).ok_or(DecodeError::UnknownKind(first))?;
    let latency = |bytes: &[u8]| read_record::<LatencyEvent>(kind, bytes);
    match kind {
        EventKind::Connect => {
            let rec = latency(bytes)?;
            let detail = Detail::Connect(connect::decode::connect(&rec));
            set_header(ev, &rec.header, kind, &rec.flow, detail);
        }
        EventKind::PortSearch => {
            let rec = latency(bytes)?;
            let detail = Detail::PortSearch(connect::decode::port_search(&rec));
            set_header(ev, &rec.header, kind, &rec.flow, detail);
        }
        EventKind::SynDrop | EventKind::ListenOverflow | EventKind::SynackRetransmit => {
            let rec: SynEvent = read_packet_record(kind, bytes)?;
            let detail = Detail::Syn(syn::decode::detail(&rec));
            set_header(ev, &rec.header, kind, &rec.flow, detail);
            ev.packet.extend_from_slice(rec.packet.bytes());
        }
        EventKind::PawsReject => {
            let rec: PawsEvent = read_packet_record(kind, bytes)?;
            let detail = paws::decode::paws(&rec).ok_or(DecodeError::BadField {
                kind,
                field: "site",
                value: rec.site,
            })?;
            set_header(ev, &rec.header, kind, &rec.flow, Detail::PawsReject(detail));
            ev.packet.extend_from_slice(rec.packet.bytes());
        }
        EventKind::Handshake => {
            let rec: HandshakeEvent = read_grown_record(kind, bytes, HANDSHAKE_EVENT_V1_SIZE)?;
            let detail = connect::decode::handshake(&rec).ok_or(DecodeError::BadField {
                kind,
                field: "outcome",
                value: rec.outcome,
            })?;
            set_header(ev, &rec.header, kind, &rec.flow, Detail::Handshake(detail));
        }
        EventKind::Rst => {
            let rec: RstEvent = read_packet_record(kind, bytes)?;
            let detail = paws::decode::rst(&rec).ok_or(DecodeError::BadField {
                kind,
                field: "verdict",
                value: rec.verdict,
            })?;
            set_header(ev, &rec.header, kind, &rec.flow, Detail::Rst(detail));
            ev.packet.extend_from_slice(rec.packet.bytes());
        }
    }
    Ok(())
}

/// Name of an errno value ("EADDRNOTAVAIL"), or its number.
pub fn errno_name(errno: i32) -> String {
    if errno == 0 {
        return "OK".into();
    }
    let e = nix::errno::Errno::from_raw(errno);
    if e == nix::errno::Errno::UnknownErrno {
        format!("errno {errno}")
    } else {
        format!("{e:?}")
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use tcptrace_common::paws::{PawsSite, RstVerdict, PAWS_RST, PAWS_TS_RECENT_UNKNOWN};

    use super::*;

    pub fn raw_latency(kind: EventKind, family: u16, errno: i32) -> Vec<u8> {
        let mut flow = Flow {
            family,
            sport: 40000,
            dport: 8080,
            ..Flow::default()
        };
        flow.saddr[..4].copy_from_slice(&[127, 0, 0, 1]);
        flow.daddr[..4].copy_from_slice(&[10, 1, 2, 3]);
        if family == AF_INET6 {
            flow.daddr = Ipv6Addr::LOCALHOST.octets();
            flow.saddr = Ipv6Addr::LOCALHOST.octets();
        }
        let mut comm = [0u8; 16];
        comm[..4].copy_from_slice(b"curl");
        let rec = LatencyEvent {
            header: EventHeader {
                kind: kind as u8,
                pid: 42,
                tid: 43,
                netns: 4026531840,
                ts_ns: 1_000_000_000,
                cgroup: 7,
                comm,
                ..EventHeader::default()
            },
            flow,
            latency_ns: 1500,
            errno,
            ports_probed: 7,
        };
        // SAFETY: LatencyEvent is repr(C) plain data.
        unsafe {
            std::slice::from_raw_parts(
                (&raw const rec).cast::<u8>(),
                std::mem::size_of::<LatencyEvent>(),
            )
        }
        .to_vec()
    }

    /// A handshake record: 127.0.0.1:40000 -> 10.1.2.3:8080 by curl.
    pub fn raw_handshake(outcome: u8, errno: i32, syn_retransmits: u32) -> Vec<u8> {
        raw_handshake_timed(outcome, errno, syn_retransmits, &[])
    }

    /// The same with SYN retransmission times (µs after the start).
    pub fn raw_handshake_timed(
        outcome: u8,
        errno: i32,
        syn_retransmits: u32,
        times_us: &[u32],
    ) -> Vec<u8> {
        let mut ev = decode(&raw_latency(EventKind::Connect, 2, 0)).unwrap();
        ev.kind = EventKind::Handshake;
        let mut flow = Flow {
            family: 2,
            sport: 40000,
            dport: 8080,
            ..Flow::default()
        };
        flow.saddr[..4].copy_from_slice(&[127, 0, 0, 1]);
        flow.daddr[..4].copy_from_slice(&[10, 1, 2, 3]);
        let mut comm = [0u8; 16];
        comm[..4].copy_from_slice(b"curl");
        let rec = HandshakeEvent {
            header: EventHeader {
                kind: EventKind::Handshake as u8,
                pid: ev.pid,
                tid: ev.tid,
                netns: ev.netns,
                ts_ns: ev.ts_ns,
                cgroup: ev.cgroup,
                comm,
                ..EventHeader::default()
            },
            flow,
            handshake_ns: 1_020_000_000,
            errno,
            syn_retransmits,
            outcome,
            syn_retransmits_timed: times_us.len() as u8,
            _pad: [0; 6],
            syn_retransmit_us: [0; tcptrace_common::SYN_RETRANSMITS_TIMED],
        };
        let mut rec = rec;
        rec.syn_retransmit_us[..times_us.len()].copy_from_slice(times_us);
        bytes_of(&rec)
    }

    #[test]
    fn handshake_decodes_and_reads_in_text_and_json() {
        use tcptrace_common::HandshakeOutcome;
        let ev = decode(&raw_handshake(HandshakeOutcome::TimedOut as u8, 110, 1)).unwrap();
        assert_eq!(ev.kind, EventKind::Handshake);
        let Detail::Handshake(d) = &ev.detail else {
            panic!("{ev:?}")
        };
        assert_eq!(d.outcome, HandshakeOutcome::TimedOut);
        assert_eq!(
            (d.errno, d.syn_retransmits, d.handshake_ns),
            (110, 1, 1_020_000_000)
        );
        let cols = ev.detail.family().text(&ev);
        assert_eq!(cols.result, "timeout ETIMEDOUT syn_rtx=1");
        assert!(cols.failed);
        let v = serde_json::to_value(json::EventJson::of(&ev, 0)).unwrap();
        assert_eq!(v["kind"], "handshake");
        assert_eq!(v["outcome"], "timeout");
        assert_eq!(v["handshake_ns"], 1_020_000_000u64);
        assert_eq!(v["syn_retransmits"], 1);
        assert_eq!(v["error"], "ETIMEDOUT");
        // No retransmission timed: no times field.
        assert!(v.get("syn_retransmit_us").is_none(), "{v}");
        // An outcome this tcptrace does not know is a decode error.
        assert!(decode(&raw_handshake(9, 0, 0)).is_err());
    }

    #[test]
    fn handshake_retransmit_times_read_in_text_and_json() {
        use tcptrace_common::HandshakeOutcome;
        let timed = |rtx, times: &[u32]| {
            decode(&raw_handshake_timed(
                HandshakeOutcome::Established as u8,
                0,
                rtx,
                times,
            ))
            .unwrap()
        };
        let ev = timed(2, &[1_003_512, 3_011_000]);
        let Detail::Handshake(d) = &ev.detail else {
            panic!("{ev:?}")
        };
        assert_eq!(d.syn_retransmit_us(), &[1_003_512, 3_011_000]);
        let cols = ev.detail.family().text(&ev);
        assert_eq!(cols.result, "established syn_rtx=2 at 1.004s,3.011s");
        assert!(!cols.failed);
        let v = serde_json::to_value(json::EventJson::of(&ev, 0)).unwrap();
        assert_eq!(v["syn_retransmits"], 2);
        assert_eq!(
            v["syn_retransmit_us"],
            serde_json::json!([1_003_512, 3_011_000])
        );
        // The JSON reads back (tcptrace diagnose --input).
        let back: json::EventJson<'_> = serde_json::from_value(v).unwrap();
        assert_eq!(
            back.syn_retransmit_us.as_deref(),
            Some(&[1_003_512, 3_011_000][..])
        );
        // More retransmissions than timed: the text says so.
        let all = [
            1_000_000, 3_000_000, 7_000_000, 15_000_000, 31_000_000, 63_000_000,
        ];
        let ev = timed(7, &all);
        let result = ev.detail.family().text(&ev).result;
        assert!(result.ends_with("31.000s,63.000s,..."), "{result}");
        let v = serde_json::to_value(json::EventJson::of(&ev, 0)).unwrap();
        assert_eq!(v["syn_retransmit_us"].as_array().map(Vec::len), Some(6));
    }

    #[test]
    fn handshake_records_before_the_times_decode_without_them() {
        use tcptrace_common::{event::HANDSHAKE_EVENT_V1_SIZE, HandshakeOutcome};
        // Their padding (where the count of times now is) was zero.
        let full = raw_handshake(HandshakeOutcome::TimedOut as u8, 110, 1);
        let ev = decode(&full[..HANDSHAKE_EVENT_V1_SIZE]).unwrap();
        let Detail::Handshake(d) = &ev.detail else {
            panic!("{ev:?}")
        };
        assert_eq!((d.syn_retransmits, d.syn_retransmit_us()), (1, &[][..]));
        let v = serde_json::to_value(json::EventJson::of(&ev, 0)).unwrap();
        assert!(v.get("syn_retransmit_us").is_none(), "{v}");
        // Shorter than that is still an error, not a panic.
        assert!(decode(&full[..HANDSHAKE_EVENT_V1_SIZE - 1]).is_err());
    }

    fn bytes_of<T>(rec: &T) -> Vec<u8> {
        // SAFETY: the records are repr(C) plain data.
        unsafe {
            std::slice::from_raw_parts((rec as *const T).cast::<u8>(), std::mem::size_of::<T>())
        }
        .to_vec()
    }

    fn packet_flow(peer: [u8; 4], peer_port: u16) -> Flow {
        let mut flow = Flow {
            family: 2,
            sport: 8080,
            dport: peer_port,
            ..Flow::default()
        };
        flow.saddr[..4].copy_from_slice(&[10, 0, 0, 1]);
        flow.daddr[..4].copy_from_slice(&peer);
        flow
    }

    pub fn raw_paws(
        site: PawsSite,
        peer: [u8; 4],
        tsval: u32,
        ts_recent: u32,
        flags: u8,
    ) -> Vec<u8> {
        bytes_of(&PawsEvent {
            header: EventHeader {
                kind: EventKind::PawsReject as u8,
                netns: 7,
                ts_ns: 5_000_000_000,
                ..EventHeader::default()
            },
            flow: packet_flow(peer, 40000),
            tsval,
            tsecr: 9,
            ts_recent,
            site: site as u8,
            state: 6,
            flags,
            _pad: 0,
            packet: Packet::default(),
        })
    }

    pub fn raw_rst(verdict: RstVerdict, seq: u32) -> Vec<u8> {
        raw_rst_flags(verdict, seq, 0)
    }

    /// An RstEvent with `RST_*` flags `flags`.
    pub fn raw_rst_flags(verdict: RstVerdict, seq: u32, flags: u8) -> Vec<u8> {
        bytes_of(&RstEvent {
            header: EventHeader {
                kind: EventKind::Rst as u8,
                netns: 7,
                ts_ns: 5_000_000_000,
                ..EventHeader::default()
            },
            flow: packet_flow([10, 0, 0, 3], 40001),
            seq,
            rcv_nxt: 1000,
            rcv_wup: 900,
            rcv_wnd: 500,
            verdict: verdict as u8,
            state: 1,
            flags,
            _pad: [0; 5],
            packet: Packet::default(),
        })
    }

    #[test]
    fn decodes_paws_and_rst() {
        let ev = decode(&raw_paws(
            PawsSite::TimeWait,
            [10, 0, 0, 3],
            100,
            5000,
            PAWS_RST,
        ))
        .unwrap();
        assert_eq!(ev.kind, EventKind::PawsReject);
        assert_eq!(ev.endpoints.daddr, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 3)));
        assert_eq!(
            ev.detail,
            Detail::PawsReject(PawsDetail {
                site: PawsSite::TimeWait,
                state: 6,
                tsval: 100,
                tsecr: 9,
                ts_recent: Some(5000),
                old_ack: false,
                rst: true,
                socket_unread: false,
            })
        );
        let unknown = decode(&raw_paws(
            PawsSite::SynRecv,
            [10, 0, 0, 3],
            1,
            0,
            PAWS_TS_RECENT_UNKNOWN,
        ))
        .unwrap();
        assert!(matches!(
            unknown.detail,
            Detail::PawsReject(PawsDetail {
                ts_recent: None,
                ..
            })
        ));
        let ev = decode(&raw_rst(RstVerdict::ChallengeAck, 1100)).unwrap();
        let Detail::Rst(r) = ev.detail else {
            panic!("not an rst: {ev:?}")
        };
        assert_eq!(
            (r.verdict, r.seq, r.rcv_nxt),
            (RstVerdict::ChallengeAck, 1100, 1000)
        );
        let mut bad = raw_rst(RstVerdict::Accepted, 0);
        bad[std::mem::size_of::<EventHeader>() + 40 + 16] = 9;
        assert!(matches!(
            decode(&bad),
            Err(DecodeError::BadField {
                field: "verdict",
                ..
            })
        ));
    }

    #[test]
    fn decodes_port_search_v4() {
        let ev = decode(&raw_latency(EventKind::PortSearch, 2, 99)).unwrap();
        assert_eq!(ev.kind, EventKind::PortSearch);
        assert_eq!((ev.pid, ev.tid, ev.comm.as_str()), (42, 43, "curl"));
        assert_eq!(ev.endpoints.daddr, IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)));
        assert_eq!((ev.endpoints.sport, ev.endpoints.dport), (40000, 8080));
        assert_eq!(
            ev.detail,
            Detail::PortSearch(PortSearchDetail {
                latency_ns: 1500,
                errno: 99,
                ports_probed: 7
            })
        );
    }

    #[test]
    fn decodes_connect_v6() {
        let ev = decode(&raw_latency(EventKind::Connect, AF_INET6, 0)).unwrap();
        assert_eq!(ev.endpoints.daddr, IpAddr::V6(Ipv6Addr::LOCALHOST));
        assert_eq!(
            ev.detail,
            Detail::Connect(ConnectDetail {
                latency_ns: 1500,
                errno: 0
            })
        );
    }

    #[test]
    fn rejects_bad_records() {
        assert_eq!(decode(&[]), Err(DecodeError::Empty));
        assert_eq!(decode(&[9, 0, 0]), Err(DecodeError::UnknownKind(9)));
        let raw = raw_latency(EventKind::Connect, 2, 0);
        assert_eq!(
            decode(&raw[..50]),
            Err(DecodeError::Short {
                kind: EventKind::Connect,
                len: 50,
                want: 104
            })
        );
    }

    #[test]
    fn errno_names() {
        assert_eq!(errno_name(0), "OK");
        assert_eq!(errno_name(99), "EADDRNOTAVAIL");
        assert_eq!(errno_name(111), "ECONNREFUSED");
        assert_eq!(errno_name(100000), "errno 100000");
    }
}
