//! Helpers for scenario tests: run the real tcptrace binary, make the kernel
//! do something, read back what tcptrace reported.
#![allow(dead_code)]

pub mod craft;
pub mod diagnose;
pub mod nginx;
pub mod prometheus;
pub mod scrape;
pub mod tempdir;

/// Moves the calling thread into a new network namespace with lo up.
pub fn enter_private_netns() {
    tcptrace_lab::netns::enter_private_netns().expect("a private network namespace");
}

use std::{
    collections::HashMap,
    io::{BufRead as _, BufReader},
    net::{SocketAddr, TcpListener},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use serde_json::Value;

/// The tcptrace binary: `TCPTRACE_BIN` (VM runs) or the one cargo built.
/// Whether `prog` is on PATH (the VMs have nginx, curl and nft from the
/// host, not Prometheus or Chromium: scenarios with those run on the host).
pub fn have(prog: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", &format!("command -v {prog}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

pub fn tcptrace_bin() -> String {
    std::env::var("TCPTRACE_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_tcptrace").to_owned())
}

/// The opt-in that times handshakes also where only the state-change
/// tracepoint can (a kernel without fentry and kprobes, as this host's):
/// the tests check handshakes on every kernel.
pub const STATE_CHANGES: &str = "--handshake-state-changes";

/// `--attach` mode for this run: `TCPTRACE_ATTACH` or auto.
pub fn attach_mode() -> String {
    std::env::var("TCPTRACE_ATTACH").unwrap_or_else(|_| "auto".into())
}

/// Hooks that must attach in this run (`TCPTRACE_REQUIRE`, comma separated):
/// the VM matrix requires every hook but those its kernel is known to lack
/// ([`known_unavailable`]); this machine's kernel lacks some.
pub fn required(hook: &str) -> bool {
    !known_unavailable(hook)
        && std::env::var("TCPTRACE_REQUIRE")
            .map(|v| v.split(',').any(|h| h == hook || h == "all"))
            .unwrap_or(false)
}

/// Hooks this run's kernel cannot attach under this run's mechanism
/// (`TCPTRACE_UNAVAILABLE`, comma separated; the VM harness sets it for
/// 5.10): tcptrace must report each UNAVAILABLE with a reason
/// ([`Tracer::mechanism`] asserts it), and the scenario checks what the
/// other hooks see.
pub fn known_unavailable(hook: &str) -> bool {
    std::env::var("TCPTRACE_UNAVAILABLE").is_ok_and(|v| v.split(',').any(|h| h == hook))
}

/// A tcptrace process started by a test: stdout drained all along (a full
/// pipe would stall it), stderr echoed and forwarded line by line.
pub struct Spawned {
    pub child: Child,
    /// All of stdout, once tcptrace exits.
    pub stdout: std::thread::JoinHandle<String>,
    /// stderr lines after `tracing;`.
    pub stderr: mpsc::Receiver<String>,
    /// stderr lines before `tracing;` (the attach report).
    pub before_tracing: Vec<String>,
}

impl Spawned {
    /// Starts `cmd` (a tcptrace command line) and waits until it says
    /// `tracing;`; its stderr lines are echoed behind `[label]`.
    pub fn until_tracing(mut cmd: Command, label: &str) -> Spawned {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {label}: {e}"));
        let mut out = child.stdout.take().expect("stdout");
        let stdout = std::thread::spawn(move || {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut out, &mut text).expect("read tcptrace stdout");
            text
        });
        let err = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        let tag = label.to_owned();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                eprintln!("[{tag}] {line}");
                // A receiver gone: keep draining so tcptrace never blocks.
                let _ = tx.send(line);
            }
        });
        let mut before_tracing = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.contains("tracing;") => break,
                Ok(line) => before_tracing.push(line),
                Err(_) => {
                    let _ = child.kill();
                    panic!("{label} did not start: {before_tracing:?}");
                }
            }
        }
        Spawned {
            child,
            stdout,
            stderr: rx,
            before_tracing,
        }
    }
}

pub struct Tracer {
    child: Child,
    /// Reads stdout as tcptrace writes it (a full pipe would stall it) and
    /// returns all of it once tcptrace exits.
    stdout: std::thread::JoinHandle<String>,
    /// stderr lines up to "tracing;" (the attach report).
    pub attach_report: Vec<String>,
    /// With [`Tracer::start_pcap`]: the directory holding the recording and
    /// the pcapng file, checked against the events at [`Tracer::stop`].
    pcap_dir: Option<std::path::PathBuf>,
}

impl Tracer {
    /// Starts `tcptrace --json` and waits until its probes are attached.
    pub fn start(extra: &[&str]) -> Tracer {
        Self::start_with(&[], extra)
    }

    /// Starts `tcptrace record -o REC --pcap PCAP --json EXTRA…`. At stop the
    /// pcapng file must hold exactly one packet per event that captured one,
    /// matching it (see [`check_pcap`]), and `tcptrace replay REC --pcap`
    /// must write the same packets.
    pub fn start_pcap(extra: &[&str]) -> Tracer {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("tcptrace-pcap-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("pcap dir");
        let rec = dir.join("run.rec");
        let pcap = dir.join("run.pcapng");
        let (rec, pcap) = (rec.to_str().expect("utf-8"), pcap.to_str().expect("utf-8"));
        let mut t = Self::start_with(&["record", "-o", rec, "--pcap", pcap], extra);
        t.pcap_dir = Some(dir);
        t
    }

    /// Starts `tcptrace PRE… --json EXTRA…` (e.g. `record -o F --pcap P`).
    pub fn start_with(pre: &[&str], extra: &[&str]) -> Tracer {
        Self::start_every("0", pre, extra)
    }

    /// Like [`Tracer::start_with`], printing a summary every `interval`.
    pub fn start_every(interval: &str, pre: &[&str], extra: &[&str]) -> Tracer {
        Self::start_attach(&attach_mode(), interval, pre, extra)
    }

    /// Like [`Tracer::start_every`] with `--attach attach` instead of
    /// [`attach_mode`] (e.g. `tracepoint` to compare plain tracepoints).
    pub fn start_attach(attach: &str, interval: &str, pre: &[&str], extra: &[&str]) -> Tracer {
        let mut cmd = Command::new(tcptrace_bin());
        cmd.args(pre)
            .args(["--json", "--interval", interval, "--attach", attach])
            .arg(STATE_CHANGES)
            .args(extra);
        Self::spawn(cmd)
    }

    /// `tcptrace --json --interval 0 --attach MODE`, as a user runs it: no
    /// opt-in.
    pub fn start_default() -> Tracer {
        let mut cmd = Command::new(tcptrace_bin());
        cmd.args(["--json", "--interval", "0", "--attach", &attach_mode()]);
        Self::spawn(cmd)
    }

    fn spawn(cmd: Command) -> Tracer {
        let s = Spawned::until_tracing(cmd, "tcptrace");
        Tracer {
            child: s.child,
            stdout: s.stdout,
            attach_report: s.before_tracing,
            pcap_dir: None,
        }
    }

    /// Runs of this tcptrace's BPF programs whose kernel name starts with
    /// `prefix` (names are cut to 15 bytes), as the kernel counts them
    /// while run-time stats are on (`aya::sys::enable_stats`). Its programs
    /// are those its fds hold (`prog_id:` in /proc/PID/fdinfo).
    pub fn program_runs(&self, prefix: &str) -> u64 {
        let fdinfo = format!("/proc/{}/fdinfo", self.child.id());
        let ids: std::collections::BTreeSet<u32> = std::fs::read_dir(&fdinfo)
            .expect("tcptrace's fdinfo")
            .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
            .filter_map(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("prog_id:"))
                    .and_then(|v| v.trim().parse().ok())
            })
            .collect();
        aya::programs::loaded_programs()
            .filter_map(Result::ok)
            .filter(|p| ids.contains(&p.id()))
            .filter(|p| p.name_as_str().is_some_and(|n| n.starts_with(prefix)))
            .map(|p| p.run_count())
            .sum()
    }

    /// The mechanism a hook attached with, or None if it is unavailable.
    /// A hook [`known_unavailable`] here must be reported UNAVAILABLE with
    /// a reason.
    pub fn mechanism(&self, hook: &str) -> Option<String> {
        let line = self
            .attach_report
            .iter()
            .find(|l| l.split_whitespace().nth(1) == Some(hook));
        if known_unavailable(hook) {
            let words: Vec<&str> = line
                .map(|l| l.split_whitespace().collect())
                .unwrap_or_default();
            assert!(
                words.get(2) == Some(&"UNAVAILABLE") && words.len() > 3,
                "{hook} must be reported UNAVAILABLE with the reason on this kernel: {:?}",
                self.attach_report
            );
        }
        let mech = line?.split_whitespace().nth(2)?;
        (mech != "UNAVAILABLE").then(|| mech.to_owned())
    }

    /// SIGINT, then every JSON object tcptrace printed.
    pub fn stop(self) -> Vec<Value> {
        self.stop_with(nix::sys::signal::Signal::SIGINT)
    }

    /// Stops tcptrace with `signal` and returns every JSON object it printed.
    pub fn stop_with(mut self, signal: nix::sys::signal::Signal) -> Vec<Value> {
        // Let the last events reach the ring buffer reader.
        std::thread::sleep(Duration::from_millis(300));
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), signal)
            .expect("signal tcptrace");
        let status = self.child.wait().expect("wait tcptrace");
        assert!(status.success(), "tcptrace exited with {status}");
        let stdout = self.stdout.join().expect("stdout reader");
        let objs: Vec<Value> = stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
            .collect();
        if let Some(dir) = self.pcap_dir {
            let live = read_pcap(&dir.join("run.pcapng"));
            let by_kind = check_pcap(&objs, &live);
            eprintln!(
                "pcapng: {} packets matching their events: {by_kind:?}",
                live.len()
            );
            let replayed = dir.join("replay.pcapng");
            let run = Command::new(tcptrace_bin())
                .arg("replay")
                .arg(dir.join("run.rec"))
                .arg("--pcap")
                .arg(&replayed)
                .output()
                .expect("tcptrace replay");
            assert!(
                run.status.success(),
                "replay: {}",
                String::from_utf8_lossy(&run.stderr)
            );
            assert_eq!(
                read_pcap(&replayed),
                live,
                "replay --pcap differs from the live pcapng"
            );
            let _ = std::fs::remove_dir_all(&dir);
        }
        objs
    }
}

/// Hooks the test depends on: attached, or (outside the VM matrix) reported
/// unavailable so the kernel-side checks are skipped. One kernel limit is
/// accepted even where every hook is required: with `--attach fentry`,
/// kernels before 6.4 cannot trace the 7-parameter syn_recv_sock functions,
/// and tcptrace must say exactly that (`--attach auto` uses kprobes there).
pub fn hook(tracer: &Tracer, name: &str) -> bool {
    let m = tracer.mechanism(name);
    let report = tracer
        .attach_report
        .iter()
        .find(|l| l.split_whitespace().nth(1) == Some(name))
        .cloned()
        .unwrap_or_default();
    let trampoline_limit = attach_mode() == "fentry" && report.contains("at most 6 arguments");
    if required(name) && !trampoline_limit {
        assert!(
            m.is_some(),
            "{name} must attach here: {:?}",
            tracer.attach_report
        );
    }
    if m.is_none() {
        eprintln!("{name} unavailable on this kernel ({report}): its checks are skipped");
    }
    m.is_some()
}

/// Ids of the BPF programs loaded in the kernel right now whose names are
/// tcptrace's (the kernel keeps the first 15 bytes of a program name).
pub fn loaded_tcptrace_programs(names: &[&str]) -> std::collections::BTreeSet<u32> {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .filter(|p| {
            p.name_as_str().is_some_and(|n| {
                !n.is_empty()
                    && names
                        .iter()
                        .any(|want| want.as_bytes().starts_with(n.as_bytes()))
            })
        })
        .map(|p| p.id())
        .collect()
}

/// connect() programs the kernel skipped (another run of the same program
/// preempted on that CPU: 7.x syscall tracepoints and fentry run
/// preemptible), as reported in `summary`: (entry skips, return skips),
/// whichever mechanism the hook used.
pub fn connect_skips(summary: &Value) -> (u64, u64) {
    let missed = |progs: [&str; 2]| {
        progs
            .iter()
            .map(|p| summary["missed"][*p].as_u64().unwrap_or(0))
            .sum::<u64>()
    };
    (
        missed(["sys_enter_connect", "connect_fentry"]),
        missed(["sys_exit_connect", "connect_fexit"]),
    )
}

/// The final summary object.
pub fn final_summary(objs: &[Value]) -> &Value {
    objs.iter()
        .find(|o| o["kind"] == "summary" && o["final"] == true)
        .expect("final summary")
}

pub fn events<'a>(objs: &'a [Value], kind: &str) -> impl Iterator<Item = &'a Value> {
    let kind = kind.to_owned();
    objs.iter().filter(move |o| o["kind"] == kind.as_str())
}

/// Inode of the calling thread's network namespace.
pub fn thread_netns() -> u64 {
    tcptrace_lab::netns::thread_netns().expect("netns")
}

/// Writes a sysctl of the calling thread's network namespace.
pub fn set_sysctl(path: &str, value: &str) {
    tcptrace_lab::netns::set_sysctl(path, value).expect("sysctl");
}

/// TcpExt (and Tcp) counters of the calling thread's network namespace.
pub fn netstat() -> HashMap<String, u64> {
    tcptrace_lab::netstat::Netstat::read().expect("netstat").0
}

/// How much counter `name` grew between two [`netstat`] readings.
pub fn delta(before: &HashMap<String, u64>, after: &HashMap<String, u64>, name: &str) -> u64 {
    after.get(name).copied().unwrap_or(0) - before.get(name).copied().unwrap_or(0)
}

/// Runs `ip ARGS…`, failing the test with its stderr.
pub fn ip(args: &[&str]) {
    tcptrace_lab::craft::ip(args).unwrap_or_else(|e| panic!("{e:#}"));
}

pub use tcptrace_lab::netns::NetnsKeeper;

/// Keeps the calling thread on `cpu`; threads and processes it starts
/// later inherit that.
pub fn pin_to_cpu(cpu: usize) {
    let mut set = nix::sched::CpuSet::new();
    set.set(cpu).expect("cpu in range");
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).expect("sched_setaffinity");
}

/// Keeps the calling thread, and what it starts later, on the first CPU
/// it may run on.
pub fn pin_to_one_cpu() {
    let allowed =
        nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)).expect("sched_getaffinity");
    let cpu = (0..nix::sched::CpuSet::count())
        .find(|&c| allowed.is_set(c).unwrap_or(false))
        .expect("a CPU this thread may run on");
    pin_to_cpu(cpu);
}

/// Runs `scenario` on a thread in a new private network namespace and
/// returns its result; the thread stays in the namespace until the returned
/// [`NetnsKeeper`] is dropped. A panic in the scenario fails the test.
pub fn in_private_netns<T: Send + 'static>(
    scenario: impl FnOnce() -> T + Send + 'static,
) -> (T, NetnsKeeper) {
    tcptrace_lab::netns::in_private_netns(move || Ok(scenario())).expect("private netns")
}

// ---- findings ----------------------------------------------------------------

/// Every finding of a run: the final summary's `findings` array (each
/// finding once, deduplicated by `id` + `subject`, with its final count).
/// The `finding` lines printed before the summaries must agree with it: the
/// last line printed for each `id` + `subject` is in the array with the same
/// severity and count, and every finding of the array was printed.
pub fn findings(objs: &[Value]) -> Vec<&Value> {
    let all: Vec<&Value> = final_summary(objs)["findings"]
        .as_array()
        .expect("the final summary carries `findings`")
        .iter()
        .collect();
    let key = |f: &Value| format!("{}|{}", f["id"], f["subject"]);
    let mut printed: HashMap<String, &Value> = HashMap::new();
    for f in events(objs, "finding") {
        printed.insert(key(f), f);
    }
    for f in &all {
        assert_eq!(f["kind"], "finding", "{f}");
        let line = printed
            .remove(&key(f))
            .unwrap_or_else(|| panic!("finding never printed as a line: {f}"));
        for k in ["severity", "count", "summary"] {
            assert_eq!(
                line[k], f[k],
                "{k} of the last `finding` line: {line} vs {f}"
            );
        }
    }
    assert!(
        printed.is_empty(),
        "printed findings missing from the summary: {:?}",
        printed.values().collect::<Vec<_>>()
    );
    all
}

/// The findings about network namespace `netns` (`evidence.netns`): what a
/// scenario produced, whatever else happens on the host meanwhile.
pub fn findings_in(objs: &[Value], netns: u64) -> Vec<&Value> {
    let found: Vec<&Value> = findings(objs)
        .into_iter()
        .filter(|f| f["evidence"]["netns"] == netns)
        .collect();
    eprintln!(
        "findings in netns {netns}: {}",
        serde_json::to_string_pretty(&found).unwrap_or_default()
    );
    found
}

/// Their ids, sorted.
pub fn finding_ids(found: &[&Value]) -> Vec<String> {
    let mut ids: Vec<String> = found
        .iter()
        .map(|f| f["id"].as_str().expect("finding id").to_owned())
        .collect();
    ids.sort();
    ids
}

/// The only finding with `id`.
pub fn the_finding<'a>(found: &[&'a Value], id: &str) -> &'a Value {
    let mut with: Vec<&Value> = found.iter().copied().filter(|f| f["id"] == id).collect();
    assert_eq!(with.len(), 1, "exactly one {id} finding: {found:#?}");
    with.remove(0)
}

/// Whether the running kernel's release is older than `major.minor`.
pub fn kernel_before(major: u32, minor: u32) -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").expect("osrelease");
    let mut v = release
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().unwrap_or(0));
    (v.next().unwrap_or(0), v.next().unwrap_or(0)) < (major, minor)
}

/// `subject` of a finding about one listener.
pub fn listener_subject(addr: std::net::IpAddr, port: u16, netns: u64) -> String {
    format!("listener {} netns {netns}", SocketAddr::new(addr, port))
}

/// A listening socket on `addr` (SO_REUSEADDR) with this listen() backlog.
pub fn backlog_listener(addr: SocketAddr, backlog: i32) -> socket2::Socket {
    tcptrace_lab::sock::backlog_listener(addr, backlog).expect("listener")
}

/// TCP_SYNCNT: how many SYN retransmissions `sock`'s connect() makes
/// before it gives up (ETIMEDOUT).
pub fn set_syncnt(sock: &socket2::Socket, n: libc::c_int) {
    // SAFETY: setsockopt reads an int from a local for the given length.
    let rc = unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(sock),
            libc::IPPROTO_TCP,
            libc::TCP_SYNCNT,
            std::ptr::addr_of!(n).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "TCP_SYNCNT: {}", std::io::Error::last_os_error());
}

/// The address a socket is bound to.
pub fn addr_of(s: &socket2::Socket) -> SocketAddr {
    tcptrace_lab::sock::addr_of(s).expect("local addr")
}

pub fn listener(addr: &str) -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind(addr).expect("bind listener");
    let a = l.local_addr().expect("local addr");
    (l, a)
}

/// A program whose every run is one event, against the kernel counter of
/// what happened: never more runs than the counter. Fewer is what this
/// host's 6.18 does about once in a hundred S2 runs (the tracepoint fires,
/// ftrace sees it, and the program is not run, with no miss counted); it
/// is allowed once where `hook` is not required (off the VM matrix) and
/// named KERNEL-SKIPPED. Returns the runs.
pub fn runs_against_counter(hook: &str, runs: u64, counter: u64) -> u64 {
    assert!(
        runs <= counter,
        "{hook}: {runs} program runs > counter {counter}"
    );
    if runs < counter {
        eprintln!("KERNEL-SKIPPED: {hook}: {runs} program runs, counter {counter}");
        assert!(
            counter - runs <= 1 && !required(hook),
            "{hook}: {runs} program runs, counter {counter}"
        );
    }
    runs
}

/// Port exhaustion in the calling thread's namespace: the ephemeral range
/// narrowed to `range` ports from `first`, every one held by a connection to
/// a listener on 127.0.0.1:5555, and one more connect() failing with
/// EADDRNOTAVAIL. Returns the listener and the held connections.
pub fn exhaust_ports(first: u16, range: u16) -> (TcpListener, Vec<std::net::TcpStream>) {
    tcptrace_lab::repro::ports::exhaust_here(first, range).expect("port exhaustion")
}

/// A loopback address where a socket is bound but not listening: every
/// connect() to it is refused, and nobody else can listen there while the
/// returned socket lives.
pub fn refused_addr() -> (socket2::Socket, SocketAddr) {
    let s =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    s.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .expect("bind");
    let addr = s
        .local_addr()
        .expect("local address")
        .as_socket()
        .expect("inet");
    (s, addr)
}

/// One packet of a pcapng file tcptrace wrote, with the TCP fields the tests
/// check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PcapPacket {
    pub comment: String,
    /// TCP flags byte (FIN 0x01, SYN 0x02, RST 0x04, ACK 0x10).
    pub flags: u8,
    pub seq: u32,
    pub tsval: Option<u32>,
    pub sport: u16,
    pub dport: u16,
    /// Captured bytes (IP + TCP headers).
    pub len: usize,
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

/// Parses the Enhanced Packet Blocks of a pcapng file (little endian, raw
/// IP link type, as tcptrace writes it) and the TCP header of each packet.
/// Where tshark is installed, checks that it reads the same values.
pub fn read_pcap(path: &std::path::Path) -> Vec<PcapPacket> {
    let bytes = std::fs::read(path).expect("read pcapng");
    let mut out = Vec::new();
    let mut at = 0;
    while at + 12 <= bytes.len() {
        let kind = le32(&bytes, at);
        let total = le32(&bytes, at + 4) as usize;
        assert!(
            total >= 12 && at + total <= bytes.len(),
            "bad block at {at}"
        );
        if kind == 6 {
            let body = &bytes[at + 8..at + total - 4];
            let caplen = le32(body, 12) as usize;
            let data = &body[20..20 + caplen];
            let mut opt = 20 + caplen.div_ceil(4) * 4;
            let mut comment = String::new();
            while opt + 4 <= body.len() {
                let code = u16::from_le_bytes([body[opt], body[opt + 1]]);
                let len = u16::from_le_bytes([body[opt + 2], body[opt + 3]]) as usize;
                if code == 0 {
                    break;
                }
                if code == 1 {
                    comment = String::from_utf8_lossy(&body[opt + 4..opt + 4 + len]).into_owned();
                }
                opt += 4 + len.div_ceil(4) * 4;
            }
            let ip_len = if data[0] >> 4 == 6 {
                40
            } else {
                usize::from(data[0] & 15) * 4
            };
            let tcp = &data[ip_len..];
            let doff = usize::from(tcp[12] >> 4) * 4;
            let mut tsval = None;
            let mut o = 20;
            while o < doff {
                match tcp[o] {
                    0 => break,
                    1 => o += 1,
                    kind => {
                        let l = usize::from(tcp[o + 1]).max(2);
                        if kind == 8 && l == 10 {
                            tsval =
                                Some(u32::from_be_bytes(tcp[o + 2..o + 6].try_into().expect("4")));
                        }
                        o += l;
                    }
                }
            }
            out.push(PcapPacket {
                comment,
                flags: tcp[13],
                seq: u32::from_be_bytes(tcp[4..8].try_into().expect("4 bytes")),
                tsval,
                sport: u16::from_be_bytes([tcp[0], tcp[1]]),
                dport: u16::from_be_bytes([tcp[2], tcp[3]]),
                len: caplen,
            });
        }
        at += total;
    }
    check_with_tshark(path, &out);
    out
}

fn check_with_tshark(path: &std::path::Path, packets: &[PcapPacket]) {
    let Ok(run) = Command::new("tshark")
        .arg("-r")
        .arg(path)
        .args(["-T", "fields", "-E", "separator=|"])
        .args([
            "-e",
            "frame.comment",
            "-e",
            "tcp.flags",
            "-e",
            "tcp.seq_raw",
        ])
        .args(["-e", "tcp.options.timestamp.tsval"])
        .output()
    else {
        eprintln!("tshark not installed: pcapng checked by the test's own parser only");
        return;
    };
    assert!(
        run.status.success(),
        "tshark: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let text = String::from_utf8_lossy(&run.stdout);
    let seen: Vec<(String, u8, u32, Option<u32>)> = text
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('|').collect();
            assert_eq!(f.len(), 4, "tshark line {l:?}");
            let flags = u16::from_str_radix(f[1].trim_start_matches("0x"), 16)
                .unwrap_or_else(|_| panic!("tshark flags {l:?}")) as u8;
            (
                f[0].to_owned(),
                flags,
                f[2].parse().unwrap_or_else(|_| panic!("tshark seq {l:?}")),
                f[3].parse().ok(),
            )
        })
        .collect();
    let want: Vec<_> = packets
        .iter()
        .map(|p| (p.comment.clone(), p.flags, p.seq, p.tsval))
        .collect();
    assert_eq!(seen, want, "tshark reads the pcapng differently");
}

const TH_SYN: u8 = 0x02;
const TH_RST: u8 = 0x04;
const TH_ACK: u8 = 0x10;

/// The pcapng holds exactly one packet per event with `packet_len` > 0, in
/// event order, each matching its event: the kernel's verdict in the
/// comment, the segment's flags, ports, sequence number and TSval.
/// Returns how many packets each kind contributed.
pub fn check_pcap(
    objs: &[Value],
    packets: &[PcapPacket],
) -> std::collections::BTreeMap<String, usize> {
    let carrying: Vec<&Value> = objs
        .iter()
        .filter(|e| e["packet_len"].as_u64().is_some_and(|n| n > 0))
        .collect();
    assert_eq!(
        carrying.len(),
        packets.len(),
        "one packet per event with packet bytes"
    );
    let mut by_kind = std::collections::BTreeMap::new();
    for (e, p) in carrying.iter().zip(packets) {
        assert_eq!(e["packet_len"].as_u64(), Some(p.len as u64), "{e} {p:?}");
        // The packet came from the peer: its source is the event's daddr side.
        assert_eq!(e["dport"].as_u64(), Some(u64::from(p.sport)), "{e} {p:?}");
        assert_eq!(e["sport"].as_u64(), Some(u64::from(p.dport)), "{e} {p:?}");
        let kind = e["kind"].as_str().expect("kind");
        match kind {
            "syn_drop" => {
                assert_eq!(p.flags & (TH_SYN | TH_ACK | TH_RST), TH_SYN, "{e} {p:?}");
                assert!(p.comment.starts_with("SYN dropped: "), "{p:?}");
                if e["cause"] == "accept_queue_full" {
                    let want = format!("accept queue full ({}/{})", e["backlog"], e["backlog_max"]);
                    assert!(p.comment.contains(&want), "{p:?} {e}");
                }
            }
            "listen_overflow" => {
                assert_eq!(p.flags & (TH_SYN | TH_ACK | TH_RST), TH_ACK, "{e} {p:?}");
                let want = format!(
                    "dropped: accept queue full ({}/{})",
                    e["backlog"], e["backlog_max"]
                );
                assert!(p.comment.starts_with(&want), "{p:?} {e}");
            }
            "paws_reject" => {
                assert_eq!(p.tsval.map(u64::from), e["tsval"].as_u64(), "{e} {p:?}");
                let site = e["site"].as_str().expect("site");
                assert!(
                    p.comment.starts_with(&format!("PAWS reject ({site}")),
                    "{p:?}"
                );
                if site != "syn_sent" {
                    if let Some(ts_recent) = e["ts_recent"].as_u64() {
                        let want = format!("TSval {} < ts_recent {ts_recent}", e["tsval"]);
                        assert!(p.comment.ends_with(&want), "{p:?} {e}");
                    }
                }
            }
            "rst" => {
                assert_eq!(p.flags & TH_RST, TH_RST, "{e} {p:?}");
                assert_eq!(Some(u64::from(p.seq)), e["seq"].as_u64(), "{e} {p:?}");
                let want = match e["verdict"].as_str() {
                    Some("accepted") => "RST accepted: ",
                    Some("challenge_ack") => "RST answered with challenge ACK: ",
                    _ => "RST ignored: ",
                };
                assert!(p.comment.starts_with(want), "{p:?} {e}");
                assert!(
                    p.comment.contains(&format!("seq {} ", e["seq"])),
                    "{p:?} {e}"
                );
            }
            other => panic!("{other} events carry no packet: {e}"),
        }
        *by_kind.entry(kind.to_owned()).or_insert(0) += 1;
    }
    by_kind
}
