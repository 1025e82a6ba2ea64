//! The client-side symptom: connect() taking a second or more, which is a
//! SYN (or its SYN-ACK) retransmitted after the initial 1 s timeout. When
//! the server is on this host too, in any network namespace
//! ([`server::resolve`]), the finding names the server-side cause found by
//! the other rules: the listener dropping SYNs, or its TIME_WAIT
//! connections rejecting the SYN by PAWS. The advice gives the SYN
//! schedule of the client's namespace ([`syn_timer`]) beside the measured
//! connect() times.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use serde_json::{json, Value};

use super::{
    endpoint,
    evidence::Evidence,
    listen::Listeners,
    paws::{self, Paws},
    server,
    syn_timer::{self, seconds, SynSchedule},
    tally::{capped_insert, top, Span},
    Context, Finding, Severity,
};
use crate::event::json::{EventJson, Outcome, Stamp};
use crate::host::Needs;

/// connect() at least this slow went through a SYN retransmission.
pub const SLOW_NS: u64 = 1_000_000_000;
const EINPROGRESS: i64 = 115;
const MAX_DESTS: usize = 1024;
/// Distinct slow connect() times (ms) kept per destination.
const MAX_LATENCIES: usize = 32;
/// SYN retransmissions whose measured times are kept, by their place in
/// the handshake (tcptrace times the first 6).
const MAX_RESENDS: usize = 16;

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
    /// Slow connect() times in ms, and how many took each.
    pub latencies_ms: BTreeMap<u64, u64>,
    /// Handshakes only: SYNs retransmitted by the slow ones, and how many
    /// the application gave up on (closed before an answer).
    pub syn_retransmits: u64,
    pub given_up: u64,
    /// Handshakes only: the measured time of the 1st, 2nd, ... SYN
    /// retransmission of the slow ones (`syn_retransmit_us`).
    pub resends: Vec<Resend>,
}

/// The times measured for one SYN retransmission (the n-th of its
/// handshake) over the slow handshakes to one destination.
#[derive(Clone, Copy, Debug, Default)]
pub struct Resend {
    pub count: u64,
    pub min_us: u32,
    pub max_us: u32,
}

impl Dest {
    /// The times of one handshake's timed SYN retransmissions, in order.
    fn resent_at(&mut self, times_us: &[u32]) {
        for (i, &us) in times_us.iter().enumerate() {
            if self.resends.len() <= i {
                self.resends.push(Resend {
                    count: 0,
                    min_us: us,
                    max_us: us,
                });
            }
            let r = &mut self.resends[i];
            r.count += 1;
            r.min_us = r.min_us.min(us);
            r.max_us = r.max_us.max(us);
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct Connects {
    pub slow: BTreeMap<Key, Dest>,
    /// Blocking connects seen per destination (for the ratio), but for the
    /// ones in `run`.
    totals: BTreeMap<Key, u64>,
    /// The destination of the latest connects and how many went there in a
    /// row: a burst to one destination costs no map search per connect.
    run: Option<(Key, u64)>,
    pub untracked: u64,
    /// The same from `handshake` events (every active open, blocking or
    /// not). Where a destination has handshake events, the finding uses
    /// them: a blocking connect() is then measured once, by its handshake.
    pub hs_slow: BTreeMap<Key, Dest>,
    pub hs_totals: BTreeMap<Key, u64>,
}

/// Whether a handshake went through the SYN timer or was given up on: a
/// SYN retransmitted, a timeout, the application closing it before an
/// answer came (a client timeout such as `curl --connect-timeout 0.1`), or
/// a second or more.
fn slow_handshake(ev: &EventJson<'_>, ns: u64) -> bool {
    ev.syn_retransmits.unwrap_or(0) > 0
        || matches!(ev.outcome, Some(Outcome::Timeout | Outcome::Closed))
        || ns >= SLOW_NS
}

impl Connects {
    fn count(&mut self, key: Key) {
        if let Some((k, n)) = &mut self.run {
            if *k == key {
                *n += 1;
                return;
            }
        }
        if let Some((k, n)) = self.run.replace((key, 1)) {
            if let Some(t) = capped_insert(&mut self.totals, k, MAX_DESTS) {
                *t += n;
            }
        }
    }

    /// Blocking connects seen to `k`.
    fn total(&self, k: &Key) -> Option<u64> {
        let run = self.run.filter(|(rk, _)| rk == k).map(|(_, n)| n);
        match (self.totals.get(k), run) {
            (None, None) => None,
            (t, r) => Some(t.copied().unwrap_or(0) + r.unwrap_or(0)),
        }
    }

    /// A connect that this rule only counts (fast, or non-blocking) is
    /// counted and `true`; `false` for one it wants whole, not yet counted.
    /// The decoded path ([`super::Engine::observe_decoded`]) asks first, so
    /// most connects never need their JSON view.
    pub fn counted(&mut self, key: Key, latency: u64, errno: i64) -> bool {
        if errno == EINPROGRESS {
            // Non-blocking: the handshake time is not in this latency.
            return true;
        }
        if latency >= SLOW_NS {
            return false;
        }
        self.count(key);
        true
    }

    pub fn observe_handshake(&mut self, ev: &EventJson<'_>, netns: u64, at: Option<&Stamp>) {
        let (Some(daddr), Some(dport), Some(ns)) = (ev.daddr, ev.dport, ev.handshake_ns) else {
            return;
        };
        let key = Key {
            netns,
            daddr,
            dport,
        };
        if let Some(n) = capped_insert(&mut self.hs_totals, key, MAX_DESTS) {
            *n += 1;
        }
        if !slow_handshake(ev, ns) {
            return;
        }
        let Some(d) = capped_insert(&mut self.hs_slow, key, MAX_DESTS) else {
            self.untracked += 1;
            return;
        };
        let result = ev.outcome.map_or("unknown", Outcome::name);
        d.note(ev, ns, result.to_owned(), at);
        d.syn_retransmits += u64::from(ev.syn_retransmits.unwrap_or(0));
        // At most 6 per handshake in tcptrace's own; capped for hand-written input.
        let times = ev.syn_retransmit_us.as_deref().unwrap_or(&[]);
        d.resent_at(&times[..times.len().min(MAX_RESENDS)]);
        if ev.outcome == Some(Outcome::Closed) {
            d.given_up += 1;
        }
    }

    pub fn observe(&mut self, ev: &EventJson<'_>, netns: u64, at: Option<&Stamp>) {
        let (Some(daddr), Some(dport), Some(latency), Some(errno)) =
            (ev.daddr, ev.dport, ev.latency_ns, ev.errno.map(i64::from))
        else {
            return;
        };
        let key = Key {
            netns,
            daddr,
            dport,
        };
        if self.counted(key, latency, errno) {
            return;
        }
        self.count(key);
        let Some(d) = capped_insert(&mut self.slow, key, MAX_DESTS) else {
            self.untracked += 1;
            return;
        };
        let err = ev
            .error
            .as_ref()
            .map_or_else(|| errno.to_string(), |e| e.text().into_owned());
        d.note(ev, latency, err, at);
    }
}

impl Dest {
    /// One slow call or handshake of `latency` ns that ended in `result`.
    fn note(&mut self, ev: &EventJson<'_>, latency: u64, result: String, at: Option<&Stamp>) {
        let d = self;
        d.slow.add(at);
        d.max_latency_ns = d.max_latency_ns.max(latency);
        if let Some(n) = capped_insert(&mut d.latencies_ms, latency / 1_000_000, MAX_LATENCIES) {
            *n += 1;
        }
        *d.errors.entry(result).or_default() += 1;
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
}

impl Connects {
    pub fn needs(&self, n: &mut Needs) {
        n.netns.extend(self.slow.keys().map(|k| k.netns));
        n.netns.extend(self.hs_slow.keys().map(|k| k.netns));
    }

    pub fn findings(
        &self,
        ctx: &Context<'_>,
        ls: &Listeners,
        paws_: &Paws,
        out: &mut Vec<Finding>,
    ) {
        for (k, d) in &self.hs_slow {
            let total = self.hs_totals.get(k).copied();
            out.push(finding(ctx, k, d, ls, paws_, total, true));
        }
        for (k, d) in &self.slow {
            if self.hs_totals.contains_key(k) {
                continue;
            }
            let total = self.total(k);
            out.push(finding(ctx, k, d, ls, paws_, total, false));
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
    handshakes: bool,
) -> Finding {
    let dest = endpoint(Some(k.daddr), k.dport);
    let h = &ctx.host;
    // Server-side causes on this host, in any namespace.
    let resolved = server::resolve(ctx, k.netns, k.daddr, k.dport, &d.saddrs, ls);
    let mut causes: Vec<Value> = resolved.sides.iter().map(server::Side::to_json).collect();
    let mut because: Vec<String> = resolved.sides.iter().map(|s| s.because(k.netns)).collect();
    let mut paws_cause = false;
    for s in &d.saddrs {
        if let Some((ns, peer, n)) = paws_.time_wait_rejects(*s, k.dport) {
            let id = "paws_time_wait_reuse";
            paws_cause = true;
            causes.push(json!({"id": id, "subject": paws::subject(ns, peer), "netns": ns, "port": k.dport, "time_wait_rejects": n}));
            because.push(format!(
                "the server rejected {n} SYNs from {peer} to port {} by PAWS against TIME_WAIT connections",
                k.dport
            ));
        }
    }
    if !paws_cause && !k.daddr.is_loopback() {
        // Behind a NAT the server sees the NAT's address, not the
        // client's: rejects at the destination itself, from any peer.
        for (ns, peer, n) in paws_.time_wait_rejects_at(k.daddr, k.dport) {
            let id = "paws_time_wait_reuse";
            paws_cause = true;
            causes.push(json!({"id": id, "subject": paws::subject(ns, peer), "netns": ns, "port": k.dport, "time_wait_rejects": n, "via_nat": true}));
            because.push(format!(
                "the server rejected {n} SYNs from {peer} to port {} by PAWS against TIME_WAIT connections ({peer} is not this client's address: a NAT rewrote it)",
                k.dport
            ));
        }
    }
    let local = h.listener(k.netns, k.dport, Some(k.daddr));
    let sched = SynSchedule::for_netns(k.netns, h.sysctls(k.netns));
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
    let latencies: Vec<Value> = d
        .latencies_ms
        .iter()
        .map(|(ms, n)| json!({"ms": ms, "count": n, "syn_resends": sched.resends_before(ms * 1_000_000)}))
        .collect();
    e.set("netns", k.netns)
        .set("daddr", k.daddr.to_string())
        .set("dport", k.dport)
        .set("slow_connects", d.slow.count)
        .opt("connects_seen", total)
        .set("measured", if handshakes { "handshake" } else { "connect" })
        .set("max_latency_ns", d.max_latency_ns)
        .set("latencies_ms", Value::Array(latencies))
        .set("results", Value::Object(errors))
        .set("processes", Value::Array(comms))
        .set("local_listener", local.is_some() || !causes.is_empty())
        .set("server_side", Value::Array(causes.clone()));
    if handshakes {
        e.set("syn_retransmits", d.syn_retransmits)
            .set("given_up", d.given_up);
        if !d.resends.is_empty() {
            let resends: Vec<Value> = d
                .resends
                .iter()
                .map(|r| json!({"count": r.count, "min_ms": r.min_us / 1000, "max_ms": r.max_us / 1000}))
                .collect();
            e.set("syn_resends_measured", Value::Array(resends));
        }
    }
    if resolved.ambiguous {
        e.set("server_side_ambiguous", true);
    }
    let mut schedule = serde_json::Map::new();
    schedule.insert("resend_ms".into(), json!(sched.resend_ms));
    schedule.insert("give_up_ms".into(), json!(sched.give_up_ms));
    schedule.insert("syn_retries".into(), json!(sched.syn_retries));
    if let Some(l) = sched.linear_timeouts {
        schedule.insert("linear_timeouts".into(), json!(l));
    }
    schedule.insert(
        "source".into(),
        json!(match sched.source {
            syn_timer::Source::Netns(_) => "sysctls",
            syn_timer::Source::Defaults => "defaults",
        }),
    );
    e.set("syn_schedule", Value::Object(schedule));
    let mut advice = Vec::new();
    if causes.is_empty() {
        advice.push(format!(
            "The SYN to {dest} or its SYN-ACK was lost and resent on the SYN timer. Look at the server side (tcptrace there shows syn_drop, listen_overflow and paws_reject events), at firewalls and conntrack tables dropping SYNs, and at packet loss on the path."
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
    if resolved.ambiguous {
        let mut nss: Vec<u64> = resolved.sides.iter().map(|s| s.netns).collect();
        nss.sort_unstable();
        nss.dedup();
        let list: Vec<String> = nss.iter().map(u64::to_string).collect();
        advice.push(format!(
            "{} answers on port {} in several namespaces (netns {}) and nothing seen tells which one the client's route reaches: `ip route get {}` in netns {} names the way out.",
            k.daddr,
            k.dport,
            list.join(", "),
            k.daddr,
            k.netns
        ));
    }
    if paws_cause {
        advice.push(
            "A SYN rejected by a TIME_WAIT socket's PAWS check is answered with a bare ACK; the client answers it with a RST and resends the SYN within milliseconds (8-12 ms measured on 6.18). A connect() this slow means that ACK or RST was lost or filtered, so the SYN timer resent it.".into(),
        );
    }
    let measured: Vec<String> = d
        .latencies_ms
        .keys()
        .take(8)
        .map(|ms| format!("{} s", seconds(ms * 1_000_000)))
        .collect();
    let resends: Vec<String> = d
        .resends
        .iter()
        .take(8)
        .map(|r| {
            let (lo, hi) = (
                seconds(u64::from(r.min_us) * 1000),
                seconds(u64::from(r.max_us) * 1000),
            );
            if lo == hi {
                format!("{lo} s")
            } else {
                format!("{lo}-{hi} s")
            }
        })
        .collect();
    let resends = if resends.is_empty() {
        String::new()
    } else {
        format!("; SYNs resent at {}", resends.join(", "))
    };
    advice.push(format!(
        "With {}, connect() resends its SYN at {} after the first and gives up after {} s (ETIMEDOUT); measured here: {}{}{resends}. Client timeouts only hide the cause.",
        sched.settings_text(),
        sched.resends_text(8),
        seconds(sched.give_up_ms * 1_000_000),
        measured.join(", "),
        if d.latencies_ms.len() > 8 { ", ..." } else { "" },
    ));
    let mut f = Finding::new(
        "slow_connect",
        Severity::Warning,
        format!("destination {dest} netns {}", k.netns),
        &d.slow,
    );
    let because = if because.is_empty() {
        String::new()
    } else {
        format!(" because {}", because.join(", and "))
    };
    f.summary = if handshakes {
        format!(
            "{} of {} handshakes to {dest} went through the SYN timer or were given up (longest {} s; {} SYN retransmits, {} closed by the client before an answer){because}.",
            d.slow.count,
            total.unwrap_or(d.slow.count),
            seconds(d.max_latency_ns),
            d.syn_retransmits,
            d.given_up,
        )
    } else {
        format!(
            "connect() to {dest} took 1 s or more {} times{} (up to {} s): the SYN was retransmitted{because}.",
            d.slow.count,
            total.map_or(String::new(), |t| format!(" of {t}")),
            seconds(d.max_latency_ns),
        )
    };
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

    fn handshake(sec: u32, ns: u64, outcome: &str, rtx: u32) -> Value {
        ev(
            "handshake",
            sec,
            json!({"handshake_ns": ns, "outcome": outcome, "syn_retransmits": rtx, "errno": 0, "error": "OK",
                   "comm": "curl", "saddr": "10.0.0.9", "sport": 42000 + sec, "daddr": "10.0.0.1", "dport": 8080}),
        )
    }

    fn timed_handshake(sec: u32, ns: u64, times_us: &[u32]) -> Value {
        let mut v = handshake(sec, ns, "established", times_us.len() as u32);
        v["syn_retransmit_us"] = json!(times_us);
        v
    }

    #[test]
    fn measured_resend_times_in_evidence_and_advice() {
        let events = vec![
            timed_handshake(0, 1_020_000_000, &[1_004_000]),
            timed_handshake(1, 3_050_000_000, &[1_012_000, 3_021_000]),
            handshake(2, 1_010_000_000, "established", 1),
        ];
        let f = run(&events, HostView::default());
        let e = &f[0].evidence;
        assert_eq!(
            e["syn_resends_measured"],
            json!([{"count": 2, "min_ms": 1004, "max_ms": 1012}, {"count": 1, "min_ms": 3021, "max_ms": 3021}])
        );
        let last = f[0].advice.last().unwrap();
        assert!(
            last.contains("; SYNs resent at 1-1.01 s, 3.02 s."),
            "{last}"
        );
        // Without times (an older recording): neither.
        let f = run(
            &[handshake(0, 1_020_000_000, "established", 1)],
            HostView::default(),
        );
        assert!(f[0].evidence.get("syn_resends_measured").is_none());
        assert!(!f[0].advice.last().unwrap().contains("resent at"));
    }

    #[test]
    fn handshakes_count_non_blocking_and_given_up_connects_once() {
        let events = vec![
            // A blocking connect after one retransmission: its handshake
            // and its connect() event, counted once.
            handshake(0, 1_020_000_000, "established", 1),
            conn(0, 1_020_000_000, 0),
            // Non-blocking: EINPROGRESS, then given up after 100 ms.
            conn(1, 50_000, 115),
            handshake(1, 100_000_000, "closed", 0),
            // Healthy and refused ones are not slow.
            handshake(2, 300_000, "established", 0),
            handshake(3, 200_000, "reset", 0),
        ];
        let f = run(&events, HostView::default());
        assert_eq!(ids(&f), ["slow_connect"]);
        assert_eq!(f[0].count, 2);
        let e = &f[0].evidence;
        assert_eq!(e["measured"], "handshake");
        assert_eq!(e["connects_seen"], 4);
        assert_eq!(e["syn_retransmits"], 1);
        assert_eq!(e["given_up"], 1);
        assert_eq!(e["results"], json!({"closed": 1, "established": 1}));
        assert!(
            f[0].summary.starts_with("2 of 4 handshakes to 10.0.0.1:8080 went through the SYN timer or were given up (longest 1.02 s; 1 SYN retransmits, 1 closed"),
            "{}",
            f[0].summary
        );
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

    const NS2: u64 = NS + 1;
    const NS3: u64 = NS + 2;

    /// A syn_drop (accept queue full) at 0.0.0.0:8080 of `netns`, reached
    /// at 10.0.0.1 from `peer`.
    fn drop_in(netns: u64, sec: u32, peer: &str) -> Value {
        ev(
            "syn_drop",
            sec,
            json!({"netns": netns, "cause": "accept_queue_full", "listen_addr": "0.0.0.0", "saddr": "10.0.0.1", "sport": 8080, "daddr": peer, "backlog": 3, "backlog_max": 2}),
        )
    }

    #[test]
    fn the_listener_in_another_namespace_that_the_client_reached() {
        let mut events = vec![conn(0, 1_030_000_000, 0)];
        events.extend((0..3).map(|i| drop_in(NS2, i, "10.0.0.9")));
        // Same address and port elsewhere, SYNs from another client only.
        events.push(drop_in(NS3, 1, "10.0.0.50"));
        let f = run(&events, HostView::default());
        let s = f.iter().find(|f| f.id == "slow_connect").unwrap();
        let side = s.evidence["server_side"].as_array().unwrap();
        assert_eq!(side.len(), 1, "{side:?}");
        assert_eq!(side[0]["id"], "accept_queue_overflow");
        assert_eq!(
            side[0]["subject"],
            format!("listener 0.0.0.0:8080 netns {NS2}")
        );
        assert_eq!(side[0]["netns"], NS2);
        assert_eq!(side[0]["match"], "route");
        assert_eq!(side[0]["events"], 3);
        assert_eq!(s.evidence["local_listener"], true);
        assert!(s.evidence.get("server_side_ambiguous").is_none());
        assert!(
            s.summary.contains(&format!(
                "(up to 1.03 s): the SYN was retransmitted because the accept queue of listener 0.0.0.0:8080 in netns {NS2} is overflowing"
            )),
            "{}",
            s.summary
        );
        assert!(
            s.advice[0].contains(&format!("netns {NS2}")),
            "{:?}",
            s.advice
        );
    }

    #[test]
    fn one_address_in_several_namespaces_is_ambiguous() {
        let mut events = vec![conn(0, 1_030_000_000, 0)];
        events.push(drop_in(NS2, 0, "10.0.0.9"));
        events.push(drop_in(NS3, 0, "10.0.0.9"));
        let f = run(&events, HostView::default());
        let s = f.iter().find(|f| f.id == "slow_connect").unwrap();
        let nets: Vec<&Value> = s.evidence["server_side"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| &c["netns"])
            .collect();
        assert_eq!(nets, [&json!(NS2), &json!(NS3)]);
        assert_eq!(s.evidence["server_side_ambiguous"], true);
        assert!(
            s.advice.iter().any(|a| a.contains("ip route get 10.0.0.1")),
            "{:?}",
            s.advice
        );
    }

    #[test]
    fn the_own_namespace_wins_and_loopback_never_leaves_it() {
        // 10.0.0.1 is also answered in the client's own namespace.
        let mut events = vec![conn(0, 1_030_000_000, 0), drop_in(NS, 0, "10.0.0.9")];
        events.push(drop_in(NS2, 0, "10.0.0.9"));
        let f = run(&events, HostView::default());
        let s = f.iter().find(|f| f.id == "slow_connect").unwrap();
        assert_eq!(s.evidence["server_side"][0]["netns"], NS);
        assert_eq!(s.evidence["server_side"][0]["match"], "local");
        assert_eq!(s.evidence["server_side"].as_array().unwrap().len(), 1);
        // A loopback destination in another namespace is another listener.
        let mut c = conn(0, 1_030_000_000, 0);
        c["daddr"] = json!("127.0.0.1");
        c["saddr"] = json!("127.0.0.1");
        let mut d = drop_in(NS2, 0, "127.0.0.1");
        d["saddr"] = json!("127.0.0.1");
        let f = run(&[c, d], HostView::default());
        let s = f.iter().find(|f| f.id == "slow_connect").unwrap();
        assert_eq!(s.evidence["server_side"], json!([]));
    }

    #[test]
    fn counters_of_another_namespace_that_owns_the_address() {
        let (mut start, mut now) = host(Sysctls::default(), &[("ListenOverflows", 0)]);
        start
            .netstat
            .insert(NS2, [("ListenOverflows".to_owned(), 10)].into());
        now.netstat
            .insert(NS2, [("ListenOverflows".to_owned(), 15)].into());
        let mut ns2 = crate::host::NetnsSnapshot::default();
        ns2.listeners.push(SysListener {
            addr: "0.0.0.0".parse().unwrap(),
            port: 8080,
            backlog: 3,
            inode: 9,
        });
        ns2.set_local_addrs(vec!["10.0.0.1".parse().unwrap()]);
        ns2.listener_peers
            .insert(8080, ["10.0.0.9".parse().unwrap()].into());
        now.netns.insert(NS2, ns2);
        // As a recording carries it: the snapshot read back from JSON.
        let now: crate::host::HostSnapshot =
            serde_json::from_value(json!(now)).expect("a snapshot read back");
        let f = run(
            &[conn(0, 2_040_000_000, 0)],
            HostView {
                start: Some(&start),
                now: Some(&now),
            },
        );
        let s = f.iter().find(|f| f.id == "slow_connect").unwrap();
        let c = &s.evidence["server_side"][0];
        assert_eq!(c["subject"], format!("netns {NS2}"));
        assert_eq!(c["source"], "counters");
        assert_eq!(c["match"], "route");
        assert_eq!(c["listen_addr"], "0.0.0.0");
        assert_eq!(c["listen_overflows"], 5);
        assert!(s.summary.contains("ListenOverflows +5"), "{}", s.summary);
        // The counter-only finding it points at exists.
        assert!(f
            .iter()
            .any(|x| x.id == "accept_queue_overflow" && x.subject == format!("netns {NS2}")));
    }

    #[test]
    fn time_wait_rejects_behind_a_nat_link_through_the_destination() {
        // The client is 10.0.0.9; the server saw its NAT, 192.0.2.7.
        let rej = |sec: u32, local: &str, port: u16| {
            ev(
                "paws_reject",
                sec,
                json!({"netns": NS2, "site": "time_wait", "tsval": 100, "ts_recent": 1_500_000_000u64, "saddr": local, "sport": port, "daddr": "192.0.2.7", "dport": 40000}),
            )
        };
        let events = vec![
            conn(0, 1_020_000_000, 0),
            rej(0, "10.0.0.1", 8080),
            rej(1, "10.0.0.1", 8080),
            // Another address or port of the server: not this destination.
            rej(2, "10.0.0.2", 8080),
            rej(3, "10.0.0.1", 9090),
        ];
        let f = run(&events, HostView::default());
        let s = f.iter().find(|f| f.id == "slow_connect").unwrap();
        let side = &s.evidence["server_side"][0];
        assert_eq!(side["id"], "paws_time_wait_reuse", "{:?}", s.evidence);
        assert_eq!(side["netns"], NS2);
        assert_eq!(side["time_wait_rejects"], 2, "{side}");
        assert_eq!(side["via_nat"], true);
        assert!(
            s.summary.contains("from 192.0.2.7 to port 8080") && s.summary.contains("a NAT"),
            "{}",
            s.summary
        );
    }

    #[test]
    fn time_wait_rejects_count_the_destination_port_only() {
        let rej = |sec: u32, port: u16| {
            ev(
                "paws_reject",
                sec,
                json!({"site": "time_wait", "tsval": 100, "ts_recent": 1_500_000_000u64, "daddr": "10.0.0.9", "dport": 41000 + sec, "sport": port}),
            )
        };
        let events = vec![
            conn(0, 1_020_000_000, 0),
            rej(0, 8080),
            rej(1, 9090),
            rej(2, 9090),
        ];
        let f = run(&events, HostView::default());
        let s = f.iter().find(|f| f.id == "slow_connect").unwrap();
        assert_eq!(s.evidence["server_side"][0]["time_wait_rejects"], 1);
        assert!(
            s.summary
                .contains("rejected 1 SYNs from 10.0.0.9 to port 8080"),
            "{}",
            s.summary
        );
        assert!(
            s.advice.iter().any(|a| a.contains("8-12 ms")),
            "{:?}",
            s.advice
        );
        // Rejects to other ports only: not this destination's cause.
        let f = run(
            &[conn(0, 1_020_000_000, 0), rej(1, 9090)],
            HostView::default(),
        );
        let s = f.iter().find(|f| f.id == "slow_connect").unwrap();
        assert_eq!(s.evidence["server_side"], json!([]));
    }

    #[test]
    fn advice_gives_the_derived_schedule_and_the_measured_times() {
        let (start, now) = host(
            Sysctls {
                tcp_syn_retries: Some(6),
                tcp_syn_linear_timeouts: Some(4),
                ..Sysctls::default()
            },
            &[],
        );
        let events = [conn(0, 1_030_000_000, 0), conn(1, 7_120_000_000, 0)];
        let f = run(
            &events,
            HostView {
                start: Some(&start),
                now: Some(&now),
            },
        );
        let s = &f[0];
        let last = s.advice.last().unwrap();
        assert!(
            last.contains(&format!("net.ipv4.tcp_syn_retries=6, tcp_syn_linear_timeouts=4 in netns {NS}, connect() resends its SYN at 1, 2, 3, 4, 5, 7, 11, 19, ... s after the first and gives up after 131 s (ETIMEDOUT); measured here: 1.03 s, 7.12 s.")),
            "{last}"
        );
        assert_eq!(s.evidence["syn_schedule"]["resend_ms"][5], 7000);
        assert_eq!(s.evidence["syn_schedule"]["source"], "sysctls");
        assert_eq!(
            s.evidence["latencies_ms"],
            json!([{"ms": 1030, "count": 1, "syn_resends": 1}, {"ms": 7120, "count": 1, "syn_resends": 6}])
        );
        assert!(s.summary.contains("(up to 7.12 s)"), "{}", s.summary);
        // Without sysctls: the documented defaults, said so.
        let f = run(&events, HostView::default());
        let last = f[0].advice.last().unwrap();
        assert!(
            last.contains("sysctls unknown") && last.contains("1, 3, 7, 15, 31, 63 s"),
            "{last}"
        );
        assert_eq!(f[0].evidence["syn_schedule"]["source"], "defaults");
    }
}
