//! Port-search latency with free ports vs an exhausted range, measured by
//! tcptrace itself (per-event latencies, exact percentiles). Needs root and a
//! kernel where the port_search hook attaches; run by `cargo xtask bench`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::{
    net::{TcpListener, TcpStream},
    thread,
};

use support::*;

const FREE_CONNECTS: usize = 2000;
const RANGE_LOW: u16 = 40000;
const RANGE: u16 = 1000;
const EXHAUSTED_CONNECTS: usize = 200;

fn tid() -> u64 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() as u64 }
}

/// Connect, accept and reset, so no port lingers in TIME_WAIT.
fn connect_and_reset(l: &TcpListener, addr: std::net::SocketAddr) {
    let c = TcpStream::connect(addr).expect("connect with free ports");
    let (s, _) = l.accept().expect("accept");
    socket2::SockRef::from(&c)
        .set_linger(Some(std::time::Duration::ZERO))
        .expect("SO_LINGER");
    drop((c, s));
}

fn workload() -> u64 {
    enter_private_netns();
    let (l, addr) = listener("127.0.0.1:5555");
    set_sysctl("net/ipv4/ip_local_port_range", "20000 60000");
    for _ in 0..FREE_CONNECTS {
        connect_and_reset(&l, addr);
    }
    set_sysctl(
        "net/ipv4/ip_local_port_range",
        &format!("{RANGE_LOW} {}", RANGE_LOW + RANGE - 1),
    );
    let mut held = Vec::with_capacity(2 * RANGE as usize);
    for _ in 0..RANGE {
        held.push(TcpStream::connect(addr).expect("connect within range"));
        held.push(l.accept().expect("accept").0);
    }
    for _ in 0..EXHAUSTED_CONNECTS {
        let err = TcpStream::connect(addr).expect_err("range exhausted");
        assert_eq!(err.raw_os_error(), Some(libc::EADDRNOTAVAIL));
    }
    tid()
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

fn report(label: &str, mut lat: Vec<u64>) {
    lat.sort_unstable();
    if lat.is_empty() {
        println!("bench port_search {label}: no events");
        return;
    }
    println!(
        "bench port_search {label}: n={} p50={}ns p99={}ns max={}ns",
        lat.len(),
        percentile(&lat, 50.0),
        percentile(&lat, 99.0),
        lat[lat.len() - 1]
    );
}

fn main() {
    let lim = libc::rlimit {
        rlim_cur: 65536,
        rlim_max: 65536,
    };
    // SAFETY: setrlimit with a valid struct; the bench holds ~2000 sockets.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    let tracer = Tracer::start(&["--min-latency", "0"]);
    if tracer.mechanism("port_search").is_none() {
        let _ = tracer.stop();
        println!("bench port_search: hook unavailable on this kernel, nothing measured");
        return;
    }
    let worker = thread::spawn(workload).join().expect("workload");
    let objs = tracer.stop();
    let mine: Vec<&serde_json::Value> = events(&objs, "port_search")
        .filter(|e| e["tid"] == worker)
        .collect();
    let lat = |errno: i64| -> Vec<u64> {
        mine.iter()
            .filter(|e| e["errno"] == errno)
            .filter_map(|e| e["latency_ns"].as_u64())
            .collect()
    };
    let probed: Vec<u64> = mine
        .iter()
        .filter(|e| e["errno"] == 99)
        .filter_map(|e| e["ports_probed"].as_u64())
        .collect();
    report(
        &format!("free ports ({FREE_CONNECTS} connects)"),
        lat(0).into_iter().take(FREE_CONNECTS).collect(),
    );
    report(
        &format!("exhausted {RANGE}-port range ({EXHAUSTED_CONNECTS} connects)"),
        lat(99),
    );
    println!(
        "bench port_search exhausted: ports_probed min={} max={}",
        probed.iter().min().copied().unwrap_or(0),
        probed.iter().max().copied().unwrap_or(0)
    );
    let lost = final_summary(&objs)["lost_total"].as_u64().unwrap_or(0);
    println!("bench port_search: lost events {lost}");
}
