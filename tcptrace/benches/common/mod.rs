//! Helpers shared by the benchmarks: tracer processes (tcptrace, bpftrace)
//! with their output counted as it streams, CPU pinning, process CPU time
//! and memory, statistics, and the `benchdata` lines `cargo xtask bench`
//! turns into BENCHMARKS.md.
#![allow(dead_code)]

/// Moves the calling thread into a new network namespace with lo up.
pub fn enter_private_netns() {
    tcptrace_lab::netns::enter_private_netns().expect("a private network namespace");
}

use std::{
    io::Read as _,
    os::unix::process::CommandExt as _,
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use serde_json::{json, Value};

/// The tcptrace binary: `TCPTRACE_BIN` (xtask, VM runs) or the one cargo built.
pub fn tcptrace_bin() -> String {
    std::env::var("TCPTRACE_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_tcptrace").to_owned())
}

/// Older tcptrace binaries to measure beside this one:
/// `TCPTRACE_BENCH_BASELINE=PATH=LABEL[;PATH=LABEL...]`.
pub fn baselines() -> Vec<(String, String)> {
    std::env::var("TCPTRACE_BENCH_BASELINE")
        .unwrap_or_default()
        .split(';')
        .filter_map(|v| v.split_once('='))
        .map(|(p, l)| (p.to_owned(), l.to_owned()))
        .collect()
}

/// Whether `bin` has the bench-only flags (older builds may not).
pub fn has_bench_flags(bin: &str) -> bool {
    Command::new(bin)
        .args(["--bench-quiet", "--help"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `bpftrace` on PATH, unless `TCPTRACE_BENCH_NO_BPFTRACE` is set.
pub fn bpftrace_bin() -> Option<String> {
    if std::env::var_os("TCPTRACE_BENCH_NO_BPFTRACE").is_some() {
        return None;
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("bpftrace"))
        .find(|p| p.is_file())
        .map(|p| p.to_string_lossy().into_owned())
}

pub fn bpftrace_version(bin: &str) -> String {
    Command::new(bin)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// An integer from the environment, or `default`.
pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub fn ncpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// The CPU the workload runs on and the one tracers run on (the same one on
/// a single-CPU machine).
pub fn cpus() -> (usize, usize) {
    (0, if ncpus() > 1 { 1 } else { 0 })
}

fn cpu_set(cpu: usize) -> libc::cpu_set_t {
    // SAFETY: cpu_set_t is plain data; CPU_SET writes within it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        set
    }
}

/// Pins the calling thread to `cpu`.
pub fn pin_thread(cpu: usize) {
    let set = cpu_set(cpu);
    // SAFETY: valid cpu_set_t of the right size; 0 is the calling thread.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) };
    assert_eq!(rc, 0, "sched_setaffinity({cpu})");
}

/// Makes `cmd` start pinned to `cpu` (like `taskset -c`).
pub fn pin_command(cmd: &mut Command, cpu: usize) {
    let set = cpu_set(cpu);
    // SAFETY: sched_setaffinity is async-signal-safe; `set` is copied in.
    unsafe {
        cmd.pre_exec(move || {
            if libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

pub fn gettid() -> u32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() as u32 }
}

/// Raises the open-file limit (benches hold many sockets).
pub fn raise_nofile() {
    let lim = libc::rlimit {
        rlim_cur: 65536,
        rlim_max: 65536,
    };
    // SAFETY: setrlimit with a valid struct.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
}

/// CPU time (user + system) of every thread of `pid`, in nanoseconds.
pub fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// A `VmXxx:` field of /proc/PID/status in KiB.
pub fn vm_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

pub fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

/// One machine-readable result line for `cargo xtask bench`.
pub fn data(bench: &str, fields: Value) {
    let mut obj = json!({ "bench": bench });
    if let (Some(o), Value::Object(f)) = (obj.as_object_mut(), fields) {
        o.extend(f);
    }
    println!("benchdata {obj}");
}

/// What the host and kernel are, for the report.
pub fn environment(bench: &str) {
    let uname = Command::new("uname")
        .arg("-r")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    data(
        bench,
        json!({"kind": "env", "kernel": uname, "cpus": ncpus(), "loadavg": load.trim()}),
    );
}

/// What to look for in a tracer's stdout.
#[derive(Clone, Default)]
pub struct Watch {
    /// The first line containing this is timed.
    pub first: String,
    /// Lines containing this (and `count_also`, when set) are counted.
    pub count: String,
    pub count_also: String,
    /// The first line (stdout or stderr) containing this is timed.
    pub ready: String,
}

/// Line scanner over a tracer's stdout, fed from a pipe reader thread or
/// by reading a file as it grows.
#[derive(Default)]
struct Scan {
    watch: Watch,
    partial: Vec<u8>,
    lines: u64,
    hits: u64,
    first_at: Option<Instant>,
    ready_at: Option<Instant>,
    lost_lines: Vec<String>,
    tail: Vec<u8>,
}

const TAIL: usize = 1 << 16;

impl Scan {
    fn feed(&mut self, chunk: &[u8], now: Instant) {
        let has = |line: &[u8], n: &str| {
            !n.is_empty() && line.windows(n.len()).any(|w| w == n.as_bytes())
        };
        let mut start = 0;
        for i in memchr_all(chunk) {
            let mut owned = std::mem::take(&mut self.partial);
            let line: &[u8] = if owned.is_empty() {
                &chunk[start..i]
            } else {
                owned.extend_from_slice(&chunk[start..i]);
                &owned
            };
            self.lines += 1;
            if has(line, &self.watch.count)
                && (self.watch.count_also.is_empty() || has(line, &self.watch.count_also))
            {
                self.hits += 1;
            }
            if self.first_at.is_none() && has(line, &self.watch.first) {
                self.first_at = Some(now);
            }
            if self.ready_at.is_none() && has(line, &self.watch.ready) {
                self.ready_at = Some(now);
            }
            if line.starts_with(b"Lost ") {
                self.lost_lines
                    .push(String::from_utf8_lossy(line).into_owned());
            }
            owned.clear();
            self.partial = owned;
            start = i + 1;
        }
        self.partial.extend_from_slice(&chunk[start..]);
        self.tail.extend_from_slice(chunk);
        if self.tail.len() > 2 * TAIL {
            let cut = self.tail.len() - TAIL;
            self.tail.drain(..cut);
        }
    }
}

fn memchr_all(chunk: &[u8]) -> impl Iterator<Item = usize> + '_ {
    chunk
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .map(|(i, _)| i)
}

enum Out {
    /// A reader thread feeds the scanner.
    Pipe(JoinHandle<()>),
    /// stdout goes to this file (tmpfs), scanned when asked: no reader
    /// competes with the tracer for CPU while it works.
    File(std::path::PathBuf, std::fs::File),
}

/// A tracer process whose stdout is scanned as it streams.
pub struct Running {
    pub child: Child,
    pub started: Instant,
    scan: Arc<Mutex<Scan>>,
    out: Option<Out>,
    stderr: Arc<Mutex<Vec<(Duration, String)>>>,
    err_reader: Option<JoinHandle<()>>,
}

/// What a stopped tracer printed.
pub struct Finished {
    pub lines: u64,
    pub needle_hits: u64,
    /// The last bytes of stdout (final summaries).
    pub tail: String,
    /// Every stdout line reporting lost events (bpftrace prints them
    /// mid-stream).
    pub lost_lines: Vec<String>,
    pub stderr: Vec<(Duration, String)>,
    pub success: bool,
}

impl Finished {
    /// (connect events received, events lost) from the final JSON summary.
    pub fn final_json_counts(&self) -> (u64, u64) {
        let summary = self
            .tail
            .lines()
            .rev()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["kind"] == "summary" && v["final"] == true)
            .expect("final summary");
        (
            summary["events"]["connect"].as_u64().unwrap_or(0),
            summary["lost_total"].as_u64().unwrap_or(0),
        )
    }
}

impl Running {
    /// Spawns `cmd` with stdout to a pipe read by a thread (exact timing).
    pub fn spawn(cmd: Command, watch: Watch) -> Running {
        Self::start(cmd, watch, false)
    }

    /// Spawns `cmd` with stdout to a file under /dev/shm, scanned only when
    /// waited on or stopped.
    pub fn spawn_to_file(cmd: Command, watch: Watch) -> Running {
        Self::start(cmd, watch, true)
    }

    /// [`Running::spawn_to_file`] for tcptrace: waits (up to a minute)
    /// until it says `tracing;`, which `watch.ready` is set to.
    pub fn tracing_to_file(cmd: Command, watch: Watch) -> Running {
        let watch = Watch {
            ready: "tracing;".into(),
            ..watch
        };
        let mut r = Self::spawn_to_file(cmd, watch);
        assert!(
            r.wait_ready(Duration::from_secs(60)).is_some(),
            "tcptrace did not start: {}",
            r.stderr_text()
        );
        r
    }

    fn start(mut cmd: Command, watch: Watch, to_file: bool) -> Running {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let file = to_file.then(|| {
            let dir = if std::path::Path::new("/dev/shm").is_dir() {
                std::path::PathBuf::from("/dev/shm")
            } else {
                std::env::temp_dir()
            };
            let path = dir.join(format!(
                "tcptrace-bench-{}-{}.out",
                std::process::id(),
                SEQ.fetch_add(1, Ordering::Relaxed)
            ));
            let f = std::fs::File::create(&path).expect("create output file");
            (path, f)
        });
        match &file {
            Some((_, f)) => cmd.stdout(f.try_clone().expect("dup output file")),
            None => cmd.stdout(Stdio::piped()),
        };
        cmd.stderr(Stdio::piped());
        let started = Instant::now();
        let mut child = cmd.spawn().expect("spawn tracer");
        let stderr = child.stderr.take().expect("stderr");
        let scan = Arc::new(Mutex::new(Scan {
            watch: watch.clone(),
            ..Scan::default()
        }));
        let out = match file {
            Some((path, _)) => {
                let reader = std::fs::File::open(&path).expect("open output file");
                Out::File(path, reader)
            }
            None => {
                let mut stdout = child.stdout.take().expect("stdout");
                let scan = scan.clone();
                Out::Pipe(std::thread::spawn(move || {
                    let mut buf = vec![0u8; 1 << 18];
                    loop {
                        let n = match stdout.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        let now = Instant::now();
                        scan.lock().expect("scan").feed(&buf[..n], now);
                    }
                }))
            }
        };
        let store = Arc::new(Mutex::new(Vec::new()));
        let err_reader = {
            let (store, scan) = (store.clone(), scan.clone());
            let ready = watch.ready;
            std::thread::spawn(move || {
                use std::io::BufRead as _;
                for line in std::io::BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if !ready.is_empty() && line.contains(&ready) {
                        let mut s = scan.lock().expect("scan");
                        s.ready_at.get_or_insert_with(Instant::now);
                    }
                    store
                        .lock()
                        .expect("stderr")
                        .push((started.elapsed(), line));
                }
            })
        };
        Running {
            child,
            started,
            scan,
            out: Some(out),
            stderr: store,
            err_reader: Some(err_reader),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Scans what the file gained since the last call (file mode).
    fn poll(&mut self) {
        if let Some(Out::File(_, f)) = &mut self.out {
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = f.read(&mut buf).unwrap_or(0);
                if n == 0 {
                    break;
                }
                let now = Instant::now();
                self.scan.lock().expect("scan").feed(&buf[..n], now);
            }
        }
    }

    fn wait_for<T>(
        &mut self,
        timeout: Duration,
        every: Duration,
        mut poke: impl FnMut(),
        mut get: impl FnMut(&Scan) -> Option<T>,
    ) -> Option<T> {
        let deadline = Instant::now() + timeout;
        loop {
            self.poll();
            if let Some(v) = get(&self.scan.lock().expect("scan")) {
                return Some(v);
            }
            if Instant::now() >= deadline {
                return None;
            }
            poke();
            std::thread::sleep(every);
        }
    }

    pub fn needle_hits(&mut self) -> u64 {
        self.poll();
        self.scan.lock().expect("scan").hits
    }

    /// Waits until `n` lines containing `count` were printed, or none came
    /// for 300 ms (events lost), up to `timeout`.
    pub fn wait_count(&mut self, n: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let (mut last, mut since) = (self.needle_hits(), Instant::now());
        while last < n {
            let now = Instant::now();
            if now >= deadline || now - since > Duration::from_millis(300) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(2));
            let hits = self.needle_hits();
            if hits != last {
                (last, since) = (hits, Instant::now());
            }
        }
        true
    }

    /// When the `ready` line came, waiting up to `timeout`.
    pub fn wait_ready(&mut self, timeout: Duration) -> Option<Instant> {
        self.wait_for(timeout, Duration::from_millis(1), || {}, |s| s.ready_at)
    }

    /// When the first `first` line came, calling `poke` every `every` while
    /// waiting (e.g. a marker connect()), up to `timeout`.
    pub fn wait_needle(
        &mut self,
        timeout: Duration,
        every: Duration,
        poke: impl FnMut(),
    ) -> Option<Instant> {
        self.wait_for(timeout, every, poke, |s| s.first_at)
    }

    pub fn stderr_text(&self) -> String {
        self.stderr
            .lock()
            .expect("stderr")
            .iter()
            .map(|(_, l)| l.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// SIGINT, then waits (SIGKILL after `grace`) and collects the output.
    pub fn stop(mut self, grace: Duration) -> Finished {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
        let deadline = Instant::now() + grace;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(s)) => break Some(s),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                _ => {
                    let _ = self.child.kill();
                    break self.child.wait().ok();
                }
            }
        };
        self.poll();
        match self.out.take() {
            Some(Out::Pipe(reader)) => {
                let _ = reader.join();
            }
            Some(Out::File(path, _)) => {
                let _ = std::fs::remove_file(path);
            }
            None => {}
        }
        if let Some(r) = self.err_reader.take() {
            let _ = r.join();
        }
        let mut scan = self.scan.lock().expect("scan");
        if !scan.partial.is_empty() {
            scan.feed(b"\n", Instant::now());
        }
        Finished {
            lines: scan.lines,
            needle_hits: scan.hits,
            tail: String::from_utf8_lossy(&scan.tail).into_owned(),
            lost_lines: std::mem::take(&mut scan.lost_lines),
            stderr: std::mem::take(&mut *self.stderr.lock().expect("stderr")),
            success: status.is_some_and(|s| s.success()),
        }
    }
}

/// The bpftrace equivalent of tcptrace's connect hook: per-thread start time
/// and destination at sys_enter_connect for AF_INET/AF_INET6 sockets; at
/// sys_exit_connect a log2 latency histogram of every call and one printf
/// per failed (not EINPROGRESS) or slow call. `$1` is the threshold in ns.
pub const BPFTRACE_CONNECT: &str = r#"
tracepoint:syscalls:sys_enter_connect
{
  $sa = (struct sockaddr_in *)args->uservaddr;
  if ($sa->sin_family == 2 || $sa->sin_family == 10) {
    @start[tid] = (nsecs, $sa->sin_addr.s_addr, $sa->sin_port);
  }
}
tracepoint:syscalls:sys_exit_connect
/@start[tid].0/
{
  $s = @start[tid];
  delete(@start[tid]);
  $lat = nsecs - $s.0;
  @connect_ns = hist($lat);
  if ((args->ret < 0 && args->ret != -115) || $lat >= $1) {
    printf("%s pid=%d tid=%d %s:%d lat=%d ret=%d\n", comm, pid, tid, ntop($s.1),
           ($s.2 >> 8) | (($s.2 & 0xff) << 8), $lat, args->ret);
  }
}
"#;

/// The floor under any tracer of connect() through the syscall tracepoints:
/// bpftrace with empty programs on both, printing only the marker connect()
/// (ECONNREFUSED, which none of the measured workloads produces).
pub const BPFTRACE_FLOOR: &str = r#"
tracepoint:syscalls:sys_enter_connect {}
tracepoint:syscalls:sys_exit_connect
/args->ret == -111/
{
  printf("marker 127.0.0.1:%d\n", $1);
}
"#;

/// A command running bpftrace on [`BPFTRACE_FLOOR`], the marker on `port`.
pub fn bpftrace_floor(bin: &str, port: u16) -> Command {
    bpftrace_script(bin, "floor", BPFTRACE_FLOOR, &port.to_string())
}

/// A command running bpftrace on [`BPFTRACE_CONNECT`] with `threshold_ns`.
pub fn bpftrace_connect(bin: &str, threshold_ns: u64) -> Command {
    bpftrace_script(bin, "connect", BPFTRACE_CONNECT, &threshold_ns.to_string())
}

/// bpftrace running `script` (written to a temporary file) with `$1 = arg`.
fn bpftrace_script(bin: &str, name: &str, script: &str, arg: &str) -> Command {
    let path = std::env::temp_dir().join(format!("tcptrace-{name}-{}.bt", std::process::id()));
    std::fs::write(&path, script).expect("write bpftrace script");
    let mut cmd = Command::new(bin);
    cmd.arg(&path).arg(arg);
    cmd
}

/// A connect() to a closed port of the calling thread's loopback: fails
/// fast with ECONNREFUSED, which every tracer prints.
pub fn marker_connect(port: u16) {
    let _ = std::net::TcpStream::connect(("127.0.0.1", port));
}

/// A file under /dev/shm (else the temporary directory) named for this
/// process.
pub fn tmpfs_file(name: &str) -> std::path::PathBuf {
    let dir = if std::path::Path::new("/dev/shm").is_dir() {
        std::path::PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    dir.join(format!("tcptrace-bench-{}-{name}", std::process::id()))
}

/// Calls getppid() (the tracepoint of the bench-only event source)
/// `per_sec` times a second, or as fast as it can with `None`, until `dur`
/// has passed or `max` calls were made; returns the calls made.
pub fn getppid_paced(per_sec: Option<f64>, max: u64, dur: Duration) -> u64 {
    let start = Instant::now();
    let mut calls = 0u64;
    while calls < max {
        let elapsed = start.elapsed();
        if elapsed >= dur {
            break;
        }
        let due = per_sec
            .map_or(calls + 64, |c| (elapsed.as_secs_f64() * c) as u64)
            .min(max);
        if calls >= due {
            // Ahead of the pace: sleep, except at rates a sleep would miss.
            if per_sec.is_some_and(|c| c < 200_000.0) {
                std::thread::sleep(Duration::from_micros(200));
            }
            continue;
        }
        while calls < due {
            // SAFETY: getppid has no arguments and cannot fail.
            unsafe { libc::syscall(libc::SYS_getppid) };
            calls += 1;
        }
    }
    calls
}
