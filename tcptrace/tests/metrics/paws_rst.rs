//! PAWS rejects and RST verdicts through the metrics, with per-peer series
//! on: a crafted peer (the reproductions of `tcptrace_lab::repro`) makes
//! the server namespace reject stale timestamps at three sites and judge
//! five RSTs; each counter, and its per-peer series, must equal the events
//! tcptrace printed and the namespace's TcpExt deltas (PAWSEstab,
//! PAWSTimewait, PAWSActive, TCPChallengeACK).

use std::collections::HashMap;

use serde_json::Value;
use tcptrace_lab::repro::{
    paws::{self, Behind},
    paws_handshake, rst,
};

use super::{
    rules,
    support::{
        craft::{self, Family, Lab},
        prometheus::free_port,
        scrape::Metrics,
        *,
    },
};

/// tcptrace traced with `--netns` on the lab's server namespace and
/// per-peer series, and where its metrics are read.
fn traced(lab: &Lab) -> (Tracer, Metrics) {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let netns = craft::netns_path(&lab.server_ns);
    let tracer = Tracer::start_every(
        "1s",
        &[],
        &["--netns", &netns, "--metrics", &addr, "--metrics-per-peer"],
    );
    (tracer, Metrics::start(port, &rules()))
}

/// Whether `hook` is attached (failing where the run requires it).
fn on(tracer: &Tracer, hook: &str) -> bool {
    let on = tracer.mechanism(hook).is_some();
    assert!(
        on || !required(hook),
        "{hook} must attach here: {:?}",
        tracer.attach_report
    );
    on
}

/// Events of `kind` in the lab's server namespace.
fn lab_events<'a>(objs: &'a [Value], kind: &str, lab: &Lab) -> Vec<&'a Value> {
    let ns = lab.server_netns_inode();
    events(objs, kind).filter(|e| e["netns"] == ns).collect()
}

/// A counter by one label and by that label and the peer: (total, peer).
fn read(m: &Metrics, metric: &str, label: (&str, &str), peer: &str, want: f64) -> (f64, f64) {
    let total = m.wait_sum(&format!("tcptrace_{metric}_total"), &[label], want);
    let by_peer = m.wait_sum(
        &format!("tcptrace_{metric}_by_peer_total"),
        &[label, ("peer", peer)],
        want,
    );
    (total, by_peer)
}

/// With Prometheus (else None), the increase over the run of a series
/// present from the start (at 0), None inside when it has no samples.
fn increase(m: &Metrics, series: &str) -> Option<Option<f64>> {
    m.server().map(|p| {
        p.value(&format!(
            "max_over_time({series}[5m]) - min_over_time({series}[5m])"
        ))
    })
}

fn paws_rejects(family: Family) {
    let lab = Lab::new(family);
    let (tracer, m) = traced(&lab);
    let peer = lab.peer_ip.to_string();
    let hooks = [
        on(&tracer, "validate_incoming"),
        on(&tracer, "paws_time_wait"),
        on(&tracer, "paws_syn_sent"),
    ];
    let mut seen = HashMap::new();
    // S4, S5 and S8 (tcptrace_lab::repro), in this one lab: each has ports
    // of its own.
    let mut site = |name, hooked: bool, (rejects, counted): (u32, u64)| {
        assert_eq!(counted, u64::from(rejects), "{name}: TcpExt delta");
        let want = if hooked { counted as f64 } else { 0.0 };
        let got = read(&m, "paws_rejects", ("site", name), &peer, want);
        seen.insert(name, (got, counted));
    };
    let est = paws::established_in(&*lab, Behind::Stale).expect("S4 reproduction");
    let counted = est.after.since(&est.before, "PAWSEstab");
    site("established", hooks[0], (est.rejects, counted));
    let tw = paws::time_wait_in(&*lab).expect("S5 reproduction");
    let counted = tw.after.since(&tw.before, tw.counter);
    site("time_wait", hooks[1], (tw.rejects, counted));
    let sent = paws_handshake::syn_sent_in(&*lab).expect("S8 reproduction");
    let counted = sent.after.since(&sent.before, "PAWSActive");
    site("syn_sent", hooks[2], (sent.rejects, counted));

    let increases: Vec<(&str, Option<Option<f64>>)> = ["established", "time_wait", "syn_sent"]
        .into_iter()
        .map(|s| {
            let q = format!("tcptrace_paws_rejects_total{{site=\"{s}\"}}");
            (s, increase(&m, &q))
        })
        .collect();
    let syn_recv = m.sum("tcptrace_paws_rejects_total", &[("site", "syn_recv")]);
    let printed = m.sum("tcptrace_events_total", &[("kind", "paws_reject")]);
    drop(m);
    let objs = tracer.stop();

    let ev = lab_events(&objs, "paws_reject", &lab);
    assert_eq!(printed, ev.len() as f64, "events_total == events printed");
    assert_eq!(syn_recv, 0.0);
    for ((site, ((total, by_peer), kernel)), hooked) in ["established", "time_wait", "syn_sent"]
        .iter()
        .map(|s| (*s, seen[s]))
        .zip(hooks)
    {
        let printed = ev.iter().filter(|e| e["site"] == site).count() as f64;
        assert_eq!(total, printed, "{site}: metric == events");
        assert_eq!(by_peer, printed, "{site}: the peer's series == events");
        if hooked {
            assert_eq!(printed, kernel as f64, "{site}: events == TcpExt delta");
        }
    }
    for (site, inc) in increases {
        if let Some(inc) = inc {
            assert_eq!(inc, Some(seen[site].0 .0), "{site}: increase over the run");
        }
    }
}

/// A verdict, its counter and per-peer series, and its increase.
type VerdictRead<'a> = (&'a str, (f64, f64), Option<Option<f64>>);

fn rst_verdicts(family: Family) {
    let lab = Lab::new(family);
    let (tracer, m) = traced(&lab);
    let hooked = on(&tracer, "validate_incoming");
    let peer = lab.peer_ip.to_string();
    // S6 (tcptrace_lab::repro::rst): below the window, far beyond it, two
    // inside it, the exact one.
    let r = rst::verdicts_in(&*lab).expect("S6 reproduction");
    let challenges = r.after.since(&r.before, "TCPChallengeACK");
    assert_eq!(challenges as usize, r.planned("challenge_ack"));
    assert_eq!(r.after.since(&r.before, "TCPACKSkippedChallenge"), 0);

    let scenario = ["ignored", "challenge_ack", "accepted"].map(|v| (v, r.planned(v) as f64));
    let got: Vec<VerdictRead<'_>> = scenario
        .iter()
        .map(|(verdict, n)| {
            let want = if hooked { *n } else { 0.0 };
            let got = read(&m, "rst_received", ("verdict", verdict), &peer, want);
            let q = format!("tcptrace_rst_received_total{{verdict=\"{verdict}\"}}");
            (*verdict, got, increase(&m, &q))
        })
        .collect();
    let printed = m.sum("tcptrace_events_total", &[("kind", "rst")]);
    drop(m);
    let objs = tracer.stop();

    let ev = lab_events(&objs, "rst", &lab);
    assert_eq!(printed, ev.len() as f64, "events_total == events printed");
    for ((verdict, (total, by_peer), inc), (_, n)) in got.into_iter().zip(scenario) {
        let printed = ev.iter().filter(|e| e["verdict"] == verdict).count() as f64;
        assert_eq!(total, printed, "{verdict}: metric == events");
        assert_eq!(by_peer, printed, "{verdict}: the peer's series == events");
        if hooked {
            assert_eq!(
                printed, n,
                "{verdict}: events == the scenario (TCPChallengeACK)"
            );
        }
        if let Some(inc) = inc {
            assert_eq!(inc, Some(total), "{verdict}: increase over the run");
        }
    }
}

#[test]
#[ignore = "needs root and BPF: run by cargo xtask test"]
fn paws_reject_counters_v4() {
    paws_rejects(Family::V4);
}

#[test]
#[ignore = "needs root and BPF: run by cargo xtask test"]
fn paws_reject_counters_v6() {
    paws_rejects(Family::V6);
}

#[test]
#[ignore = "needs root and BPF: run by cargo xtask test"]
fn rst_verdict_counters_v4() {
    rst_verdicts(Family::V4);
}

#[test]
#[ignore = "needs root and BPF: run by cargo xtask test"]
fn rst_verdict_counters_v6() {
    rst_verdicts(Family::V6);
}
