//! Ephemeral port exhaustion: connect() failing with EADDRNOTAVAIL, or the
//! kernel's port search probing a large part of `ip_local_port_range`.
//! Events: `connect`, `port_search`; host: the range, TIME_WAIT counts and
//! the destinations whose connections hold the range.

use std::{collections::BTreeMap, net::IpAddr};

use serde_json::{json, Value};
use tcptrace_common::EventKind;

use super::{
    endpoint,
    evidence::Evidence,
    tally::{capped_insert, top, Span},
    Context, Finding, Severity,
};
use crate::event::json::{EventJson, Stamp};
use crate::host::{Needs, DEFAULT_PORT_RANGE};

const EADDRNOTAVAIL: i64 = 99;
const MAX_NETNS: usize = 256;
const MAX_KEYS: usize = 1024;
/// A successful search struggled when it probed at least 1/STRUGGLE_SHARE
/// of the range, and at least [`MIN_STRUGGLE`] ports.
pub const STRUGGLE_SHARE: u64 = 2;
pub const MIN_STRUGGLE: u64 = 16;

#[derive(Clone, Debug, Default)]
pub struct NetnsPorts {
    pub connect_fail: Span,
    pub search_fail: Span,
    /// Successful searches that probed at least [`MIN_STRUGGLE`] ports, by
    /// ports_probed.
    pub probed: BTreeMap<u64, Span>,
    pub max_probed: u64,
    pub max_search_latency_ns: u64,
    /// Destinations of failed or struggling connects.
    pub destinations: BTreeMap<(IpAddr, u16), u64>,
    pub comms: BTreeMap<String, u64>,
}

#[derive(Clone, Debug, Default)]
pub struct Ports {
    pub by_netns: BTreeMap<u64, NetnsPorts>,
    /// port_search events of any outcome (none: the hook is unavailable).
    pub searches_seen: u64,
    pub untracked: u64,
}

fn range_size(r: (u16, u16)) -> u64 {
    u64::from(r.1 - r.0) + 1
}

impl Ports {
    /// Whether an event with this errno (and ports probed, for a search)
    /// tells this rule anything: a failure, or a search that struggled.
    pub fn wants(kind: EventKind, errno: i64, probed: Option<u64>) -> bool {
        let struggled = kind == EventKind::PortSearch && probed.is_some_and(|p| p >= MIN_STRUGGLE);
        errno == EADDRNOTAVAIL || struggled
    }

    pub fn observe(&mut self, kind: EventKind, ev: &EventJson<'_>, netns: u64, at: Option<&Stamp>) {
        let Some(errno) = ev.errno.map(i64::from) else {
            return;
        };
        let search = kind == EventKind::PortSearch;
        if search {
            self.searches_seen += 1;
        }
        let probed = ev.ports_probed.map(u64::from);
        let failed = errno == EADDRNOTAVAIL;
        if !Self::wants(kind, errno, probed) {
            return;
        }
        let Some(n) = capped_insert(&mut self.by_netns, netns, MAX_NETNS) else {
            self.untracked += 1;
            return;
        };
        if search {
            n.max_search_latency_ns = n.max_search_latency_ns.max(ev.latency_ns.unwrap_or(0));
            n.max_probed = n.max_probed.max(probed.unwrap_or(0));
        }
        match (kind, failed) {
            (EventKind::Connect, true) => n.connect_fail.add(at),
            (EventKind::PortSearch, true) => n.search_fail.add(at),
            (EventKind::PortSearch, false) => {
                if let Some(s) = capped_insert(&mut n.probed, probed.unwrap_or(0), MAX_KEYS) {
                    s.add(at);
                }
            }
            _ => return,
        }
        if let (Some(d), Some(p)) = (ev.daddr, ev.dport) {
            if let Some(c) = capped_insert(&mut n.destinations, (d, p), MAX_KEYS) {
                *c += 1;
            }
        }
        if let Some(c) = ev.known_comm() {
            if let Some(x) = capped_insert(&mut n.comms, c.to_owned(), 64) {
                *x += 1;
            }
        }
    }

    pub fn needs(&self, n: &mut Needs) {
        n.netns.extend(self.by_netns.keys());
    }

    pub fn findings(&self, ctx: &Context<'_>, out: &mut Vec<Finding>) {
        for (&ino, n) in &self.by_netns {
            finding(ctx, ino, n, self.searches_seen > 0, out);
        }
    }
}

fn finding(ctx: &Context<'_>, ino: u64, n: &NetnsPorts, searches: bool, out: &mut Vec<Finding>) {
    let h = &ctx.host;
    let sys = h.sysctls(ino);
    let range = sys.and_then(|s| s.ip_local_port_range);
    let size = range_size(range.unwrap_or(DEFAULT_PORT_RANGE));
    let threshold = (size / STRUGGLE_SHARE).max(MIN_STRUGGLE);
    let struggled = n
        .probed
        .range(threshold..)
        .fold(Span::default(), |a, (_, s)| a.merge(s));
    // Every failed connect() shows as a connect event and, where the hook
    // attaches, as a port_search event: count the failures once.
    let failures = if n.search_fail.count >= n.connect_fail.count {
        &n.search_fail
    } else {
        &n.connect_fail
    };
    if failures.count == 0 && struggled.count == 0 {
        return;
    }
    let span = failures.merge(&struggled);
    let ns = h.netns(ino).filter(|s| s.sockets_read);
    let mut e = Evidence::default();
    e.set("netns", ino)
        .opt("ip_local_port_range", range.map(|(lo, hi)| json!([lo, hi])))
        .set("range_size", size)
        .set("connect_eaddrnotavail", n.connect_fail.count);
    if searches {
        e.set("port_search_eaddrnotavail", n.search_fail.count)
            .set("slow_searches", struggled.count)
            .set("slow_search_threshold_ports", threshold)
            .set("max_ports_probed", n.max_probed)
            .set("max_search_latency_ns", n.max_search_latency_ns);
    }
    let dests: Vec<Value> = top(&n.destinations, 5)
        .into_iter()
        .map(|((a, p), c)| json!({"daddr": a.to_string(), "dport": p, "count": c}))
        .collect();
    e.set("failing_destinations", Value::Array(dests));
    let comms: Vec<Value> = top(&n.comms, 5)
        .into_iter()
        .map(|(c, k)| json!({"comm": c, "count": k}))
        .collect();
    e.set("processes", Value::Array(comms));
    if let Some(ns) = ns {
        let holders: Vec<Value> = ns
            .holders
            .iter()
            .map(|h| json!({"daddr": h.daddr.to_string(), "dport": h.dport, "ports": h.ports, "time_wait": h.time_wait}))
            .collect();
        e.set("ports_in_use", ns.ephemeral_in_use)
            .set("ports_in_time_wait", ns.ephemeral_time_wait)
            .set("time_wait_total", ns.time_wait_total)
            .set("range_holders", Value::Array(holders));
    }
    e.opt("tcp_tw_reuse", sys.and_then(|s| s.tcp_tw_reuse))
        .opt("tcp_timestamps", sys.and_then(|s| s.tcp_timestamps))
        .opt("tcp_max_tw_buckets", sys.and_then(|s| s.tcp_max_tw_buckets));

    let range_text = range.map_or_else(
        || format!("{size} ports (default range assumed)"),
        |(lo, hi)| format!("{lo}-{hi}, {size} ports"),
    );
    let mut advice = vec![format!(
        "Widen net.ipv4.ip_local_port_range (now {range_text}), e.g. `1024 65535` minus ports that listeners need (net.ipv4.ip_local_reserved_ports)."
    )];
    let top_dest = ns
        .and_then(|s| s.holders.first())
        .map(|h| (h.daddr, h.dport))
        .or_else(|| top(&n.destinations, 1).first().map(|(d, _)| *d));
    let dest_text = top_dest.map_or_else(
        || "the same destination".into(),
        |(a, p)| endpoint(Some(a), p),
    );
    advice.push(format!(
        "Reuse connections to {dest_text} (keep-alive, a connection pool) instead of opening one per request: a port is unique only per destination, and each closed connection keeps its port in TIME_WAIT for 60 s on the side that closed first."
    ));
    let tw_reuse = sys.and_then(|s| s.tcp_tw_reuse);
    let loopback = top_dest.is_some_and(|(a, _)| a.is_loopback());
    advice.push(match tw_reuse {
        Some(2) if loopback => format!(
            "net.ipv4.tcp_tw_reuse=2 already lets connect() reuse TIME_WAIT ports towards loopback destinations such as {dest_text}; ports held by open connections need a wider range or fewer connections."
        ),
        _ => format!(
            "net.ipv4.tcp_tw_reuse=1 (now {}) lets connect() take a port whose TIME_WAIT connection to the same destination is older than 1 s (needs tcp_timestamps). It only helps the connecting side; value 2 (the default) limits it to loopback.",
            tw_reuse.map_or("unknown".into(), |v| v.to_string())
        ),
    });
    advice.push(
        "bind() to port 0 (bind before connect) cannot take ports held in TIME_WAIT or used by any connection, while connect() can share a port across destinations and reuse TIME_WAIT ones: let connect() choose the port, or set IP_BIND_ADDRESS_NO_PORT before bind().".into(),
    );
    advice.push(
        "Spread connections over more destination addresses or ports, or more source addresses: each (source, destination) pair has its own set of ports.".into(),
    );
    if let (Some(ns), Some(max)) = (ns, sys.and_then(|s| s.tcp_max_tw_buckets)) {
        if ns.time_wait_total >= max {
            advice.push(format!(
                "TIME_WAIT sockets ({}) reached net.ipv4.tcp_max_tw_buckets ({max}): further closes skip TIME_WAIT.",
                ns.time_wait_total
            ));
        }
    }
    let (severity, what) = if failures.count > 0 {
        (
            Severity::Critical,
            format!(
                "{} connect() calls failed with EADDRNOTAVAIL",
                failures.count
            ),
        )
    } else {
        (
            Severity::Warning,
            format!(
                "{} port searches probed at least {threshold} ports (up to {})",
                struggled.count, n.max_probed
            ),
        )
    };
    let mut f = Finding::new(
        "ephemeral_port_exhaustion",
        severity,
        format!("netns {ino}"),
        &span,
    );
    f.summary = format!(
        "Ephemeral ports are exhausted in netns {ino} (range {range_text}): {what}{}.",
        top_dest.map_or(String::new(), |(a, p)| format!(
            "; most ports are held by connections to {}",
            endpoint(Some(a), p)
        ))
    );
    f.evidence = e.0;
    f.advice = advice;
    out.push(f);
}

#[cfg(test)]
mod tests {
    use super::super::{evidence::HostView, tests::*};
    use super::*;
    use crate::host::{sockets::Holder, HostSnapshot, Sysctls};

    fn connect(sec: u32, errno: i64) -> Value {
        ev(
            "connect",
            sec,
            json!({"latency_ns": 20_000, "errno": errno, "comm": "client", "daddr": "127.0.0.1", "dport": 5555}),
        )
    }

    fn search(sec: u32, errno: i64, probed: u64) -> Value {
        ev(
            "port_search",
            sec,
            json!({"latency_ns": 90_000, "errno": errno, "ports_probed": probed, "daddr": "127.0.0.1", "dport": 5555}),
        )
    }

    fn exhausted_host() -> (HostSnapshot, HostSnapshot) {
        let (start, mut now) = host(
            Sysctls {
                ip_local_port_range: Some((40000, 40007)),
                tcp_tw_reuse: Some(2),
                tcp_timestamps: Some(1),
                tcp_max_tw_buckets: Some(262144),
                ..Sysctls::default()
            },
            &[],
        );
        let ns = now.netns.get_mut(&NS).unwrap();
        ns.sockets_read = true;
        ns.ephemeral_in_use = 8;
        ns.ephemeral_time_wait = 3;
        ns.time_wait_total = 3;
        ns.holders.push(Holder {
            daddr: "127.0.0.1".parse().unwrap(),
            dport: 5555,
            ports: 8,
            time_wait: 3,
        });
        (start, now)
    }

    #[test]
    fn eaddrnotavail_is_exhaustion() {
        let mut events: Vec<Value> = (0..8).map(|i| connect(i, 0)).collect();
        events.push(connect(9, 99));
        events.push(search(9, 99, 8));
        let (start, now) = exhausted_host();
        let f = run(
            &events,
            HostView {
                start: Some(&start),
                now: Some(&now),
            },
        );
        assert_eq!(ids(&f), ["ephemeral_port_exhaustion"]);
        let p = &f[0];
        assert_eq!(p.severity, Severity::Critical);
        assert_eq!(p.count, 1, "the failure is counted once");
        assert_eq!(p.evidence["ip_local_port_range"], json!([40000, 40007]));
        assert_eq!(p.evidence["range_size"], 8);
        assert_eq!(p.evidence["connect_eaddrnotavail"], 1);
        assert_eq!(p.evidence["port_search_eaddrnotavail"], 1);
        assert_eq!(p.evidence["max_ports_probed"], 8);
        assert_eq!(p.evidence["ports_in_use"], 8);
        assert_eq!(p.evidence["ports_in_time_wait"], 3);
        assert_eq!(p.evidence["range_holders"][0]["dport"], 5555);
        assert_eq!(p.evidence["failing_destinations"][0]["count"], 2);
        assert_eq!(p.evidence["tcp_tw_reuse"], 2);
        assert!(p.summary.contains("127.0.0.1:5555"), "{}", p.summary);
        let all = p.advice.join("\n");
        for want in [
            "ip_local_port_range (now 40000-40007, 8 ports)",
            "tcp_tw_reuse=2 already",
            "IP_BIND_ADDRESS_NO_PORT",
            "Reuse connections to 127.0.0.1:5555",
        ] {
            assert!(all.contains(want), "{want}: {all}");
        }
        // Events alone (replay): still found, without host numbers.
        let f = run(&events, HostView::default());
        assert_eq!(f[0].evidence["range_size"], 28232);
        assert!(f[0].evidence.get("ports_in_use").is_none());
        assert!(f[0]
            .advice
            .iter()
            .any(|a| a.contains("tcp_tw_reuse=1 (now unknown)")));
        // Without the port_search hook: no port-search numbers at all.
        let f = run(&events[..9], HostView::default());
        assert_eq!(f[0].count, 1);
        assert!(
            f[0].evidence.get("max_ports_probed").is_none(),
            "{:?}",
            f[0].evidence
        );
    }

    #[test]
    fn slow_searches_are_a_warning_below_exhaustion() {
        let (start, now) = exhausted_host();
        let hv = HostView {
            start: Some(&start),
            now: Some(&now),
        };
        // Range 8: the threshold is MIN_STRUGGLE (16) ports.
        assert!(run(&[search(0, 0, 15)], hv).is_empty(), "threshold not met");
        let f = run(&[search(0, 0, 15), search(1, 0, 16), search(2, 0, 40)], hv);
        assert_eq!(ids(&f), ["ephemeral_port_exhaustion"]);
        assert_eq!(f[0].severity, Severity::Warning);
        assert_eq!(f[0].count, 2);
        assert_eq!(f[0].evidence["slow_searches"], 2);
        assert_eq!(f[0].evidence["max_ports_probed"], 40);
        // Default range (28232 ports): the threshold is 14116 ports.
        assert!(run(
            &[search(0, 0, 40), search(1, 0, 14_000)],
            HostView::default()
        )
        .is_empty());
        assert_eq!(run(&[search(0, 0, 14_116)], HostView::default()).len(), 1);
    }

    #[test]
    fn other_errors_are_not_exhaustion() {
        let events = vec![
            connect(0, 111),
            connect(1, 115),
            connect(2, 110),
            search(3, 0, 2),
        ];
        assert!(run(&events, HostView::default()).is_empty());
    }
}
