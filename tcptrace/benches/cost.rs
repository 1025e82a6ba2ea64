//! Cost on healthy traffic, counted by the kernel: with BPF run-time stats
//! on (`BPF_ENABLE_STATS`, the same switch as `kernel.bpf_stats_enabled=1`),
//! every program a tracer loaded is read from `bpf_prog_info` (`run_cnt`,
//! `run_time_ns`) before and after fixed workloads, and the runs are divided
//! by the work done:
//!
//! - `conn`: healthy loopback connections (connect, accept, 1 KB each way,
//!   FIN close from the client), per connection;
//! - `syn`: handshakes to a listener with room (connect, accept, FIN close,
//!   no data), per answered SYN;
//! - `bulk`: one connection carrying `TCPTRACE_COST_BULK_MB` in one
//!   direction, per received segment (`Tcp: InSegs` delta of
//!   /proc/net/snmp, handshake and ACKs included);
//! - `idle`: nothing done by this process for `TCPTRACE_COST_IDLE_S`
//!   seconds, per second (whatever else the machine runs).
//!
//! Tracers, each measured in turn: none, tcptrace (this tree, every hook,
//! `--min-latency 10ms` so no event is printed; one run per mode in
//! `TCPTRACE_BENCH_ATTACH`), older builds (`TCPTRACE_BENCH_BASELINE`),
//! bpftrace's connect-only script and bpftrace on every tracepoint tcptrace
//! attaches on this kernel (the fair peer), where bpftrace is installed.
//! Run counts are exact and machine independent (also under emulation);
//! run times mean something on real hardware only. Each workload runs
//! `TCPTRACE_COST_ROUNDS` times per tracer and the round with the fewest
//! runs is kept (other processes' traffic on a shared host only adds runs).
//! The workload runs in a cgroup of its own; its `cpu.stat` usage is the
//! CPU of client and server threads (and the softirq work done in their
//! context, which is all of it on loopback unless IRQ time accounting
//! takes it out: the system-wide softirq time is reported beside it).

mod common;

use std::{
    collections::{BTreeMap, BTreeSet},
    io::{Read as _, Write as _},
    net::{Shutdown, TcpListener, TcpStream},
    process::Command,
    time::{Duration, Instant},
};

use common::{baselines, bpftrace_bin, bpftrace_version, data, env_usize, Running, Watch};
use serde_json::json;

/// The bpftrace script on the tracepoints tcptrace attaches where the
/// kernel has no trampolines (this machine's kind): connect() as in
/// `common::BPFTRACE_CONNECT`, and the same filter tcptrace's programs
/// apply first on the others (listen() callers, a drop reason of
/// interest, SYN-ACK retransmits, RSTs), with a map update each; with
/// `state_changes`, also the handshake on `sock:inet_sock_set_state`, as
/// `tcptrace --handshake-state-changes` attaches it there.
fn bpftrace_fair(state_changes: bool) -> String {
    let state = if state_changes { FAIR_STATE } else { "" };
    format!("{}{FAIR_REST}{state}", common::BPFTRACE_CONNECT)
}

/// [`bpftrace_fair`] after connect().
const FAIR_REST: &str = r#"
tracepoint:syscalls:sys_enter_listen
{
  @owner[args->fd] = (pid, comm);
}
tracepoint:skb:kfree_skb
/args->reason > 2/
{
  @drops[args->reason] = count();
}
tracepoint:tcp:tcp_retransmit_synack
{
  @synack_rtx = count();
}
tracepoint:tcp:tcp_receive_reset
{
  @rst_rx = count();
}
tracepoint:tcp:tcp_send_reset
{
  @rst_tx = count();
}
tracepoint:tcp:tcp_retransmit_skb
{
  @rtx = count();
}
"#;

/// [`bpftrace_fair`]'s handshake by state change.
const FAIR_STATE: &str = r#"
tracepoint:sock:inet_sock_set_state
/args->oldstate == 2 || args->newstate == 2/
{
  if (args->newstate == 2) {
    @syn_sent[args->skaddr] = nsecs;
  } else {
    $start = @syn_sent[args->skaddr];
    if ($start) {
      @handshake_ns = hist(nsecs - $start);
      delete(@syn_sent[args->skaddr]);
    }
  }
}
"#;

/// One BPF program's counters.
#[derive(Clone, Debug, Default)]
struct Prog {
    name: String,
    runs: u64,
    ns: u64,
}

fn all_programs() -> BTreeMap<u32, Prog> {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .map(|p| {
            (
                p.id(),
                Prog {
                    name: p.name_as_str().unwrap_or("?").to_owned(),
                    runs: p.run_count(),
                    ns: p.run_time().as_nanos() as u64,
                },
            )
        })
        .collect()
}

fn snapshot(ids: &BTreeSet<u32>) -> BTreeMap<u32, Prog> {
    all_programs()
        .into_iter()
        .filter(|(id, _)| ids.contains(id))
        .collect()
}

/// Per program name: runs and run time between two snapshots.
fn delta(before: &BTreeMap<u32, Prog>, after: &BTreeMap<u32, Prog>) -> BTreeMap<String, Prog> {
    let mut out: BTreeMap<String, Prog> = BTreeMap::new();
    for (id, a) in after {
        let b = before.get(id).cloned().unwrap_or_default();
        let e = out.entry(a.name.clone()).or_insert_with(|| Prog {
            name: a.name.clone(),
            ..Prog::default()
        });
        e.runs += a.runs.saturating_sub(b.runs);
        e.ns += a.ns.saturating_sub(b.ns);
    }
    out
}

/// `Tcp: InSegs` of /proc/net/snmp (this network namespace).
fn in_segs() -> u64 {
    let text = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let mut tcp = text.lines().filter(|l| l.starts_with("Tcp:"));
    let (Some(names), Some(values)) = (tcp.next(), tcp.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "InSegs")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

/// System-wide softirq time in ns (/proc/stat, all CPUs).
fn softirq_ns() -> u64 {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    text.lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(7)?.parse::<u64>().ok())
        .map_or(0, |t| t * 1_000_000_000 / hz)
}

/// The workload's own cgroup, left when dropped: cgroup v2 (`cpu.stat`
/// `usage_usec`), at /sys/fs/cgroup or /sys/fs/cgroup/unified, else v1
/// cpuacct (`cpuacct.usage`).
struct Cgroup {
    dir: std::path::PathBuf,
    home: std::path::PathBuf,
    v2: bool,
}

impl Cgroup {
    fn enter() -> Option<Cgroup> {
        let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
        let v2 = own.lines().find_map(|l| l.strip_prefix("0::"));
        let v1 = own.lines().find_map(|l| {
            let (_, rest) = l.split_once(':')?;
            let (ctrls, path) = rest.split_once(':')?;
            ctrls.split(',').any(|c| c == "cpuacct").then_some(path)
        });
        let candidates = [
            ("/sys/fs/cgroup", v2, true),
            ("/sys/fs/cgroup/unified", v2, true),
            ("/sys/fs/cgroup/cpuacct", v1, false),
        ];
        let found = candidates.into_iter().find_map(|(root, rel, v2)| {
            let root = std::path::Path::new(root);
            let stat = if v2 { "cpu.stat" } else { "cpuacct.usage" };
            if !root.join(stat).exists() && !root.join("cgroup.procs").exists() {
                return None;
            }
            let home = root.join(rel?.trim().trim_start_matches('/'));
            let dir = root.join(format!("tcptrace-cost-{}", std::process::id()));
            std::fs::create_dir_all(&dir).ok()?;
            let cg = Cgroup { dir, home, v2 };
            std::fs::write(cg.dir.join("cgroup.procs"), std::process::id().to_string()).ok()?;
            cg.dir.join(stat).exists().then_some(cg)
        });
        found
    }

    fn usage_ns(&self) -> u64 {
        if self.v2 {
            std::fs::read_to_string(self.dir.join("cpu.stat"))
                .unwrap_or_default()
                .lines()
                .find_map(|l| l.strip_prefix("usage_usec "))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map_or(0, |u| u * 1000)
        } else {
            std::fs::read_to_string(self.dir.join("cpuacct.usage"))
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0)
        }
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        let _ = std::fs::write(
            self.home.join("cgroup.procs"),
            std::process::id().to_string(),
        );
        let _ = std::fs::remove_dir(&self.dir);
    }
}

const KB: usize = 1024;

/// `n` healthy connections: connect, accept, 1 KB each way, FIN close.
fn conns(n: usize) -> u64 {
    let l = TcpListener::bind("127.0.0.1:0").expect("listen");
    let addr = l.local_addr().expect("addr");
    let server = std::thread::spawn(move || {
        let mut buf = [0u8; KB];
        for _ in 0..n {
            let (mut s, _) = l.accept().expect("accept");
            s.read_exact(&mut buf).expect("server read");
            s.write_all(&buf).expect("server write");
            // The client closes first; read its FIN, then close.
            let _ = s.read(&mut buf);
        }
    });
    let mut buf = [7u8; KB];
    for _ in 0..n {
        let mut c = TcpStream::connect(addr).expect("connect");
        c.write_all(&buf).expect("client write");
        c.read_exact(&mut buf).expect("client read");
        c.shutdown(Shutdown::Write).expect("shutdown");
        let _ = c.read(&mut buf);
    }
    server.join().expect("server");
    n as u64
}

/// `n` answered SYNs: connect, accept, FIN close, no data.
fn syns(n: usize) -> u64 {
    let l = TcpListener::bind("127.0.0.1:0").expect("listen");
    let addr = l.local_addr().expect("addr");
    let server = std::thread::spawn(move || {
        let mut buf = [0u8; 16];
        for _ in 0..n {
            let (mut s, _) = l.accept().expect("accept");
            let _ = s.read(&mut buf);
        }
    });
    let mut buf = [0u8; 16];
    for _ in 0..n {
        let mut c = TcpStream::connect(addr).expect("connect");
        c.shutdown(Shutdown::Write).expect("shutdown");
        let _ = c.read(&mut buf);
    }
    server.join().expect("server");
    n as u64
}

/// One connection carrying `mb` MiB; returns the segments received.
fn bulk(mb: usize) -> u64 {
    let l = TcpListener::bind("127.0.0.1:0").expect("listen");
    let addr = l.local_addr().expect("addr");
    let before = in_segs();
    let server = std::thread::spawn(move || {
        let (mut s, _) = l.accept().expect("accept");
        let mut buf = vec![0u8; 256 * KB];
        while s.read(&mut buf).expect("bulk read") > 0 {}
    });
    let mut c = TcpStream::connect(addr).expect("connect");
    let chunk = vec![1u8; 256 * KB];
    for _ in 0..mb * 4 {
        c.write_all(&chunk).expect("bulk write");
    }
    drop(c);
    server.join().expect("server");
    in_segs() - before
}

fn idle(secs: usize) -> u64 {
    std::thread::sleep(Duration::from_secs(secs as u64));
    secs as u64
}

/// One round of one workload under one tracer.
struct Measured {
    units: u64,
    /// Runs of all the tracer's programs.
    total: u64,
    progs: BTreeMap<String, Prog>,
    /// Workload cgroup CPU and system softirq time, ns.
    cpu: u64,
    sirq: u64,
    wall: f64,
}

struct Tracer {
    label: String,
    /// None: no tracer.
    cmd: Option<Command>,
    ready: &'static str,
    /// An older build (`TCPTRACE_BENCH_BASELINE`), which may predate this
    /// kernel's support: one that does not start is reported, not fatal.
    older: bool,
}

fn tracers() -> Vec<Tracer> {
    let tcptrace = |bin: &str, label: String, mode: &str, older: bool| {
        let mut cmd = Command::new(bin);
        cmd.args(["--attach", mode, "--min-latency", "10ms", "--interval", "0"]);
        Tracer {
            label,
            cmd: Some(cmd),
            ready: "tracing;",
            older,
        }
    };
    let modes = std::env::var("TCPTRACE_BENCH_ATTACH").unwrap_or_else(|_| "auto".into());
    let modes: Vec<&str> = modes.split(',').collect();
    let suffix = |m: &str| {
        if modes.len() > 1 || m != "auto" {
            format!("[{m}]")
        } else {
            String::new()
        }
    };
    let mut out = vec![Tracer {
        label: "none".into(),
        cmd: None,
        ready: "",
        older: false,
    }];
    for m in &modes {
        out.push(tcptrace(
            &common::tcptrace_bin(),
            format!("tcptrace{}", suffix(m)),
            m,
            false,
        ));
        // The opt-in matters only where no function hook attaches: on
        // this machine's kind (one mode: auto), not in the VMs.
        if modes == ["auto"] {
            let mut t = tcptrace(
                &common::tcptrace_bin(),
                "tcptrace[+state changes]".into(),
                m,
                false,
            );
            if let Some(cmd) = &mut t.cmd {
                cmd.arg("--handshake-state-changes");
            }
            out.push(t);
        }
        for (bin, name) in baselines() {
            out.push(tcptrace(
                &bin,
                format!("tcptrace@{name}{}", suffix(m)),
                m,
                true,
            ));
        }
    }
    if let Some(bin) = bpftrace_bin() {
        let (fair, fair_state) = (bpftrace_fair(false), bpftrace_fair(true));
        for (label, script) in [
            ("bpftrace[connect]", common::BPFTRACE_CONNECT),
            ("bpftrace[same tracepoints]", fair.as_str()),
            ("bpftrace[same + state changes]", fair_state.as_str()),
        ] {
            let path = std::env::temp_dir().join(format!(
                "tcptrace-cost-{}-{}.bt",
                std::process::id(),
                out.len()
            ));
            std::fs::write(&path, script).expect("write bpftrace script");
            let mut cmd = Command::new(&bin);
            cmd.arg(&path).arg("10000000");
            out.push(Tracer {
                label: label.into(),
                cmd: Some(cmd),
                ready: "Attaching",
                older: false,
            });
        }
        data(
            "cost",
            json!({"kind": "bpftrace", "version": bpftrace_version(&bin), "fair_script": fair_state}),
        );
    }
    out
}

fn main() {
    common::raise_nofile();
    // A namespace of its own: InSegs counts this bench's segments only.
    common::enter_private_netns();
    let conns_n = env_usize("TCPTRACE_COST_CONNS", 500);
    let bulk_mb = env_usize("TCPTRACE_COST_BULK_MB", 256);
    let idle_s = env_usize("TCPTRACE_COST_IDLE_S", 10);
    let rounds = env_usize("TCPTRACE_COST_ROUNDS", 3).max(1);
    common::environment("cost");
    // On a shared host, no scenario test runs meanwhile (their traffic
    // would run programs too); the lock file exists only where one is used.
    let _host_lock = std::fs::File::open("/tmp/host-scenarios.lock")
        .ok()
        .inspect(|f| {
            use std::os::fd::AsRawFd as _;
            // SAFETY: flock on a file descriptor we own; released when `f` is closed.
            unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
        });
    let _stats = aya::sys::enable_stats(aya::sys::Stats::RunTime).expect("BPF_ENABLE_STATS");
    let cgroup = Cgroup::enter();
    type Workload = (&'static str, &'static str, Box<dyn Fn() -> u64>);
    let workloads: Vec<Workload> = vec![
        ("conn", "connection", Box::new(move || conns(conns_n))),
        ("syn", "SYN", Box::new(move || syns(conns_n))),
        ("bulk", "segment", Box::new(move || bulk(bulk_mb))),
        ("idle", "second", Box::new(move || idle(idle_s))),
    ];
    for mut t in tracers() {
        let before_ids: BTreeSet<u32> = all_programs().into_keys().collect();
        let running = match t.cmd.take() {
            None => None,
            Some(cmd) => {
                let mut r = Running::spawn(
                    cmd,
                    Watch {
                        ready: t.ready.into(),
                        ..Watch::default()
                    },
                );
                if r.wait_ready(Duration::from_secs(120)).is_none() {
                    let why = r.stderr_text();
                    if !t.older {
                        panic!("{} did not start: {why}", t.label);
                    }
                    let why = why
                        .lines()
                        .map(str::trim)
                        .find(|l| !l.is_empty())
                        .unwrap_or("no output")
                        .to_owned();
                    println!("bench cost {}: did not start here: {why}", t.label);
                    data(
                        "cost",
                        json!({"kind": "skipped", "tracer": t.label, "why": why}),
                    );
                    let _ = r.stop(Duration::from_secs(5));
                    continue;
                }
                Some(r)
            }
        };
        // bpftrace says "Attaching" before it attaches; tcptrace's fentry
        // upgrade of connect() follows "tracing;" by a moment.
        std::thread::sleep(Duration::from_millis(1500));
        let ids: BTreeSet<u32> = all_programs()
            .into_keys()
            .filter(|id| !before_ids.contains(id))
            .collect();
        for (workload, unit, run) in &workloads {
            let reps = if *workload == "idle" { 1 } else { rounds };
            let mut best: Option<Measured> = None;
            for _ in 0..reps {
                let cpu0 = cgroup.as_ref().map_or(0, Cgroup::usage_ns);
                let sirq0 = softirq_ns();
                let s0 = snapshot(&ids);
                let started = Instant::now();
                let units = run();
                let wall = started.elapsed().as_secs_f64();
                let s1 = snapshot(&ids);
                let cpu = cgroup.as_ref().map_or(0, Cgroup::usage_ns) - cpu0;
                let sirq = softirq_ns().saturating_sub(sirq0);
                let d = delta(&s0, &s1);
                let total: u64 = d.values().map(|p| p.runs).sum();
                if best.as_ref().is_none_or(|b| total < b.total) {
                    best = Some(Measured {
                        units,
                        total,
                        progs: d,
                        cpu,
                        sirq,
                        wall,
                    });
                }
            }
            let Measured {
                units,
                total,
                progs,
                cpu,
                sirq,
                wall,
            } = best.expect("a round");
            let per = |x: u64| x as f64 / units.max(1) as f64;
            let ns: u64 = progs.values().map(|p| p.ns).sum();
            let list: Vec<String> = progs
                .values()
                .filter(|p| p.runs > 0)
                .map(|p| format!("{}={:.3}@{}ns", p.name, per(p.runs), p.ns / p.runs.max(1)))
                .collect();
            println!(
                "bench cost {} {workload}: {units} {unit}s, {:.3} runs/{unit}, {:.0} ns/{unit} in programs, cpu {:.0} ns/{unit} [{}]",
                t.label,
                per(total),
                per(ns),
                per(cpu),
                list.join(" ")
            );
            data(
                "cost",
                json!({
                    "kind": "runs", "tracer": t.label, "workload": workload, "unit": unit,
                    "units": units, "runs": total, "run_ns": ns,
                    "cpu_ns": cgroup.as_ref().map(|_| cpu), "softirq_ns": sirq, "wall_s": wall,
                    "programs": progs.values().filter(|p| p.runs > 0)
                        .map(|p| json!({"name": p.name, "runs": p.runs, "ns": p.ns}))
                        .collect::<Vec<_>>(),
                }),
            );
        }
        if let Some(r) = running {
            let f = r.stop(Duration::from_secs(10));
            if !f.success {
                eprintln!("{} did not exit cleanly: {:?}", t.label, f.stderr);
            }
        }
    }
    drop(cgroup);
}
