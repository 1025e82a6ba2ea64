//! The SYN family through the metrics: a crafted peer (support::craft)
//! fills a listener's accept queue, overflows it at two third ACKs (a
//! ghost connection: tcp_abort_on_overflow=0) and at one SYN; every
//! per-listener counter must equal the events tcptrace printed and the
//! server namespace's TcpExt deltas.

use std::{
    net::SocketAddr,
    thread,
    time::{Duration, Instant},
};

use super::{
    rules,
    support::{
        craft::{self, Family, Lab, Peer},
        prometheus::free_port,
        scrape::Metrics,
        *,
    },
};

const BACKLOG: i32 = 4;
const PORT: u16 = 8090;

/// The `listener` label of the lab's listener.
fn label(lab: &Lab) -> String {
    format!(
        "{}@netns:{}",
        SocketAddr::new(lab.server_ip, PORT),
        lab.server_netns_inode()
    )
}

/// What the listener's counters must read: the scenario's numbers, 0
/// where the hook that counts them is not attached.
struct Expected {
    ghost: f64,
    accept_queue_full: f64,
    synack_retransmits: f64,
    answered: f64,
}

fn accept_queue_overflow(family: Family) {
    let lab = Lab::new(family);
    let addr = SocketAddr::new(lab.server_ip, PORT);
    let l = craft::in_netns(&lab.server_ns, move || {
        set_sysctl("net/ipv4/tcp_abort_on_overflow", "0");
        backlog_listener(addr, BACKLOG)
    });
    let peer = Peer::new(lab.wire(), PORT);
    let port = free_port();
    let metrics_addr = format!("127.0.0.1:{port}");
    let netns = craft::netns_path(&lab.server_ns);
    let tracer = Tracer::start_every("1s", &[], &["--netns", &netns, "--metrics", &metrics_addr]);
    let syn_drop = hook(&tracer, "syn_drop");
    let overflow = hook(&tracer, "listen_overflow");
    let rtx = hook(&tracer, "synack_retrans");
    let m = Metrics::start(port, &rules());
    let listener = label(&lab);
    assert!(
        m.series("tcptrace_syn_answered_total", &[("listener", &listener)])
            .is_empty(),
        "no series before the scenario"
    );

    // The kernel counts the runs of the SYN-ACK retransmit program.
    let _stats = aya::sys::enable_stats(aya::sys::Stats::RunTime).expect("BPF_ENABLE_STATS");
    let runs_before = tracer.program_runs("retransmit_syn");
    let before = lab.server_netstat();
    // b's third ACK finds the accept queue full (a ghost: the request
    // stays)...
    let b = peer.overflow_at_third_ack(41000, BACKLOG as u16);
    // ...so does the SYN of c...
    peer.syn(b + 1);
    // ...and b's re-ACK of the resent SYN-ACK overflows again.
    let resent = peer.synack_within(b, Duration::from_secs(3));
    peer.ack(&resent);
    thread::sleep(Duration::from_millis(200));
    // Closing the listener ends b's request: nothing is resent after this.
    drop(l);
    thread::sleep(Duration::from_millis(150));
    let after = lab.server_netstat();
    let rtx_runs = tracer.program_runs("retransmit_syn") - runs_before;

    let overflows = delta(&before, &after, "ListenOverflows");
    let synrtx = delta(&before, &after, "TCPSynRetrans");
    assert_eq!(overflows, 3, "two third ACKs and one SYN");
    assert_eq!(delta(&before, &after, "ListenDrops"), overflows);
    assert!(synrtx >= 1, "b's SYN-ACK was resent");
    let want = Expected {
        ghost: if overflow { 2.0 } else { 0.0 },
        accept_queue_full: if syn_drop { 1.0 } else { 0.0 },
        synack_retransmits: if rtx {
            runs_against_counter("synack_retrans", rtx_runs, synrtx) as f64
        } else {
            0.0
        },
        answered: if syn_drop {
            f64::from(BACKLOG + 2)
        } else {
            0.0
        },
    };
    let l = [("listener", listener.as_str())];
    let with = |k: &'static str, v: &'static str| [l[0], (k, v)];
    let ghost = m.wait_sum(
        "tcptrace_accept_queue_overflows_total",
        &with("outcome", "ghost"),
        want.ghost,
    );
    let reset = m.sum(
        "tcptrace_accept_queue_overflows_total",
        &with("outcome", "reset"),
    );
    let full = m.wait_sum(
        "tcptrace_syn_drops_total",
        &with("cause", "accept_queue_full"),
        want.accept_queue_full,
    );
    let other_drops = m.sum("tcptrace_syn_drops_total", &l) - full;
    let retransmits = m.wait_sum(
        "tcptrace_synack_retransmits_total",
        &l,
        want.synack_retransmits,
    );
    let answered = m.wait_sum(
        "tcptrace_syn_answered_total",
        &with("type", "normal"),
        want.answered,
    );
    let cookies = m.sum("tcptrace_syn_answered_total", &with("type", "cookie"));
    let backlog = m.value("tcptrace_listen_backlog", &l);
    let backlog_max = m.value("tcptrace_listen_backlog_max", &l);
    let printed = |kind: &str| m.sum("tcptrace_events_total", &[("kind", kind)]);
    let printed = [
        printed("syn_drop"),
        printed("listen_overflow"),
        printed("synack_retransmit"),
    ];
    // With Prometheus: the series were absent before, so these values are
    // their increase; check the server kept every scrape in between.
    let deadline = Instant::now() + Duration::from_secs(5);
    if let Some(prom) = m.server() {
        while prom.value(
            "count_over_time(up{job=\"tcptrace\"}[5m]) - sum_over_time(up{job=\"tcptrace\"}[5m])",
        ) != Some(0.0)
            && Instant::now() < deadline
        {
            thread::sleep(Duration::from_millis(250));
        }
        assert_eq!(
            prom.value("count_over_time(up{job=\"tcptrace\"}[5m]) - sum_over_time(up{job=\"tcptrace\"}[5m])"),
            Some(0.0),
            "every scrape answered"
        );
    }
    drop(m);
    let objs = tracer.stop();

    let ns = lab.server_netns_inode();
    let of = |kind: &str| -> Vec<&serde_json::Value> {
        events(&objs, kind).filter(|e| e["netns"] == ns).collect()
    };
    let (drops, ovf, rtx_ev) = (
        of("syn_drop"),
        of("listen_overflow"),
        of("synack_retransmit"),
    );
    // Every event of the run is the lab's (--netns).
    assert_eq!(
        printed,
        [drops.len() as f64, ovf.len() as f64, rtx_ev.len() as f64],
        "tcptrace_events_total == events printed"
    );
    assert_eq!(ghost, ovf.len() as f64, "ghost overflows == events");
    assert!(ovf.iter().all(|e| e["outcome"] == "ghost"), "{ovf:?}");
    assert_eq!(ghost, want.ghost, "ghost overflows");
    assert_eq!(reset, 0.0);
    assert_eq!(
        full,
        drops.len() as f64,
        "accept_queue_full drops == events"
    );
    assert_eq!(full, want.accept_queue_full);
    assert_eq!(other_drops, 0.0);
    if syn_drop && overflow {
        assert_eq!(
            full + ghost,
            overflows as f64,
            "drops + overflows == ListenOverflows"
        );
    }
    assert_eq!(retransmits, rtx_ev.len() as f64, "retransmits == events");
    assert_eq!(
        retransmits, want.synack_retransmits,
        "retransmits == program runs (== TCPSynRetrans)"
    );
    assert_eq!(answered, want.answered, "first SYN-ACKs the peer saw");
    assert_eq!(cookies, 0.0);
    if syn_drop || overflow {
        assert_eq!(
            backlog,
            Some(f64::from(BACKLOG + 1)),
            "queue at the newest event"
        );
        assert_eq!(backlog_max, Some(f64::from(BACKLOG)));
    }
}

#[test]
#[ignore = "needs root and BPF: run by cargo xtask test"]
fn accept_queue_overflow_counters_v4() {
    accept_queue_overflow(Family::V4);
}

#[test]
#[ignore = "needs root and BPF: run by cargo xtask test"]
fn accept_queue_overflow_counters_v6() {
    accept_queue_overflow(Family::V6);
}
