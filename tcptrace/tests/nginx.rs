//! Scenario tests with a real server: nginx (master + one worker) in a
//! private network namespace. The master calls listen(), the worker
//! inherits the socket and accepts, under its own `worker_rlimit_nofile`:
//! diagnose must name the worker, not the master. With its worker stopped,
//! blocking clients in the same namespace, and in another one across a
//! veth pair, wait for SYN retransmissions: their `slow_connect` must name
//! nginx's listener, its namespace and its ListenOverflows. They need
//! root, BPF and nginx (installed by `cargo xtask setup`, copied into every
//! VM of the matrix); where nginx is missing they say so and return.

mod support;

use std::{
    collections::HashMap,
    net::SocketAddr,
    path::Path,
    process::Command,
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;
use support::{
    craft::{in_netns, netns_path, Family, Lab},
    diagnose::{worker, Diagnose},
    nginx::{nginx_bin, stat, Nginx},
    *,
};

/// Open descriptors of a process now.
fn open_fds(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64)
}

/// Non-blocking connects to `addr`, `gap` apart.
fn connect_many(addr: SocketAddr, n: usize, gap: Duration) -> Vec<socket2::Socket> {
    (0..n)
        .map(|_| {
            let c = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
                .expect("client");
            c.set_nonblocking(true).expect("nonblocking");
            match c.connect(&addr.into()) {
                Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
                other => panic!("non-blocking connect: {other:?}"),
            }
            thread::sleep(gap);
            c
        })
        .collect()
}

/// Keeps connected clients, closes those still in SYN-SENT (so no SYN
/// retransmission moves ListenOverflows after it was read).
fn keep_connected(clients: Vec<socket2::Socket>) -> Vec<socket2::Socket> {
    clients
        .into_iter()
        .filter(|c| c.peer_addr().is_ok())
        .collect()
}

/// What one scenario leaves for the assertions; nginx and the clients live
/// until the test ends (after tcptrace's final snapshot).
struct Run {
    nginx: Nginx,
    _clients: Vec<socket2::Socket>,
    overflows: u64,
}

/// The accept-queue finding, and where its listener evidence is: its own
/// (from events) or the counter-only form's first waiting listener.
fn accept_finding(findings: &[Value]) -> (&Value, &Value) {
    let ids: Vec<&str> = findings.iter().filter_map(|f| f["id"].as_str()).collect();
    for id in &ids {
        // Third ACKs may overflow too (ghost connections), and clients
        // closed in SYN-SENT are slow handshakes; nothing else.
        assert!(
            matches!(
                *id,
                "accept_queue_overflow" | "ghost_connections" | "slow_connect"
            ),
            "{findings:#?}"
        );
    }
    for s in findings.iter().filter(|f| f["id"] == "slow_connect") {
        assert_eq!(
            s["evidence"]["server_side"][0]["id"], "accept_queue_overflow",
            "{s}"
        );
    }
    let a: Vec<&Value> = findings
        .iter()
        .filter(|f| f["id"] == "accept_queue_overflow")
        .collect();
    assert_eq!(a.len(), 1, "{findings:#?}");
    let e = &a[0]["evidence"];
    let l = if e["source"] == "counters" {
        &e["listeners_with_waiting_connections"][0]
    } else {
        e
    };
    (a[0], l)
}

fn own_nofile_soft() -> u64 {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills a local struct.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) }, 0);
    rl.rlim_cur
}

/// The worker at its `worker_rlimit_nofile` (16): accept4() fails with
/// EMFILE, the accept queue (backlog 2) overflows. The finding must name
/// the worker at its limit, list master and worker with their limits, and
/// point at worker_rlimit_nofile; nginx itself logs EMFILE.
/// `clients` connect to nginx on `port`, one every 30 ms; after their first
/// tries and one round of SYN retransmissions, those still in SYN-SENT are
/// closed, so no later retransmission moves `ListenOverflows` once counted.
fn overflow(nginx: Nginx, port: u16, clients: usize) -> Run {
    let before = netstat();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let clients = connect_many(addr, clients, Duration::from_millis(30));
    thread::sleep(Duration::from_millis(1600));
    let clients = keep_connected(clients);
    thread::sleep(Duration::from_millis(200));
    let overflows = netstat()["ListenOverflows"] - before["ListenOverflows"];
    Run {
        nginx,
        _clients: clients,
        overflows,
    }
}

#[test]
#[ignore = "needs root and BPF: run by cargo xtask test"]
fn nginx_worker_at_its_fd_limit_is_named() {
    const PORT: u16 = 8081;
    let Some(bin) = nginx_bin() else {
        eprintln!("nginx is not installed here: skipped");
        return;
    };
    let w = worker(move |_release| {
        let nginx = Nginx::start(&bin, PORT, Some(16));
        // 6 fit under the worker's limit, 3 in the queue, the rest overflow.
        overflow(nginx, PORT, 16)
    });
    let d = Diagnose::start("6s", w.netns);
    let (run, findings) = w.finish(d);
    eprintln!("{findings:#?}");
    let (master, worker_pid) = (run.nginx.master.id(), run.nginx.worker);
    assert!(
        run.nginx.error_log().contains("Too many open files"),
        "nginx's error log: {}",
        run.nginx.error_log()
    );
    assert!(run.overflows >= 1, "{}", run.overflows);

    let (f, l) = accept_finding(&findings);
    if f["evidence"]["source"] == "counters" {
        assert_eq!(f["count"], run.overflows, "count == ListenOverflows delta");
    }
    assert_eq!(l["port"], PORT);
    assert_eq!(l["pid"], worker_pid, "{l}");
    assert_eq!(l["comm"], "nginx");
    assert_eq!(l["at_fd_limit"], true);
    // The limit is set after fork, so descriptors inherited from the
    // master may take the worker past it: the count is /proc's.
    let fds = open_fds(worker_pid);
    assert!(fds >= 16, "{fds}");
    assert_eq!(l["open_fds"], fds);
    assert_eq!(l["nofile_soft"], 16);
    assert_eq!(l["holders_total"], 2);
    let holders = l["holders"].as_array().expect("holders");
    let got: Vec<(u64, bool, u64)> = holders
        .iter()
        .map(|h| {
            (
                h["pid"].as_u64().unwrap_or(0),
                h["at_fd_limit"] == true,
                h["nofile_soft"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    let mut want = vec![
        (u64::from(master), false, own_nofile_soft()),
        (u64::from(worker_pid), true, 16),
    ];
    want.sort();
    assert_eq!(got, want, "{l}");
    let summary = f["summary"].as_str().unwrap_or_default();
    assert!(
        summary.contains(&format!(
            "nginx (pid {worker_pid}) is out of file descriptors"
        )),
        "{summary}"
    );
    let advice = f["advice"].to_string();
    assert!(
        advice.contains(&format!(
            "nginx (pid {worker_pid}) has {fds} open files, its RLIMIT_NOFILE soft limit (16)"
        )) && advice.contains("worker_rlimit_nofile"),
        "{advice}"
    );
    assert!(!advice.contains("blocked"), "{advice}");
}

/// The worker stopped with SIGSTOP: nobody accepts, the queue overflows.
/// The finding must name the stopped worker (state T) and say so.
#[test]
#[ignore = "needs root and BPF: run by cargo xtask test"]
fn nginx_stopped_worker_is_named() {
    const PORT: u16 = 8082;
    let Some(bin) = nginx_bin() else {
        eprintln!("nginx is not installed here: skipped");
        return;
    };
    let w = worker(move |_release| {
        let nginx = Nginx::start(&bin, PORT, None);
        stop_worker(&nginx);
        overflow(nginx, PORT, 8)
    });
    let d = Diagnose::start("6s", w.netns);
    let (run, findings) = w.finish(d);
    eprintln!("{findings:#?}");
    let worker_pid = run.nginx.worker;
    assert!(run.overflows >= 1, "{}", run.overflows);
    let (f, l) = accept_finding(&findings);
    if f["evidence"]["source"] == "counters" {
        assert_eq!(f["count"], run.overflows, "count == ListenOverflows delta");
    }
    assert_eq!(l["pid"], worker_pid, "{l}");
    assert_eq!(l["state"], "T");
    assert_eq!(l["at_fd_limit"], false);
    assert_eq!(l["holders_total"], 2);
    let states: Vec<(u64, &str)> = l["holders"]
        .as_array()
        .expect("holders")
        .iter()
        .map(|h| {
            (
                h["pid"].as_u64().unwrap_or(0),
                h["state"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert!(states.contains(&(u64::from(worker_pid), "T")), "{states:?}");
    assert!(
        states.contains(&(u64::from(run.nginx.master.id()), "S")),
        "{states:?}"
    );
    let summary = f["summary"].as_str().unwrap_or_default();
    assert!(
        summary.contains(&format!(
            "nginx (pid {worker_pid}), which holds the listening socket, is stopped"
        )),
        "{summary}"
    );
    let advice = f["advice"].to_string();
    assert!(
        advice.contains(&format!("kill -CONT {worker_pid}")),
        "{advice}"
    );
}

/// Stops nginx's worker and waits until it is (state T).
fn stop_worker(nginx: &Nginx) {
    let pid = nix::unistd::Pid::from_raw(nginx.worker as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).expect("SIGSTOP");
    let deadline = Instant::now() + Duration::from_secs(5);
    while stat(nginx.worker).map(|s| s.1).as_deref() != Some("T") {
        assert!(Instant::now() < deadline, "worker not stopped");
        thread::sleep(Duration::from_millis(10));
    }
}

/// One blocking connect() to `addr` on a thread of its own (in the named
/// namespace, else the caller's), with TCP_SYNCNT 2 so that it gives up
/// within seconds should nothing ever accept: the socket or the error, and
/// how long connect() took.
fn blocking_client(
    ns: Option<String>,
    addr: SocketAddr,
) -> thread::JoinHandle<(std::io::Result<socket2::Socket>, Duration)> {
    thread::spawn(move || {
        if let Some(ns) = ns {
            let path = netns_path(&ns);
            let f = std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
            nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        }
        let c = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("client");
        set_syncnt(&c, 2);
        let t = Instant::now();
        let r = c.connect(&addr.into()).map(|()| c);
        (r, t.elapsed())
    })
}

/// Clients of the stalled-accept scenario: the first 3 fill the queue
/// (backlog 2 holds 3), the SYNs of the others are dropped.
const STALLED_CLIENTS: usize = 6;

/// What the stalled-accept scenario leaves for the assertions.
struct Stalled {
    _nginx: Nginx,
    _clients: Vec<socket2::Socket>,
    /// connect() calls that took 1 s or more.
    slow: usize,
    /// The server namespace's ListenOverflows delta.
    overflows: u64,
    /// The client namespace's TCPSynRetrans delta.
    syn_retrans: u64,
}

/// Reads a namespace's TcpExt counters.
type Netstat = Box<dyn Fn() -> HashMap<String, u64>>;

/// nginx's worker stopped, [`STALLED_CLIENTS`] blocking clients (from
/// namespace `client_ns`, else the caller's) connect to `addr` 30 ms
/// apart; the worker is resumed 1.5 s after the last one, so the clients
/// whose SYNs were dropped get in on a later SYN retransmission. The
/// netstats read the server's and the clients' namespaces' counters.
fn stalled_accept(
    nginx: Nginx,
    client_ns: Option<String>,
    addr: SocketAddr,
    (server_netstat, client_netstat): (Netstat, Netstat),
) -> Stalled {
    stop_worker(&nginx);
    let (before, client_before) = (server_netstat(), client_netstat());
    let clients: Vec<_> = (0..STALLED_CLIENTS)
        .map(|_| {
            let c = blocking_client(client_ns.clone(), addr);
            thread::sleep(Duration::from_millis(30));
            c
        })
        .collect();
    thread::sleep(Duration::from_millis(1500));
    let pid = nix::unistd::Pid::from_raw(nginx.worker as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).expect("SIGCONT");
    let mut done = Vec::new();
    let mut slow = 0;
    for c in clients {
        let (r, took) = c.join().expect("client");
        let sock = r.unwrap_or_else(|e| panic!("connect after {took:?}: {e}"));
        slow += usize::from(took >= Duration::from_secs(1));
        done.push(sock);
    }
    Stalled {
        _nginx: nginx,
        _clients: done,
        slow,
        overflows: delta(&before, &server_netstat(), "ListenOverflows"),
        syn_retrans: delta(&client_before, &client_netstat(), "TCPSynRetrans"),
    }
}

/// A lab of two namespaces with nginx on the server side's wildcard
/// address at `port`; the destination its clients connect to.
fn nginx_in_lab(bin: &Path, port: u16) -> (Lab, Nginx, SocketAddr) {
    let lab = Lab::new(Family::V4);
    let bin = bin.to_owned();
    let nginx = in_netns(&lab.server_ns, move || {
        Nginx::start_at(&bin, "0.0.0.0", port, None)
    });
    let dest = SocketAddr::new(lab.server_ip, port);
    (lab, nginx, dest)
}

/// The TcpExt counters of namespace `ns`.
fn netstat_of(ns: &str) -> Netstat {
    let ns = ns.to_owned();
    Box::new(move || in_netns(&ns, netstat))
}

/// The findings about these namespaces (an unfiltered run sees the host).
fn about<'a>(findings: &'a [Value], namespaces: &[u64]) -> Vec<&'a Value> {
    findings
        .iter()
        .filter(|f| {
            namespaces.iter().any(|n| {
                f["evidence"]["netns"] == *n
                    || f["subject"]
                        .as_str()
                        .is_some_and(|s| s.ends_with(&format!("netns {n}")))
            })
        })
        .collect()
}

/// Checks the `accept_queue_overflow` finding of nginx's listener in
/// `netns` and the `slow_connect` linked to it: the listener's subject,
/// namespace, address and port, its ListenOverflows delta == the finding's
/// count, `match` as expected, the derived SYN schedule and the measured
/// times in the advice.
fn assert_linked(
    found: &[&Value],
    run: &Stalled,
    server_netns: u64,
    client_netns: u64,
    listen_addr: &str,
    dest: SocketAddr,
    how: &str,
) {
    let ids: Vec<&str> = found.iter().filter_map(|f| f["id"].as_str()).collect();
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        ["accept_queue_overflow", "slow_connect"],
        "{found:#?}"
    );
    let a = found
        .iter()
        .find(|f| f["id"] == "accept_queue_overflow")
        .expect("accept_queue_overflow");
    let s = found
        .iter()
        .find(|f| f["id"] == "slow_connect")
        .expect("slow_connect");
    assert_eq!(a["count"], run.overflows, "count == ListenOverflows delta");
    assert_eq!(a["evidence"]["netns"], server_netns);
    let from_events = a["evidence"]["source"] != "counters";
    if from_events {
        assert_eq!(
            a["subject"],
            format!(
                "listener {listen_addr}:{} netns {server_netns}",
                dest.port()
            )
        );
        assert_eq!(a["evidence"]["syn_drops_accept_queue_full"], run.overflows);
    } else {
        assert_eq!(a["subject"], format!("netns {server_netns}"));
    }
    assert_eq!(
        s["subject"],
        format!("destination {dest} netns {client_netns}")
    );
    assert_eq!(s["count"], run.slow);
    let e = &s["evidence"];
    assert_eq!(e["slow_connects"], run.slow);
    assert_eq!(e["connects_seen"], STALLED_CLIENTS);
    assert_eq!(e["netns"], client_netns);
    assert_eq!(e["local_listener"], true);
    // Judged by the handshakes: each client's own measure, and every SYN
    // retransmission the client namespace counted.
    assert_eq!(e["measured"], "handshake");
    assert_eq!(e["syn_retransmits"], run.syn_retrans, "== TCPSynRetrans");
    assert!(run.syn_retrans >= run.slow as u64, "{}", run.syn_retrans);
    assert_eq!(e["given_up"], 0);
    let side = e["server_side"].as_array().expect("server_side");
    assert_eq!(side.len(), 1, "{e}");
    let c = &side[0];
    assert_eq!(c["id"], "accept_queue_overflow");
    assert_eq!(
        c["subject"], a["subject"],
        "linked to the listener's finding"
    );
    assert_eq!(c["netns"], server_netns);
    assert_eq!(c["port"], dest.port());
    assert_eq!(c["listen_addr"], listen_addr);
    assert_eq!(c["match"], how);
    assert_eq!(c["listen_overflows"], run.overflows);
    if from_events {
        assert_eq!(
            c["events"], run.overflows,
            "events == ListenOverflows delta"
        );
    }
    assert!(e.get("server_side_ambiguous").is_none(), "{e}");
    // The schedule from the client namespace's sysctls, and what was measured.
    let sched = &e["syn_schedule"];
    assert_eq!(sched["source"], "sysctls");
    let lat = e["latencies_ms"].as_array().expect("latencies_ms");
    let n: u64 = lat.iter().filter_map(|l| l["count"].as_u64()).sum();
    assert_eq!(n, run.slow as u64);
    // Resumed 1.5 s after the last SYN: every dropped client got in on a
    // retransmission the schedule names.
    for l in lat {
        let ms = l["ms"].as_u64().unwrap_or(0);
        let resends = l["syn_resends"].as_u64().unwrap_or(0);
        assert!(resends >= 1, "{l}");
        let at = sched["resend_ms"][resends as usize - 1]
            .as_u64()
            .unwrap_or(0);
        assert!(
            ms >= at && ms < at + 500,
            "{ms} ms vs resend at {at} ms: {e}"
        );
    }
    let advice = s["advice"].to_string();
    assert!(
        advice.contains(&format!(
            "netns {client_netns}, connect() resends its SYN at"
        )),
        "{advice}"
    );
    assert!(
        advice.contains(&format!(
            "see accept_queue_overflow for {}",
            a["subject"].as_str().unwrap_or("")
        )),
        "{advice}"
    );
    let summary = s["summary"].as_str().unwrap_or_default();
    assert!(
        summary.contains(&format!(
            "ListenOverflows +{} in netns {server_netns}",
            run.overflows
        )),
        "{summary}"
    );
}

/// Accept queue full (nginx's worker stopped, backlog 2) and blocking
/// clients in nginx's own namespace: `slow_connect` names the listener of
/// this namespace (`match` local) and its ListenOverflows.
#[test]
#[ignore = "needs root and BPF: run by cargo xtask test"]
fn nginx_full_queue_slows_clients_in_its_namespace() {
    const PORT: u16 = 8083;
    let Some(bin) = nginx_bin() else {
        eprintln!("nginx is not installed here: skipped");
        return;
    };
    let w = worker(move |_release| {
        let nginx = Nginx::start(&bin, PORT, None);
        let addr: SocketAddr = format!("127.0.0.1:{PORT}").parse().expect("addr");
        stalled_accept(nginx, None, addr, (Box::new(netstat), Box::new(netstat)))
    });
    let d = Diagnose::start("6s", w.netns);
    let netns = w.netns;
    let (run, findings) = w.finish(d);
    eprintln!("{findings:#?}");
    assert_eq!(
        run.slow,
        STALLED_CLIENTS - 3,
        "the clients beyond the queue"
    );
    assert!(run.overflows >= run.slow as u64, "{}", run.overflows);
    let found: Vec<&Value> = findings.iter().collect();
    let dest: SocketAddr = format!("127.0.0.1:{PORT}").parse().expect("addr");
    assert_linked(&found, &run, netns, netns, "127.0.0.1", dest, "local");
}

/// The same with the clients in another namespace, across a veth pair, and
/// nginx on a wildcard address: the run is unfiltered (the host's
/// counters), and `slow_connect` of the client's namespace must name
/// nginx's listener in the server's namespace (`match` route: the SYNs from
/// the client's address reached it at the destination address).
#[test]
#[ignore = "needs root and BPF: run by cargo xtask test"]
fn nginx_full_queue_slows_clients_in_another_namespace() {
    const PORT: u16 = 8084;
    let Some(bin) = nginx_bin() else {
        eprintln!("nginx is not installed here: skipped");
        return;
    };
    let (lab, nginx, dest) = nginx_in_lab(&bin, PORT);
    let (server_netns, client_netns) = (lab.server_netns_inode(), lab.client_netns_inode());
    let d = Diagnose::start_with("7s", &[]);
    let run = stalled_accept(
        nginx,
        Some(lab.client_ns.clone()),
        dest,
        (netstat_of(&lab.server_ns), netstat_of(&lab.client_ns)),
    );
    let findings = d.findings();
    let found = about(&findings, &[server_netns, client_netns]);
    eprintln!("{found:#?}");
    assert_eq!(
        run.slow,
        STALLED_CLIENTS - 3,
        "the clients beyond the queue"
    );
    assert!(run.overflows >= run.slow as u64, "{}", run.overflows);
    assert_linked(
        &found,
        &run,
        server_netns,
        client_netns,
        "0.0.0.0",
        dest,
        "route",
    );
    drop(run);
    drop(lab);
}

/// Curl fetches per run of the given-up scenario.
const CURLS: usize = 4;

/// Accept queue full (nginx's worker stopped; 3 blocking clients fill its
/// backlog of 2) and curl in another namespace giving up after 100 ms, as
/// a client with a short connect timeout does: each curl exits 28, its SYN
/// is dropped once (ListenOverflows), nothing is retransmitted
/// (TCPSynRetrans), and `slow_connect` counts the handshakes given up, as
/// many as curl's failures, and names nginx's listener across namespaces.
#[test]
#[ignore = "needs root and BPF: run by cargo xtask test"]
fn nginx_full_queue_times_out_curl_in_another_namespace() {
    const PORT: u16 = 8085;
    let (Some(bin), true) = (nginx_bin(), have("curl")) else {
        eprintln!("nginx or curl is not installed here: skipped");
        return;
    };
    let (lab, nginx, dest) = nginx_in_lab(&bin, PORT);
    let (server_netns, client_netns) = (lab.server_netns_inode(), lab.client_netns_inode());
    let (server_netstat, client_netstat) = (netstat_of(&lab.server_ns), netstat_of(&lab.client_ns));
    let d = Diagnose::start_with("5s", &[]);
    stop_worker(&nginx);
    // Three connections fill the queue (backlog 2 holds 3) and stay.
    let fillers: Vec<_> = (0..3)
        .map(|_| blocking_client(Some(lab.client_ns.clone()), dest))
        .map(|c| c.join().expect("filler").0.expect("a filler connects"))
        .collect();
    let (before, client_before) = (server_netstat(), client_netstat());
    let client_ns = lab.client_ns.clone();
    let codes: Vec<Option<i32>> = in_netns(&client_ns, move || {
        (0..CURLS)
            .map(|_| {
                Command::new("curl")
                    .args(["-s", "-o", "/dev/null", "--connect-timeout", "0.1"])
                    .arg(format!("http://{dest}/"))
                    .status()
                    .expect("run curl")
                    .code()
            })
            .collect()
    });
    let overflows = delta(&before, &server_netstat(), "ListenOverflows");
    let syn_retrans = delta(&client_before, &client_netstat(), "TCPSynRetrans");
    let findings = d.findings();
    let found = about(&findings, &[server_netns, client_netns]);
    eprintln!("{found:#?}");
    let given_up = codes.iter().filter(|c| **c == Some(28)).count();
    assert_eq!(given_up, CURLS, "curl's connect timeouts: {codes:?}");
    assert_eq!(overflows, CURLS as u64, "one dropped SYN per curl");
    assert_eq!(syn_retrans, 0, "TCPSynRetrans delta");
    let s = found
        .iter()
        .find(|f| f["id"] == "slow_connect")
        .unwrap_or_else(|| panic!("no slow_connect: {found:#?}"));
    assert_eq!(
        s["subject"],
        format!("destination {dest} netns {client_netns}")
    );
    let e = &s["evidence"];
    assert_eq!(e["measured"], "handshake", "{e}");
    assert_eq!(e["given_up"], given_up, "== curl's rc 28 count: {e}");
    assert_eq!(e["slow_connects"], given_up, "{e}");
    assert_eq!(e["syn_retransmits"], syn_retrans, "{e}");
    let side = e["server_side"].as_array().expect("server_side");
    assert_eq!(side.len(), 1, "{e}");
    assert_eq!(side[0]["id"], "accept_queue_overflow");
    assert_eq!(side[0]["netns"], server_netns);
    assert_eq!(side[0]["port"], PORT);
    assert_eq!(side[0]["match"], "route");
    let a = found
        .iter()
        .find(|f| f["id"] == "accept_queue_overflow")
        .expect("accept_queue_overflow");
    assert_eq!(a["evidence"]["netns"], server_netns);
    drop(fillers);
    drop(nginx);
    drop(lab);
}
