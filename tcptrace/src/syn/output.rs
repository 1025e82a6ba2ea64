//! How SYN-family events read: their JSON fields and the RESULT column of
//! the live view.

use tcptrace_common::{syn::SynDropCause, EventKind};

use super::decode::{Outcome, SynDetail};
use crate::{
    event::{json::EventJson, Event},
    hist::fmt_ns,
};

/// Fields of SYN-family events in JSON (beside the common ones).
pub fn json_fields(kind: EventKind, d: &SynDetail, v: &mut EventJson<'_>) {
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
            v.outcome = Some(Outcome::of(d.abort_on_overflow));
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
pub fn human_result(ev: &Event, d: &SynDetail) -> String {
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
