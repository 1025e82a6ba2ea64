//! How SYN-family events read: the RESULT column of the live view, their
//! JSON fields and the pcapng comment on their packet.

use tcptrace_common::{syn::SynDropCause, EventKind};

use super::decode::{Outcome, SynDetail};
use crate::{
    event::{json::EventJson, Columns, Event, Family},
    hist::fmt_ns,
};

impl Family for SynDetail {
    /// The SYN or third ACK behind a drop or an overflow; a SYN-ACK
    /// retransmit has none.
    fn carries_packet(&self, kind: EventKind) -> bool {
        matches!(kind, EventKind::SynDrop | EventKind::ListenOverflow)
    }

    fn text(&self, ev: &Event) -> Columns {
        Columns {
            latency_ns: None,
            result: human_result(ev, self),
            failed: matches!(ev.kind, EventKind::SynDrop | EventKind::ListenOverflow),
        }
    }

    fn json(&self, ev: &Event, v: &mut EventJson<'_>) {
        json_fields(ev.kind, self, v);
    }

    fn pcap_comment(&self, ev: &Event, local: &str, peer: &str) -> Option<String> {
        let d = self;
        Some(match ev.kind {
            EventKind::SynDrop => {
                let why = match d.cause {
                    Some(SynDropCause::AcceptQueueFull) => {
                        format!("accept queue full ({}/{})", d.backlog, d.backlog_max)
                    }
                    Some(SynDropCause::SynQueueFull) => format!(
                        "SYN queue full ({}/{}, syncookies off)",
                        d.syn_queue, d.backlog_max
                    ),
                    _ if d.last_quarter => format!(
                        "last quarter of tcp_max_syn_backlog in use ({}/{}), peer unproven",
                        d.syn_queue, d.max_syn_backlog
                    ),
                    _ => "no SYN-ACK sent (route, memory or LSM failure)".to_owned(),
                };
                format!("SYN dropped: {why} on {local} from {peer}")
            }
            _ => {
                let outcome = if d.abort_on_overflow != 0 {
                    "answered with RST (tcp_abort_on_overflow=1)"
                } else {
                    "request kept, client thinks it is connected (tcp_abort_on_overflow=0)"
                };
                format!(
                    "dropped: accept queue full ({}/{}) on {local}, third ACK from {peer}; \
                     {outcome}",
                    d.backlog, d.backlog_max
                )
            }
        })
    }
}

/// Fields of SYN-family events in JSON (beside the common ones).
fn json_fields(kind: EventKind, d: &SynDetail, v: &mut EventJson<'_>) {
    v.listen_addr = Some(d.listen_addr);
    v.backlog = Some(d.backlog);
    v.backlog_max = Some(d.backlog_max);
    v.syn_queue = Some(d.syn_queue);
    v.syncookies = Some(d.syncookies);
    v.owner = Some(d.owner);
    match kind {
        EventKind::SynDrop => {
            v.cause = Some(d.cause.unwrap_or(SynDropCause::Other));
            v.max_syn_backlog = Some(d.max_syn_backlog);
            v.last_quarter = Some(d.last_quarter);
        }
        EventKind::ListenOverflow => {
            v.abort_on_overflow = Some(d.abort_on_overflow);
            v.outcome = Some(Outcome::of(d.abort_on_overflow).into());
        }
        _ => {
            v.retransmit = Some(d.retransmit);
            v.after_overflow = Some(d.after_overflow);
            if d.after_overflow {
                v.since_overflow_ns = Some(d.since_overflow_ns);
            }
        }
    }
}

/// The RESULT column of the live view.
fn human_result(ev: &Event, d: &SynDetail) -> String {
    let queues = format!(
        "backlog={}/{} synq={}",
        d.backlog, d.backlog_max, d.syn_queue
    );
    match ev.kind.name() {
        "syn_drop" => format!(
            "{} {queues} cookies={}{}",
            d.cause.map(SynDropCause::name).unwrap_or("other"),
            d.syncookies,
            if d.last_quarter { " last_quarter" } else { "" }
        ),
        "listen_overflow" => format!(
            "{} {queues} abort_on_overflow={}",
            Outcome::of(d.abort_on_overflow).name(),
            d.abort_on_overflow
        ),
        _ if d.after_overflow => format!(
            "#{} after_overflow {} ago",
            d.retransmit,
            fmt_ns(d.since_overflow_ns)
        ),
        _ => format!("#{}", d.retransmit),
    }
}
