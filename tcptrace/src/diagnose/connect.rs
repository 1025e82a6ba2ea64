//! The client-side symptom: connect() taking a second or more, which is a
//! SYN (or its SYN-ACK) retransmitted after the initial 1 s timeout. When
//! the server is on this host too, the finding names the server-side cause
//! found by the other rules: the listener dropping SYNs, or its TIME_WAIT
//! connections rejecting the SYN by PAWS.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use serde_json::{json, Value};

use super::{
    endpoint,
    evidence::Evidence,
    listen::{self, Listeners},
    paws::{self, Paws},
    tally::{capped_insert, top, Span},
    Context, Finding, Severity,
};
use crate::event::json::{EventJson, Stamp};
use crate::host::Needs;

/// connect() at least this slow went through a SYN retransmission.
pub const SLOW_NS: u64 = 1_000_000_000;
const EINPROGRESS: i64 = 115;
const MAX_DESTS: usize = 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key {
    pub netns: u64,
    pub daddr: IpAddr,
    pub dport: u16,
}

#[derive(Clone, Debug, Default)]
pub struct Dest {
    pub slow: Span,
    pub max_latency_ns: u64,
    pub errors: BTreeMap<String, u64>,
    pub comms: BTreeMap<String, u64>,
    pub saddrs: BTreeSet<IpAddr>,
}

#[derive(Clone, Debug, Default)]
pub struct Connects {
    pub slow: BTreeMap<Key, Dest>,
    /// Blocking connects seen per destination (for the ratio).
    pub totals: BTreeMap<Key, u64>,
    pub untracked: u64,
}

impl Connects {
    pub fn observe(&mut self, ev: &EventJson<'_>, netns: u64, at: Option<&Stamp>) {
        let (Some(daddr), Some(dport), Some(latency), Some(errno)) =
            (ev.daddr, ev.dport, ev.latency_ns, ev.errno.map(i64::from))
        else {
            return;
        };
        if errno == EINPROGRESS {
            // Non-blocking: the handshake time is not in this latency.
            return;
        }
        let key = Key {
            netns,
            daddr,
            dport,
        };
        if let Some(n) = capped_insert(&mut self.totals, key, MAX_DESTS) {
            *n += 1;
        }
        if latency < SLOW_NS {
            return;
        }
        let Some(d) = capped_insert(&mut self.slow, key, MAX_DESTS) else {
            self.untracked += 1;
            return;
        };
        d.slow.add(at);
        d.max_latency_ns = d.max_latency_ns.max(latency);
        let err = ev
            .error
            .as_ref()
            .map_or_else(|| errno.to_string(), |e| e.text().into_owned());
        *d.errors.entry(err).or_default() += 1;
        if let Some(c) = ev.known_comm() {
            if let Some(n) = capped_insert(&mut d.comms, c.to_owned(), 16) {
                *n += 1;
            }
        }
        if let Some(s) = ev.saddr {
            if d.saddrs.len() < 8 {
                d.saddrs.insert(s);
            }
        }
    }

    pub fn needs(&self, n: &mut Needs) {
        n.netns.extend(self.slow.keys().map(|k| k.netns));
    }

    pub fn findings(
        &self,
        ctx: &Context<'_>,
        ls: &Listeners,
        paws_: &Paws,
        out: &mut Vec<Finding>,
    ) {
        for (k, d) in &self.slow {
            out.push(finding(ctx, k, d, ls, paws_, self.totals.get(k).copied()));
        }
    }
}

fn finding(
    ctx: &Context<'_>,
    k: &Key,
    d: &Dest,
    ls: &Listeners,
    paws_: &Paws,
    total: Option<u64>,
) -> Finding {
    let dest = endpoint(Some(k.daddr), k.dport);
    // Server-side causes on this host.
    let mut causes: Vec<Value> = Vec::new();
    let mut because: Vec<String> = Vec::new();
    for (lk, l) in ls.related(k.netns, Some(k.daddr), k.dport) {
        let id = if l.accept_full.count
            + l.overflow_ghost.count
            + l.overflow_reset.count
            + l.overflow_unknown.count
            > 0
        {
            "accept_queue_overflow"
        } else {
            "syn_queue_full"
        };
        causes.push(json!({"id": id, "subject": listen::subject(lk)}));
        because.push(match id {
            "accept_queue_overflow" => format!(
                "the accept queue of the local listener {} is overflowing",
                endpoint(lk.addr, lk.port)
            ),
            _ => format!(
                "the SYN queue of the local listener {} is full",
                endpoint(lk.addr, lk.port)
            ),
        });
    }
    for s in &d.saddrs {
        if let Some((ns, peer, n)) = paws_.time_wait_rejects(*s, k.dport) {
            let id = "paws_time_wait_reuse";
            causes.push(
                json!({"id": id, "subject": paws::subject(ns, peer), "time_wait_rejects": n}),
            );
            because.push(format!(
                "the server rejected {n} SYNs from {peer} by PAWS against TIME_WAIT connections"
            ));
        }
    }
    let h = &ctx.host;
    let local = h.listener(k.netns, k.dport, Some(k.daddr));
    if causes.is_empty() && local.is_some() {
        if let Some(n) = h.delta(k.netns, "ListenOverflows").filter(|&n| n > 0) {
            causes.push(json!({"id": "accept_queue_overflow", "subject": format!("netns {}", k.netns), "source": "counters"}));
            because.push(format!(
                "ListenOverflows grew by {n} in this namespace, where {dest} is a local listener"
            ));
        }
    }
    let mut e = Evidence::default();
    let errors: serde_json::Map<String, Value> = d
        .errors
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    let comms: Vec<Value> = top(&d.comms, 5)
        .into_iter()
        .map(|(c, n)| json!({"comm": c, "count": n}))
        .collect();
    e.set("netns", k.netns)
        .set("daddr", k.daddr.to_string())
        .set("dport", k.dport)
        .set("slow_connects", d.slow.count)
        .opt("connects_seen", total)
        .set("max_latency_ns", d.max_latency_ns)
        .set("results", Value::Object(errors))
        .set("processes", Value::Array(comms))
        .set("local_listener", local.is_some() || !causes.is_empty())
        .set("server_side", Value::Array(causes.clone()));
    let mut advice = Vec::new();
    if causes.is_empty() {
        advice.push(format!(
            "The SYN to {dest} or its SYN-ACK was lost and resent after the 1 s initial timeout (then 3 s, 7 s...). Look at the server side (tcptrace there shows syn_drop, listen_overflow and paws_reject events), at firewalls and conntrack tables dropping SYNs, and at packet loss on the path."
        ));
    } else {
        for c in &causes {
            advice.push(format!(
                "Fix the server side: see {} for {}.",
                c["id"].as_str().unwrap_or(""),
                c["subject"].as_str().unwrap_or("")
            ));
        }
    }
    advice.push(
        "The steps of 1 s, 3 s, 7 s... come from the SYN retransmission timer; net.ipv4.tcp_syn_retries bounds how long connect() keeps trying. Client timeouts only hide the cause.".into(),
    );
    let mut f = Finding::new(
        "slow_connect",
        Severity::Warning,
        format!("destination {dest} netns {}", k.netns),
        &d.slow,
    );
    f.summary = format!(
        "connect() to {dest} took 1 s or more {} times{} (up to {:.1} s): the SYN was retransmitted{}.",
        d.slow.count,
        total.map_or(String::new(), |t| format!(" of {t}")),
        d.max_latency_ns as f64 / 1e9,
        if because.is_empty() { String::new() } else { format!(" because {}", because.join(", and ")) }
    );
    f.evidence = e.0;
    f.advice = advice;
    f
}

#[cfg(test)]
mod tests {
    use super::super::{evidence::HostView, tests::*};
    use super::*;
    use crate::host::{Listener as SysListener, Sysctls};

    fn conn(sec: u32, latency_ns: u64, errno: i64) -> Value {
        ev(
            "connect",
            sec,
            json!({"latency_ns": latency_ns, "errno": errno, "error": if errno == 0 { "OK" } else { "ETIMEDOUT" },
                   "comm": "curl", "saddr": "10.0.0.9", "sport": 41000 + sec, "daddr": "10.0.0.1", "dport": 8080}),
        )
    }

    #[test]
    fn slow_connect_alone() {
        let events = vec![
            conn(0, 1_020_000_000, 0),
            conn(1, 300_000, 0),
            conn(2, 3_050_000_000, 0),
        ];
        let f = run(&events, HostView::default());
        assert_eq!(ids(&f), ["slow_connect"]);
        assert_eq!(f[0].count, 2);
        assert_eq!(f[0].evidence["connects_seen"], 3);
        assert_eq!(f[0].evidence["max_latency_ns"], 3_050_000_000u64);
        assert_eq!(f[0].evidence["server_side"], json!([]));
        assert!(f[0].advice[0].contains("SYN-ACK was lost"));
    }

    #[test]
    fn under_a_second_or_nonblocking_is_not_slow() {
        let events = vec![conn(0, 999_999_999, 0), conn(1, 5_000_000_000, 115)];
        assert!(run(&events, HostView::default()).is_empty());
    }

    #[test]
    fn linked_to_a_local_listener_dropping_syns() {
        let mut events = vec![conn(0, 1_020_000_000, 0)];
        for i in 0..2 {
            events.push(ev("syn_drop", i, json!({"cause": "accept_queue_full", "listen_addr": "0.0.0.0", "saddr": "10.0.0.1", "sport": 8080, "daddr": "10.0.0.9", "backlog": 3, "backlog_max": 2})));
        }
        let f = run(&events, HostView::default());
        assert_eq!(ids(&f), ["accept_queue_overflow", "slow_connect"]);
        let s = &f[1];
        assert_eq!(s.evidence["server_side"][0]["id"], "accept_queue_overflow");
        assert_eq!(s.evidence["local_listener"], true);
        assert!(
            s.summary
                .contains("accept queue of the local listener 0.0.0.0:8080"),
            "{}",
            s.summary
        );
        assert!(s.advice[0].contains("see accept_queue_overflow"));
    }

    #[test]
    fn linked_to_time_wait_paws_on_this_host() {
        let mut events = vec![conn(0, 1_020_000_000, 0)];
        events.push(ev("paws_reject", 0, json!({"site": "time_wait", "tsval": 100, "ts_recent": 1_500_000_000u64, "daddr": "10.0.0.9", "dport": 41000, "sport": 8080})));
        let f = run(&events, HostView::default());
        assert_eq!(ids(&f), ["paws_time_wait_reuse", "slow_connect"]);
        assert_eq!(
            f[1].evidence["server_side"][0]["id"],
            "paws_time_wait_reuse"
        );
    }

    #[test]
    fn linked_through_counters_when_the_listener_is_local() {
        let (start, mut now) = host(Sysctls::default(), &[("ListenOverflows", 4)]);
        now.netns.get_mut(&NS).unwrap().listeners.push(SysListener {
            addr: "0.0.0.0".parse().unwrap(),
            port: 8080,
            backlog: 3,
            inode: 9,
        });
        let f = run(
            &[conn(0, 1_020_000_000, 0)],
            HostView {
                start: Some(&start),
                now: Some(&now),
            },
        );
        assert_eq!(ids(&f), ["accept_queue_overflow", "slow_connect"]);
        assert_eq!(f[1].evidence["server_side"][0]["source"], "counters");
    }
}
