//! Verdicts of the SYN family's hooks: on an accept queue full at the SYN
//! (`syn_drop`, `listen_overflow`, `listen_owner`), at a third ACK
//! (`listen_overflow` on a ghost connection, `synack_retrans`), and on a
//! full SYN queue (`syn_drop`).

use tcptrace_common::{event::EventKind, syn::SynDropCause};
use tcptrace_lab::repro::{accept_queue, syn_queue};

use super::InNs;
use crate::{
    event::{Detail, Event},
    selftest::verdict::Verdict,
    syn::decode::Owner,
};

/// `syn_drop` and `listen_overflow`: together one event per ListenOverflows;
/// `syn_drop`'s all at the full accept queue.
pub(super) fn accept_queue_verdict(
    hook: &str,
    a: &accept_queue::FullAtSyn,
    ns: &InNs<'_>,
    attached: &dyn Fn(&str) -> bool,
) -> Verdict {
    let drops = ns.kind(EventKind::SynDrop);
    let overflows = ns.kind(EventKind::ListenOverflow);
    if a.listen_overflows == 0 {
        return Verdict::Error(
            "the reproduction did not fill the accept queue (ListenOverflows +0)".into(),
        );
    }
    let sum = (drops.len() + overflows.len()) as u64;
    let what = format!(
        "{} SYN drops + {} third-ACK overflows, ListenOverflows +{}",
        drops.len(),
        overflows.len(),
        a.listen_overflows
    );
    let causes_right = drops.iter().all(
        |e| matches!(&e.detail, Detail::Syn(d) if d.cause == Some(SynDropCause::AcceptQueueFull)),
    );
    match hook {
        _ if sum == a.listen_overflows && causes_right => Verdict::Exact(what),
        "syn_drop" if !attached("listen_overflow") && sum <= a.listen_overflows && causes_right => {
            Verdict::Partial(format!(
                "{what}: third-ACK overflows need the listen_overflow hook"
            ))
        }
        "listen_overflow" if !attached("syn_drop") && sum <= a.listen_overflows => {
            Verdict::Partial(format!("{what}: SYN drops need the syn_drop hook"))
        }
        _ => Verdict::Missed(what),
    }
}

/// `listen_owner`: each of the SYN family's `events` (the reproductions'
/// listeners') names this process as the one that called listen().
pub(super) fn owner_verdict(events: &[&Event]) -> Verdict {
    let pid = std::process::id();
    let owned = events
        .iter()
        .filter(|e| {
            matches!(&e.detail, Detail::Syn(d) if d.owner == Some(Owner::Listen)) && e.pid == pid
        })
        .count();
    let what = format!(
        "{owned} of {} events name this process as the listener's owner",
        events.len()
    );
    if events.is_empty() {
        Verdict::Partial(format!("{what}: no SYN-family event to check"))
    } else if owned == events.len() {
        Verdict::Exact(what)
    } else {
        Verdict::Missed(what)
    }
}

/// What the third-ACK reproduction injected and the server namespace
/// counted.
pub struct GhostInjected {
    pub netns: u64,
    /// The peer's port whose third ACK overflowed (the events' `dport`).
    pub ghost_port: u16,
    /// ListenOverflows: the third ACK and the re-ACK of the resent SYN-ACK.
    pub listen_overflows: u64,
    /// TCPSynRetrans, and the resent SYN-ACKs the peer got.
    pub synack_retrans: u64,
    pub resent: u64,
}

impl GhostInjected {
    pub fn of(r: &syn_queue::ThirdAck) -> Self {
        Self {
            netns: r.server_netns,
            ghost_port: r.ghost_port,
            listen_overflows: r.after.since(&r.before, "ListenOverflows"),
            synack_retrans: r.after.since(&r.before, "TCPSynRetrans"),
            resent: r.resent,
        }
    }
}

/// The events of `kind` for the ghost's port; all, for the count.
fn ghost_events<'e>(g: &GhostInjected, ns: &InNs<'e>, kind: EventKind) -> (usize, Vec<&'e Event>) {
    let all = ns.kind(kind);
    let ghost = all
        .iter()
        .copied()
        .filter(|e| e.endpoints.dport == g.ghost_port)
        .collect();
    (all.len(), ghost)
}

/// `listen_overflow` on a ghost: one event per ListenOverflows, each for
/// the ghost's port with tcp_abort_on_overflow off (outcome ghost).
pub(super) fn ghost_overflow_verdict(g: &GhostInjected, ns: &InNs<'_>) -> Verdict {
    let (all, ghost) = ghost_events(g, ns, EventKind::ListenOverflow);
    let kept = ghost
        .iter()
        .filter(|e| matches!(&e.detail, Detail::Syn(d) if d.abort_on_overflow == 0))
        .count();
    let what = format!(
        "{all} third-ACK overflows ({kept} of a ghost connection) of a third ACK and its re-ACK, ListenOverflows +{}",
        g.listen_overflows
    );
    if g.listen_overflows == 0 {
        Verdict::Error(format!("the third ACK did not overflow: {what}"))
    } else if all as u64 == g.listen_overflows && kept == all {
        Verdict::Exact(what)
    } else {
        Verdict::Missed(what)
    }
}

/// `synack_retrans`: one event per TCPSynRetrans, each for the ghost's
/// port, as many as the peer got, and each known to follow its overflow
/// where `listen_overflow` is attached (it is what sees the overflow;
/// without it, partial).
pub(super) fn synack_retrans_verdict(
    g: &GhostInjected,
    ns: &InNs<'_>,
    attached: &dyn Fn(&str) -> bool,
) -> Verdict {
    let (all, ghost) = ghost_events(g, ns, EventKind::SynackRetransmit);
    let after = ghost
        .iter()
        .filter(|e| matches!(&e.detail, Detail::Syn(d) if d.after_overflow))
        .count();
    let what = format!(
        "{all} SYN-ACK retransmits ({after} to the ghost after its overflow), TCPSynRetrans +{}, {} resent SYN-ACKs seen by the peer",
        g.synack_retrans, g.resent
    );
    let counted =
        all as u64 == g.synack_retrans && ghost.len() == all && g.resent == g.synack_retrans;
    if g.synack_retrans == 0 {
        Verdict::Error(format!("no SYN-ACK was resent: {what}"))
    } else if counted && after == all {
        Verdict::Exact(what)
    } else if counted && !attached("listen_overflow") {
        Verdict::Partial(format!(
            "{what}: which follow an overflow needs the listen_overflow hook"
        ))
    } else {
        Verdict::Missed(what)
    }
}

/// What the SYN-burst reproduction injected and the server namespace
/// counted.
pub struct SynQueueInjected {
    pub netns: u64,
    pub syns: u16,
    pub answered: u64,
    /// TCPReqQFullDrop: SYNs dropped at the full SYN queue.
    pub full_drops: u64,
}

impl SynQueueInjected {
    pub fn of(r: &syn_queue::SynBurst) -> Self {
        Self {
            netns: r.server_netns,
            syns: r.syns,
            answered: r.answered,
            full_drops: r.after.since(&r.before, "TCPReqQFullDrop"),
        }
    }
}

/// `syn_drop` on a full SYN queue (syncookies off): one event per
/// TCPReqQFullDrop, each with that cause.
pub(super) fn syn_queue_verdict(q: &SynQueueInjected, ns: &InNs<'_>) -> Verdict {
    let drops = ns.kind(EventKind::SynDrop);
    let full = drops
        .iter()
        .filter(
            |e| matches!(&e.detail, Detail::Syn(d) if d.cause == Some(SynDropCause::SynQueueFull)),
        )
        .count();
    let what = format!(
        "{} SYN drops ({full} at the full SYN queue) of {} SYNs, {} answered, TCPReqQFullDrop +{}",
        drops.len(),
        q.syns,
        q.answered,
        q.full_drops
    );
    if q.full_drops == 0 {
        Verdict::Error(format!("the SYN queue did not fill: {what}"))
    } else if full as u64 == q.full_drops && drops.len() == full {
        Verdict::Exact(what)
    } else {
        Verdict::Missed(what)
    }
}

#[cfg(test)]
mod tests {
    use tcptrace_common::syn::flags;

    use super::*;
    use crate::{event::decode, syn::tests::raw_syn};

    const NS: u64 = 4026532000;

    fn syn_event(kind: EventKind, cause: u8, fl: u8, dport: u16) -> Event {
        let mut ev = decode(&raw_syn(kind, cause, fl)).unwrap();
        ev.endpoints.dport = dport;
        ev
    }

    fn ghost() -> GhostInjected {
        GhostInjected {
            netns: NS,
            ghost_port: 41005,
            listen_overflows: 2,
            synack_retrans: 1,
            resent: 1,
        }
    }

    #[test]
    fn a_ghost_is_exact_with_each_overflow_and_each_resent_synack() {
        let g = ghost();
        let overflow = || syn_event(EventKind::ListenOverflow, 0, 0, 41005);
        let rtx = syn_event(EventKind::SynackRetransmit, 0, flags::AFTER_OVERFLOW, 41005);
        let all = vec![overflow(), overflow(), rtx.clone()];
        let ns = InNs::of(&all, NS);
        assert!(matches!(ghost_overflow_verdict(&g, &ns), Verdict::Exact(_)));
        let every = |_: &str| true;
        let no_overflow_hook = |h: &str| h != "listen_overflow";
        assert!(matches!(
            synack_retrans_verdict(&g, &ns, &every),
            Verdict::Exact(_)
        ));
        // The re-ACK's overflow missing; a retransmit not known to follow
        // the overflow; one for another port.
        let fewer = vec![overflow(), rtx];
        let v = ghost_overflow_verdict(&g, &InNs::of(&fewer, NS));
        assert!(matches!(v, Verdict::Missed(_)), "{v:?}");
        let unlinked = vec![syn_event(EventKind::SynackRetransmit, 0, 0, 41005)];
        let v = synack_retrans_verdict(&g, &InNs::of(&unlinked, NS), &every);
        assert!(matches!(v, Verdict::Missed(_)), "{v:?}");
        // Without the hook that sees the overflow, no link is expected.
        let v = synack_retrans_verdict(&g, &InNs::of(&unlinked, NS), &no_overflow_hook);
        assert!(matches!(v, Verdict::Partial(_)), "{v:?}");
        let elsewhere = vec![syn_event(
            EventKind::SynackRetransmit,
            0,
            flags::AFTER_OVERFLOW,
            41006,
        )];
        let v = synack_retrans_verdict(&g, &InNs::of(&elsewhere, NS), &no_overflow_hook);
        assert!(matches!(v, Verdict::Missed(_)), "{v:?}");
        // Nothing resent: the reproduction failed, not the hook.
        let quiet = GhostInjected {
            synack_retrans: 0,
            resent: 0,
            ..ghost()
        };
        let v = synack_retrans_verdict(&quiet, &InNs::of(&[], NS), &every);
        assert!(matches!(v, Verdict::Error(_)), "{v:?}");
    }

    #[test]
    fn a_full_syn_queue_is_exact_with_one_drop_of_that_cause_per_counted_drop() {
        let q = SynQueueInjected {
            netns: NS,
            syns: 12,
            answered: 9,
            full_drops: 3,
        };
        let full = || {
            syn_event(
                EventKind::SynDrop,
                SynDropCause::SynQueueFull as u8,
                0,
                42010,
            )
        };
        let all = vec![full(), full(), full()];
        assert!(matches!(
            syn_queue_verdict(&q, &InNs::of(&all, NS)),
            Verdict::Exact(_)
        ));
        let other = syn_event(EventKind::SynDrop, SynDropCause::Other as u8, 0, 42011);
        let wrong = vec![full(), full(), other];
        let v = syn_queue_verdict(&q, &InNs::of(&wrong, NS));
        assert!(matches!(v, Verdict::Missed(_)), "{v:?}");
    }

    #[test]
    fn owners_are_exact_only_when_every_event_names_this_process() {
        let mut mine = syn_event(EventKind::SynDrop, 1, flags::OWNER_KNOWN, 40000);
        mine.pid = std::process::id();
        let theirs = syn_event(EventKind::SynDrop, 1, flags::OWNER_KNOWN, 40001);
        assert!(matches!(owner_verdict(&[&mine]), Verdict::Exact(_)));
        assert!(matches!(
            owner_verdict(&[&mine, &theirs]),
            Verdict::Missed(_)
        ));
        assert!(matches!(owner_verdict(&[]), Verdict::Partial(_)));
    }
}
