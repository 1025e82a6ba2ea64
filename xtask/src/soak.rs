//! `cargo xtask bench --soak 10m`: the daemon left running under load, as
//! it runs on every host. Not part of CI (it takes the whole duration).
//!
//! The daemon (`tcptrace daemon --record-dir ... --max-disk 8M --pid
//! <this process>`) is measured at idle and at 10,000 connect() events/s
//! (CPU and RSS), then soaked: a steady mixed load (refused and accepted
//! loopback connects) for the duration with a burst at half-time. Every
//! few seconds: RSS, disk use of the directory against its bound, and each
//! closed segment replayed on its own (retention removes the oldest, so
//! each is counted before it goes). At the end: RSS start/end/max, the
//! largest disk use seen, every segment replayed, and the replayed
//! connect events against the connects made (the load's, and the two
//! metrics scrapes') minus the losses the daemon reports (`tcptrace_events_lost_total{kind="connect"}`). The figures go
//! to the "Daemon soak" section of BENCHMARKS.md.

use std::{
    collections::BTreeMap,
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};

use crate::artifacts;

/// The section of BENCHMARKS.md this writes.
pub const HEADING: &str = "## Daemon soak";

const MAX_DISK: u64 = 8 << 20;
const METRICS_PORT: u16 = 19391;

/// Connects made by the load threads (each one connect event).
#[derive(Default)]
struct Load {
    made: AtomicU64,
    stop: AtomicBool,
    /// Connects per second while steady.
    rate: AtomicU64,
}

fn refused() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9))
}

/// Paced connects: every 10 ms, rate/100 of them, half refused and half to
/// `accepting` (mixed: failures and successes).
fn load_thread(load: Arc<Load>, accepting: SocketAddr) {
    let mut next = Instant::now();
    let mut i = 0u64;
    while !load.stop.load(Ordering::Relaxed) {
        let n = load.rate.load(Ordering::Relaxed) / 100;
        for _ in 0..n {
            let to = if i.is_multiple_of(2) {
                refused()
            } else {
                accepting
            };
            let _ = TcpStream::connect(to);
            i += 1;
        }
        load.made.fetch_add(n, Ordering::Relaxed);
        next += Duration::from_millis(10);
        let now = Instant::now();
        if next > now {
            thread::sleep(next - now);
        } else {
            next = now;
        }
    }
}

/// As many refused connects as possible for `for_how_long`.
fn burst(load: &Load, for_how_long: Duration) -> u64 {
    let end = Instant::now() + for_how_long;
    let mut n = 0;
    while Instant::now() < end {
        for _ in 0..100 {
            let _ = TcpStream::connect(refused());
        }
        n += 100;
    }
    load.made.fetch_add(n, Ordering::Relaxed);
    n
}

struct Proc {
    pid: u32,
}

impl Proc {
    fn rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// utime + stime in clock ticks.
    fn cpu_ticks(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).unwrap_or_default();
        let after = stat.rsplit_once(") ").map_or("", |(_, r)| r);
        let f: Vec<&str> = after.split_whitespace().collect();
        let get = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        // Fields 14 and 15 of stat, counted from field 3 here.
        get(11) + get(12)
    }
}

fn ticks_per_s() -> f64 {
    // SAFETY: sysconf reads a constant.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// CPU (% of one core) and RSS of the daemon over `secs` seconds.
fn measure(p: &Proc, secs: u64) -> (f64, u64) {
    let (t0, c0) = (Instant::now(), p.cpu_ticks());
    let mut rss = 0;
    for _ in 0..secs {
        thread::sleep(Duration::from_secs(1));
        rss = rss.max(p.rss_kib());
    }
    let cpu = (p.cpu_ticks() - c0) as f64 / ticks_per_s() / t0.elapsed().as_secs_f64() * 100.0;
    (cpu, rss)
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.retain(|p| {
        p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("tcptrace-") && n.ends_with(".rec"))
    });
    v.sort();
    v
}

fn disk_use(dir: &Path) -> u64 {
    segments(dir)
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| (m.blocks() * 512).max(m.len()))
        .sum()
}

/// Connect events of `pid` in one segment; an error if it does not replay.
fn replay_count(tcptrace: &Path, seg: &Path, pid: u32) -> Result<u64> {
    let out = Command::new(tcptrace)
        .arg("replay")
        .arg(seg)
        .arg("--json")
        .output()
        .context("running tcptrace replay")?;
    if !out.status.success() {
        bail!(
            "{} does not replay: {}",
            seg.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let needle = format!("\"pid\":{pid},");
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("\"kind\":\"connect\"") && l.contains(&needle))
        .count() as u64)
}

/// Replays `seg` once (the first time it is seen), keeping its count or
/// why it failed.
fn count_once(
    counted: &mut BTreeMap<PathBuf, u64>,
    failures: &mut Vec<String>,
    tcptrace: &Path,
    seg: &Path,
    pid: u32,
) {
    if let std::collections::btree_map::Entry::Vacant(e) = counted.entry(seg.to_owned()) {
        match replay_count(tcptrace, seg, pid) {
            Ok(n) => {
                e.insert(n);
            }
            Err(err) => failures.push(format!("{err:#}")),
        }
    }
}

/// One metric value from the daemon's endpoint. Its connect() is one of
/// this process' too: counted in `made`.
fn scrape(load: &Load, series: &str) -> Option<u64> {
    load.made.fetch_add(1, Ordering::Relaxed);
    let mut s = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], METRICS_PORT))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

fn start_daemon(tcptrace: &Path, dir: &Path, log: &Path) -> Result<Child> {
    let err = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let child = Command::new(tcptrace)
        .arg("daemon")
        .arg("--record-dir")
        .arg(dir)
        .args([
            "--max-disk",
            "8M",
            "--segment-size",
            "1M",
            "--segment-time",
            "30s",
        ])
        .args(["--metrics", &METRICS_PORT.to_string()])
        .args(["--pid", &std::process::id().to_string()])
        .stdout(Stdio::null())
        .stderr(err)
        .spawn()
        .context("starting tcptrace daemon")?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if std::fs::read_to_string(log)
            .unwrap_or_default()
            .contains("tracing;")
        {
            return Ok(child);
        }
        thread::sleep(Duration::from_millis(100));
    }
    bail!("the daemon did not start: see {}", log.display())
}

/// The soak; returns the report section (markdown).
pub fn run(duration: Duration) -> Result<String> {
    let tcptrace = artifacts::static_tcptrace()?;
    let work = std::env::temp_dir().join(format!("tcptrace-soak-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).context("soak directory")?;
    let dir = work.join("rec");
    let log = work.join("daemon.log");
    let mut daemon = start_daemon(&tcptrace, &dir, &log)?;
    let p = Proc { pid: daemon.id() };
    let me = std::process::id();

    let listener = TcpListener::bind("127.0.0.1:0").context("soak listener")?;
    let accepting = listener.local_addr().context("soak listener")?;
    thread::spawn(move || {
        for c in listener.incoming() {
            drop(c);
        }
    });
    let load = Arc::new(Load::default());
    let loader = {
        let load = load.clone();
        thread::spawn(move || load_thread(load, accepting))
    };

    eprintln!("soak: idle 30 s");
    let (idle_cpu, idle_rss) = measure(&p, 30);
    eprintln!("soak: 10k events/s for 30 s");
    load.rate.store(10_000, Ordering::Relaxed);
    let m0 = load.made.load(Ordering::Relaxed);
    let t0 = Instant::now();
    let (busy_cpu, busy_rss) = measure(&p, 30);
    let busy_rate = (load.made.load(Ordering::Relaxed) - m0) as f64 / t0.elapsed().as_secs_f64();

    eprintln!("soak: steady mixed load for {duration:?}, a burst at half-time");
    load.rate.store(2_000, Ordering::Relaxed);
    let rss_start = p.rss_kib();
    let (mut rss_max, mut disk_max) = (rss_start, 0u64);
    let mut counted: BTreeMap<PathBuf, u64> = BTreeMap::new();
    let mut failures = Vec::new();
    let start = Instant::now();
    let mut burst_made = None;
    while start.elapsed() < duration {
        thread::sleep(Duration::from_secs(2));
        if burst_made.is_none() && start.elapsed() >= duration / 2 {
            burst_made = Some(burst(&load, Duration::from_secs(5)));
        }
        rss_max = rss_max.max(p.rss_kib());
        disk_max = disk_max.max(disk_use(&dir));
        // Closed segments (a newer one exists), before retention takes them.
        let segs = segments(&dir);
        for seg in segs.iter().take(segs.len().saturating_sub(1)) {
            count_once(&mut counted, &mut failures, &tcptrace, seg, me);
        }
    }
    load.stop.store(true, Ordering::Relaxed);
    let _ = loader.join();
    thread::sleep(Duration::from_secs(2));
    let rss_end = p.rss_kib();
    let lost = scrape(&load, "tcptrace_events_lost_total{kind=\"connect\"}").unwrap_or(0);
    let errors = scrape(&load, "tcptrace_recorder_errors_total{error=\"disk_full\"}").unwrap_or(0);
    // SAFETY: kill with a pid of our own child.
    unsafe { libc::kill(p.pid as i32, libc::SIGTERM) };
    let status = daemon.wait().context("waiting for the daemon")?;
    disk_max = disk_max.max(disk_use(&dir));
    for seg in segments(&dir) {
        count_once(&mut counted, &mut failures, &tcptrace, &seg, me);
    }
    let made = load.made.load(Ordering::Relaxed);
    let replayed: u64 = counted.values().sum();
    let exact = replayed == made.saturating_sub(lost);
    let section = format!(
        "{HEADING}\n\n\
         Written by `cargo xtask bench --soak {soak}` (static tcptrace, `tcptrace daemon --record-dir DIR \
         --max-disk 8M --segment-size 1M --segment-time 30s --metrics PORT --pid <load generator>`).\n\n\
         | figure | value |\n|---|---|\n\
         | daemon at idle | {idle_cpu:.2} % of one core, RSS {idle_rss} KiB |\n\
         | daemon at {busy_rate:.0} connect events/s | {busy_cpu:.2} % of one core, RSS {busy_rss} KiB |\n\
         | soak | {soak} of mixed connects (2,000/s, half refused, half accepted) with a 5 s burst of refused connects ({burst} made) at half-time |\n\
         | RSS start / end / max | {rss_start} / {rss_end} / {rss_max} KiB |\n\
         | disk use max / bound | {disk_max} / {MAX_DISK} bytes ({within}) |\n\
         | segments replayed | {segs}, {failed} failed to replay |\n\
         | connect events replayed / made / lost (reported) | {replayed} / {made} / {lost}: replayed == made − lost: **{exact}** |\n\
         | recorder disk_full errors | {errors} |\n\
         | daemon exit | {status} |\n",
        soak = humanize(duration),
        burst = burst_made.unwrap_or(0),
        within = if disk_max <= MAX_DISK { "within" } else { "EXCEEDED" },
        segs = counted.len(),
        failed = failures.len(),
    );
    for f in &failures {
        eprintln!("soak: {f}");
    }
    let _ = std::fs::remove_dir_all(&work);
    Ok(section)
}

fn humanize(d: Duration) -> String {
    let s = d.as_secs();
    if s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}
