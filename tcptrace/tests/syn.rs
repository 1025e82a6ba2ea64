//! Scenario tests for the SYN family: SYNs a listener drops, accept-queue
//! overflows on the third ACK (reset or ghost connection), SYN-ACK
//! retransmits. Every count tcptrace reports is checked against what the
//! scenario did and against the namespace's own /proc/net/netstat counters.
//! They need root and are run by `cargo xtask test` and inside every VM.
//!
//! Crafted peers (support::craft) send from an address no stack owns (".3"
//! on a veth subnet) with a permanent neighbour entry on the server side, so
//! the client namespace drops the server's answers silently instead of
//! resetting them, and an AF_PACKET socket on the client veth still sees
//! them.

mod support;

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    process::Command,
    sync::atomic::Ordering,
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;
use support::{
    craft::{self, Family, Lab, Peer, Reply},
    *,
};
use tcptrace_common::programs;
use tcptrace_lab::repro::syn_queue::{self, Burst, THIRD_ACK_BACKLOG};

// ---- namespaces ------------------------------------------------------------

/// Moves the calling thread into a named namespace.
fn enter_netns(name: &str) {
    let f = std::fs::File::open(craft::netns_path(name)).expect("open netns");
    nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
}

/// The lab (support::craft) of an address family.
fn lab(v6: bool) -> Lab {
    Lab::new(family(v6))
}

fn family(v6: bool) -> Family {
    if v6 {
        Family::V6
    } else {
        Family::V4
    }
}

/// A listener that never accepts.
/// Events of `kind` in `netns`; drops carry the packet's headers.
fn in_netns<'a>(objs: &'a [Value], kind: &str, netns: u64) -> Vec<&'a Value> {
    let found: Vec<&Value> = events(objs, kind).filter(|e| e["netns"] == netns).collect();
    for e in &found {
        let len = e["packet_len"].as_u64().unwrap_or(0);
        match kind {
            "syn_drop" | "listen_overflow" => assert!(len >= 40, "no packet: {e}"),
            _ => assert!(e.get("packet_len").is_none(), "{e}"),
        }
    }
    found
}

fn summary_listener(objs: &[Value], netns: u64, port: u16) -> Option<&Value> {
    final_summary(objs)["listeners"]
        .as_array()?
        .iter()
        .find(|l| l["netns"] == netns && l["port"] == port)
}

/// The findings of a namespace whose accept queue overflowed: from
/// the `syn_drop` events `drops` (accept queue full at the SYN) and the `listen_overflow` events
/// `ovf` (third ACKs), or, where no hook saw any of them, from the
/// namespace's counters alone. `counters` are the scenario's own
/// ListenOverflows, ListenDrops and TCPReqQFullDoCookies deltas. Third-ACK
/// overflows with `outcome` ghost add `ghost_connections`; SYNs answered
/// with cookies (a backlog this small bounds the SYN queue too, so timing
/// decides whether any are) add an informational `syn_queue_full`; nothing
/// else may appear.
fn accept_queue_findings(
    objs: &[Value],
    netns: u64,
    (addr, port): (IpAddr, u16),
    drops: &[&Value],
    ovf: &[&Value],
    (overflows, listen_drops, cookies): (u64, u64, u64),
) -> Vec<String> {
    let found = findings_in(objs, netns);
    let ghosts = ovf.iter().filter(|e| e["outcome"] == "ghost").count() as u64;
    let mut want = vec!["accept_queue_overflow".to_owned()];
    if ghosts > 0 {
        want.push("ghost_connections".into());
    }
    if cookies > 0 {
        want.push("syn_queue_full".into());
    }
    // Clients whose SYNs were dropped and that closed before an answer (or
    // retransmitted) are slow handshakes: a slow_connect naming this queue.
    let slow = events(objs, "handshake")
        .filter(|e| e["netns"] == netns)
        .filter(|e| {
            e["outcome"] == "closed"
                || e["outcome"] == "timeout"
                || e["syn_retransmits"].as_u64().unwrap_or(0) > 0
        })
        .count();
    if slow > 0 {
        want.push("slow_connect".into());
        want.sort();
    }
    assert_eq!(finding_ids(&found), want, "{found:#?}");
    if slow > 0 {
        // Which listener it names is issue #18 item 2 (the listener may be
        // closed by the time the summary resolves it); the count is exact.
        let s = the_finding(&found, "slow_connect");
        assert_eq!(s["evidence"]["slow_connects"], slow, "{s}");
        assert_eq!(s["evidence"]["measured"], "handshake", "{s}");
    }
    if cookies > 0 {
        let c = the_finding(&found, "syn_queue_full");
        assert_eq!(c["severity"], "info", "{c}");
        assert_eq!(c["evidence"]["cookies_sent"], cookies, "{c}");
        assert_eq!(
            c["evidence"]["counters"]["TCPReqQFullDoCookies"], cookies,
            "{c}"
        );
    }

    let f = the_finding(&found, "accept_queue_overflow");
    assert_eq!(f["severity"], "critical");
    let e = &f["evidence"];
    assert_eq!(e["netns"], netns);
    // Counters are the namespace's own: it was created after tcptrace
    // started, and is still there at the final snapshot.
    assert_eq!(e["counters"]["ListenOverflows"], overflows, "{e}");
    assert_eq!(e["counters"]["ListenDrops"], listen_drops, "{e}");
    let (syn_drops, third_acks) = (drops.len() as u64, ovf.len() as u64);
    if syn_drops + third_acks == 0 {
        // No per-listener event: the counter-only form.
        assert_eq!(f["subject"], format!("netns {netns}"));
        assert_eq!(e["source"], "counters");
        assert_eq!(f["count"], overflows, "count == ListenOverflows delta");
        assert!(f["first_seen"].is_null(), "{f}");
        return finding_ids(&found);
    }
    assert_eq!(f["subject"], listener_subject(addr, port, netns));
    assert_eq!(f["count"], syn_drops + third_acks, "count == drop events");
    assert_eq!(e["port"], port);
    assert_eq!(e["listen_addr"], addr.to_string());
    assert_eq!(e["syn_drops_accept_queue_full"], syn_drops);
    assert_eq!(e["third_ack_overflows"], third_acks);
    let behind: Vec<&Value> = drops.iter().chain(ovf).copied().collect();
    let largest = behind.iter().filter_map(|d| d["backlog"].as_u64()).max();
    assert_eq!(e["backlog_seen"].as_u64(), largest, "{e}");
    assert!(
        behind.iter().all(|d| d["backlog_max"] == e["backlog_max"]),
        "{e}"
    );
    assert!(
        e["somaxconn"].as_u64().is_some(),
        "sysctls of the namespace: {e}"
    );
    assert_eq!(e["backlog_capped_by_somaxconn"], false, "{e}");
    assert_eq!(e["distinct_peers"], 1, "{e}");
    if ghosts > 0 {
        let g = the_finding(&found, "ghost_connections");
        assert_eq!(g["severity"], "warning");
        assert_eq!(g["subject"], f["subject"]);
        assert_eq!(g["count"], ghosts);
        let ge = &g["evidence"];
        assert_eq!(ge["ghost_overflows"], ghosts);
        assert_eq!(ge["abort_on_overflow"], 0);
        assert_eq!(ge["counters"]["ListenOverflows"], overflows, "{ge}");
    }
    finding_ids(&found)
}

// ---- S1: accept queue full at the SYN ----------------------------------------

/// A listener with backlog B that never accepts; K > B+1 clients connect
/// without blocking. The first B+1 complete, every SYN after that (first
/// tries and retransmissions) is dropped because the accept queue is full.
fn accept_queue_full_at_syn(v6: bool) {
    use tcptrace_lab::repro::accept_queue::{full_at_syn, BACKLOG, CLIENTS};
    // Recorded with --pcap: stop() checks the packets against the events.
    let tracer = Tracer::start_pcap(&[]);
    let syn_drop = hook(&tracer, "syn_drop");
    let owner = hook(&tracer, "listen_owner");
    let overflow = hook(&tracer, "listen_overflow");
    // The namespace outlives tcptrace's final snapshot (its counters are
    // evidence of the finding).
    let (run, _netns) = full_at_syn(v6).expect("accept queue full at the SYN");
    let (netns, port) = (run.netns, run.listener.port());
    let objs = tracer.stop();

    let (overflows, drops) = (run.listen_overflows, run.listen_drops);
    assert!(
        overflows >= (CLIENTS - BACKLOG as usize - 1) as u64,
        "{overflows}"
    );
    assert_eq!(overflows, drops, "every drop is an accept-queue overflow");
    let ovf = in_netns(&objs, "listen_overflow", netns);
    let ovf_events = ovf.len() as u64;
    if overflow {
        assert!(ovf_events <= overflows);
    }
    let dropped = in_netns(&objs, "syn_drop", netns);
    let host = if v6 {
        Ipv6Addr::LOCALHOST.into()
    } else {
        IpAddr::from(Ipv4Addr::LOCALHOST)
    };
    accept_queue_findings(
        &objs,
        netns,
        (host, port),
        &dropped,
        &ovf,
        (overflows, drops, run.cookies),
    );
    if !syn_drop {
        return;
    }
    if overflow {
        assert_eq!(
            dropped.len() as u64 + ovf_events,
            overflows,
            "syn_drop + listen_overflow events == ListenOverflows"
        );
    } else {
        // Third ACKs that overflowed (a handshake completing while the
        // queue filled) go unseen where listen_overflow cannot attach.
        assert!(dropped.len() as u64 <= overflows, "{overflows}");
    }
    for e in &dropped {
        assert_eq!(e["cause"], "accept_queue_full", "{e}");
        assert_eq!(e["sport"], port);
        assert_eq!(e["backlog_max"], BACKLOG);
        assert_eq!(e["backlog"], BACKLOG + 1);
        assert_eq!(e["saddr"], if v6 { "::1" } else { "127.0.0.1" });
        if owner {
            assert_eq!(e["pid"], std::process::id(), "{e}");
            assert_eq!(e["owner"], "listen");
        }
    }
    let l = summary_listener(&objs, netns, port).expect("listener in the summary");
    assert_eq!(l["syn_drops"]["accept_queue_full"], dropped.len());
    // Every client is admitted (B+1 of them), answered and then turned
    // away at its third ACK (a ghost: when the emulated kernel queues
    // several SYNs before the first ACKs, or answers with a cookie), or
    // dropped at every SYN. So the answered ones are B+1 plus the ghosts.
    let answered = |k: &str| l["answered"][k].as_u64().expect("answered count");
    let (normal, cookie) = (answered("normal"), answered("cookie"));
    let admitted = (BACKLOG + 1) as u64;
    if overflow {
        let ghosts: std::collections::BTreeSet<u64> =
            ovf.iter().filter_map(|e| e["dport"].as_u64()).collect();
        assert_eq!(normal + cookie, admitted + ghosts.len() as u64, "{l}");
    } else {
        assert!(
            normal >= admitted && normal + cookie <= CLIENTS as u64,
            "{l}"
        );
    }
    assert_eq!(final_summary(&objs)["lost_total"], 0);
}

#[test]
#[ignore = "needs root and BPF: run by cargo xtask test"]
fn s1_accept_queue_full_at_syn_v4() {
    accept_queue_full_at_syn(false);
}

#[test]
#[ignore = "needs root and BPF: run by cargo xtask test"]
fn s1_accept_queue_full_at_syn_v6() {
    accept_queue_full_at_syn(true);
}

// ---- S2: accept queue full on the third ACK ----------------------------------

/// Fills the accept queue of a listener with backlog B through crafted
/// handshakes, then completes two more that were answered before it was full:
/// the last third ACK overflows. With tcp_abort_on_overflow=0 the request
/// stays and its SYN-ACK is resent (a ghost connection: the peer's
/// re-ACK overflows again); with 1 the peer gets a RST.
fn third_ack_overflow(v6: bool, abort: bool) {
    // Recorded with --pcap: stop() checks the packets against the events.
    let tracer = Tracer::start_pcap(&[]);
    let overflow = hook(&tracer, "listen_overflow");
    let rtx = hook(&tracer, "synack_retrans");
    // The kernel counts the runs of the SYN-ACK retransmit program while
    // run-time stats are on (kernel names are cut to 15 bytes).
    let _stats = aya::sys::enable_stats(aya::sys::Stats::RunTime).expect("BPF_ENABLE_STATS");
    let runs_before = tracer.program_runs("retransmit_syn");
    // The lab outlives tcptrace's final snapshot (its counters and sysctls
    // are evidence of the findings).
    let r =
        syn_queue::third_ack_overflow(&craft::PREFIX, family(v6), abort).expect("S2 reproduction");
    let rtx_runs = tracer.program_runs("retransmit_syn") - runs_before;
    let objs = tracer.stop();
    let (netns, port, ghost_port) = (r.server_netns, r.server_port, r.ghost_port);
    let (resets, resent) = (r.resets, r.resent);
    let (before, after) = (r.before.0.clone(), r.after.0.clone());
    let server_ip = r.lab.server_ip;

    let overflows = delta(&before, &after, "ListenOverflows");
    let synrtx = delta(&before, &after, "TCPSynRetrans");
    if abort {
        assert_eq!(overflows, 1);
        assert_eq!(resets, 1, "the peer is reset");
        assert_eq!(resent, 0);
        assert_eq!(synrtx, 0);
        assert_eq!(delta(&before, &after, "EmbryonicRsts"), 1);
    } else {
        assert!(resent >= 1, "the SYN-ACK is resent");
        assert_eq!(resets, 0);
        assert_eq!(overflows, 2, "the third ACK and the re-ACK overflow");
        assert_eq!(synrtx, resent, "TCPSynRetrans == SYN-ACKs resent");
    }
    if overflow {
        let ev = in_netns(&objs, "listen_overflow", netns);
        assert_eq!(
            ev.len() as u64,
            overflows,
            "listen_overflow == ListenOverflows"
        );
        for e in &ev {
            assert_eq!(e["sport"], port);
            assert_eq!(e["dport"], ghost_port);
            assert_eq!(e["daddr"], r.lab.peer_ip.to_string());
            assert_eq!(e["backlog"], THIRD_ACK_BACKLOG + 1);
            assert_eq!(e["backlog_max"], THIRD_ACK_BACKLOG);
            assert_eq!(e["abort_on_overflow"], u8::from(abort));
            assert_eq!(e["outcome"], if abort { "reset" } else { "ghost" });
        }
        let l = summary_listener(&objs, netns, port).expect("listener in the summary");
        assert_eq!(l["listen_overflows"], overflows);
    }
    if rtx {
        let ev = in_netns(&objs, "synack_retransmit", netns);
        // Every run of the program is an event; the kernel's count of its
        // runs is the oracle for what tcptrace received.
        assert_eq!(
            ev.len() as u64,
            rtx_runs,
            "synack_retransmit == program runs"
        );
        runs_against_counter("synack_retrans", rtx_runs, synrtx);
        let mut last = 0;
        for e in &ev {
            assert_eq!(e["dport"], ghost_port);
            let n = e["retransmit"].as_u64().expect("retransmit");
            assert!(n > last && n <= synrtx, "{e}");
            last = n;
            assert_eq!(e["after_overflow"], overflow, "{e}");
        }
        if rtx_runs == synrtx {
            assert_eq!(last, synrtx, "retransmits numbered 1..=TCPSynRetrans");
        }
    }

    // Findings: the overflow (from the events, or from the counters where
    // the hook is missing) and, with abort_on_overflow=0, ghost connections.
    let ovf = in_netns(&objs, "listen_overflow", netns);
    let listen_drops = delta(&before, &after, "ListenDrops");
    assert_eq!(listen_drops, overflows);
    let cookies = delta(&before, &after, "TCPReqQFullDoCookies");
    let ids = accept_queue_findings(
        &objs,
        netns,
        (server_ip, port),
        &[],
        &ovf,
        (overflows, listen_drops, cookies),
    );
    let mut want = vec!["accept_queue_overflow"];
    if overflow && !abort {
        want.push("ghost_connections");
    }
    if cookies > 0 {
        want.push("syn_queue_full");
    }
    assert_eq!(ids, want);
    let found = findings_in(&objs, netns);
    let f = the_finding(&found, "accept_queue_overflow");
    if overflow {
        assert_eq!(f["evidence"]["abort_on_overflow"], u8::from(abort), "{f}");
        let advice = f["advice"].to_string();
        let said = if abort {
            "ECONNRESET"
        } else {
            "ghost_connections"
        };
        assert!(advice.contains(said), "{advice}");
    }
    if overflow && !abort {
        let g = &the_finding(&found, "ghost_connections")["evidence"];
        assert_eq!(g["counters"]["TCPSynRetrans"], synrtx, "{g}");
        if rtx {
            // The finding counts the events: one per program run, which
            // runs_against_counter held to TCPSynRetrans above (one short
            // where this host's kernel skipped the program).
            assert_eq!(g["synack_retransmits"], rtx_runs, "{g}");
            assert_eq!(g["synack_retransmits_after_overflow"], rtx_runs, "{g}");
        }
    }
}

#[test]
#[ignore = "needs root and BPF: run by cargo xtask test"]
fn s2_third_ack_overflow_ghost_v4() {
    third_ack_overflow(false, false);
}

#[test]
#[ignore = "needs root and BPF: run by cargo xtask test"]
fn s2_third_ack_overflow_reset_v4() {
    third_ack_overflow(false, true);
}

#[test]
#[ignore = "needs root and BPF: run by cargo xtask test"]
fn s2_third_ack_overflow_ghost_v6() {
    third_ack_overflow(true, false);
}

#[test]
#[ignore = "needs root and BPF: run by cargo xtask test"]
fn s2_third_ack_overflow_reset_v6() {
    third_ack_overflow(true, true);
}

// ---- S3: SYN burst ---------------------------------------------------------

/// N crafted SYNs from distinct ports, none completed.
fn syn_burst(v6: bool, kind: Burst) {
    const N: u16 = 20;
    // Recorded with --pcap: stop() checks the packets against the events.
    let tracer = Tracer::start_pcap(&[]);
    let syn_drop = hook(&tracer, "syn_drop");
    // The lab outlives tcptrace's final snapshot.
    let r = syn_queue::syn_burst(&craft::PREFIX, family(v6), kind, N).expect("S3 reproduction");
    let objs = tracer.stop();
    let (netns, port, answered) = (r.server_netns, r.server_port, r.answered);
    let (before, after) = (r.before.0.clone(), r.after.0.clone());
    let server_ip = r.lab.server_ip;

    let n = u64::from(N);
    let listen_drops = delta(&before, &after, "ListenDrops");
    let full_drop = delta(&before, &after, "TCPReqQFullDrop");
    let cookies = delta(&before, &after, "TCPReqQFullDoCookies");
    assert_eq!(delta(&before, &after, "ListenOverflows"), 0);
    match kind {
        Burst::SynQueueFull => {
            assert_eq!(answered + full_drop, n, "answered {answered}");
            assert!(full_drop >= n - 9, "{full_drop}");
            assert_eq!(listen_drops, full_drop);
            assert_eq!(cookies, 0);
        }
        Burst::Cookies => {
            assert_eq!(answered, n, "every SYN is answered");
            assert!(cookies >= n - 9, "{cookies}");
            assert_eq!(listen_drops, 0);
            assert_eq!(full_drop, 0);
        }
        Burst::LastQuarter => {
            assert_eq!(answered + listen_drops, n, "answered {answered}");
            assert_eq!(answered, 7, "8 - qlen < 8/4 from the 8th SYN on");
            assert_eq!(full_drop, 0);
            assert_eq!(cookies, 0);
        }
    }
    burst_findings(
        &objs,
        kind,
        netns,
        (server_ip, port),
        syn_drop,
        &before,
        &after,
    );
    if !syn_drop {
        return;
    }
    let dropped = in_netns(&objs, "syn_drop", netns);
    assert_eq!(
        dropped.len() as u64,
        listen_drops,
        "syn_drop == ListenDrops"
    );
    let want_cause = match kind {
        Burst::LastQuarter => "other",
        _ => "syn_queue_full",
    };
    for e in &dropped {
        assert_eq!(e["cause"], want_cause, "{e}");
        assert_eq!(e["sport"], port);
        assert_eq!(e["daddr"], r.lab.peer_ip.to_string());
        assert_eq!(e["syncookies"], u8::from(kind == Burst::Cookies));
        assert_eq!(e["last_quarter"], kind == Burst::LastQuarter, "{e}");
    }
    let l = summary_listener(&objs, netns, port).expect("listener in the summary");
    assert_eq!(l["answered"]["cookie"], cookies, "{l}");
    assert_eq!(l["answered"]["normal"], answered - cookies, "{l}");
    assert_eq!(final_summary(&objs)["lost_total"], 0);
}

/// S3's finding: `syn_queue_full`, critical when SYNs were dropped (queue
/// full or last quarter, cookies off), info when the overflow was answered
/// with cookies; from `syn_drop` events and the summary's cookie answers,
/// or from the counters alone where the hook is missing.
fn burst_findings(
    objs: &[Value],
    kind: Burst,
    netns: u64,
    (addr, port): (IpAddr, u16),
    syn_drop: bool,
    before: &HashMap<String, u64>,
    after: &HashMap<String, u64>,
) {
    let listen_drops = delta(before, after, "ListenDrops");
    let full_drop = delta(before, after, "TCPReqQFullDrop");
    let cookies = delta(before, after, "TCPReqQFullDoCookies");
    let found = findings_in(objs, netns);
    if kind == Burst::LastQuarter && !syn_drop {
        // ListenDrops alone cannot tell the last-quarter rule from any
        // other drop: without syn_drop events there is nothing to name.
        assert_eq!(finding_ids(&found), Vec::<String>::new());
        return;
    }
    assert_eq!(finding_ids(&found), ["syn_queue_full"]);
    let f = the_finding(&found, "syn_queue_full");
    let (severity, count) = match kind {
        Burst::SynQueueFull => ("critical", full_drop),
        Burst::Cookies => ("info", cookies),
        Burst::LastQuarter => ("critical", listen_drops),
    };
    assert_eq!(f["severity"], severity, "{f}");
    assert_eq!(f["count"], count, "{f}");
    let e = &f["evidence"];
    assert_eq!(e["counters"]["TCPReqQFullDrop"], full_drop, "{e}");
    assert_eq!(e["counters"]["TCPReqQFullDoCookies"], cookies, "{e}");
    assert_eq!(e["counters"]["ListenDrops"], listen_drops, "{e}");
    assert_eq!(e["syncookies"], u8::from(kind == Burst::Cookies), "{e}");
    if !syn_drop {
        assert_eq!(f["subject"], format!("netns {netns}"));
        assert_eq!(e["source"], "counters");
        return;
    }
    assert_eq!(f["subject"], listener_subject(addr, port, netns));
    assert_eq!(e["port"], port);
    let (queue_full, last_quarter) = match kind {
        Burst::SynQueueFull => (full_drop, 0),
        Burst::Cookies => (0, 0),
        Burst::LastQuarter => (0, listen_drops),
    };
    assert_eq!(e["syn_queue_full_drops"], queue_full, "{e}");
    assert_eq!(e["last_quarter_drops"], last_quarter, "{e}");
    // One crafted peer address behind every dropped SYN.
    assert_eq!(e["distinct_peers"], u8::from(kind != Burst::Cookies), "{e}");
    match kind {
        Burst::Cookies => assert_eq!(e["cookies_sent"], cookies, "{e}"),
        Burst::LastQuarter => assert_eq!(e["max_syn_backlog"], 8, "{e}"),
        Burst::SynQueueFull => assert_eq!(e["backlog_max"], 8, "{e}"),
    }
}

#[test]
#[ignore = "needs root and BPF: run by cargo xtask test"]
fn s3_syn_queue_full_v4() {
    syn_burst(false, Burst::SynQueueFull);
}

#[test]
#[ignore = "needs root and BPF: run by cargo xtask test"]
fn s3_syn_cookies_v4() {
    syn_burst(false, Burst::Cookies);
}

#[test]
#[ignore = "needs root and BPF: run by cargo xtask test"]
fn s3_last_quarter_v4() {
    syn_burst(false, Burst::LastQuarter);
}

#[test]
#[ignore = "needs root and BPF: run by cargo xtask test"]
fn s3_syn_queue_full_v6() {
    syn_burst(true, Burst::SynQueueFull);
}

#[test]
#[ignore = "needs root and BPF: run by cargo xtask test"]
fn s3_syn_cookies_v6() {
    syn_burst(true, Burst::Cookies);
}

// ---- S9: another tracer busy on the same CPUs ---------------------------------

/// Another tracer on the host: bpftrace on `raw_syscalls:sys_enter` spinning
/// in its program on every syscall of this test process, and one thread per
/// CPU making syscalls, so the CPUs spend most of their time inside a BPF
/// program. A softirq (timer, or the IPI that hands a packet to another CPU)
/// that interrupts that program runs with the kernel's per-CPU recursion
/// guard taken: plain tracepoint and kprobe programs are skipped there,
/// tp_btf and fentry programs are not (per-program guard).
struct Interference {
    bpftrace: std::process::Child,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    load: Vec<thread::JoinHandle<u64>>,
}

impl Interference {
    /// `None`, saying why, where bpftrace is not installed (the VM matrix).
    fn start() -> Option<Self> {
        use std::{
            io::{BufRead as _, BufReader},
            process::Stdio,
            sync::{atomic::AtomicBool, mpsc, Arc},
        };
        let script = format!(
            "tracepoint:raw_syscalls:sys_enter /pid == {}/ \
             {{ $i = 0; while ($i < 500) {{ $i++; }} @calls = count(); }}",
            std::process::id()
        );
        let mut bpftrace = match Command::new("bpftrace")
            .args(["-e", &script])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
        {
            Ok(c) => c,
            Err(e) => {
                eprintln!("no bpftrace here ({e}): the run goes without interference");
                return None;
            }
        };
        let stdout = bpftrace.stdout.take().expect("bpftrace stdout");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) if line.contains("Attaching") => break,
                Ok(_) => {}
                Err(_) => {
                    let _ = bpftrace.kill();
                    let _ = bpftrace.wait();
                    eprintln!("bpftrace did not attach: the run goes without interference");
                    return None;
                }
            }
        }
        // "Attaching" comes just before the attach itself.
        thread::sleep(Duration::from_millis(500));
        let stop = Arc::new(AtomicBool::new(false));
        let cpus = thread::available_parallelism().map_or(1, |n| n.get());
        let load = (0..cpus)
            .map(|cpu| {
                let stop = Arc::clone(&stop);
                thread::spawn(move || {
                    pin_to_cpu(cpu);
                    let mut calls = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        // SAFETY: getppid has no preconditions.
                        unsafe { libc::getppid() };
                        calls += 1;
                    }
                    calls
                })
            })
            .collect();
        Some(Self {
            bpftrace,
            stop,
            load,
        })
    }

    /// Stops the load and bpftrace; returns the syscalls the load made.
    fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        std::mem::take(&mut self.load)
            .into_iter()
            .map(|t| t.join().expect("load thread"))
            .sum()
    }
}

impl Drop for Interference {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in std::mem::take(&mut self.load) {
            let _ = t.join();
        }
        let _ = self.bpftrace.kill();
        let _ = self.bpftrace.wait();
    }
}

/// What one run of [`ghosts_under_interference`] saw.
struct InterferenceRun {
    overflow_on: bool,
    rtx_on: bool,
    overflow_mech: Option<String>,
    rtx_mech: Option<String>,
    /// (program, times the kernel skipped it) for the two hooks' programs.
    skips: Vec<(String, u64)>,
    overflow_events: u64,
    rtx_events: u64,
    overflows: u64,
    synrtx: u64,
    interfered: bool,
}

/// Fills a listener's accept queue (backlog B) with crafted handshakes, then
/// completes B more answered while it had room: B-1 third ACKs overflow and
/// stay ghosts whose SYN-ACKs the server resends on its timer and the peer
/// re-ACKs (each overflowing again), for a few seconds, with `--attach
/// attach` and another tracer busy on every CPU. The server namespace steers
/// received packets to the last CPU (RPS), so they are handled in the
/// softirq after an IPI, as a NIC's interrupt would have them.
fn ghosts_under_interference(attach: &str) -> InterferenceRun {
    const BACKLOG: u16 = 32;
    const GHOST_PHASE: Duration = Duration::from_secs(5);
    let tracer = Tracer::start_attach(attach, "0", &[], &[]);
    let overflow_on = hook(&tracer, "listen_overflow");
    let rtx_on = hook(&tracer, "synack_retrans");
    let overflow_mech = tracer.mechanism("listen_overflow");
    let rtx_mech = tracer.mechanism("synack_retrans");
    let pair = lab(false);
    let server = pair.server_ns.as_str();
    let cpus = thread::available_parallelism().map_or(1, |n| n.get());
    let rps = format!("{:x}", 1u64 << (cpus - 1));
    let set_rps = Command::new("ip")
        .args(["netns", "exec", server, "sh", "-c"])
        .arg(format!(
            "echo {rps} > /sys/class/net/vs/queues/rx-0/rps_cpus"
        ))
        .status();
    if !set_rps.is_ok_and(|s| s.success()) {
        eprintln!("RPS not set on the server veth: packets are handled on the sending CPU");
    }
    let interference = Interference::start();
    let interfered = interference.is_some();
    let server_ip = pair.server_ip;
    let worker = || {
        // Crafted packets leave from CPU 0; RPS hands them to the last CPU.
        pin_to_cpu(0);
        enter_netns(server);
        set_sysctl("net/ipv4/tcp_abort_on_overflow", "0");
        let l = backlog_listener(SocketAddr::new(server_ip, 0), i32::from(BACKLOG));
        let port = addr_of(&l).port();
        let peer = Peer::new(pair.wire(), port);
        let before = netstat();
        let first = 43000u16;
        for p in first..first + BACKLOG {
            peer.syn(p);
            peer.ack(&peer.synack(p));
        }
        let ghosts = first + BACKLOG..first + 2 * BACKLOG;
        let synacks: Vec<Reply> = ghosts
            .clone()
            .map(|p| {
                peer.syn(p);
                peer.synack(p)
            })
            .collect();
        for s in &synacks {
            peer.ack(s);
        }
        let deadline = Instant::now() + GHOST_PHASE;
        while Instant::now() < deadline {
            for seg in peer.read(Duration::from_millis(100)) {
                if seg.syn && ghosts.contains(&seg.dport) {
                    peer.ack(&seg);
                }
            }
        }
        drop(l);
        let _ = peer.read(Duration::from_millis(150));
        (thread_netns(), netstat(), before)
    };
    let (netns, after, before) = thread::scope(|s| s.spawn(worker).join()).expect("worker");
    if let Some(i) = interference {
        eprintln!("interference: {} syscalls by the load threads", i.stop());
    }
    let objs = tracer.stop();
    let programs = [
        programs::KFREE_SKB_LISTEN_OVERFLOW,
        programs::KFREE_SKB_BTF,
        programs::SYN_RECV_SOCK4_FENTRY,
        programs::SYN_RECV_SOCK4_FEXIT,
        programs::SYN_RECV_SOCK_KPROBE,
        programs::SYN_RECV_SOCK_KRETPROBE,
        programs::RETRANSMIT_SYNACK,
        programs::RETRANSMIT_SYNACK_BTF,
    ];
    let summary = final_summary(&objs);
    let mut per_port: std::collections::BTreeMap<u64, Vec<u64>> = Default::default();
    for e in events(&objs, "synack_retransmit").filter(|e| e["netns"] == netns) {
        per_port
            .entry(e["dport"].as_u64().unwrap_or(0))
            .or_default()
            .push(e["retransmit"].as_u64().unwrap_or(0));
    }
    let mut overflow_ports: std::collections::BTreeMap<u64, u64> = Default::default();
    for e in events(&objs, "listen_overflow").filter(|e| e["netns"] == netns) {
        *overflow_ports
            .entry(e["dport"].as_u64().unwrap_or(0))
            .or_default() += 1;
    }
    // Evidence for a count that does not match: the retransmits per ghost
    // (1, 2, ... each), the overflows per ghost, and those seen in any
    // namespace.
    eprintln!(
        "{attach}: netns {netns}: retransmits by port {per_port:?}; overflows by port \
         {overflow_ports:?}; in every netns {}; lost {}; stats {}; undecodable records {}",
        events(&objs, "synack_retransmit").count(),
        summary["lost"],
        summary["stats"],
        summary["decode_errors"]
    );
    let missed = &summary["missed"];
    let skips = programs
        .iter()
        .map(|p| ((*p).to_owned(), missed[*p].as_u64().unwrap_or(0)))
        .collect();
    InterferenceRun {
        overflow_on,
        rtx_on,
        overflow_mech,
        rtx_mech,
        skips,
        overflow_events: events(&objs, "listen_overflow")
            .filter(|e| e["netns"] == netns)
            .count() as u64,
        rtx_events: events(&objs, "synack_retransmit")
            .filter(|e| e["netns"] == netns)
            .count() as u64,
        overflows: delta(&before, &after, "ListenOverflows"),
        synrtx: delta(&before, &after, "TCPSynRetrans"),
        interfered,
    }
}

impl InterferenceRun {
    fn report(&self, label: &str) {
        eprintln!(
            "{label}: listen_overflow on {:?}: {} events, ListenOverflows {}; \
             synack_retrans on {:?}: {} events, TCPSynRetrans {}; skips {:?}",
            self.overflow_mech,
            self.overflow_events,
            self.overflows,
            self.rtx_mech,
            self.rtx_events,
            self.synrtx,
            self.skips
        );
    }

    fn skipped(&self) -> u64 {
        self.skips.iter().map(|(_, n)| n).sum()
    }
}

/// Issue 11: with another tracer's program busy on the same CPUs, hooks on
/// tp_btf (and fentry) lose nothing: events == the kernel's counters, no
/// program skipped. The same scenario with `--attach tracepoint` (plain
/// tracepoints) is run first for comparison and its skips printed.
#[test]
#[ignore = "needs root and BPF: run by cargo xtask test"]
fn s9_third_ack_overflow_under_interference_v4() {
    // Without bpftrace (the VM matrix) there is nothing to compare: only
    // the exact counts of the guarded run are checked.
    let bpftrace = Command::new("bpftrace")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let plain = bpftrace.then(|| ghosts_under_interference("tracepoint"));
    if let Some(plain) = &plain {
        plain.report("plain tracepoints (--attach tracepoint)");
    }
    let mode = match attach_mode().as_str() {
        "tracepoint" => "auto".to_owned(),
        m => m.to_owned(),
    };
    let typed = ghosts_under_interference(&mode);
    typed.report(&format!("--attach {mode}"));
    assert!(typed.overflows >= 31, "the ghosts overflowed");
    assert!(typed.synrtx > 0, "their SYN-ACKs were resent");
    // The per-program guard: tp_btf and fentry programs are never skipped
    // for another tracer's program.
    let guarded_skips: Vec<_> = typed
        .skips
        .iter()
        .filter(|(p, n)| {
            *n > 0 && (p.ends_with("_btf") || p.contains("_fentry") || p.contains("_fexit"))
        })
        .collect();
    assert!(guarded_skips.is_empty(), "{guarded_skips:?}");
    // Exact counts without interference (the VM matrix). Under this
    // interference, on this host's 6.18, about one run in ten still comes
    // out one or two events short with no skip counted. That loss is in the
    // kernel: with ftrace recording the same tracepoints beside the tracer,
    // tcp_retransmit_synack fired 63 times while the tracer's tp_btf program
    // ran 62 times (a counter bumped at the program's entry), a second
    // tcptrace attached at the same time showed the same gap, and
    // recursion_misses stayed 0. tcptrace cannot see or count such a
    // firing, so under interference only that much is tolerated, and named.
    const KERNEL_SKIPPED_MAX: u64 = 2;
    let tolerated = if typed.interfered {
        KERNEL_SKIPPED_MAX
    } else {
        0
    };
    let guarded = |m: &Option<String>| matches!(m.as_deref(), Some("tp_btf" | "fentry"));
    let check = |what: &str, events: u64, counter: u64| {
        assert!(
            events <= counter,
            "{what}: {events} events > counter {counter}"
        );
        if events < counter {
            eprintln!("KERNEL-SKIPPED: {what}: {events} events, counter {counter}");
        }
        assert!(
            counter - events <= tolerated,
            "{what}: {events} events, counter {counter}"
        );
    };
    if typed.overflow_on && guarded(&typed.overflow_mech) {
        check(
            "listen_overflow == ListenOverflows",
            typed.overflow_events,
            typed.overflows,
        );
    }
    if typed.rtx_on && guarded(&typed.rtx_mech) {
        check(
            "synack_retransmit == TCPSynRetrans",
            typed.rtx_events,
            typed.synrtx,
        );
    }
    match plain {
        Some(p) if p.interfered && p.skipped() == 0 => {
            eprintln!("plain tracepoints were not skipped in this run (timing-dependent)");
        }
        Some(p) if p.interfered => {}
        _ => eprintln!("no interference (no bpftrace): plain tracepoints not compared"),
    }
}
