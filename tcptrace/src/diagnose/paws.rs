//! PAWS rules (RFC 7323), read from what each reject compares (see
//! [`crate::paws::clocks`]): SYNs rejected by TIME_WAIT sockets because a
//! client reused a 4-tuple (`paws_time_wait_reuse`), two timestamp clocks
//! on one connection (`paws_nat_clocks`), and repeated stale timestamps
//! from one clock (`paws_stale_timestamps`). Old pure ACKs and reordering
//! are counted in the evidence and never make a finding. Events:
//! `paws_reject` (`site`, `tsval`, `ts_recent`, `old_ack`; `daddr` is the
//! peer).

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use serde_json::{json, Value};

use super::{
    evidence::Evidence,
    tally::{capped_insert, top, Span},
    Context, Finding, Severity,
};
use crate::{
    event::json::{EventJson, Stamp},
    host::Needs,
    paws::clocks::{PeerClocks, Reading},
};

const MAX_PEERS: usize = 4096;
/// Rejects on open connections from one peer that make a finding: a few
/// are old duplicates.
pub const STALE_MIN: u64 = 3;

#[derive(Clone, Debug, Default)]
pub struct Peer {
    pub by_site: BTreeMap<String, Span>,
    pub clocks: PeerClocks,
    /// When the rejects of each reading were seen.
    pub spans: BTreeMap<Reading, Span>,
    pub local_ports: BTreeMap<u16, u64>,
    /// TIME_WAIT rejects (4-tuple reuse) per local port.
    pub time_wait_by_port: BTreeMap<u16, u64>,
    /// TIME_WAIT rejects per local address and port.
    pub time_wait_at: BTreeMap<(IpAddr, u16), u64>,
    pub peer_ports: BTreeSet<u16>,
    /// First reject: (tsval, ts_recent).
    pub sample: Option<(u64, Option<u64>)>,
}

impl Peer {
    fn all(&self) -> Span {
        self.by_site
            .values()
            .fold(Span::default(), |a, s| a.merge(s))
    }

    fn site(&self, s: &str) -> u64 {
        self.by_site.get(s).map_or(0, |s| s.count)
    }

    fn span(&self, readings: &[Reading]) -> Span {
        readings
            .iter()
            .filter_map(|r| self.spans.get(r))
            .fold(Span::default(), |a, s| a.merge(s))
    }
}

#[derive(Clone, Debug, Default)]
pub struct Paws {
    pub by_peer: BTreeMap<(u64, IpAddr), Peer>,
    pub untracked: u64,
}

impl Paws {
    pub fn observe(&mut self, ev: &EventJson<'_>, netns: u64, at: Option<&Stamp>) {
        let (Some(peer), Some(site), Some(tsval)) = (ev.daddr, ev.site, ev.tsval) else {
            return;
        };
        let Some(p) = capped_insert(&mut self.by_peer, (netns, peer), MAX_PEERS) else {
            self.untracked += 1;
            return;
        };
        p.by_site.entry(site.name().to_owned()).or_default().add(at);
        let ts_recent = ev.ts_recent.flatten();
        p.sample
            .get_or_insert((tsval.into(), ts_recent.map(u64::from)));
        let old_ack = ev.old_ack.unwrap_or(false);
        let reading = p.clocks.observe(site, tsval, ts_recent, old_ack);
        p.spans.entry(reading).or_default().add(at);
        if let Some(lp) = ev.sport {
            if let Some(n) = capped_insert(&mut p.local_ports, lp, 64) {
                *n += 1;
            }
            if reading == Reading::TimeWaitReuse {
                if let Some(n) = capped_insert(&mut p.time_wait_by_port, lp, 64) {
                    *n += 1;
                }
                if let Some(local) = ev.saddr {
                    if let Some(n) = capped_insert(&mut p.time_wait_at, (local, lp), 64) {
                        *n += 1;
                    }
                }
            }
        }
        if let Some(pp) = ev.dport {
            if p.peer_ports.len() < 1024 {
                p.peer_ports.insert(pp);
            }
        }
    }

    pub fn needs(&self, n: &mut Needs) {
        n.netns.extend(self.by_peer.keys().map(|(ns, _)| *ns));
    }

    /// TIME_WAIT rejects of SYNs from `peer` to local `port` (that port
    /// only): the server side of a slow connect() on this host.
    pub fn time_wait_rejects(&self, peer: IpAddr, port: u16) -> Option<(u64, IpAddr, u64)> {
        self.by_peer.iter().find_map(|((ns, a), p)| {
            let n = p.time_wait_by_port.get(&port).copied().unwrap_or(0);
            (*a == peer && n > 0).then_some((*ns, *a, n))
        })
    }

    /// TIME_WAIT rejects at `addr`:`port` itself, from any peer: the
    /// server side of a slow connect() whose source a NAT rewrote (the
    /// server sees the NAT's address, not the client's).
    pub fn time_wait_rejects_at(&self, addr: IpAddr, port: u16) -> Vec<(u64, IpAddr, u64)> {
        self.by_peer
            .iter()
            .filter_map(|((ns, peer), p)| {
                let n = p.time_wait_at.get(&(addr, port)).copied().unwrap_or(0);
                (n > 0).then_some((*ns, *peer, n))
            })
            .collect()
    }

    pub fn findings(&self, ctx: &Context<'_>, out: &mut Vec<Finding>) {
        for (&(ns, peer), p) in &self.by_peer {
            if p.clocks.time_wait > 0 {
                time_wait(ctx, ns, peer, p, out);
            }
            if p.clocks.second_clock >= STALE_MIN {
                nat(ctx, ns, peer, p, out);
            } else if p.clocks.on_connections() >= STALE_MIN {
                stale(ctx, ns, peer, p, out);
            }
        }
    }
}

pub fn subject(ns: u64, peer: IpAddr) -> String {
    format!("peer {peer} netns {ns}")
}

fn evidence(ctx: &Context<'_>, ns: u64, peer: IpAddr, p: &Peer) -> Evidence {
    let mut e = Evidence::default();
    let sites: serde_json::Map<String, Value> = p
        .by_site
        .iter()
        .map(|(k, s)| (k.clone(), json!(s.count)))
        .collect();
    let ports: Vec<Value> = top(&p.local_ports, 5)
        .into_iter()
        .map(|(port, n)| json!({"port": port, "count": n}))
        .collect();
    e.set("netns", ns)
        .set("peer", peer.to_string())
        .set("rejects", p.all().count)
        .set("rejects_by_site", Value::Object(sites))
        .set("clocks", p.clocks.clocks())
        .set("reordered", p.clocks.reordered)
        .set("local_ports", Value::Array(ports))
        .set("peer_ports", p.peer_ports.len() as u64);
    if let Some((tsval, recent)) = p.sample {
        e.set("sample_tsval", tsval).opt("sample_ts_recent", recent);
    }
    let h = &ctx.host;
    e.opt("tcp_timestamps", h.sysctl(ns, |s| s.tcp_timestamps))
        .opt("tcp_tw_recycle", h.tw_recycle(ns))
        .opt(
            "counters",
            h.deltas(
                ns,
                &["PAWSEstab", "PAWSTimewait", "PAWSActive", "PAWSOldAck"],
            ),
        );
    e
}

/// A client reused a 4-tuple this host still held in TIME_WAIT, with a
/// timestamp below that of the connection before.
fn time_wait(ctx: &Context<'_>, ns: u64, peer: IpAddr, p: &Peer, out: &mut Vec<Finding>) {
    let n = p.clocks.time_wait;
    let mut advice = Vec::new();
    if ctx.host.tw_recycle(ns) == Some(1) {
        advice.push(
            "This kernel still has net.ipv4.tcp_tw_recycle and it is on: it drops SYNs from any host behind one address whose timestamp is older than the last one seen from that address. Set net.ipv4.tcp_tw_recycle=0. Do not turn tcp_timestamps off for this: recycle is the culprit.".to_owned(),
        );
    }
    advice.push(format!(
        "This host closed those connections first, so it holds their 4-tuples in TIME_WAIT for 60 s; {peer} opened new connections from the same source ports before that ran out. Their timestamps were lower than the old connections' last ones, so the kernel answered each SYN with a bare ACK instead of a SYN-ACK: the client gets through only when it resends the SYN (milliseconds later if it answers the ACK with a RST, a second or more if that is lost or filtered), or not at all."
    ));
    advice.push(format!(
        "Timestamps need not increase across connections: several hosts behind {peer} (NAT, a load balancer's SNAT) each have their own clock, and Linux clients may start each connection on its own offset. One host is enough for this; it is not a sign of several."
    ));
    advice.push(
        "Let the clients close first where the protocol allows (HTTP keep-alive with client-side close): TIME_WAIT then stays on the clients, which may reuse it safely with net.ipv4.tcp_tw_reuse=1 (the default 2 allows it on loopback only).".into(),
    );
    advice.push(
        "Or stop reusing the 4-tuple within 60 s: a wider ip_local_port_range on the clients, a larger source-port pool or more addresses on the NAT, connection pooling instead of churning connections.".into(),
    );
    advice.push(
        "Turning net.ipv4.tcp_timestamps off removes the check, but also PAWS protection against wrapped sequence numbers and RTT measurement: a last resort.".into(),
    );
    let span = p.span(&[Reading::TimeWaitReuse]);
    let mut f = Finding::new(
        "paws_time_wait_reuse",
        Severity::Warning,
        subject(ns, peer),
        &span,
    );
    f.summary = format!(
        "{n} SYNs from {peer} reused a 4-tuple this host holds in TIME_WAIT and were rejected by PAWS (timestamp below the old connection's last): this host closes first and the client reuses source ports within 60 s."
    );
    f.evidence = evidence(ctx, ns, peer, p).0;
    f.advice = advice;
    out.push(f);
}

fn nat(ctx: &Context<'_>, ns: u64, peer: IpAddr, p: &Peer, out: &mut Vec<Finding>) {
    let mut f = Finding::new(
        "paws_nat_clocks",
        Severity::Warning,
        subject(ns, peer),
        &p.span(&[Reading::SecondClock]),
    );
    f.summary = format!(
        "{} segments from {peer} were rejected by PAWS with timestamps far behind their own connection's last one: two timestamp clocks on one connection, so several hosts share one NAT mapping (or the peer's clock jumped back).",
        p.clocks.second_clock
    );
    f.evidence = evidence(ctx, ns, peer, p).0;
    f.advice = vec![
        format!("Segments from different hosts behind {peer} arrive on one 4-tuple: the NAT or load balancer reused a mapping while a connection was still open. Check its port allocation and idle timeouts (they must outlive the connections behind them)."),
        format!("If only one host is behind {peer}, its timestamp clock went backwards during the connection (VM restore or migration, a device rewriting timestamps)."),
        "Dropped segments are retransmitted in vain and the connection stalls until it times out.".into(),
    ];
    out.push(f);
}

fn stale(ctx: &Context<'_>, ns: u64, peer: IpAddr, p: &Peer, out: &mut Vec<Finding>) {
    let mut advice = vec![
        format!("Segments from {peer} with timestamps older than the last one seen on their connection are dropped (PAWS). A few are old duplicates and harmless; a steady stream means a middlebox replaying or duplicating segments, or a peer whose timestamp clock went backwards (reboot, VM migration or restore, a device rewriting timestamps)."),
        "Dropped data is retransmitted and the connection stalls meanwhile: look at the path to this peer (load balancer, WAN optimiser, IPS) and at the peer's clock.".into(),
    ];
    if p.site("syn_sent") > 0 {
        advice.push(
            "syn_sent rejects: SYN-ACKs echoing a timestamp our SYN did not carry — a middlebox answering for the server or a stale SYN-ACK from an earlier attempt.".into(),
        );
    }
    let mut f = Finding::new(
        "paws_stale_timestamps",
        Severity::Warning,
        subject(ns, peer),
        &p.span(&[Reading::Stale, Reading::SecondClock]),
    );
    f.summary = format!(
        "{} segments from {peer} were dropped by PAWS (timestamp older than the connection's last), from one clock.",
        p.clocks.on_connections()
    );
    f.evidence = evidence(ctx, ns, peer, p).0;
    f.advice = advice;
    out.push(f);
}

#[cfg(test)]
mod tests {
    use super::super::{evidence::HostView, tests::*};
    use super::*;
    use crate::host::Sysctls;
    use tcptrace_common::paws::PawsSite;

    fn reject(sec: u32, site: &str, tsval: u64, ts_recent: Option<u64>, old_ack: bool) -> Value {
        ev(
            "paws_reject",
            sec,
            json!({"site": site, "state": "TIME_WAIT", "tsval": tsval, "tsecr": 0, "ts_recent": ts_recent,
                   "old_ack": old_ack, "rst": false, "daddr": "10.77.0.3", "dport": 40002, "sport": 8050}),
        )
    }

    #[test]
    fn time_wait_rejects_are_4_tuple_reuse_not_hosts() {
        // Unrelated stamps, as one Linux client with per-connection offsets
        // or several hosts would send: the same finding, one clock proven.
        let events: Vec<Value> = [100_000, 3_000_000_000, 42]
            .into_iter()
            .enumerate()
            .map(|(i, v)| reject(i as u32, "time_wait", v, Some(1_500_000_020), false))
            .collect();
        let (start, now) = host(
            Sysctls {
                tcp_timestamps: Some(1),
                ..Sysctls::default()
            },
            &[("PAWSTimewait", 3)],
        );
        let f = run(
            &events,
            HostView {
                start: Some(&start),
                now: Some(&now),
            },
        );
        assert_eq!(ids(&f), ["paws_time_wait_reuse"]);
        let n = &f[0];
        assert_eq!(n.count, 3);
        assert_eq!(n.evidence["clocks"], 1);
        assert_eq!(n.evidence["rejects_by_site"]["time_wait"], 3);
        assert_eq!(n.evidence["counters"]["PAWSTimewait"], 3);
        assert!(n.evidence.get("tcp_tw_recycle").is_none());
        assert!(n.summary.contains("closes first"), "{}", n.summary);
        let all = n.advice.join("\n");
        for want in [
            "bare ACK",
            "tcp_tw_reuse",
            "close first",
            "ip_local_port_range",
            "not a sign of several",
        ] {
            assert!(all.contains(want), "{want}: {all}");
        }
        assert!(!all.contains("tcp_tw_recycle"), "{all}");
    }

    #[test]
    fn on_old_kernels_the_advice_is_tw_recycle_off() {
        let events = vec![reject(0, "time_wait", 100_000, Some(1_500_000_020), false)];
        let (start, now) = host(
            Sysctls {
                tcp_timestamps: Some(1),
                tcp_tw_recycle: Some(1),
                ..Sysctls::default()
            },
            &[],
        );
        let f = run(
            &events,
            HostView {
                start: Some(&start),
                now: Some(&now),
            },
        );
        assert_eq!(ids(&f), ["paws_time_wait_reuse"]);
        assert_eq!(f[0].evidence["tcp_tw_recycle"], 1);
        assert!(
            f[0].advice[0].contains("tcp_tw_recycle=0"),
            "{:?}",
            f[0].advice
        );
        assert!(f[0].advice[0].contains("Do not turn tcp_timestamps off"));
    }

    #[test]
    fn one_clock_stale_segments() {
        // Established: 1000 ticks behind ts_recent, same clock.
        let events: Vec<Value> = (0..3)
            .map(|i| reject(i, "established", 999_000, Some(1_000_010), false))
            .collect();
        let f = run(&events, HostView::default());
        assert_eq!(ids(&f), ["paws_stale_timestamps"]);
        assert_eq!(f[0].evidence["clocks"], 1);
        assert_eq!(f[0].count, 3);
        // Below the threshold: old duplicates, no finding.
        assert!(run(&events[..2], HostView::default()).is_empty());
        // Missing tsval: ignored.
        let mut v = events[0].clone();
        v.as_object_mut().unwrap().remove("tsval");
        assert!(run(&[v.clone(), v.clone(), v], HostView::default()).is_empty());
    }

    #[test]
    fn reordering_and_old_acks_never_make_a_finding() {
        // The 7.2 VM's healthy loopback run: old pure ACKs 4 ticks behind,
        // on connections with unrelated offsets; and reordered data.
        let events: Vec<Value> = (0..6)
            .map(|i| {
                let base = 1_000_000 * u64::from(i + 1);
                reject(i, "established", base - 4, Some(base), i % 2 == 0)
            })
            .collect();
        let f = run(&events, HostView::default());
        assert!(f.is_empty(), "{f:#?}");
    }

    #[test]
    fn two_clocks_on_one_connection_are_a_shared_mapping() {
        let events: Vec<Value> = (0..3)
            .map(|i| {
                reject(
                    i,
                    "established",
                    100_000 + u64::from(i),
                    Some(1_500_000_000),
                    false,
                )
            })
            .collect();
        let f = run(&events, HostView::default());
        assert_eq!(ids(&f), ["paws_nat_clocks"]);
        assert_eq!(f[0].evidence["clocks"], 2);
        assert_eq!(f[0].count, 3);
        assert!(
            f[0].advice[0].contains("reused a mapping"),
            "{:?}",
            f[0].advice
        );
    }

    /// The summary and the findings count clocks with one estimator: the
    /// same stream gives the same number.
    #[test]
    fn summary_and_finding_count_the_same_clocks() {
        use crate::{event::tests::raw_paws, summary::Summary};
        let stream = [
            (PawsSite::TimeWait, 100_000, 1_500_000_020),
            (PawsSite::TimeWait, 3_000_000_000, 1_500_000_020),
            (PawsSite::Established, 7_000, 8_000),
            (PawsSite::Established, 100_000, 1_500_000_000),
            (PawsSite::Established, 100_001, 1_500_000_000),
            (PawsSite::Established, 100_002, 1_500_000_000),
        ];
        let mut summary = Summary::default();
        let mut events = Vec::new();
        for (i, (site, tsval, recent)) in stream.into_iter().enumerate() {
            let e =
                crate::event::decode(&raw_paws(site, [10, 77, 0, 3], tsval, recent, 0)).unwrap();
            summary.observe(&e);
            events.push(reject(
                i as u32,
                site.name(),
                tsval.into(),
                Some(recent.into()),
                false,
            ));
        }
        let j = json!(summary.to_json(&crate::summary::KernelCounters::default(), true));
        let f = run(&events, HostView::default());
        assert_eq!(ids(&f), ["paws_nat_clocks", "paws_time_wait_reuse"]);
        for f in &f {
            assert_eq!(f.evidence["clocks"], j["paws"]["top_peers"][0]["clocks"]);
        }
        assert_eq!(j["paws"]["top_peers"][0]["clocks"], 2);
    }
}
