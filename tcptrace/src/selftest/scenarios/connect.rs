//! Verdicts of the connect family's hooks: port exhaustion (`connect`,
//! `port_search`) and a handshake after one SYN retransmission
//! (`handshake`, `handshake_rtx`).

use tcptrace_common::event::EventKind;
use tcptrace_lab::repro::{handshake, ports};

use super::InNs;
use crate::{
    event::{Detail, Event},
    selftest::verdict::Verdict,
};

/// `connect`: every call (range + 1) with the last EADDRNOTAVAIL;
/// `port_search`: one search per call, the last exhausted, the others
/// inside the range.
pub(super) fn ports_verdict(hook: &str, p: &ports::Exhausted, ns: &InNs<'_>) -> Verdict {
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
pub(super) fn handshake_verdict(
    hook: &str,
    h: &handshake::SlowHandshake,
    ns: &InNs<'_>,
    attached: &dyn Fn(&str) -> bool,
) -> Verdict {
    // The times travel in handshake events: none without that hook (off
    // by default where only the state-change tracepoint could time them).
    if hook == "handshake_rtx" && !attached("handshake") {
        return Verdict::Partial(format!(
            "nothing to time: the handshake hook is not attached (TCPSynRetrans +{})",
            h.syn_retransmits
        ));
    }
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
    if timed.len() as u64 == h.syn_retransmits && h.syn_retransmits > 0 {
        Verdict::Exact(what)
    } else {
        Verdict::Missed(what)
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
        let v = handshake_verdict("handshake_rtx", &h, &InNs::of(&[], NS), &no_handshake);
        assert!(matches!(v, Verdict::Partial(_)), "{v:?}");
    }
}
