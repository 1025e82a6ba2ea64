//! Decoding ring-buffer records into [`Event`], the one type every sink reads;
//! [`json`] is its documented JSON form.

pub mod json;

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use tcptrace_common::{
    event::AF_INET6,
    packet::Packet,
    paws::{
        PawsEvent, PawsSite, RstEvent, RstVerdict, PAWS_OLD_ACK, PAWS_RST, PAWS_TS_RECENT_UNKNOWN,
        RST_SEQ_INFERRED,
    },
    syn::SynEvent,
    EventHeader, EventKind, Flow, LatencyEvent,
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

/// What happened, per event kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Detail {
    Connect {
        latency_ns: u64,
        errno: i32,
    },
    PortSearch {
        latency_ns: u64,
        errno: i32,
        ports_probed: u32,
    },
    /// syn_drop, listen_overflow, synack_retransmit.
    Syn(crate::syn::SynDetail),
    PawsReject(PawsDetail),
    Rst(RstDetail),
}

/// A segment that failed the PAWS check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PawsDetail {
    pub site: PawsSite,
    /// TCP state of the socket.
    pub state: u8,
    pub tsval: u32,
    pub tsecr: u32,
    /// `None` where the kernel path does not expose it.
    pub ts_recent: Option<u32>,
    /// An old pure ACK (PAWSOldAck on 6.18+).
    pub old_ack: bool,
    pub rst: bool,
}

/// An RST received on a synchronized socket and what the kernel did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RstDetail {
    pub verdict: RstVerdict,
    pub state: u8,
    pub seq: u32,
    /// `seq` was not seen and is reported as `rcv_nxt`.
    pub seq_inferred: bool,
    pub rcv_nxt: u32,
    pub rcv_wup: u32,
    pub rcv_wnd: u32,
}

impl RstDetail {
    /// How far `seq` lies outside the receive window `[rcv_wup, rcv_wup +
    /// rcv_wnd]`: negative below it, positive above it, 0 inside.
    pub fn window_distance(&self) -> i64 {
        let below = self.seq.wrapping_sub(self.rcv_wup) as i32;
        if below < 0 {
            return i64::from(below);
        }
        let right = self.rcv_wup.wrapping_add(self.rcv_wnd);
        let above = self.seq.wrapping_sub(right) as i32;
        i64::from(above.max(0))
    }
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
}

impl Event {
    /// The errno of a failed call; 0 for events without one.
    pub fn errno(&self) -> i32 {
        match self.detail {
            Detail::Connect { errno, .. } | Detail::PortSearch { errno, .. } => errno,
            Detail::Syn(_) | Detail::PawsReject(_) | Detail::Rst(_) => 0,
        }
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

fn comm(raw: &[u8; 16]) -> String {
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    String::from_utf8_lossy(&raw[..end]).into_owned()
}

fn with_header(h: &EventHeader, kind: EventKind, flow: &Flow, detail: Detail) -> Event {
    Event {
        kind,
        ts_ns: h.ts_ns,
        pid: h.pid,
        tid: h.tid,
        netns: h.netns,
        cgroup: h.cgroup,
        comm: comm(&h.comm),
        endpoints: Endpoints::from(flow),
        detail,
        packet: Vec::new(),
    }
}

/// A record that ends in a [`Packet`]: records written before packets were
/// captured (that much shorter) decode with an empty packet.
fn read_packet_record<T: Copy + Default>(kind: EventKind, bytes: &[u8]) -> Result<T, DecodeError> {
    let want = std::mem::size_of::<T>();
    let without = want - std::mem::size_of::<Packet>();
    if bytes.len() >= want || bytes.len() < without {
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

fn with_packet(mut ev: Event, packet: &Packet) -> Event {
    ev.packet = packet.bytes().to_vec();
    ev
}

/// Decodes one ring-buffer record.
pub fn decode(bytes: &[u8]) -> Result<Event, DecodeError> {
    let first = *bytes.first().ok_or(DecodeError::Empty)?;
    let kind = EventKind::from_u8(first).ok_or(DecodeError::UnknownKind(first))?;
    let latency = |bytes: &[u8]| read_record::<LatencyEvent>(kind, bytes);
    match kind {
        EventKind::Connect => {
            let rec = latency(bytes)?;
            let detail = Detail::Connect {
                latency_ns: rec.latency_ns,
                errno: rec.errno,
            };
            Ok(with_header(&rec.header, kind, &rec.flow, detail))
        }
        EventKind::PortSearch => {
            let rec = latency(bytes)?;
            let detail = Detail::PortSearch {
                latency_ns: rec.latency_ns,
                errno: rec.errno,
                ports_probed: rec.ports_probed,
            };
            Ok(with_header(&rec.header, kind, &rec.flow, detail))
        }
        EventKind::SynDrop | EventKind::ListenOverflow | EventKind::SynackRetransmit => {
            let rec: SynEvent = read_packet_record(kind, bytes)?;
            let detail = Detail::Syn(crate::syn::detail(&rec));
            Ok(with_packet(
                with_header(&rec.header, kind, &rec.flow, detail),
                &rec.packet,
            ))
        }
        EventKind::PawsReject => {
            let rec: PawsEvent = read_packet_record(kind, bytes)?;
            let site = PawsSite::from_u8(rec.site).ok_or(DecodeError::BadField {
                kind,
                field: "site",
                value: rec.site,
            })?;
            let detail = Detail::PawsReject(PawsDetail {
                site,
                state: rec.state,
                tsval: rec.tsval,
                tsecr: rec.tsecr,
                ts_recent: (rec.flags & PAWS_TS_RECENT_UNKNOWN == 0).then_some(rec.ts_recent),
                old_ack: rec.flags & PAWS_OLD_ACK != 0,
                rst: rec.flags & PAWS_RST != 0,
            });
            Ok(with_packet(
                with_header(&rec.header, kind, &rec.flow, detail),
                &rec.packet,
            ))
        }
        EventKind::Rst => {
            let rec: RstEvent = read_packet_record(kind, bytes)?;
            let verdict = RstVerdict::from_u8(rec.verdict).ok_or(DecodeError::BadField {
                kind,
                field: "verdict",
                value: rec.verdict,
            })?;
            let detail = Detail::Rst(RstDetail {
                verdict,
                state: rec.state,
                seq: rec.seq,
                seq_inferred: rec.flags & RST_SEQ_INFERRED != 0,
                rcv_nxt: rec.rcv_nxt,
                rcv_wup: rec.rcv_wup,
                rcv_wnd: rec.rcv_wnd,
            });
            Ok(with_packet(
                with_header(&rec.header, kind, &rec.flow, detail),
                &rec.packet,
            ))
        }
    }
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
            flags: 0,
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
    fn window_distance() {
        let d = |seq| {
            let Detail::Rst(r) = decode(&raw_rst(RstVerdict::Ignored, seq)).unwrap().detail else {
                unreachable!()
            };
            r.window_distance()
        };
        // Window [900, 1400].
        assert_eq!(d(900), 0);
        assert_eq!(d(1400), 0);
        assert_eq!(d(899), -1);
        assert_eq!(d(1500), 100);
        assert_eq!(d(0u32.wrapping_sub(100)), -1000);
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
            Detail::PortSearch {
                latency_ns: 1500,
                errno: 99,
                ports_probed: 7
            }
        );
    }

    #[test]
    fn decodes_connect_v6() {
        let ev = decode(&raw_latency(EventKind::Connect, AF_INET6, 0)).unwrap();
        assert_eq!(ev.endpoints.daddr, IpAddr::V6(Ipv6Addr::LOCALHOST));
        assert_eq!(
            ev.detail,
            Detail::Connect {
                latency_ns: 1500,
                errno: 0
            }
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
