//! PAWS rules (RFC 7323): rejects from one address that carry several
//! timestamp clocks (several hosts behind a NAT or load balancer), and
//! repeated rejects of stale timestamps from one peer. Events:
//! `paws_reject` (`site`, `tsval`, `ts_recent`; `daddr` is the peer).
//!
//! Clock estimate: every timestamp seen from a peer address (the rejected
//! `tsval`, and the `ts_recent` it lost to, which that address sent
//! earlier) is put on a clock. A clock remembers its highest value and
//! when it was seen. A value belongs to a clock when it is at most
//! [`SLACK`] ticks below that value, or above it by no more than the
//! milliseconds elapsed since plus [`SLACK`] (timestamp clocks tick at
//! most once per millisecond in practice: Linux uses 1 kHz). Anything else
//! starts another clock. One host keeps one clock towards one server
//! address, so two clocks behind one address are two hosts. `syn_sent`
//! rejects compare against our own clock and are left out.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use serde_json::{json, Value};

use super::{
    evidence::Evidence,
    fields::{capped_insert, top, Ev, Span, Stamp},
    system::Needs,
    Context, Finding, Severity,
};

/// Reordering and recording slack, in timestamp ticks (about a minute at 1 kHz).
pub const SLACK: i64 = 1 << 16;
const MAX_CLOCKS: usize = 32;
const MAX_PEERS: usize = 4096;
/// Rejects from one single-clock peer that make a finding.
pub const STALE_MIN: u64 = 3;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Clock {
    hi: u32,
    hi_ms: i64,
}

/// The timestamp clocks seen behind one address.
#[derive(Clone, Debug, Default)]
pub struct Clocks(Vec<Clock>);

impl Clocks {
    pub fn observe(&mut self, v: u32, ms: i64) {
        for c in &mut self.0 {
            let d = i64::from(v.wrapping_sub(c.hi) as i32);
            if d <= 0 {
                if d >= -SLACK {
                    return;
                }
            } else if d <= (ms - c.hi_ms).max(0) + SLACK {
                c.hi = v;
                c.hi_ms = c.hi_ms.max(ms);
                return;
            }
        }
        if self.0.len() < MAX_CLOCKS {
            self.0.push(Clock { hi: v, hi_ms: ms });
        }
    }

    pub fn count(&self) -> usize {
        self.0.len()
    }
}

#[derive(Clone, Debug, Default)]
pub struct Peer {
    pub by_site: BTreeMap<String, Span>,
    pub clocks: Clocks,
    pub local_ports: BTreeMap<u16, u64>,
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
}

#[derive(Clone, Debug, Default)]
pub struct Paws {
    pub by_peer: BTreeMap<(u64, IpAddr), Peer>,
    pub untracked: u64,
}

impl Paws {
    pub fn observe(&mut self, ev: Ev<'_>, netns: u64, at: Option<&Stamp>) {
        let (Some(peer), Some(site), Some(tsval)) =
            (ev.ip("daddr"), ev.str("site"), ev.u64("tsval"))
        else {
            return;
        };
        let Some(p) = capped_insert(&mut self.by_peer, (netns, peer), MAX_PEERS) else {
            self.untracked += 1;
            return;
        };
        p.by_site.entry(site.to_owned()).or_default().add(at);
        let ts_recent = ev.u64("ts_recent");
        p.sample.get_or_insert((tsval, ts_recent));
        if site != "syn_sent" {
            let ms = at.map_or(0, Stamp::ms);
            if let Some(r) = ts_recent
                .filter(|&r| r != 0)
                .and_then(|r| u32::try_from(r).ok())
            {
                p.clocks.observe(r, ms);
            }
            if let Ok(v) = u32::try_from(tsval) {
                p.clocks.observe(v, ms);
            }
        }
        if let Some(lp) = ev.u16("sport") {
            if let Some(n) = capped_insert(&mut p.local_ports, lp, 64) {
                *n += 1;
            }
        }
        if let Some(pp) = ev.u16("dport") {
            if p.peer_ports.len() < 1024 {
                p.peer_ports.insert(pp);
            }
        }
    }

    pub fn needs(&self, n: &mut Needs) {
        n.netns.extend(self.by_peer.keys().map(|(ns, _)| *ns));
    }

    /// TIME_WAIT rejects of SYNs from `peer` to local `port`: the server
    /// side of a slow connect() on this host.
    pub fn time_wait_rejects(&self, peer: IpAddr, port: u16) -> Option<(u64, IpAddr, u64, usize)> {
        self.by_peer.iter().find_map(|((ns, a), p)| {
            (*a == peer && p.local_ports.contains_key(&port) && p.site("time_wait") > 0)
                .then(|| (*ns, *a, p.site("time_wait"), p.clocks.count()))
        })
    }

    pub fn findings(&self, ctx: &Context<'_>, out: &mut Vec<Finding>) {
        for (&(ns, peer), p) in &self.by_peer {
            if p.clocks.count() >= 2 {
                nat(ctx, ns, peer, p, out);
            } else if p.all().count >= STALE_MIN {
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
        .set("clocks", p.clocks.count() as u64)
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

fn nat(ctx: &Context<'_>, ns: u64, peer: IpAddr, p: &Peer, out: &mut Vec<Finding>) {
    let e = evidence(ctx, ns, peer, p);
    let clocks = p.clocks.count();
    let tw = p.site("time_wait");
    let mut advice = Vec::new();
    match ctx.host.tw_recycle(ns) {
        Some(1) => advice.push(
            "This kernel still has net.ipv4.tcp_tw_recycle and it is on: it drops SYNs from any host behind one address whose timestamp is older than the last one seen from that address. Set net.ipv4.tcp_tw_recycle=0. Do not turn tcp_timestamps off for this: recycle is the culprit.".to_owned(),
        ),
        Some(_) => advice.push(
            "net.ipv4.tcp_tw_recycle is off on this kernel: keep it off, it breaks clients behind NAT. Do not turn tcp_timestamps off either.".to_owned(),
        ),
        None => {}
    }
    if tw > 0 {
        advice.push(format!(
            "Several hosts share {peer} (NAT, SNAT on a load balancer, a proxy pool) and each has its own timestamp clock. When one of them opens a connection with a source port whose 4-tuple this host still holds in TIME_WAIT from another, the SYN carries an older timestamp than the one stored, the kernel answers with a bare ACK instead of a SYN-ACK, and the client gets through only on a SYN retransmission (1 s or more later) or not at all."
        ));
        advice.push(
            "Fix it where the address is shared: give the NAT/load balancer a larger source-port pool or more addresses so 4-tuples are not reused within 60 s, or keep connections open (pooling) instead of churning them.".into(),
        );
        advice.push(
            "Let the clients close first where the protocol allows (HTTP keep-alive with client-side close), so TIME_WAIT stays on the clients and not on this server.".into(),
        );
        advice.push(
            "Turning net.ipv4.tcp_timestamps off removes the check, but also PAWS protection against wrapped sequence numbers and RTT measurement: a last resort.".into(),
        );
    }
    if p.site("established") + p.site("syn_recv") > 0 {
        advice.push(format!(
            "Rejects on open connections with several clocks mean segments from different hosts behind {peer} arrive on one 4-tuple: the NAT reused a mapping while a connection was still open. Check its port allocation and idle timeouts."
        ));
    }
    let mut f = Finding::new(
        "paws_nat_clocks",
        Severity::Warning,
        subject(ns, peer),
        &p.all(),
    );
    f.summary = format!(
        "{} PAWS rejects from {peer} carry {clocks} distinct timestamp clocks: several hosts share that address (NAT or load balancer){}.",
        p.all().count,
        if tw > 0 { ", and their SYNs collide with TIME_WAIT connections on this host" } else { "" }
    );
    f.evidence = e.0;
    f.advice = advice;
    out.push(f);
}

fn stale(ctx: &Context<'_>, ns: u64, peer: IpAddr, p: &Peer, out: &mut Vec<Finding>) {
    let e = evidence(ctx, ns, peer, p);
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
        &p.all(),
    );
    f.summary = format!(
        "{} segments from {peer} were dropped by PAWS (timestamp older than the connection's last), from one clock.",
        p.all().count
    );
    f.evidence = e.0;
    f.advice = advice;
    out.push(f);
}

#[cfg(test)]
mod tests {
    use super::super::{evidence::HostView, system::Sysctls, tests::*};
    use super::*;

    fn reject(sec: u32, site: &str, tsval: u64, ts_recent: Option<u64>, dport: u16) -> Value {
        ev(
            "paws_reject",
            sec,
            json!({"site": site, "state": "TIME_WAIT", "tsval": tsval, "tsecr": 0, "ts_recent": ts_recent,
                   "old_ack": false, "rst": false, "daddr": "10.77.0.3", "dport": dport, "sport": 8050}),
        )
    }

    #[test]
    fn clocks() {
        let mut c = Clocks::default();
        c.observe(5_000_000, 0);
        c.observe(4_999_000, 0); // reordered
        c.observe(5_600_000, 600_000); // ten minutes later
        assert_eq!(c.count(), 1);
        c.observe(u32::MAX - 5, 0);
        c.observe(10, 100); // wrapped
        assert_eq!(c.count(), 2);
        let mut c = Clocks::default();
        c.observe(1_000_000, 0);
        c.observe(1_200_000, 10_000); // 200 s ahead after 10 s: another host
        assert_eq!(c.count(), 2);
    }

    #[test]
    fn time_wait_rejects_with_two_clocks_are_nat() {
        let events: Vec<Value> = (0..3)
            .map(|i| {
                reject(
                    i,
                    "time_wait",
                    100_000 + u64::from(i),
                    Some(1_500_000_020),
                    40002,
                )
            })
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
        assert_eq!(ids(&f), ["paws_nat_clocks"]);
        let n = &f[0];
        assert_eq!(n.count, 3);
        assert_eq!(n.evidence["clocks"], 2);
        assert_eq!(n.evidence["rejects_by_site"]["time_wait"], 3);
        assert_eq!(n.evidence["counters"]["PAWSTimewait"], 3);
        assert!(n.evidence.get("tcp_tw_recycle").is_none());
        let all = n.advice.join("\n");
        assert!(
            all.contains("bare ACK") && all.contains("source-port pool"),
            "{all}"
        );
        assert!(!all.contains("tcp_tw_recycle"), "{all}");
    }

    #[test]
    fn on_old_kernels_the_advice_is_tw_recycle_off() {
        let events = vec![reject(0, "time_wait", 100_000, Some(1_500_000_020), 40002)];
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
        assert_eq!(ids(&f), ["paws_nat_clocks"]);
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
            .map(|i| reject(i, "established", 999_000, Some(1_000_010), 40001))
            .collect();
        let f = run(&events, HostView::default());
        assert_eq!(ids(&f), ["paws_stale_timestamps"]);
        assert_eq!(f[0].evidence["clocks"], 1);
        // Below the threshold: old duplicates, no finding.
        assert!(run(&events[..2], HostView::default()).is_empty());
        // Missing tsval: ignored.
        let mut v = events[0].clone();
        v.as_object_mut().unwrap().remove("tsval");
        assert!(run(&[v.clone(), v.clone(), v], HostView::default()).is_empty());
    }
}
