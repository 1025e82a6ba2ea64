//! Metrics endpoint (`--metrics`): what a scrape costs, and what scrapes
//! cost the drain.
//!
//! 1. Scrape under load: the bench-only event source (`--bench-flood`,
//!    as in the pipeline bench) floods the ring buffer at a fixed rate the
//!    drain keeps up with; tcptrace runs pinned to one CPU, the generator
//!    to the other. Each rate runs without scrapes and with a client
//!    scraping `/metrics` every 10 ms (600 times as often as Prometheus's
//!    default 15 s) from a client process of its own (so its connect()
//!    calls stay out of the `--pid` filter): the events lost and received
//!    must be the same, and every scrape must answer (latency per scrape
//!    reported).
//! 2. Scrape latency and bytes per scrape with 10 and 1,000 listeners,
//!    each with one third-ACK accept-queue overflow (an event) and two
//!    answered handshakes (the kernel's per-listener counters), at the
//!    default `--metrics-top-listeners 64` and with 1,000 (every listener
//!    a series of its own).
//!
//! Needs root. `cargo xtask bench` runs it on this machine's kernel.

mod common;

use std::{
    io::{Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream},
    process::{Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use common::*;
use serde_json::{json, Value};
use socket2::{Domain, Socket, Type};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// One `GET /metrics`: (status, body bytes), or None when it failed.
fn get(port: u16) -> Option<(u16, usize)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let head_end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..head_end]);
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, raw.len() - head_end - 4))
}

/// Latencies (ms) and sizes of scrapes.
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Scrapes {
    ms: Vec<f64>,
    bytes: Vec<f64>,
    failed: u64,
}

impl Scrapes {
    fn one(&mut self, port: u16) {
        let t = Instant::now();
        match get(port) {
            Some((200, n)) => {
                self.ms.push(t.elapsed().as_secs_f64() * 1e3);
                self.bytes.push(n as f64);
            }
            _ => self.failed += 1,
        }
    }

    fn json(&self) -> Value {
        let mut sorted = self.ms.clone();
        sorted.sort_by(f64::total_cmp);
        let p99 = sorted
            .get((sorted.len() * 99 / 100).min(sorted.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0.0);
        json!({"scrapes": self.ms.len(), "failed": self.failed,
               "ms_min": min(&self.ms), "ms_median": median(&self.ms), "ms_p99": p99,
               "ms_max": sorted.last().copied().unwrap_or(0.0),
               "bytes_median": median(&self.bytes)})
    }
}

/// tcptrace with `--metrics` on a free port, pinned to `cpu`, started.
fn tracer(extra: &[String], cpu: usize) -> (Running, u16) {
    let port = free_port();
    let mut cmd = Command::new(tcptrace_bin());
    cmd.args(["--interval", "0", "--json", "--bench-quiet"])
        .arg("--metrics")
        .arg(format!("127.0.0.1:{port}"))
        .args(extra);
    pin_command(&mut cmd, cpu);
    (Running::tracing_to_file(cmd, Watch::default()), port)
}

/// One flood run, scraping every `every` (None: no scrapes).
fn flood(rate: f64, every: Option<Duration>, dur: Duration, cpus: (usize, usize)) {
    let me = std::process::id();
    let per_call = ((rate / 20_000.0) as u32).clamp(1, 128);
    let extra = [
        "--pid".to_owned(),
        me.to_string(),
        "--bench-flood".to_owned(),
        format!("{me}:{per_call}"),
    ];
    let (r, port) = tracer(&extra, cpus.1);
    // The scraping client is a process of its own: its connect() calls
    // must not pass the `--pid` filter that selects the flood.
    let scraper = every.map(|every| {
        Command::new(std::env::current_exe().expect("this bench"))
            .env(SCRAPER, format!("{port},{},{}", every.as_millis(), cpus.0))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the scraping client")
    });
    let calls = getppid_paced(Some(rate / f64::from(per_call)), u64::MAX, dur);
    std::thread::sleep(Duration::from_millis(200));
    let scrapes = scraper.map(|mut child| {
        // Its stdin closing tells it to stop and report.
        drop(child.stdin.take());
        let out = child.wait_with_output().expect("scraping client");
        let s: Scrapes = serde_json::from_slice(&out.stdout).expect("the client's report");
        s
    });
    let err = r.stderr_text();
    let f = r.stop(Duration::from_secs(60));
    assert!(f.success, "tcptrace failed: {err}");
    let produced = calls * u64::from(per_call);
    let (received, lost) = f.final_json_counts();
    let mut v = json!({"kind": "under_load", "rate": rate, "produced": produced,
                       "received": received, "lost": lost,
                       "scrape_every_ms": every.map(|e| e.as_millis() as u64)});
    let line = match &scrapes {
        Some(s) => {
            if let (Value::Object(o), Value::Object(more)) = (&mut v, s.json()) {
                o.extend(more);
            }
            format!(
                "{} scrapes ({} failed), median {:.2} ms, max {:.2} ms",
                s.ms.len(),
                s.failed,
                median(&s.ms),
                s.ms.iter().copied().fold(0.0, f64::max)
            )
        }
        None => "no scrapes".into(),
    };
    data("scrape", v);
    println!(
        "bench scrape: flood {rate:.0}/s, {line}: produced {produced} received {received} lost {lost}"
    );
}

/// `n` listeners in the calling thread's namespace (lo up), each with one
/// third-ACK overflow and two answered handshakes; kept open by the caller.
fn listeners(n: u16) -> Vec<Socket> {
    let mut keep = Vec::new();
    for i in 0..n {
        let addr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 20000 + i));
        let l = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
        l.bind(&addr.into()).expect("bind");
        // Handshakes complete at their first data, so two are answered
        // while the queue (backlog 0) is empty and the second overflows.
        let secs: libc::c_int = 10;
        // SAFETY: setsockopt with a valid fd and an int value.
        unsafe {
            libc::setsockopt(
                std::os::fd::AsRawFd::as_raw_fd(&l),
                libc::IPPROTO_TCP,
                libc::TCP_DEFER_ACCEPT,
                (&raw const secs).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        l.listen(0).expect("listen");
        let clients: Vec<TcpStream> = (0..2)
            .map(|_| TcpStream::connect(addr).expect("connect"))
            .collect();
        for mut c in clients {
            c.write_all(b"x").expect("send");
            socket2::SockRef::from(&c)
                .set_linger(Some(Duration::ZERO))
                .expect("SO_LINGER");
        }
        keep.push(l);
    }
    keep
}

/// Scrape latency and size with `n` listeners and `top` of them admitted.
fn per_listeners(n: u16, top: usize, cpu: usize) {
    const SCRAPES: usize = 50;
    // A thread in a private namespace: tells its inode, builds the
    // listeners when told to, keeps them until told to let go.
    let (up_tx, up_rx) = std::sync::mpsc::channel();
    let (down_tx, down_rx) = std::sync::mpsc::channel::<()>();
    let keeper = std::thread::spawn(move || {
        enter_private_netns();
        let ns = std::fs::metadata("/proc/thread-self/ns/net")
            .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
            .expect("netns");
        up_tx.send(ns).expect("netns");
        if down_rx.recv().is_err() {
            return;
        }
        let kept = listeners(n);
        up_tx.send(0).expect("built");
        let _ = down_rx.recv();
        drop(kept);
    });
    let ns = up_rx.recv().expect("netns");
    let extra = [
        "--netns".to_owned(),
        ns.to_string(),
        "--metrics-top-listeners".to_owned(),
        top.to_string(),
    ];
    let (r, port) = tracer(&extra, cpu);
    down_tx.send(()).expect("build");
    up_rx.recv().expect("listeners built");
    // Let the drain take every event in; the first scrape admits the
    // listeners (not timed).
    std::thread::sleep(Duration::from_millis(500));
    let _ = get(port);
    let mut s = Scrapes::default();
    for _ in 0..SCRAPES {
        s.one(port);
    }
    let series = get_series(port);
    let _ = down_tx.send(());
    keeper.join().expect("listeners");
    let _ = r.stop(Duration::from_secs(30));
    let mut v = json!({"kind": "listeners", "listeners": n, "top": top, "series": series});
    if let (Value::Object(o), Value::Object(more)) = (&mut v, s.json()) {
        o.extend(more);
    }
    data("scrape", v);
    println!(
        "bench scrape: {n} listeners, --metrics-top-listeners {top}: {series} series, {:.0} bytes/scrape, median {:.2} ms, max {:.2} ms ({} scrapes, {} failed)",
        median(&s.bytes),
        median(&s.ms),
        s.ms.iter().copied().fold(0.0, f64::max),
        s.ms.len(),
        s.failed
    );
}

/// Samples in one scrape.
fn get_series(port: u16) -> usize {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return 0;
    };
    let _ = s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n");
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text.split_once("\r\n\r\n").map_or(0, |(_, b)| {
        b.lines().filter(|l| !l.starts_with('#')).count()
    })
}

/// Set in the scraping client's environment: `PORT,EVERY_MS,CPU`.
const SCRAPER: &str = "TCPTRACE_BENCH_SCRAPER";

/// The scraping client: scrapes every EVERY_MS until its stdin closes,
/// then prints what it measured (JSON) on stdout.
fn scraper(spec: &str) {
    let v: Vec<u64> = spec.split(',').filter_map(|x| x.parse().ok()).collect();
    let [port, every, cpu] = v[..] else {
        panic!("{SCRAPER}={spec}: want PORT,EVERY_MS,CPU");
    };
    pin_thread(cpu as usize);
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    std::thread::spawn(move || {
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        flag.store(true, Ordering::Relaxed);
    });
    let every = Duration::from_millis(every);
    let mut s = Scrapes::default();
    while !stop.load(Ordering::Relaxed) {
        let t = Instant::now();
        s.one(port as u16);
        std::thread::sleep(every.saturating_sub(t.elapsed()));
    }
    println!("{}", serde_json::to_string(&s).expect("JSON"));
}

fn main() {
    if let Ok(spec) = std::env::var(SCRAPER) {
        return scraper(&spec);
    }
    environment("scrape");
    raise_nofile();
    let (gen_cpu, tracer_cpu) = cpus();
    pin_thread(gen_cpu);
    let reps = env_usize("TCPTRACE_BENCH_REPS", 3);
    let secs = env_usize("TCPTRACE_BENCH_SECS", 2) as u64;
    let dur = Duration::from_secs(secs);
    for rate in [100e3, 1e6] {
        for _ in 0..reps {
            flood(rate, None, dur, (gen_cpu, tracer_cpu));
            flood(
                rate,
                Some(Duration::from_millis(10)),
                dur,
                (gen_cpu, tracer_cpu),
            );
        }
    }
    for (n, top) in [(10, 64), (1000, 64), (1000, 1000)] {
        per_listeners(n, top, tracer_cpu);
    }
}
