//! Hot-path cost: ns added to each connect() by a tracer, against no tracer,
//! measured in the same run with the tracers taking turns.
//!
//! Workloads (one pinned thread in a private network namespace):
//! - `eisconn`: connect() again on a connected TCP socket. The kernel fails it
//!   fast with EISCONN, and every tracer still runs its whole connect path
//!   (tcptrace: fd walk, task-storage write and read, histogram, one event
//!   per failure; bpftrace: map insert/delete, histogram, one printf).
//! - `loopback`: a real connect()/accept()/RST close on loopback; below the
//!   print threshold, so only histograms are updated. Only connect() is
//!   timed.
//! - `synflood`: non-blocking connect()s to a listener whose accept queue is
//!   full (one SYN each, dropped); only connect() is timed.
//!
//! Tracers: none; tcptrace with every hook this kernel allows (one entry per
//! `--attach` mode in `TCPTRACE_BENCH_ATTACH`, default `auto`); bpftrace
//! running the equivalent script (`common::BPFTRACE_CONNECT`) when it is on
//! PATH. Each round runs every tracer once, in rotating order; each session
//! runs several batches of each workload. Needs root.

mod common;

use std::{
    net::{SocketAddr, TcpListener, TcpStream},
    os::fd::AsRawFd as _,
    process::Command,
    sync::mpsc,
    time::{Duration, Instant},
};

use common::*;
use serde_json::json;

/// Marker connects go to this closed port of the private loopback.
const MARKER_PORT: u16 = 4747;
/// Largest EISCONN batch: under a third of tcptrace's 4 MiB ring buffer and
/// of bpftrace's perf buffers as configured here.
const EISCONN_BATCH_MAX: usize = 12_000;
/// bpftrace perf buffer pages per CPU (default 64): 2 MiB per CPU.
const BPFTRACE_PAGES: &str = "512";
/// Successful calls faster than this are not printed (both tracers).
const THRESHOLD_NS: u64 = 1_000_000;

#[derive(Clone, Copy, Debug)]
enum Workload {
    Eisconn,
    /// EISCONN calls 20 µs apart: the reader has caught up before each
    /// event, which is when a ring-buffer submit wakes it by default.
    EisconnPaced,
    Loopback,
    Synflood,
}

impl Workload {
    const ALL: [Workload; 4] = [
        Self::Eisconn,
        Self::EisconnPaced,
        Self::Loopback,
        Self::Synflood,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::Eisconn => "eisconn",
            Self::EisconnPaced => "eisconn_paced",
            Self::Loopback => "loopback",
            Self::Synflood => "synflood",
        }
    }
}

enum Cmd {
    Run(Workload, usize),
    Marker,
    /// TcpExt ListenOverflows of the workload's namespace.
    Overflows,
}

/// The workload thread: private netns, pinned, a listener and one
/// connected socket. Answers each command with the elapsed nanoseconds.
/// BPF programs on the connect() path loaded before a session starts:
/// another tracer (another user's tcptrace or bpftrace) running during the
/// session adds its cost to every figure, "none" included.
fn connect_programs() -> usize {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .filter(|p| {
            p.name_as_str().is_some_and(|n| {
                n.contains("conne") || n.starts_with("tracepoint_") || n.starts_with("bench_floor")
            })
        })
        .count()
}

/// CPU time of the calling thread, in nanoseconds.
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid timespec to write into.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Answers each command with (wall, thread CPU) nanoseconds.
fn workload_thread(cpu: usize, rx: mpsc::Receiver<Cmd>, tx: mpsc::Sender<(u64, u64)>) {
    enter_private_netns();
    pin_thread(cpu);
    let l = TcpListener::bind("127.0.0.1:0").expect("listener");
    let addr = l.local_addr().expect("addr");
    let held = TcpStream::connect(addr).expect("connect");
    let _peer = l.accept().expect("accept");
    let sa = sockaddr(addr);
    // A listener whose accept queue is full: every further SYN is dropped.
    let full =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    full.bind(&"127.0.0.1:0".parse::<SocketAddr>().expect("addr").into())
        .expect("bind");
    full.listen(1).expect("listen");
    let full_addr = full.local_addr().expect("addr").as_socket().expect("inet");
    let _queued: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect_timeout(&full_addr, Duration::from_secs(5)).expect("fill"))
        .collect();
    while let Ok(cmd) = rx.recv() {
        let cpu0 = thread_cpu_ns();
        let ns = match cmd {
            Cmd::Marker => {
                marker_connect(MARKER_PORT);
                0
            }
            Cmd::Overflows => listen_overflows(),
            Cmd::Run(Workload::Eisconn, n) => eisconn(held.as_raw_fd(), &sa, n),
            Cmd::Run(Workload::EisconnPaced, n) => eisconn_paced(held.as_raw_fd(), &sa, n),
            Cmd::Run(Workload::Loopback, n) => loopback(&l, addr, n),
            Cmd::Run(Workload::Synflood, n) => synflood(full_addr, n),
        };
        if tx.send((ns, thread_cpu_ns() - cpu0)).is_err() {
            break;
        }
    }
}

fn sockaddr(addr: SocketAddr) -> libc::sockaddr_in {
    let SocketAddr::V4(a) = addr else {
        panic!("IPv4 listener expected")
    };
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(a.ip().octets()),
        },
        sin_zero: [0; 8],
    }
}

fn eisconn(fd: i32, sa: &libc::sockaddr_in, n: usize) -> u64 {
    let t = Instant::now();
    for _ in 0..n {
        // SAFETY: valid fd and sockaddr_in of the given length.
        let rc = unsafe {
            libc::connect(
                fd,
                (sa as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as u32,
            )
        };
        debug_assert_eq!(rc, -1);
    }
    let ns = t.elapsed().as_nanos() as u64;
    assert_eq!(
        std::io::Error::last_os_error().raw_os_error(),
        Some(libc::EISCONN)
    );
    ns
}

/// `n` EISCONN calls, one every 20 µs; returns the time spent inside the
/// calls only (the clock reads cost the same with and without a tracer).
fn eisconn_paced(fd: i32, sa: &libc::sockaddr_in, n: usize) -> u64 {
    const GAP: Duration = Duration::from_micros(20);
    let mut inside = Duration::ZERO;
    for _ in 0..n {
        let t = Instant::now();
        // SAFETY: valid fd and sockaddr_in of the given length.
        unsafe {
            libc::connect(
                fd,
                (sa as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as u32,
            )
        };
        inside += t.elapsed();
        while t.elapsed() < GAP {
            std::hint::spin_loop();
        }
    }
    inside.as_nanos() as u64
}

/// `n` loopback connect()s (the handshake completes inside the call), each
/// accepted and closed by RST; only the connect() calls are timed, so the
/// noise of socket creation and teardown stays out of the figure.
fn loopback(l: &TcpListener, addr: SocketAddr, n: usize) -> u64 {
    let dest = socket2::SockAddr::from(addr);
    let mut inside = Duration::ZERO;
    for _ in 0..n {
        let c = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("socket");
        let t = Instant::now();
        c.connect(&dest).expect("loopback connect");
        inside += t.elapsed();
        let (s, _) = l.accept().expect("accept");
        c.set_linger(Some(Duration::ZERO)).expect("SO_LINGER");
        drop((c, s));
    }
    inside.as_nanos() as u64
}

/// `n` non-blocking connect()s to the full listener: one SYN each, dropped
/// by the listener (TcpExt ListenOverflows), then the socket is closed; only
/// the connect() calls are timed.
fn synflood(addr: SocketAddr, n: usize) -> u64 {
    let dest = socket2::SockAddr::from(addr);
    let mut inside = Duration::ZERO;
    for _ in 0..n {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("socket");
        s.set_nonblocking(true).expect("nonblocking");
        let t = Instant::now();
        let _ = s.connect(&dest);
        inside += t.elapsed();
    }
    inside.as_nanos() as u64
}

/// TcpExt ListenOverflows of the calling thread's network namespace.
fn listen_overflows() -> u64 {
    let text = std::fs::read_to_string("/proc/thread-self/net/netstat").unwrap_or_default();
    let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "ListenOverflows")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

struct Worker {
    tx: mpsc::Sender<Cmd>,
    rx: mpsc::Receiver<(u64, u64)>,
}

impl Worker {
    /// (wall, thread CPU) nanoseconds for `n` calls.
    fn run(&self, w: Workload, n: usize) -> (u64, u64) {
        self.tx.send(Cmd::Run(w, n)).expect("worker");
        self.rx.recv().expect("worker")
    }

    fn overflows(&self) -> u64 {
        self.tx.send(Cmd::Overflows).expect("worker");
        self.rx.recv().expect("worker").0
    }

    fn marker(&self) {
        self.tx.send(Cmd::Marker).expect("worker");
        self.rx.recv().expect("worker");
    }
}

#[derive(Clone)]
enum Tracer {
    None,
    /// `--attach` mode, extra arguments, binary (None: the one under test)
    /// and a label for the binary.
    Tcptrace(String, Vec<String>, Option<(String, String)>),
    Bpftrace(String),
    /// bpftrace with empty programs on the same tracepoints: what attaching
    /// anything there costs, before any work.
    Floor(String),
}

/// Name of [`Tracer::Floor`] in the report.
const FLOOR: &str = "bpftrace[empty programs]";
/// tcptrace's own empty programs on the same tracepoints (`--bench-floor`):
/// the floor where bpftrace is absent (the VM kernels).
const TCPTRACE_FLOOR: &str = "tcptrace[empty programs]";

impl Tracer {
    fn name(&self) -> String {
        match self {
            Self::None => "none".into(),
            Self::Tcptrace(mode, extra, bin) => {
                let mut n = String::from("tcptrace");
                if let Some((_, label)) = bin {
                    n.push('@');
                    n.push_str(label);
                }
                if mode != "auto" {
                    n.push('-');
                    n.push_str(mode);
                }
                match extra.as_slice() {
                    [] => {}
                    [flag, hooks] if flag == "--bench-hooks" => {
                        n.push_str(&format!("[{hooks} only]"));
                    }
                    [flag] if flag == "--bench-floor" => return TCPTRACE_FLOOR.into(),
                    _ => n.push_str(&format!("[{}]", extra.join(" "))),
                }
                n
            }
            Self::Bpftrace(_) => "bpftrace".into(),
            Self::Floor(_) => FLOOR.into(),
        }
    }

    /// Whether every EISCONN call is reported (not a filtered variant).
    fn reports(&self) -> bool {
        match self {
            Self::Tcptrace(_, extra, _) => {
                extra.is_empty() || extra.first().is_some_and(|a| a == "--bench-hooks")
            }
            Self::Floor(_) => false,
            _ => true,
        }
    }

    /// Starts the tracer and waits until it reports a marker connect().
    fn start(&self, worker: &Worker, cpu: usize) -> Option<Running> {
        let (mut cmd, eisconn) = match self {
            Self::None => return None,
            Self::Tcptrace(mode, extra, bin) => {
                let mut c = Command::new(bin.as_ref().map_or_else(tcptrace_bin, |b| b.0.clone()));
                c.args(["--interval", "0", "--min-latency", "1ms", "--attach", mode]);
                c.args(extra);
                (c, "EISCONN")
            }
            Self::Bpftrace(bin) => {
                let mut c = bpftrace_connect(bin, THRESHOLD_NS);
                c.env("BPFTRACE_PERF_RB_PAGES", BPFTRACE_PAGES);
                (c, "ret=-106")
            }
            Self::Floor(bin) => (bpftrace_floor(bin, MARKER_PORT), "ret=-106"),
        };
        pin_command(&mut cmd, cpu);
        let mut r = Running::spawn_to_file(
            cmd,
            Watch {
                first: format!("127.0.0.1:{MARKER_PORT}"),
                count: eisconn.into(),
                // Event lines name the peer; summary lines do not.
                count_also: "127.0.0.1".into(),
                ready: "tracing;".into(),
            },
        );
        if !self.reports() && !matches!(self, Self::Floor(_)) {
            // Filtered variants report nothing: attached once tcptrace says so.
            assert!(
                r.wait_ready(Duration::from_secs(120)).is_some(),
                "{} did not start: {}",
                self.name(),
                r.stderr_text()
            );
            return Some(r);
        }
        if r.wait_needle(Duration::from_secs(120), Duration::from_millis(20), || {
            worker.marker()
        })
        .is_none()
        {
            let err = r.stderr_text();
            let _ = r.stop(Duration::from_secs(5));
            panic!(
                "{} did not report a connect within 120 s: {err}",
                self.name()
            );
        }
        Some(r)
    }
}

/// Lost events as the tracer reported them at exit.
fn lost(tracer: &Tracer, f: &Finished) -> u64 {
    let num_after = |text: &str, key: &str| -> u64 {
        text.lines()
            .filter_map(|l| {
                let rest = &l[l.find(key)? + key.len()..];
                rest.trim_start()
                    .split(|c: char| !c.is_ascii_digit())
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .sum()
    };
    match tracer {
        Tracer::Bpftrace(_) | Tracer::Floor(_) => {
            let err: String = f.stderr.iter().map(|(_, l)| format!("{l}\n")).collect();
            num_after(&f.lost_lines.join("\n"), "Lost") + num_after(&err, "Lost")
        }
        _ => num_after(&f.tail, "lost events:"),
    }
}

fn main() {
    raise_nofile();
    environment("hotpath");
    let (work_cpu, tracer_cpu) = cpus();
    let rounds = env_usize("TCPTRACE_BENCH_ROUNDS", 8);
    let batches = env_usize("TCPTRACE_BENCH_BATCHES", 10);
    let batch_ms = env_usize("TCPTRACE_BENCH_BATCH_MS", 30) as u64;

    let mut tracers = vec![Tracer::None];
    let modes = std::env::var("TCPTRACE_BENCH_ATTACH").unwrap_or_else(|_| "auto".into());
    // `TCPTRACE_BENCH_VARIANTS`: extra tcptrace runs, `;`-separated
    // argument lists (development aid). `TCPTRACE_BENCH_BASELINE`: older
    // tcptrace binaries measured the same way.
    let variants: Vec<Vec<String>> = std::iter::once(Vec::new())
        .chain(
            std::env::var("TCPTRACE_BENCH_VARIANTS")
                .unwrap_or_default()
                .split(';')
                .filter(|v| !v.trim().is_empty())
                .map(|v| v.split_whitespace().map(str::to_owned).collect()),
        )
        .collect();
    let baselines = baselines();
    for m in modes.split(',').filter(|m| !m.is_empty()) {
        for b in &baselines {
            tracers.push(Tracer::Tcptrace(m.to_owned(), Vec::new(), Some(b.clone())));
        }
        for v in &variants {
            tracers.push(Tracer::Tcptrace(m.to_owned(), v.clone(), None));
        }
    }
    if let Some(bin) = bpftrace_bin() {
        // The same hooks as the bpftrace script: connect() only.
        tracers.push(Tracer::Tcptrace(
            "auto".into(),
            vec!["--bench-hooks".into(), "connect".into()],
            None,
        ));
        data(
            "hotpath",
            json!({"kind": "bpftrace", "version": bpftrace_version(&bin), "script": BPFTRACE_CONNECT}),
        );
        tracers.push(Tracer::Floor(bin.clone()));
        tracers.push(Tracer::Bpftrace(bin));
    } else {
        // No bpftrace (the VM kernels): connect() alone under each mode
        // (fentry/fexit, or the syscall tracepoints under `--attach
        // kprobe`), against empty programs on those tracepoints, a floor
        // that bpftrace's script cannot go below.
        for m in modes.split(',').filter(|m| !m.is_empty()) {
            tracers.push(Tracer::Tcptrace(
                m.to_owned(),
                vec!["--bench-hooks".into(), "connect".into()],
                None,
            ));
        }
        tracers.push(Tracer::Tcptrace(
            "auto".into(),
            vec!["--bench-floor".into()],
            None,
        ));
    }

    let (cmd_tx, cmd_rx) = mpsc::channel();
    let (ns_tx, ns_rx) = mpsc::channel();
    std::thread::spawn(move || workload_thread(work_cpu, cmd_rx, ns_tx));
    let worker = Worker {
        tx: cmd_tx,
        rx: ns_rx,
    };
    pin_thread(tracer_cpu);

    // Calls per batch so that an untraced batch takes about `batch_ms`.
    let only = std::env::var("TCPTRACE_BENCH_WORKLOADS").unwrap_or_default();
    let workloads: Vec<Workload> = Workload::ALL
        .into_iter()
        .filter(|w| only.is_empty() || only.split(',').any(|o| o == w.name()))
        .collect();
    let sizes: Vec<usize> = workloads
        .iter()
        .map(|&w| {
            let probe = 200;
            worker.run(w, probe);
            let ns = worker.run(w, probe).0.max(1);
            let n = ((batch_ms * 1_000_000 * probe as u64 / ns) as usize).max(50);
            match w {
                // Every call is reported: a batch fits in either tracer's
                // buffers, and the next starts once all were printed, so the
                // cost measured is that of delivered events, not of drops.
                Workload::Eisconn => n.min(EISCONN_BATCH_MAX),
                // Paced: the batch lasts n × 20 µs whatever the call costs.
                Workload::EisconnPaced => (batch_ms as usize * 50).min(EISCONN_BATCH_MAX),
                Workload::Loopback | Workload::Synflood => n,
            }
        })
        .collect();
    for (w, n) in workloads.iter().zip(&sizes) {
        eprintln!("bench hotpath: {} batches of {n} calls", w.name());
    }

    // samples[tracer][workload] = ns per call, one per batch, wall clock
    // and the workload thread's CPU time.
    let mut samples = vec![vec![Vec::new(); workloads.len()]; tracers.len()];
    let mut cpu_samples = vec![vec![Vec::new(); workloads.len()]; tracers.len()];
    for round in 0..rounds {
        for k in 0..tracers.len() {
            let ti = (k + round) % tracers.len();
            let tracer = &tracers[ti];
            let foreign = connect_programs();
            let mut running = tracer.start(&worker, tracer_cpu);
            let tracer_cpu0 = running.as_ref().map_or(0, |r| cpu_ns(r.pid()));
            let mut eisconn_calls = 0u64;
            let mut syns = 0u64;
            let overflows0 = worker.overflows();
            for (wi, &w) in workloads.iter().enumerate() {
                worker.run(w, sizes[wi] / 4); // warm-up
                match w {
                    Workload::Eisconn | Workload::EisconnPaced => {
                        eisconn_calls += (sizes[wi] / 4) as u64
                    }
                    Workload::Synflood => syns += (sizes[wi] / 4) as u64,
                    Workload::Loopback => {}
                }
            }
            for _ in 0..batches {
                for (wi, &w) in workloads.iter().enumerate() {
                    // Each batch starts with the tracer idle: every report of
                    // the previous batch printed.
                    if let Some(r) = running.as_mut().filter(|_| tracer.reports()) {
                        r.wait_count(eisconn_calls, Duration::from_secs(30));
                    }
                    let (ns, cpu) = worker.run(w, sizes[wi]);
                    samples[ti][wi].push(ns as f64 / sizes[wi] as f64);
                    cpu_samples[ti][wi].push(cpu as f64 / sizes[wi] as f64);
                    match w {
                        Workload::Eisconn | Workload::EisconnPaced => {
                            eisconn_calls += sizes[wi] as u64
                        }
                        Workload::Synflood => syns += sizes[wi] as u64,
                        Workload::Loopback => {}
                    }
                }
            }
            let dropped = worker.overflows() - overflows0;
            if syns > 0 && dropped != syns {
                eprintln!("bench hotpath: {syns} SYNs sent, {dropped} counted as ListenOverflows");
            }
            if running.is_none() {
                data(
                    "hotpath",
                    json!({"kind": "session", "round": round, "tracer": tracer.name(),
                           "foreign_programs": foreign, "syns": syns, "listen_overflows": dropped}),
                );
            }
            if let Some(mut r) = running {
                // Let the tracer print what is still queued.
                if tracer.reports() {
                    r.wait_count(eisconn_calls, Duration::from_secs(30));
                }
                std::thread::sleep(Duration::from_millis(100));
                let tracer_cpu_ns = cpu_ns(r.pid()) - tracer_cpu0;
                let f = r.stop(Duration::from_secs(30));
                let eis = f.needle_hits;
                if round == 0 {
                    // Which mechanism each hook attached with.
                    let attach: Vec<&str> = f
                        .stderr
                        .iter()
                        .filter_map(|(_, l)| l.strip_prefix("tcptrace: "))
                        .filter(|l| !l.starts_with("tracing;"))
                        .collect();
                    data(
                        "hotpath",
                        json!({"kind": "attach", "tracer": tracer.name(), "lines": attach}),
                    );
                }
                data(
                    "hotpath",
                    json!({"kind": "session", "round": round, "tracer": tracer.name(),
                           "eisconn_calls": eisconn_calls, "eisconn_reported": eis,
                           "lost": lost(tracer, &f), "exit_ok": f.success,
                           "tracer_cpu_ns": tracer_cpu_ns, "syns": syns,
                           "listen_overflows": dropped, "foreign_programs": foreign}),
                );
            }
        }
        eprintln!("bench hotpath: round {} of {rounds} done", round + 1);
    }

    for (wi, w) in workloads.iter().enumerate() {
        let base = &samples[0][wi];
        for (ti, t) in tracers.iter().enumerate() {
            let s = &samples[ti][wi];
            data(
                "hotpath",
                json!({"kind": "ns_per_call", "workload": w.name(), "tracer": t.name(),
                       "calls_per_batch": sizes[wi], "samples": s,
                       "cpu_samples": cpu_samples[ti][wi]}),
            );
            let c = &cpu_samples[ti][wi];
            let cb = &cpu_samples[0][wi];
            println!(
                "bench hotpath {} {}: wall ns/call min={:.0} median={:.0} (added {:.0}/{:.0}); \
                 thread CPU ns/call min={:.0} median={:.0} (added {:.0}/{:.0})",
                w.name(),
                t.name(),
                min(s),
                median(s),
                min(s) - min(base),
                median(s) - median(base),
                min(c),
                median(c),
                min(c) - min(cb),
                median(c) - median(cb)
            );
        }
    }
}
