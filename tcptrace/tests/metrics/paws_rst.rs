//! PAWS rejects and RST verdicts through the metrics, with per-peer series
//! on: a crafted peer (support::craft) makes the server namespace reject
//! stale timestamps at three sites and judge five RSTs; each counter, and
//! its per-peer series, must equal the events tcptrace printed and the
//! namespace's TcpExt deltas (PAWSEstab, PAWSTimewait, PAWSActive,
//! TCPChallengeACK).

use std::{collections::HashMap, io::Read as _, thread, time::Duration};

use serde_json::Value;

use super::{
    rules,
    support::{
        craft::{self, Conn, Family, Lab, Segment},
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

fn paws(family: Family) {
    const BASE: u32 = 1_000_000;
    const CLOCK_A: u32 = 1_500_000_000;
    const CLOCK_B: u32 = 100_000;
    let lab = Lab::new(family);
    let est_listener = lab.listen(8040);
    let tw_listener = lab.listen(8050);
    let wire = lab.wire();
    let (tracer, m) = traced(&lab);
    let peer = lab.peer_ip.to_string();
    let hooks = [
        on(&tracer, "validate_incoming"),
        on(&tracer, "paws_time_wait"),
        on(&tracer, "paws_syn_sent"),
    ];
    let mut seen = HashMap::new();

    // Established: three segments stamped 1000 ticks before the last.
    let before = lab.server_netstat();
    let mut c = Conn::handshake(&wire, 40001, 8040, 7_000_000, Some(BASE));
    let (mut stream, _) = est_listener.accept().expect("accept");
    c.send_data(10, b"hello");
    stream.read_exact(&mut [0u8; 5]).expect("in-order data");
    for _ in 0..3 {
        c.send(Segment {
            psh: true,
            payload: b"stale".to_vec(),
            ..c.segment(0u32.wrapping_sub(1000))
        });
        thread::sleep(Duration::from_millis(20));
    }
    thread::sleep(Duration::from_millis(100));
    let after = lab.server_netstat();
    let estab = delta(&before, &after, "PAWSEstab");
    assert_eq!(estab, 3);
    let want = if hooks[0] { estab as f64 } else { 0.0 };
    let got = read(&m, "paws_rejects", ("site", "established"), &peer, want);
    seen.insert("established", (got, estab));

    // TIME_WAIT: the server closes first; a new clock reuses the 4-tuple.
    let before = lab.server_netstat();
    let mut a = Conn::handshake(&wire, 40002, 8050, 9_000_000, Some(CLOCK_A));
    let (closing, _) = tw_listener.accept().expect("accept");
    drop(closing);
    a.answer_fin(20);
    for i in 0..3 {
        wire.send(&Segment {
            sport: 40002,
            dport: 8050,
            seq: 50_000_000 + i,
            syn: true,
            mss: Some(1400),
            ts: Some((CLOCK_B + i, 0)),
            window: 64000,
            ..Segment::default()
        });
        thread::sleep(Duration::from_millis(50));
    }
    thread::sleep(Duration::from_millis(100));
    let after = lab.server_netstat();
    // 6.16+ counts TIME_WAIT rejects apart; before, they are PAWSEstab.
    let tw = delta(&before, &after, "PAWSTimewait") + delta(&before, &after, "PAWSEstab");
    assert_eq!(tw, 3);
    let want = if hooks[1] { tw as f64 } else { 0.0 };
    let got = read(&m, "paws_rejects", ("site", "time_wait"), &peer, want);
    seen.insert("time_wait", (got, tw));

    // SYN-SENT: SYN-ACKs echoing a time before our SYN.
    let before = lab.server_netstat();
    lab.stale_synacks(&wire, 9000, 2);
    let after = lab.server_netstat();
    let active = delta(&before, &after, "PAWSActive");
    assert_eq!(active, 2);
    let want = if hooks[2] { active as f64 } else { 0.0 };
    let got = read(&m, "paws_rejects", ("site", "syn_sent"), &peer, want);
    seen.insert("syn_sent", (got, active));

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

fn rst(family: Family) {
    let lab = Lab::new(family);
    let listener = lab.listen(8060);
    let wire = lab.wire();
    let (tracer, m) = traced(&lab);
    let hooked = on(&tracer, "validate_incoming");
    let peer = lab.peer_ip.to_string();
    let before = lab.server_netstat();

    let c = Conn::handshake(&wire, 40003, 8060, 11_000_000, None);
    let (mut stream, _) = listener.accept().expect("accept");
    let rcv_nxt = c.snd_nxt;
    // Below the window, far beyond it, two inside it, the exact one.
    for offset in [-200_000i64, 50_000_000, 100, 200, 0] {
        wire.send(&Segment {
            sport: 40003,
            dport: 8060,
            seq: rcv_nxt.wrapping_add(offset as u32),
            rst: true,
            ..Segment::default()
        });
        // Challenge ACKs are limited to one per 500 ms per socket.
        thread::sleep(Duration::from_millis(600));
    }
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let err = stream
        .read(&mut [0u8; 1])
        .expect_err("the exact RST resets");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");
    let after = lab.server_netstat();
    let challenges = delta(&before, &after, "TCPChallengeACK");
    assert_eq!(challenges, 2);
    assert_eq!(delta(&before, &after, "TCPACKSkippedChallenge"), 0);

    let scenario = [
        ("ignored", 2.0),
        ("challenge_ack", challenges as f64),
        ("accepted", 1.0),
    ];
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
    paws(Family::V4);
}

#[test]
#[ignore = "needs root and BPF: run by cargo xtask test"]
fn paws_reject_counters_v6() {
    paws(Family::V6);
}

#[test]
#[ignore = "needs root and BPF: run by cargo xtask test"]
fn rst_verdict_counters_v4() {
    rst(Family::V4);
}

#[test]
#[ignore = "needs root and BPF: run by cargo xtask test"]
fn rst_verdict_counters_v6() {
    rst(Family::V6);
}
