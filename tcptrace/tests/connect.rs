//! Scenario tests for probe family 1 (connect() and port search) against the
//! running kernel. They need root and are run by `cargo xtask test` (host) and
//! inside every VM of the matrix.

mod support;

use std::{net::TcpStream, thread};

use serde_json::Value;
use support::*;
use tcptrace_common::programs;

fn tid() -> u64 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() as u64 }
}

#[test]
#[ignore = "needs root and BPF: run by cargo xtask test"]
fn every_loopback_connect_is_reported_exactly_once() {
    const N: usize = 25;
    let tracer = Tracer::start(&[]);
    // fentry where the VM matrix asks for it (the kernel allows trampolines
    // there), the syscall tracepoints otherwise.
    let mechanism = tracer.mechanism("connect");
    match attach_mode().as_str() {
        "fentry" if required("connect") => assert_eq!(mechanism.as_deref(), Some("fentry")),
        "kprobe" | "tracepoint" => assert_eq!(mechanism.as_deref(), Some("tracepoint")),
        _ => assert!(mechanism.is_some(), "{:?}", tracer.attach_report),
    }
    let (l, addr) = listener("127.0.0.1:0");
    let worker = thread::spawn(move || {
        let held: Vec<TcpStream> = (0..N)
            .map(|_| TcpStream::connect(addr).expect("connect"))
            .collect();
        drop(held);
        tid()
    });
    let worker_tid = worker.join().expect("worker");
    drop(l);
    let objs = tracer.stop();
    let mine: Vec<&Value> = events(&objs, "connect")
        .filter(|e| e["tid"] == worker_tid)
        .collect();
    assert_eq!(mine.len(), N, "connect events for the worker thread");
    for e in &mine {
        assert_eq!(e["errno"], 0);
        assert_eq!(e["daddr"], "127.0.0.1");
        assert_eq!(e["dport"], addr.port());
        assert_eq!(e["saddr"], "127.0.0.1");
        assert!(e["sport"].as_u64().is_some_and(|p| p > 0), "{e}");
        assert!(e["latency_ns"].as_u64().is_some_and(|l| l > 0), "{e}");
        assert!(e["time"].as_str().is_some_and(|t| t.ends_with('Z')), "{e}");
    }
    let summary = final_summary(&objs);
    assert_eq!(summary["lost_total"], 0);
    assert!(summary["histograms"]["connect"]["count"].as_u64().unwrap() >= N as u64);
}

/// connect() calls made while tcptrace starts, one every millisecond: where
/// the connect hook moves from the syscall tracepoints to fentry during the
/// start, no call may be reported twice, and every call made after tcptrace
/// said it is tracing is reported.
#[test]
#[ignore = "needs root and BPF: run by cargo xtask test"]
fn connects_during_start_are_reported_once() {
    use std::{
        collections::HashMap,
        sync::{
            atomic::{AtomicBool, Ordering},
            Arc,
        },
        time::Duration,
    };
    // Bounds the worker to about 20 s even if the tracer never starts.
    const MAX: usize = 20_000;
    let (l, addr) = listener("127.0.0.1:0");
    let tracing = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let worker = {
        let (tracing, stop) = (tracing.clone(), stop.clone());
        thread::spawn(move || {
            // Local port -> (calls made, calls made after `tracing;`); a port
            // may come back once its connection is closed.
            let mut made: HashMap<u64, (u64, u64)> = HashMap::new();
            for _ in 0..MAX {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let after = tracing.load(Ordering::Relaxed);
                let s = TcpStream::connect(addr).expect("connect");
                let (_peer, _) = l.accept().expect("accept");
                let port = u64::from(s.local_addr().expect("local address").port());
                let entry = made.entry(port).or_default();
                entry.0 += 1;
                entry.1 += u64::from(after);
                thread::sleep(Duration::from_millis(1));
            }
            (made, tid())
        })
    };
    let tracer = Tracer::start(&[]);
    tracing.store(true, Ordering::Relaxed);
    thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let (made, worker_tid) = worker.join().expect("worker");
    let objs = tracer.stop();
    let mut reported: HashMap<u64, u64> = HashMap::new();
    for e in events(&objs, "connect").filter(|e| e["tid"] == worker_tid) {
        *reported
            .entry(e["sport"].as_u64().expect("sport"))
            .or_default() += 1;
    }
    let after: u64 = made.values().map(|m| m.1).sum();
    assert!(after > 0, "no connect() after tcptrace started");
    for (port, &(calls, calls_after)) in &made {
        let seen = reported.get(port).copied().unwrap_or(0);
        assert!(
            (calls_after..=calls).contains(&seen),
            "port {port}: {calls} calls ({calls_after} after start), {seen} reported"
        );
    }
    for port in reported.keys() {
        assert!(made.contains_key(port), "port {port} reported but not used");
    }
}

/// A private netns whose ephemeral range holds `RANGE` ports, all taken by
/// open connections to one destination: connect() number RANGE+1 must fail
/// with EADDRNOTAVAIL, and tcptrace must say so exactly.
#[test]
#[ignore = "needs root and BPF: run by cargo xtask test"]
fn port_exhaustion_is_reported_with_eaddrnotavail() {
    const RANGE: u16 = 8;
    let tracer = Tracer::start(&[]);
    let port_search = tracer.mechanism("port_search");
    if required("port_search") {
        assert!(
            port_search.is_some(),
            "port_search must attach here: {:?}",
            tracer.attach_report
        );
    }
    let worker = thread::spawn(|| {
        enter_private_netns();
        drop(exhaust_ports(40000, RANGE));
        thread_netns()
    });
    let netns = worker.join().expect("worker");
    let objs = tracer.stop();

    let in_ns = |kind: &str| -> Vec<Value> {
        events(&objs, kind)
            .filter(|e| e["netns"] == netns)
            .cloned()
            .collect()
    };
    let connects = in_ns("connect");
    assert_eq!(
        connects.len(),
        RANGE as usize + 1,
        "connect events in the test netns"
    );
    let failed: Vec<&Value> = connects.iter().filter(|e| e["errno"] != 0).collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["errno"], libc::EADDRNOTAVAIL);
    assert_eq!(failed[0]["error"], "EADDRNOTAVAIL");
    assert_eq!(failed[0]["dport"], 5555);

    if port_search.is_some() {
        let searches = in_ns("port_search");
        assert_eq!(
            searches.len(),
            RANGE as usize + 1,
            "one port search per connect()"
        );
        let exhausted: Vec<&Value> = searches.iter().filter(|e| e["errno"] != 0).collect();
        assert_eq!(exhausted.len(), 1, "one EADDRNOTAVAIL port search");
        assert_eq!(exhausted[0]["errno"], libc::EADDRNOTAVAIL);
        let probed = exhausted[0]["ports_probed"].as_u64().expect("ports_probed");
        assert!(
            probed >= RANGE as u64,
            "probed {probed} ports of a range of {RANGE}"
        );
        for ok in searches.iter().filter(|e| e["errno"] == 0) {
            let sport = ok["sport"].as_u64().expect("chosen port");
            assert!((40000..40000 + RANGE as u64).contains(&sport), "{ok}");
        }
    } else {
        eprintln!("port_search unavailable on this kernel: connect() side checked only");
    }
}

/// Filters apply in the kernel: events and histograms only count matches.
#[test]
#[ignore = "needs root and BPF: run by cargo xtask test"]
fn port_and_pid_filters_apply_in_the_kernel() {
    const N: usize = 5;
    let (wanted, wanted_addr) = listener("127.0.0.1:0");
    let (other, other_addr) = listener("127.0.0.1:0");
    let pid = std::process::id().to_string();
    let port = wanted_addr.port().to_string();
    let tracer = Tracer::start(&["--port", &port, "--pid", &pid]);
    let worker = thread::spawn(move || {
        let mut held = Vec::new();
        for _ in 0..N {
            held.push(TcpStream::connect(wanted_addr).expect("connect wanted"));
            held.push(TcpStream::connect(other_addr).expect("connect other"));
        }
        drop(held);
        tid()
    });
    let worker_tid = worker.join().expect("worker");
    drop((wanted, other));
    let objs = tracer.stop();
    let all: Vec<&Value> = events(&objs, "connect").collect();
    assert_eq!(all.len(), N, "only connects to the filtered port: {all:?}");
    for e in &all {
        assert_eq!(e["tid"], worker_tid);
        assert_eq!(e["dport"], wanted_addr.port());
    }
    let summary = final_summary(&objs);
    assert_eq!(
        summary["histograms"]["connect"]["count"], N as u64,
        "histograms honour the filter"
    );
}

/// SIGTERM ends tracing with a final summary, and every program tcptrace
/// loaded is gone from the kernel afterwards.
#[test]
#[ignore = "needs root and BPF: run by cargo xtask test"]
fn nothing_stays_attached_after_sigterm() {
    const OURS: &[&str] = &[
        programs::SYS_ENTER_CONNECT,
        programs::SYS_EXIT_CONNECT,
        programs::CONNECT_FENTRY,
        programs::CONNECT_FEXIT,
        programs::HASH_CONNECT_FENTRY,
        programs::HASH_CONNECT_FEXIT,
        programs::HASH_CONNECT_KPROBE,
        programs::HASH_CONNECT_KRETPROBE,
    ];
    // Other tcptrace instances may run on the machine: only the programs that
    // appeared with this one count.
    let before = loaded_tcptrace_programs(OURS);
    let tracer = Tracer::start(&[]);
    let ours: Vec<u32> = loaded_tcptrace_programs(OURS)
        .difference(&before)
        .copied()
        .collect();
    assert!(
        ours.len() >= 2,
        "tcptrace's programs are loaded while it runs: {ours:?}"
    );
    let objs = tracer.stop_with(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(final_summary(&objs)["final"], true);
    let after = loaded_tcptrace_programs(OURS);
    let left: Vec<u32> = ours
        .iter()
        .copied()
        .filter(|id| after.contains(id))
        .collect();
    assert!(left.is_empty(), "programs left in the kernel: {left:?}");
}
