//! Scenario tests for `tcptrace diagnose`: make the kernel really do the
//! thing in a private network namespace, then check that the findings name
//! it with exact numbers — and that a healthy workload yields none. Each
//! run is filtered to the test's namespace so traffic elsewhere on the
//! host cannot leak in. They need root and run under `cargo xtask test`.

mod support;

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;
use support::{
    diagnose::{worker, Diagnose},
    *,
};

/// A narrow ephemeral range, all held by connections to one destination:
/// the next connect() fails with EADDRNOTAVAIL, and diagnose must say which
/// range, which destination holds it, and how often it failed.
#[test]
#[ignore = "needs root and BPF: run by cargo xtask test"]
fn port_exhaustion_is_diagnosed() {
    const RANGE: u16 = 8;
    let w = worker(|release| {
        let held = exhaust_ports(41000, RANGE);
        thread::spawn(move || {
            let _ = release.recv();
            drop(held);
        });
    });
    let d = Diagnose::start("3s", w.netns);
    let port_search = d.hook_attached("port_search");
    let netns = w.netns;
    let ((), findings) = w.finish(d);

    assert_eq!(findings.len(), 1, "{findings:#?}");
    let f = &findings[0];
    assert_eq!(f["id"], "ephemeral_port_exhaustion");
    assert_eq!(f["severity"], "critical");
    assert_eq!(f["subject"], format!("netns {netns}"));
    assert_eq!(f["count"], 1, "one failed connect()");
    let e = &f["evidence"];
    assert_eq!(e["netns"], netns);
    assert_eq!(e["connect_eaddrnotavail"], 1);
    if port_search {
        assert_eq!(e["port_search_eaddrnotavail"], 1);
        assert!(
            e["max_ports_probed"]
                .as_u64()
                .is_some_and(|p| p >= u64::from(RANGE)),
            "{e}"
        );
    } else {
        assert!(
            e.get("port_search_eaddrnotavail").is_none(),
            "no port_search events: {e}"
        );
    }
    assert_eq!(
        e["ip_local_port_range"],
        serde_json::json!([41000, 41000 + RANGE - 1])
    );
    assert_eq!(e["range_size"], RANGE);
    assert_eq!(e["ports_in_use"], RANGE, "every port of the range is held");
    assert_eq!(e["failing_destinations"][0]["daddr"], "127.0.0.1");
    assert_eq!(e["failing_destinations"][0]["dport"], 5555);
    let holder = &e["range_holders"][0];
    assert_eq!(holder["daddr"], "127.0.0.1");
    assert_eq!(holder["dport"], 5555);
    assert_eq!(holder["ports"], RANGE);
    assert!(
        e["tcp_tw_reuse"].as_u64().is_some(),
        "sysctls read inside the namespace: {e}"
    );
    for k in ["first_seen", "last_seen"] {
        assert!(f[k].as_str().is_some_and(|t| t.ends_with('Z')), "{k}: {f}");
    }
    let advice: Vec<&str> = f["advice"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        advice
            .iter()
            .any(|a| a.contains("ip_local_port_range (now 41000-41007, 8 ports)")),
        "{advice:?}"
    );
    assert!(
        advice.iter().any(|a| a.contains("IP_BIND_ADDRESS_NO_PORT")),
        "{advice:?}"
    );
}

/// A listener that accepts promptly and serves every request: no finding.
#[test]
#[ignore = "needs root and BPF: run by cargo xtask test"]
fn healthy_loopback_workload_has_no_finding() {
    const N: usize = 60;
    let w = worker(|release| {
        let l = TcpListener::bind("127.0.0.1:0").expect("listener");
        let addr = l.local_addr().expect("addr");
        let server = thread::spawn(move || {
            for _ in 0..N {
                let (mut s, _) = l.accept().expect("accept");
                let mut buf = [0u8; 4];
                s.read_exact(&mut buf).expect("request");
                s.write_all(b"pong").expect("reply");
            }
        });
        for _ in 0..N {
            let mut c = TcpStream::connect(addr).expect("connect");
            c.write_all(b"ping").expect("send");
            let mut buf = [0u8; 4];
            c.read_exact(&mut buf).expect("reply");
        }
        server.join().expect("server");
        // Keep a thread in the namespace until tcptrace took its snapshot.
        thread::spawn(move || {
            let _ = release.recv();
        });
    });
    let d = Diagnose::start("3s", w.netns);
    let ((), findings) = w.finish(d);
    assert_eq!(findings, Vec::<Value>::new());
}

/// A listener (backlog 1) that does not accept for 1.5 s: the SYNs of the
/// clients beyond its queue are dropped (ListenOverflows) and their
/// blocking connect() calls complete only on a SYN retransmission. Without
/// SYN-family events (this part needs only counters and connect events)
/// diagnose must find the overflow from the namespace's counters, with
/// exactly the kernel's count, and link the slow connects to it.
#[test]
#[ignore = "needs root and BPF: run by cargo xtask test"]
fn accept_queue_overflow_and_slow_connects_are_linked() {
    const CLIENTS: usize = 4;
    let w = worker(|release| {
        let before = netstat();
        let l: TcpListener = backlog_listener(([127, 0, 0, 1], 0).into(), 1).into();
        let addr = l.local_addr().expect("addr");
        // One at a time, so each handshake finishes before the next SYN:
        // the first two fill the queue, the SYNs of the others are dropped.
        let clients: Vec<_> = (0..CLIENTS)
            .map(|_| {
                let c = thread::spawn(move || {
                    let t = Instant::now();
                    let c = TcpStream::connect(addr).expect("connect completes eventually");
                    (c, t.elapsed())
                });
                thread::sleep(Duration::from_millis(50));
                c
            })
            .collect();
        thread::sleep(Duration::from_millis(1500));
        let accepted: Vec<TcpStream> = (0..CLIENTS)
            .map(|_| l.accept().expect("accept").0)
            .collect();
        let conns: Vec<(TcpStream, Duration)> = clients
            .into_iter()
            .map(|c| c.join().expect("client"))
            .collect();
        let slow = conns
            .iter()
            .filter(|(_, t)| *t >= Duration::from_secs(1))
            .count();
        let after = netstat();
        let overflows = after["ListenOverflows"] - before["ListenOverflows"];
        thread::spawn(move || {
            let _ = release.recv();
            drop((accepted, conns, l));
        });
        (addr.port(), slow, overflows)
    });
    let d = Diagnose::start("6s", w.netns);
    // The overflows here happen at the SYN (queue full before the handshake):
    // only the syn_drop hook sees them as events; listen_overflow (third ACK)
    // may attach and still see none.
    let syn_hooks = d.hook_attached("syn_drop");
    let netns = w.netns;
    let ((port, slow, overflows), findings) = w.finish(d);
    eprintln!("{findings:#?}");
    assert_eq!(
        slow,
        CLIENTS - 2,
        "clients beyond the queue (backlog 1 holds 2) waited for a retransmission"
    );
    assert!(overflows >= slow as u64, "{overflows}");

    let accept: Vec<&Value> = findings
        .iter()
        .filter(|f| f["id"] == "accept_queue_overflow")
        .collect();
    assert_eq!(accept.len(), 1, "{findings:#?}");
    let a = accept[0];
    assert_eq!(a["severity"], "critical");
    assert_eq!(a["evidence"]["counters"]["ListenOverflows"], overflows);
    if !syn_hooks {
        assert_eq!(a["evidence"]["source"], "counters");
        assert_eq!(a["count"], overflows, "count == ListenOverflows delta");
    } else {
        assert_eq!(a["evidence"]["port"], port);
    }

    let sc: Vec<&Value> = findings
        .iter()
        .filter(|f| f["id"] == "slow_connect")
        .collect();
    assert_eq!(sc.len(), 1, "{findings:#?}");
    let s = sc[0];
    assert_eq!(s["count"], slow);
    assert_eq!(s["evidence"]["slow_connects"], slow);
    assert_eq!(s["evidence"]["connects_seen"], CLIENTS);
    assert_eq!(s["evidence"]["dport"], port);
    assert_eq!(s["evidence"]["netns"], netns);
    assert_eq!(s["evidence"]["local_listener"], true);
    assert_eq!(
        s["evidence"]["server_side"][0]["id"],
        "accept_queue_overflow"
    );
    assert_eq!(findings.len(), 2, "nothing else: {findings:#?}");
}

/// Role of the child process in `emfile_listener_is_diagnosed` (does
/// nothing unless TCPTRACE_DIAG_CHILD names a port): a listener with
/// backlog 1 in a process at its open-file limit, whose accept loop keeps
/// failing with EMFILE — alive, but never draining the queue.
#[test]
#[ignore = "needs root and BPF: run by cargo xtask test"]
fn emfile_listener_child() {
    let Ok(port) = std::env::var("TCPTRACE_DIAG_CHILD") else {
        return;
    };
    const LIMIT: u64 = 64;
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a local struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl), 0);
        rl.rlim_cur = LIMIT;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &rl), 0);
    }
    let addr = format!("127.0.0.1:{port}").parse().expect("addr");
    let l: TcpListener = backlog_listener(addr, 1).into();
    // Use up every descriptor (duplicates of the listener: no filesystem needed).
    let mut filler = Vec::new();
    while let Ok(f) = l.try_clone() {
        filler.push(f);
    }
    thread::spawn(|| {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        std::process::exit(0);
    });
    println!("ready");
    std::io::stdout().flush().expect("flush");
    loop {
        match l.accept() {
            Err(e) if e.raw_os_error() == Some(libc::EMFILE) => {
                thread::sleep(Duration::from_millis(50))
            }
            other => panic!("accept() should fail with EMFILE: {other:?}"),
        }
    }
}

/// A server out of file descriptors: its accept queue overflows while its
/// accept loop spins on EMFILE. diagnose must name the process, its limit
/// and EMFILE, count exactly what ListenOverflows counted, and see the
/// CLOSE_WAIT connections left in its queue.
#[test]
#[ignore = "needs root and BPF: run by cargo xtask test"]
fn emfile_listener_is_diagnosed() {
    const PORT: u16 = 7171;
    const CLIENTS: usize = 6;
    let w = worker(|release| {
        let mut child = Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "--exact",
                "emfile_listener_child",
                "--include-ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("TCPTRACE_DIAG_CHILD", PORT.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn the listener process");
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        while !line.contains("ready") {
            line.clear();
            assert!(
                out.read_line(&mut line).expect("child output") > 0,
                "child ended early"
            );
        }
        let before = netstat();
        let addr: SocketAddr = format!("127.0.0.1:{PORT}").parse().expect("addr");
        let clients: Vec<socket2::Socket> = (0..CLIENTS)
            .map(|_| {
                let c = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
                    .expect("client");
                c.set_nonblocking(true).expect("nonblocking");
                match c.connect(&addr.into()) {
                    Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
                    other => panic!("non-blocking connect: {other:?}"),
                }
                thread::sleep(Duration::from_millis(50));
                c
            })
            .collect();
        // First tries and one round of SYN retransmissions.
        thread::sleep(Duration::from_millis(1600));
        // The two queued connections get a FIN: CLOSE_WAIT in the queue.
        drop(clients);
        thread::sleep(Duration::from_millis(200));
        let after = netstat();
        let overflows = after["ListenOverflows"] - before["ListenOverflows"];
        let syn_rtx = delta(&before, &after, "TCPSynRetrans");
        let pid = child.id();
        thread::spawn(move || {
            let _ = release.recv();
            drop(child.stdin.take());
            let _ = child.wait();
        });
        (pid, overflows, syn_rtx)
    });
    let d = Diagnose::start("5s", w.netns);
    let handshakes = d.hook_attached("handshake");
    let ((pid, overflows, syn_rtx), findings) = w.finish(d);
    eprintln!("{findings:#?}");
    assert!(overflows >= (CLIENTS - 2) as u64, "{overflows}");

    // The clients whose SYNs the full queue dropped gave up (closed their
    // non-blocking sockets after 1.6 s and one retransmission): with the
    // handshake hook a slow_connect names the overflowing queue.
    let (slow, findings): (Vec<&Value>, Vec<&Value>) =
        findings.iter().partition(|f| f["id"] == "slow_connect");
    if handshakes {
        assert_eq!(slow.len(), 1, "{slow:#?}");
        let e = &slow[0]["evidence"];
        assert_eq!(e["measured"], "handshake");
        assert_eq!(e["dport"], PORT);
        assert_eq!(e["slow_connects"], CLIENTS - 2);
        assert_eq!(e["given_up"], CLIENTS - 2);
        assert_eq!(e["syn_retransmits"], syn_rtx, "== TCPSynRetrans delta");
        assert_eq!(e["server_side"][0]["id"], "accept_queue_overflow");
    } else {
        assert!(slow.is_empty(), "{slow:#?}");
    }
    assert_eq!(findings.len(), 1, "{findings:#?}");
    let f = findings[0];
    assert_eq!(f["id"], "accept_queue_overflow");
    assert_eq!(f["count"], overflows, "count == ListenOverflows delta");
    assert!(
        f["summary"].as_str().is_some_and(|s| s.contains("EMFILE")),
        "{f}"
    );
    let advice = f["advice"].to_string();
    assert!(
        advice.contains("EMFILE") && advice.contains("RLIMIT_NOFILE soft limit (64)"),
        "{advice}"
    );
    let e = &f["evidence"];
    // From counters (SYN hooks unavailable) the listener is listed with its
    // owner; from syn_drop events the evidence is the listener's own.
    let l = if e["source"] == "counters" {
        &e["listeners_with_waiting_connections"][0]
    } else {
        e
    };
    assert_eq!(l["port"], PORT);
    assert_eq!(l["pid"], pid);
    assert_eq!(l["at_fd_limit"], true);
    assert!(l["open_fds"].as_u64().is_some_and(|n| n >= 64), "{l}");
    assert_eq!(l["nofile_soft"], 64);
    assert_eq!(
        l["close_wait_on_port"], 2,
        "the queued connections were closed by their clients"
    );
    assert_eq!(l["backlog_now"], 2);
}
