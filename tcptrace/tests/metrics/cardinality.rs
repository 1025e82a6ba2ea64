//! Label cardinality: 2,000 listeners in a private namespace, each with
//! its own peer address, each overflowing once at a third ACK and once at
//! a SYN and answering two handshakes, the first of which the peer then
//! resets, exported with `--metrics-top-listeners 8 --metrics-top-peers 8`:
//! every metric has 8 series of its own plus `other`, the series add up to
//! the exact totals (events printed, TcpExt ListenOverflows, the
//! handshakes), and `tcptrace_series_folded_total` counts the listeners
//! and peers that went to `other`.

use std::{
    collections::BTreeSet,
    net::{Ipv4Addr, SocketAddr, SocketAddrV4},
    time::Duration,
};

use serde_json::Value;
use socket2::{Domain, Socket, Type};

use super::{
    lab, rules,
    support::{prometheus::free_port, scrape::Metrics, *},
};

const LISTENERS: u16 = 2000;
const TOP: usize = 8;

/// Peer `i`'s address: 127.1.0.1 onwards, all on the namespace's lo.
fn peer(i: u16) -> Ipv4Addr {
    Ipv4Addr::new(127, 1, (i / 250) as u8, (i % 250 + 1) as u8)
}

/// Raises the open-file limit to its hard limit (2,000 listeners stay open).
fn more_files() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit on a valid rlimit struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        lim.rlim_cur = lim.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
    }
    assert!(
        lim.rlim_cur >= u64::from(LISTENERS) + 256,
        "open files limited to {}",
        lim.rlim_cur
    );
}

fn client(from: Ipv4Addr, to: &SocketAddr) -> Socket {
    let c = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    c.bind(&SocketAddr::V4(SocketAddrV4::new(from, 0)).into())
        .expect("bind the peer address");
    c.connect(&(*to).into()).expect("handshake");
    c
}

/// TCP_DEFER_ACCEPT of 10 s on a listener.
fn defer_accept(l: &Socket) {
    use std::os::fd::AsRawFd as _;
    let secs: libc::c_int = 10;
    // SAFETY: setsockopt with a valid fd and an int option value.
    let ret = unsafe {
        libc::setsockopt(
            l.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            (&raw const secs).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(
        ret,
        0,
        "TCP_DEFER_ACCEPT: {}",
        std::io::Error::last_os_error()
    );
}

/// Raises the minimum retransmission timeout of the namespace's loopback
/// routes to 10 s: A's overflowed data is never sent again before A
/// resets. With the kernel's 200 ms, a vCPU stalled that long between A's
/// data and its RST (two TCG VMs on a loaded CI host) would send it again
/// into a second overflow: ListenOverflows 2n + 1 (failed CI once).
fn no_retransmits() {
    for route in ["127.0.0.0/8", "127.0.0.1"] {
        ip(&[
            "route",
            "change",
            "local",
            route,
            "dev",
            "lo",
            "table",
            "local",
            "proto",
            "kernel",
            "scope",
            "host",
            "src",
            "127.0.0.1",
            "rto_min",
            "10s",
        ]);
    }
}

/// Sends one byte, then resets the connection (SO_LINGER 0).
fn data_then_reset(c: Socket) {
    assert_eq!(c.send(b"x").expect("send"), 1);
    c.set_linger(Some(Duration::ZERO)).expect("SO_LINGER 0");
}

/// The scenario, in the lab's namespace: per listener (backlog 0, so one
/// connection fills its accept queue; TCP_DEFER_ACCEPT, so a handshake
/// completes at its first data, not its third ACK), clients A and B from
/// peer address i complete their handshakes. A's request waits in the SYN
/// queue for its data; B, answered with a cookie (that queue is full),
/// gets its connection at its third ACK (cookies know nothing of
/// TCP_DEFER_ACCEPT), which fills the accept queue. A's data overflows it
/// (a third-ACK overflow, A a ghost: hook listen_overflow), B's data and
/// RST reach B's queued connection (the RST accepted), a SYN from C finds
/// the queue full (hook syn_drop), and A resets. Returns the listeners
/// (kept open until the end) and the ListenOverflows and SyncookiesSent
/// deltas, and the TCPSynRetrans one (SYNs sent again: none is planned).
fn overflow_every_listener() -> (Vec<Socket>, u64, u64, u64) {
    no_retransmits();
    // Every segment through one CPU's backlog, in the order sent. Across
    // two (the thread moved while a loaded VM left the first CPU's to
    // ksoftirqd), A's data could reach the listener before B's third ACK:
    // A's connection takes the queue, and B's ACK and then its data each
    // overflow it, ListenOverflows 2n + 1 (5.10 VM in CI, once).
    pin_to_one_cpu();
    let before = netstat();
    let mut listeners = Vec::new();
    for i in 0..LISTENERS {
        let addr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 20000 + i));
        let l = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
        l.bind(&addr.into()).expect("bind");
        defer_accept(&l);
        l.listen(0).expect("listen");
        let (a, b) = (client(peer(i), &addr), client(peer(i), &addr));
        assert_eq!(a.send(b"x").expect("send"), 1);
        data_then_reset(b);
        let c = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
        c.set_nonblocking(true).expect("nonblocking");
        match c.connect(&addr.into()) {
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            other => panic!("non-blocking connect: {other:?}"),
        }
        // Closed at once: its SYN is never sent again.
        drop(c);
        a.set_linger(Some(Duration::ZERO)).expect("SO_LINGER 0");
        drop(a);
        listeners.push(l);
    }
    // Segments a loaded host left to ksoftirqd arrive late: wait (bounded)
    // for the count, then a little longer for any beyond it.
    let want = 2 * u64::from(LISTENERS);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while delta(&before, &netstat(), "ListenOverflows") < want
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    let after = netstat();
    (
        listeners,
        delta(&before, &after, "ListenOverflows"),
        delta(&before, &after, "SyncookiesSent"),
        delta(&before, &after, "TCPSynRetrans"),
    )
}

/// The series of `name` with labels `want`, bounded: at most [`TOP`]
/// values of `key` of their own, and an `other` series. Returns how many
/// own values count something (all, and those `here`: the scenario's), and
/// the sum over `other` and the own series `here`. Listeners outside the
/// scenario (tcptrace's own endpoint: the scrapes are answered SYNs too)
/// took their places before it started, so `other` holds only its own.
fn bounded(
    m: &Metrics,
    name: &str,
    want: &[(&str, &str)],
    key: &str,
    here: &dyn Fn(&str) -> bool,
) -> (BTreeSet<String>, usize, f64) {
    let series = m.series(name, want);
    let own: BTreeSet<&str> = series
        .iter()
        .filter_map(|(l, _)| l.get(key).map(String::as_str))
        .filter(|v| *v != "other")
        .collect();
    assert!(own.len() <= TOP, "{name}: {} {key}s: {own:?}", own.len());
    assert!(
        series
            .iter()
            .any(|(l, _)| l.get(key).is_some_and(|v| v == "other")),
        "{name}: no {key}=\"other\" series"
    );
    let counting: BTreeSet<&str> = series
        .iter()
        .filter(|(_, v)| *v > 0.0)
        .filter_map(|(l, _)| l.get(key).map(String::as_str))
        .filter(|k| *k != "other")
        .collect();
    let sum = series
        .iter()
        .filter(|(l, _)| l.get(key).is_none_or(|k| k == "other" || here(k)))
        .map(|(_, v)| v)
        .sum();
    let here_count = counting.iter().filter(|k| here(k)).count();
    (
        counting.into_iter().map(str::to_owned).collect(),
        here_count,
        sum,
    )
}

#[test]
#[ignore = "needs root and BPF: run by cargo xtask test"]
fn thousands_of_listeners_and_peers_fold_into_other_exactly() {
    more_files();
    let lab = lab(overflow_every_listener);
    let port = free_port();
    let (metrics, netns) = (format!("127.0.0.1:{port}"), lab.netns.to_string());
    let top = TOP.to_string();
    let tracer = Tracer::start_every(
        "1s",
        &[],
        &[
            "--netns",
            &netns,
            "--metrics",
            &metrics,
            "--metrics-top-listeners",
            &top,
            "--metrics-per-peer",
            "--metrics-top-peers",
            &top,
        ],
    );
    let m = Metrics::start(port, &rules());
    // A scrape before the scenario: listeners active already (tcptrace's
    // own endpoint: scrapes are answered SYNs) take their places first.
    m.sum("tcptrace_syn_answered_total", &[]);
    let (_listeners, overflows, cookies, syn_retrans) = lab.run();
    assert_eq!(
        overflows,
        2 * u64::from(LISTENERS),
        "one third ACK and one SYN per listener (SYNs sent again: {syn_retrans})"
    );

    let n = usize::from(LISTENERS);
    // (metric, its value label, the bounded label, counted when, the
    // events behind it (None: a kernel map), the exact total)
    let checks = [
        (
            "tcptrace_accept_queue_overflows_total",
            &[("outcome", "ghost")][..],
            "listener",
            hook(&tracer, "listen_overflow"),
            Some(("listen_overflow", "outcome", "ghost")),
            n,
        ),
        (
            "tcptrace_syn_drops_total",
            &[("cause", "accept_queue_full")],
            "listener",
            hook(&tracer, "syn_drop"),
            Some(("syn_drop", "cause", "accept_queue_full")),
            n,
        ),
        (
            "tcptrace_syn_answered_total",
            // Normal or cookie: a backlog of 0 bounds the SYN queue too,
            // and A's request waits there for its data (TCP_DEFER_ACCEPT).
            // At least one answer per handshake: a client that sends its
            // SYN again (a slow emulated CPU) after a cookie answer is
            // answered again.
            &[],
            "listener",
            hook(&tracer, "syn_drop"),
            None,
            2 * n,
        ),
        (
            "tcptrace_rst_received_by_peer_total",
            &[("verdict", "accepted")],
            "peer",
            hook(&tracer, "validate_incoming"),
            Some(("rst", "verdict", "accepted")),
            n,
        ),
    ];
    let in_lab = format!("@netns:{}", lab.netns);
    let mut read = Vec::new();
    for (metric, want, key, on, behind, total) in checks {
        if !on {
            read.push(None);
            continue;
        }
        if behind.is_some() {
            m.wait_sum(metric, want, total as f64);
        } else {
            m.wait(true, |m| m.sum(metric, want) >= total as f64);
        }
        let here = |k: &str| key == "peer" || k.ends_with(&in_lab);
        let (own, own_here, sum) = bounded(&m, metric, want, key, &here);
        let folded = m
            .value("tcptrace_series_folded_total", &[("metric", metric)])
            .unwrap_or(0.0);
        read.push(Some((own, own_here, sum, folded, key == "listener")));
    }
    let cookie_answers = m.sum("tcptrace_syn_answered_total", &[("type", "cookie")]);
    let lost = m.sum("tcptrace_events_lost_total", &[]);
    drop(m);
    let objs = tracer.stop();

    assert_eq!(lost, 0.0, "no event lost");
    // The listener places taken (by any listener metric), and the
    // scenario's among them.
    let places: BTreeSet<&String> = read
        .iter()
        .flatten()
        .filter(|r| r.4)
        .flat_map(|r| &r.0)
        .collect();
    let lab_places = places.iter().filter(|k| k.ends_with(&in_lab)).count();
    if !places.is_empty() {
        assert_eq!(
            places.len(),
            TOP,
            "every listener place is taken: {places:?}"
        );
    }
    for ((metric, want, key, _, behind, total), read) in checks.into_iter().zip(&read) {
        let Some((own, own_here, sum, folded, _)) = read else {
            eprintln!("{metric}: its hook is not attached here: not checked");
            continue;
        };
        if behind.is_some() {
            assert_eq!(*sum, total as f64, "{metric}: the sum over series is exact");
        } else {
            // The kernel's per-listener counters: what the final summary
            // read from them, and the cookies the namespace counted.
            let answered: u64 = final_summary(&objs)["listeners"]
                .as_array()
                .expect("listeners in the summary")
                .iter()
                .filter(|l| l["netns"] == lab.netns)
                .flat_map(|l| ["normal", "cookie", "fastopen"].map(|t| &l["answered"][t]))
                .filter_map(Value::as_u64)
                .sum();
            assert_eq!(
                *sum, answered as f64,
                "{metric}: the sum over series is exact"
            );
            assert!(*sum >= total as f64, "{metric}: {sum} < {total}");
            assert_eq!(
                cookie_answers, cookies as f64,
                "cookie answers == SyncookiesSent"
            );
        }
        if key == "listener" {
            // Each of the scenario's listeners counts in every metric.
            assert_eq!(*own_here, lab_places, "{metric}: admitted listeners");
        } else {
            assert_eq!(
                own.len(),
                TOP,
                "{metric}: the first {TOP} peers keep series"
            );
        }
        // Every listener (peer) counted once at least: all but the
        // admitted ones were folded.
        let distinct = match behind {
            Some((kind, field, value)) => {
                let of: Vec<_> = events(&objs, kind).filter(|e| e[field] == value).collect();
                assert_eq!(of.len(), total, "{metric} == {kind} events");
                let field = if key == "peer" { "daddr" } else { "sport" };
                let keys: BTreeSet<String> = of.iter().map(|e| e[field].to_string()).collect();
                keys.len()
            }
            None => n,
        };
        assert_eq!(distinct, n, "{metric}: every {key} counted");
        assert_eq!(
            *folded,
            (distinct - own_here) as f64,
            "{metric}: tcptrace_series_folded_total ({want:?})"
        );
    }
}
