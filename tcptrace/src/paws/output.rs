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
        v.state = state(p.state);
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
        let verdict = r.verdict.name();
        let inferred = if r.seq_inferred { "?" } else { "" };
        let result = match r.window_distance() {
            Some(dist) => format!(
                "rst {verdict} seq={}{inferred} rcv_nxt={} wnd={} dist={dist}",
                r.seq, r.rcv_nxt, r.rcv_wnd
            ),
            None => format!(
                "rst {verdict} seq={}{inferred} window=? side={}",
                r.seq,
                r.window_side().map_or("?", side_name)
            ),
        };
        Columns {
            latency_ns: None,
            result,
            failed: r.verdict != RstVerdict::Accepted,
        }
    }

    fn json(&self, _ev: &Event, v: &mut EventJson<'_>) {
        let r = self;
        v.verdict = Some(r.verdict);
        v.state = state(r.state);
        v.seq = Some(r.seq);
        v.seq_inferred = Some(r.seq_inferred);
        if !r.socket_unread {
            v.rcv_nxt = Some(r.rcv_nxt);
            v.rcv_wup = Some(r.rcv_wup);
            v.rcv_wnd = Some(r.rcv_wnd);
        }
        v.window_distance = r.window_distance();
        v.window_side = r.window_side().map(|side| Cow::Borrowed(side_name(side)));
    }

    fn pcap_comment(&self, _ev: &Event, _local: &str, _peer: &str) -> Option<String> {
        let r = self;
        Some(match (r.verdict, r.window_distance()) {
            (RstVerdict::Accepted, _) => {
                format!("RST accepted: seq {} = rcv_nxt, connection reset", r.seq)
            }
            (RstVerdict::ChallengeAck, Some(_)) => format!(
                "RST answered with challenge ACK: seq {} in window but rcv_nxt is {}",
                r.seq, r.rcv_nxt
            ),
            (RstVerdict::ChallengeAck, None) => format!(
                "RST answered with challenge ACK: seq {} in window but not rcv_nxt",
                r.seq
            ),
            (RstVerdict::Ignored, Some(dist)) => {
                format!("RST ignored: seq {} outside window by {dist}", r.seq)
            }
            (RstVerdict::Ignored, None) => format!(
                "RST ignored: seq {} {} the window",
                r.seq,
                r.window_side().map_or("outside", side_name)
            ),
        })
    }
}

/// A state's JSON name; none where the socket was not read (0).
fn state(s: u8) -> Option<Cow<'static, str>> {
    (s != 0).then(|| Cow::Borrowed(tcp_state::name(s)))
}

/// The name of a side of the window (`RstDetail::window_side`).
fn side_name(side: i64) -> &'static str {
    match side {
        ..0 => "below",
        1.. => "beyond",
        0 => "inside",
    }
}

#[cfg(test)]
mod tests {
    use tcptrace_common::paws::{RstVerdict, RST_BELOW_WINDOW, SOCKET_UNREAD};

    use crate::event::{decode, tests::raw_rst_flags};

    /// An RST read from its segment alone says what is not known.
    #[test]
    fn unread_rst_reads_as_unknown() {
        let line = |verdict, flags| {
            let ev = decode(&raw_rst_flags(verdict, 1500, flags)).unwrap();
            let family = ev.detail.family();
            (
                family.text(&ev).result,
                family.pcap_comment(&ev, "", "").unwrap(),
            )
        };
        assert_eq!(
            line(RstVerdict::Ignored, 0),
            (
                "rst ignored seq=1500 rcv_nxt=1000 wnd=500 dist=100".into(),
                "RST ignored: seq 1500 outside window by 100".into()
            )
        );
        assert_eq!(
            line(RstVerdict::Ignored, SOCKET_UNREAD | RST_BELOW_WINDOW),
            (
                "rst ignored seq=1500 window=? side=below".into(),
                "RST ignored: seq 1500 below the window".into()
            )
        );
        assert_eq!(
            line(RstVerdict::Ignored, SOCKET_UNREAD),
            (
                "rst ignored seq=1500 window=? side=?".into(),
                "RST ignored: seq 1500 outside the window".into()
            )
        );
        assert_eq!(
            line(RstVerdict::ChallengeAck, SOCKET_UNREAD).1,
            "RST answered with challenge ACK: seq 1500 in window but not rcv_nxt"
        );
    }
}
