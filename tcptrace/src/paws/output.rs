//! How PAWS rejects and received RSTs read: the RESULT column of the live
//! view, their JSON fields and the pcapng comment on their packet.

use std::{borrow::Cow, fmt::Write as _};

use tcptrace_common::{
    paws::{tcp_state, PawsSite, RstVerdict},
    EventKind,
};

use super::decode::{PawsDetail, RstDetail};
use crate::event::{json::EventJson, Columns, Event, Family};

impl Family for PawsDetail {
    fn carries_packet(&self, _kind: EventKind) -> bool {
        true
    }

    fn text(&self, _ev: &Event) -> Columns {
        let p = self;
        let mut s = format!("paws {} tsval={}", p.site.name(), p.tsval);
        match p.ts_recent {
            Some(t) => {
                let _ = write!(
                    s,
                    " ts_recent={t} behind={}",
                    t.wrapping_sub(p.tsval) as i32
                );
            }
            None => s.push_str(" ts_recent=?"),
        }
        if p.site == PawsSite::SynSent {
            let _ = write!(s, " tsecr={}", p.tsecr);
        }
        if p.old_ack {
            s.push_str(" old_ack");
        }
        if p.rst {
            s.push_str(" rst");
        }
        Columns {
            latency_ns: None,
            result: s,
            failed: true,
        }
    }

    fn json(&self, _ev: &Event, v: &mut EventJson<'_>) {
        let p = self;
        v.site = Some(p.site);
        v.state = Some(Cow::Borrowed(tcp_state::name(p.state)));
        v.tsval = Some(p.tsval);
        v.tsecr = Some(p.tsecr);
        v.ts_recent = Some(p.ts_recent);
        v.old_ack = Some(p.old_ack);
        v.rst = Some(p.rst);
    }

    fn pcap_comment(&self, _ev: &Event, _local: &str, _peer: &str) -> Option<String> {
        let p = self;
        let site = p.site.name();
        let rst = if p.rst { ", RST" } else { "" };
        let old = if p.old_ack { ", old ACK" } else { "" };
        Some(match (p.site, p.ts_recent) {
            (PawsSite::SynSent, Some(sent)) => format!(
                "PAWS reject ({site}): TSecr {} not between our SYN's stamp {sent} and now",
                p.tsecr
            ),
            (_, Some(ts_recent)) => format!(
                "PAWS reject ({site}{rst}{old}): TSval {} < ts_recent {ts_recent}",
                p.tsval
            ),
            (_, None) => format!(
                "PAWS reject ({site}{rst}{old}): TSval {} older than ts_recent",
                p.tsval
            ),
        })
    }
}

impl Family for RstDetail {
    fn carries_packet(&self, _kind: EventKind) -> bool {
        true
    }

    fn text(&self, _ev: &Event) -> Columns {
        let r = self;
        Columns {
            latency_ns: None,
            result: format!(
                "rst {} seq={}{} rcv_nxt={} wnd={} dist={}",
                r.verdict.name(),
                r.seq,
                if r.seq_inferred { "?" } else { "" },
                r.rcv_nxt,
                r.rcv_wnd,
                r.window_distance()
            ),
            failed: r.verdict != RstVerdict::Accepted,
        }
    }

    fn json(&self, _ev: &Event, v: &mut EventJson<'_>) {
        let r = self;
        v.verdict = Some(r.verdict);
        v.state = Some(Cow::Borrowed(tcp_state::name(r.state)));
        v.seq = Some(r.seq);
        v.seq_inferred = Some(r.seq_inferred);
        v.rcv_nxt = Some(r.rcv_nxt);
        v.rcv_wup = Some(r.rcv_wup);
        v.rcv_wnd = Some(r.rcv_wnd);
        v.window_distance = Some(r.window_distance());
    }

    fn pcap_comment(&self, _ev: &Event, _local: &str, _peer: &str) -> Option<String> {
        let r = self;
        Some(match r.verdict {
            RstVerdict::Accepted => {
                format!("RST accepted: seq {} = rcv_nxt, connection reset", r.seq)
            }
            RstVerdict::ChallengeAck => format!(
                "RST answered with challenge ACK: seq {} in window but rcv_nxt is {}",
                r.seq, r.rcv_nxt
            ),
            RstVerdict::Ignored => format!(
                "RST ignored: seq {} outside window by {}",
                r.seq,
                r.window_distance()
            ),
        })
    }
}
