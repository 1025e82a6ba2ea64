//! The reproductions the selftest runs (from `tcptrace-lab`, the same the
//! scenario tests run) and, for each, the verdicts of the hooks it
//! exercises: their events in its namespace against what it injected and
//! the namespace's counters.

use std::collections::BTreeMap;

use anyhow::Result;
use tcptrace_common::{event::EventKind, syn::SynDropCause};
use tcptrace_lab::{
    netns::NetnsKeeper,
    repro::{accept_queue, handshake, ports},
};

use super::verdict::Verdict;
use crate::{
    event::{Detail, Event},
    syn::decode::Owner,
};

/// First port of the narrowed ephemeral range, and its size.
const PORTS_FIRST: u16 = 40000;
const PORTS_RANGE: u16 = 8;

/// What the reproductions did; each failed one keeps its error.
pub struct Runs {
    ports: Result<ports::Exhausted>,
    handshake: Result<handshake::SlowHandshake>,
    accept_queue: Result<accept_queue::FullAtSyn>,
    /// The namespaces, open until the events are in.
    _keep: Vec<NetnsKeeper>,
}

/// Runs every reproduction, one after the other (each in a namespace of
/// its own; about 4 s in all): at the same time, one's program runs could
/// preempt another's on a CPU, and kernels that run tracing programs
/// preemptible skip a program already running there.
pub fn run() -> Runs {
    let mut keep = Vec::new();
    let ports = kept(ports::exhaust(PORTS_FIRST, PORTS_RANGE), &mut keep);
    let handshake = kept(handshake::after_one_syn_retransmit(), &mut keep);
    let accept_queue = kept(accept_queue::full_at_syn(false), &mut keep);
    Runs {
        ports,
        handshake,
        accept_queue,
        _keep: keep,
    }
}

/// A reproduction's result, its namespace's keeper moved to `keep`.
fn kept<T>(r: Result<(T, NetnsKeeper)>, keep: &mut Vec<NetnsKeeper>) -> Result<T> {
    r.map(|(v, k)| {
        keep.push(k);
        v
    })
}

/// The events of one namespace, by kind.
struct InNs<'a>(BTreeMap<u8, Vec<&'a Event>>);

impl<'a> InNs<'a> {
    fn of(events: &'a [Event], netns: u64) -> Self {
        let mut m: BTreeMap<u8, Vec<&Event>> = BTreeMap::new();
        for e in events.iter().filter(|e| u64::from(e.netns) == netns) {
            m.entry(e.kind as u8).or_default().push(e);
        }
        Self(m)
    }

    fn kind(&self, k: EventKind) -> &[&'a Event] {
        self.0.get(&(k as u8)).map_or(&[], Vec::as_slice)
    }
}

fn error(e: &anyhow::Error) -> Verdict {
    Verdict::Error(format!("the reproduction failed: {e:#}"))
}

impl Runs {
    /// The verdict for `hook` (attached) from the events seen; `attached`
    /// says which other hooks attached, for those that depend on them.
    pub fn verdict(
        &self,
        hook: &str,
        events: &[Event],
        attached: &dyn Fn(&str) -> bool,
    ) -> Verdict {
        match hook {
            "connect" | "port_search" => match &self.ports {
                Ok(p) => ports_verdict(hook, p, &InNs::of(events, p.netns)),
                Err(e) => error(e),
            },
            "handshake" | "handshake_rtx" => match &self.handshake {
                Ok(h) => handshake_verdict(hook, h, &InNs::of(events, h.netns), attached),
                Err(e) => error(e),
            },
            "syn_drop" | "listen_overflow" | "listen_owner" => match &self.accept_queue {
                Ok(a) => accept_queue_verdict(hook, a, &InNs::of(events, a.netns), attached),
                Err(e) => error(e),
            },
            _ => Verdict::Unverified("no reproduction exercises this hook yet".into()),
        }
    }
}

/// `connect`: every call (range + 1) with the last EADDRNOTAVAIL;
/// `port_search`: one search per call, the last exhausted, the others
/// inside the range.
fn ports_verdict(hook: &str, p: &ports::Exhausted, ns: &InNs<'_>) -> Verdict {
    let calls = u64::from(p.held) + 1;
    let kind = if hook == "connect" {
        EventKind::Connect
    } else {
        EventKind::PortSearch
    };
    let seen = ns.kind(kind);
    let failed: Vec<_> = seen.iter().filter(|e| e.errno() != 0).collect();
    let in_range =
        |e: &&Event| (p.first..p.first + p.held).contains(&e.endpoints.sport) || e.errno() != 0;
    let what = format!(
        "{} events, {} failed, for {calls} connect() calls in a range of {} ports, the last EADDRNOTAVAIL",
        seen.len(),
        failed.len(),
        p.held
    );
    let exact = seen.len() as u64 == calls
        && failed.len() == 1
        && failed.iter().all(|e| e.errno() == libc::EADDRNOTAVAIL)
        && (kind == EventKind::Connect || seen.iter().all(in_range));
    if exact {
        Verdict::Exact(what)
    } else {
        Verdict::Missed(what)
    }
}

/// `handshake`: both active opens, the slow one established with as many
/// SYN retransmissions as TCPSynRetrans grew; `handshake_rtx`: the time of
/// each of them.
fn handshake_verdict(
    hook: &str,
    h: &handshake::SlowHandshake,
    ns: &InNs<'_>,
    attached: &dyn Fn(&str) -> bool,
) -> Verdict {
    let seen = ns.kind(EventKind::Handshake);
    let slow = seen.iter().find_map(|e| match &e.detail {
        Detail::Handshake(d) if e.endpoints.sport == h.sport => Some(d),
        _ => None,
    });
    let Some(slow) = slow else {
        return Verdict::Missed(format!(
            "{} handshake events, none for the retransmitted handshake (TCPSynRetrans +{})",
            seen.len(),
            h.syn_retransmits
        ));
    };
    if hook == "handshake" {
        let what = format!(
            "{} handshakes of 2; the slow one {}, {} SYN retransmits, TCPSynRetrans +{}",
            seen.len(),
            slow.outcome.name(),
            slow.syn_retransmits,
            h.syn_retransmits
        );
        let exact = seen.len() == 2
            && slow.outcome == tcptrace_common::event::HandshakeOutcome::Established
            && u64::from(slow.syn_retransmits) == h.syn_retransmits
            && h.syn_retransmits > 0;
        return if exact {
            Verdict::Exact(what)
        } else {
            Verdict::Missed(what)
        };
    }
    let timed = slow.syn_retransmit_us();
    let what = format!(
        "{} of {} SYN retransmits timed (TCPSynRetrans +{})",
        timed.len(),
        slow.syn_retransmits,
        h.syn_retransmits
    );
    if !attached("handshake") {
        Verdict::Partial(format!("{what}: the handshake hook is not attached"))
    } else if timed.len() as u64 == h.syn_retransmits && h.syn_retransmits > 0 {
        Verdict::Exact(what)
    } else {
        Verdict::Missed(what)
    }
}

/// `syn_drop` and `listen_overflow`: together one event per ListenOverflows;
/// `syn_drop`'s all at the full accept queue; `listen_owner`: each names
/// this process as the one that called listen().
fn accept_queue_verdict(
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

#[cfg(test)]
mod tests {
    use tcptrace_common::event::HandshakeOutcome;

    use super::*;
    use crate::event::{
        decode,
        tests::{raw_handshake_timed, raw_latency},
    };

    const NS: u64 = 4026532000;

    fn in_ns(mut ev: Event) -> Event {
        ev.netns = NS as u32;
        ev
    }

    fn connect(kind: EventKind, errno: i32, sport: u16) -> Event {
        let mut ev = in_ns(decode(&raw_latency(kind, 2, errno)).unwrap());
        ev.endpoints.sport = sport;
        ev
    }

    #[test]
    fn port_exhaustion_is_exact_only_with_every_call_and_the_one_failure() {
        let p = ports::Exhausted {
            netns: NS,
            held: 2,
            first: 40000,
        };
        let all = vec![
            connect(EventKind::PortSearch, 0, 40000),
            connect(EventKind::PortSearch, 0, 40001),
            connect(EventKind::PortSearch, libc::EADDRNOTAVAIL, 0),
        ];
        let v = ports_verdict("port_search", &p, &InNs::of(&all, NS));
        assert!(matches!(v, Verdict::Exact(_)), "{v:?}");
        let v = ports_verdict("port_search", &p, &InNs::of(&all[1..], NS));
        assert!(
            matches!(v, Verdict::Missed(ref d) if d.starts_with("2 events, 1 failed")),
            "{v:?}"
        );
        // Another namespace's events do not count.
        let v = ports_verdict("connect", &p, &InNs::of(&all, NS + 1));
        assert!(matches!(v, Verdict::Missed(_)), "{v:?}");
        // A chosen port outside the range is not what was reproduced.
        let outside = vec![
            all[0].clone(),
            connect(EventKind::PortSearch, 0, 50000),
            all[2].clone(),
        ];
        let v = ports_verdict("port_search", &p, &InNs::of(&outside, NS));
        assert!(matches!(v, Verdict::Missed(_)), "{v:?}");
    }

    #[test]
    fn handshake_verdicts_compare_with_the_counter() {
        let h = handshake::SlowHandshake {
            netns: NS,
            sport: 40000,
            filler_port: 40001,
            syn_retransmits: 1,
        };
        let established = HandshakeOutcome::Established as u8;
        let slow = in_ns(decode(&raw_handshake_timed(established, 0, 1, &[1_000_000])).unwrap());
        let mut filler = in_ns(decode(&raw_handshake_timed(established, 0, 0, &[])).unwrap());
        filler.endpoints.sport = 40001;
        let both = vec![slow.clone(), filler.clone()];
        let yes = |_: &str| true;
        let v = handshake_verdict("handshake", &h, &InNs::of(&both, NS), &yes);
        assert!(matches!(v, Verdict::Exact(_)), "{v:?}");
        let v = handshake_verdict("handshake_rtx", &h, &InNs::of(&both, NS), &yes);
        assert!(matches!(v, Verdict::Exact(_)), "{v:?}");
        // The slow one missing, or counting no retransmission.
        let v = handshake_verdict("handshake", &h, &InNs::of(&both[1..], NS), &yes);
        assert!(matches!(v, Verdict::Missed(_)), "{v:?}");
        let untimed = in_ns(decode(&raw_handshake_timed(established, 0, 0, &[])).unwrap());
        let v = handshake_verdict("handshake", &h, &InNs::of(&[untimed, filler], NS), &yes);
        assert!(matches!(v, Verdict::Missed(_)), "{v:?}");
        let no_handshake = |hook: &str| hook != "handshake";
        let v = handshake_verdict("handshake_rtx", &h, &InNs::of(&both, NS), &no_handshake);
        assert!(matches!(v, Verdict::Partial(_)), "{v:?}");
    }
}
