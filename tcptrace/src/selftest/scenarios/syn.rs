//! Verdicts of the SYN family's hooks on an accept queue full at the SYN
//! (`syn_drop`, `listen_overflow`, `listen_owner`).

use tcptrace_common::{event::EventKind, syn::SynDropCause};
use tcptrace_lab::repro::accept_queue;

use super::InNs;
use crate::{event::Detail, selftest::verdict::Verdict, syn::decode::Owner};

/// `syn_drop` and `listen_overflow`: together one event per ListenOverflows;
/// `syn_drop`'s all at the full accept queue; `listen_owner`: each names
/// this process as the one that called listen().
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
        "listen_owner" => {
            let pid = std::process::id();
            let owned = drops
                .iter()
                .chain(overflows)
                .filter(|e| {
                    matches!(&e.detail, Detail::Syn(d) if d.owner == Some(Owner::Listen))
                        && e.pid == pid
                })
                .count();
            let what = format!("{owned} of {sum} events name this process as the listener's owner");
            if sum == 0 {
                Verdict::Partial(format!("{what}: no SYN-family event to check"))
            } else if owned as u64 == sum {
                Verdict::Exact(what)
            } else {
                Verdict::Missed(what)
            }
        }
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
