//! RST rules (RFC 5961): RSTs ignored because their sequence number is
//! outside the receive window, and in-window inexact RSTs answered with a
//! challenge ACK. Events: `rst` (`verdict`, `window_distance`; `daddr` is
//! the peer). Accepted RSTs are ordinary and raise nothing.

use std::{collections::BTreeMap, net::IpAddr};

use serde_json::{json, Value};
use tcptrace_common::paws::RstVerdict;

use super::{
    evidence::Evidence,
    tally::{capped_insert, top, Span},
    Context, Finding, Severity,
};
use crate::event::json::{EventJson, Stamp};
use crate::host::Needs;

const MAX_PEERS: usize = 4096;

#[derive(Clone, Debug, Default)]
pub struct Peer {
    pub accepted: u64,
    pub challenged: Span,
    pub ignored: Span,
    /// window_distance of ignored RSTs: most negative (below the window)
    /// and most positive (beyond it).
    pub below: Option<i64>,
    pub beyond: Option<i64>,
    pub local_ports: BTreeMap<u16, u64>,
    pub states: BTreeMap<String, u64>,
}

#[derive(Clone, Debug, Default)]
pub struct Rsts {
    pub by_peer: BTreeMap<(u64, IpAddr), Peer>,
    pub untracked: u64,
}

impl Rsts {
    pub fn observe(&mut self, ev: &EventJson<'_>, netns: u64, at: Option<&Stamp>) {
        let (Some(peer), Some(verdict)) = (ev.daddr, ev.verdict) else {
            return;
        };
        let Some(p) = capped_insert(&mut self.by_peer, (netns, peer), MAX_PEERS) else {
            self.untracked += 1;
            return;
        };
        match verdict {
            RstVerdict::Accepted => {
                p.accepted += 1;
                return;
            }
            RstVerdict::ChallengeAck => p.challenged.add(at),
            RstVerdict::Ignored => {
                p.ignored.add(at);
                if let Some(d) = ev.window_distance {
                    if d < 0 {
                        p.below = Some(p.below.map_or(d, |b| b.min(d)));
                    } else {
                        p.beyond = Some(p.beyond.map_or(d, |b| b.max(d)));
                    }
                }
            }
        }
        if let Some(lp) = ev.sport {
            if let Some(n) = capped_insert(&mut p.local_ports, lp, 64) {
                *n += 1;
            }
        }
        if let Some(s) = ev.state.as_deref() {
            if let Some(n) = capped_insert(&mut p.states, s.to_owned(), 16) {
                *n += 1;
            }
        }
    }

    pub fn needs(&self, n: &mut Needs) {
        n.netns.extend(
            self.by_peer
                .iter()
                .filter(|(_, p)| p.ignored.count + p.challenged.count > 0)
                .map(|((ns, _), _)| *ns),
        );
    }

    pub fn findings(&self, ctx: &Context<'_>, out: &mut Vec<Finding>) {
        for (&(ns, peer), p) in &self.by_peer {
            if p.ignored.count > 0 {
                out.push(ignored(ctx, ns, peer, p));
            }
            if p.challenged.count > 0 {
                out.push(challenged(ctx, ns, peer, p));
            }
        }
    }
}

fn evidence(ctx: &Context<'_>, ns: u64, peer: IpAddr, p: &Peer) -> Evidence {
    let ports: Vec<Value> = top(&p.local_ports, 5)
        .into_iter()
        .map(|(port, n)| json!({"port": port, "count": n}))
        .collect();
    let states: serde_json::Map<String, Value> = p
        .states
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    let mut e = Evidence::default();
    e.set("netns", ns)
        .set("peer", peer.to_string())
        .set("ignored", p.ignored.count)
        .set("challenge_acks", p.challenged.count)
        .set("accepted", p.accepted)
        .set("local_ports", Value::Array(ports))
        .set("states", Value::Object(states))
        .opt(
            "counters",
            ctx.host
                .deltas(ns, &["TCPChallengeACK", "TCPACKSkippedChallenge"]),
        );
    e
}

fn ignored(ctx: &Context<'_>, ns: u64, peer: IpAddr, p: &Peer) -> Finding {
    let mut e = evidence(ctx, ns, peer, p);
    e.opt("max_distance_below_window", p.below)
        .opt("max_distance_beyond_window", p.beyond);
    let mut f = Finding::new(
        "rst_out_of_window",
        Severity::Warning,
        super::paws::subject(ns, peer),
        &p.ignored,
    );
    f.summary = format!(
        "{} RSTs from {peer} were ignored: their sequence numbers were outside the receive window, so the connections stayed open here.",
        p.ignored.count
    );
    f.advice = vec![
        "Out-of-window RSTs usually come from a firewall, NAT or IPS that lost or aged out the connection's state and resets it with stale sequence numbers. Linux drops them silently (RFC 5961) and no counter shows it.".into(),
        format!("A load balancer or proxy between here and {peer} may honour that RST and drop its side, leaving a half-open connection on this host that fails on the next send."),
        "Check the middlebox's idle and conntrack timeouts, and keep idle connections alive below them (TCP keepalive or application pings); make sure both directions pass through the same stateful device.".into(),
    ];
    f.evidence = e.0;
    f
}

fn challenged(ctx: &Context<'_>, ns: u64, peer: IpAddr, p: &Peer) -> Finding {
    let e = evidence(ctx, ns, peer, p);
    let mut f = Finding::new(
        "rst_challenge_ack",
        Severity::Info,
        super::paws::subject(ns, peer),
        &p.challenged,
    );
    f.summary = format!(
        "{} RSTs from {peer} were inside the window but not at the expected sequence number: the kernel answered each with a challenge ACK instead of resetting.",
        p.challenged.count
    );
    f.advice = vec![
        "A genuine peer answers a challenge ACK with an exact RST and the connection closes; if it keeps happening, a middlebox is sending RSTs with approximate sequence numbers, or someone is trying blind reset injection.".into(),
        "Challenge ACKs are rate limited (net.ipv4.tcp_invalid_ratelimit per socket, tcp_challenge_ack_limit globally on older kernels): skipped ones are counted in TCPACKSkippedChallenge.".into(),
    ];
    f.evidence = e.0;
    f
}

#[cfg(test)]
mod tests {
    use super::super::{evidence::HostView, tests::*};
    use super::*;

    fn rst(sec: u32, verdict: &str, distance: i64) -> Value {
        ev(
            "rst",
            sec,
            json!({"verdict": verdict, "state": "ESTABLISHED", "seq": 1, "rcv_nxt": 1, "rcv_wup": 1, "rcv_wnd": 64000,
                   "window_distance": distance, "daddr": "10.88.0.3", "dport": 40003, "sport": 8060}),
        )
    }

    #[test]
    fn exact_in_window_and_out_of_window() {
        let events = vec![
            rst(0, "ignored", -200_000),
            rst(1, "ignored", 49_936_000),
            rst(2, "challenge_ack", 0),
            rst(3, "challenge_ack", 0),
            rst(4, "accepted", 0),
        ];
        let f = run(&events, HostView::default());
        assert_eq!(ids(&f), ["rst_out_of_window", "rst_challenge_ack"]);
        assert_eq!(f[0].count, 2);
        assert_eq!(f[0].evidence["max_distance_below_window"], -200_000);
        assert_eq!(f[0].evidence["max_distance_beyond_window"], 49_936_000);
        assert_eq!(f[0].evidence["accepted"], 1);
        assert_eq!(f[0].evidence["local_ports"][0]["port"], 8060);
        assert_eq!(f[1].count, 2);
        assert_eq!(f[1].severity, Severity::Info);
        assert!(f[0].advice.iter().any(|a| a.contains("load balancer")));
    }

    #[test]
    fn accepted_rsts_are_normal() {
        let events: Vec<Value> = (0..50).map(|i| rst(i, "accepted", 0)).collect();
        assert!(run(&events, HostView::default()).is_empty());
        let mut v = rst(0, "ignored", 5);
        v.as_object_mut().unwrap().remove("verdict");
        assert!(run(&[v], HostView::default()).is_empty());
    }
}
