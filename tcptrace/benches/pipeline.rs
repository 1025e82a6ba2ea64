//! Pipeline: events per second tcptrace drains from the ring buffer and
//! decodes on one core, with zero loss; its CPU and memory at fixed rates.
//!
//! The events come from the bench-only source (`--bench-flood PID:N`, a
//! program on the getppid() tracepoint that emits N synthetic connect
//! records per call of this process; never attached in normal runs): one
//! thread pinned to CPU 0 calls getppid() at a paced rate, tcptrace runs
//! pinned to CPU 1. Its `--pid` filter keeps every other process's real
//! connect() events out, so what it counts is exactly what was generated.
//! Sinks: `quiet` (decode and summarise, print only the final summary, a
//! hidden bench flag), `json` and `human` (every event printed to a file
//! on tmpfs), `record` (`tcptrace record` to a file on tmpfs). Also: bytes
//! per recorded event on a real loopback workload. Needs root.

mod common;

use std::{
    process::Command,
    time::{Duration, Instant},
};

use common::*;
use serde_json::{json, Value};

#[derive(Clone, Copy)]
enum Sink {
    Quiet,
    Json,
    Human,
    Record,
}

impl Sink {
    fn name(self) -> &'static str {
        match self {
            Self::Quiet => "quiet",
            Self::Json => "json",
            Self::Human => "human",
            Self::Record => "record",
        }
    }
}

/// A tcptrace binary under test and its label in the report.
struct Bin {
    path: String,
    label: String,
}

/// Records per getppid() call for a target rate: about 20k calls/s.
fn per_call(rate: f64) -> u32 {
    ((rate / 20_000.0) as u32).clamp(1, 128)
}

struct Run {
    bin: String,
    sink: Sink,
    rate: Option<f64>,
    per_call: u32,
    produced: u64,
    received: u64,
    lost: u64,
    gen_secs: f64,
    cpu_secs: f64,
    wall_secs: f64,
    rss_kib: u64,
    hwm_kib: u64,
}

impl Run {
    fn json(&self) -> Value {
        json!({"kind": "run", "bin": self.bin, "sink": self.sink.name(), "target_rate": self.rate,
               "per_call": self.per_call, "produced": self.produced, "received": self.received,
               "lost": self.lost, "gen_secs": self.gen_secs, "cpu_secs": self.cpu_secs,
               "wall_secs": self.wall_secs, "rss_kib": self.rss_kib, "hwm_kib": self.hwm_kib})
    }

    fn achieved(&self) -> f64 {
        self.produced as f64 / self.gen_secs
    }
}

fn run(bin: &Bin, sink: Sink, rate: Option<f64>, per_call: u32, dur: Duration, cpu: usize) -> Run {
    let me = std::process::id();
    let mut cmd = Command::new(&bin.path);
    let recording = tmpfs_file("rec");
    if matches!(sink, Sink::Record) {
        cmd.arg("record").arg("-o").arg(&recording);
    }
    cmd.args(["--interval", "0", "--pid", &me.to_string()])
        .arg("--bench-flood")
        .arg(format!("{me}:{per_call}"));
    match sink {
        Sink::Quiet => cmd.args(["--json", "--bench-quiet"]),
        Sink::Json => cmd.arg("--json"),
        Sink::Human | Sink::Record => &mut cmd,
    };
    pin_command(&mut cmd, cpu);
    let r = Running::tracing_to_file(
        cmd,
        Watch {
            // The synthetic records' local endpoint, in human lines.
            count: if matches!(sink, Sink::Human) {
                "127.0.0.1:40000".into()
            } else {
                String::new()
            },
            ..Watch::default()
        },
    );
    let pid = r.pid();
    let (cpu0, t0) = (cpu_ns(pid), Instant::now());
    let g0 = Instant::now();
    let calls = getppid_paced(rate.map(|r| r / f64::from(per_call)), u64::MAX, dur);
    let gen_secs = g0.elapsed().as_secs_f64();
    // What is still in the ring buffer is drained within a poll period.
    std::thread::sleep(Duration::from_millis(200));
    let (cpu1, wall) = (cpu_ns(pid), t0.elapsed());
    let (rss_kib, hwm_kib) = (vm_kib(pid, "VmRSS"), vm_kib(pid, "VmHWM"));
    let err = r.stderr_text();
    let f = r.stop(Duration::from_secs(60));
    assert!(f.success, "tcptrace failed: {err}");
    let _ = std::fs::remove_file(&recording);
    let produced = calls * per_call as u64;
    let (received, lost) = final_counts(&f, sink, produced);
    Run {
        bin: bin.label.clone(),
        sink,
        rate,
        per_call,
        produced,
        received,
        lost,
        gen_secs,
        cpu_secs: (cpu1 - cpu0) as f64 / 1e9,
        wall_secs: wall.as_secs_f64(),
        rss_kib,
        hwm_kib,
    }
}

/// Events tcptrace counted and lost, from its final summary (the text
/// summary has no total: there, received is what was not lost).
fn final_counts(f: &Finished, sink: Sink, produced: u64) -> (u64, u64) {
    if matches!(sink, Sink::Human | Sink::Record) {
        let lost = f
            .tail
            .lines()
            .rev()
            .filter_map(|l| l.strip_prefix("lost events:"))
            .find_map(|r| r.split_whitespace().next()?.parse().ok())
            .unwrap_or(0);
        let received = if matches!(sink, Sink::Human) {
            f.needle_hits
        } else {
            produced.saturating_sub(lost)
        };
        return (received, lost);
    }
    f.final_json_counts()
}

fn report(r: &Run) {
    data("pipeline", r.json());
    eprintln!(
        "bench pipeline: {} {} target={} achieved={:.0}/s received={} lost={} cpu={:.0}% rss={}KiB",
        r.bin,
        r.sink.name(),
        r.rate.map_or("max".into(), |x| format!("{x:.0}/s")),
        r.achieved(),
        r.received,
        r.lost,
        100.0 * r.cpu_secs / r.wall_secs,
        r.rss_kib
    );
}

/// Bytes per recorded event: `tcptrace record` of 10,000 loopback
/// connect()s in a private namespace, every tenth refused, all printed
/// (`--min-latency 0`).
fn bytes_per_event(bin: &Bin, work_cpu: usize, tracer_cpu: usize) {
    const CONNECTS: usize = 10_000;
    let me = std::process::id();
    let recording = tmpfs_file("size.rec");
    let mut cmd = Command::new(&bin.path);
    cmd.arg("record")
        .arg("-o")
        .arg(&recording)
        .args(["--json", "--interval", "0", "--min-latency", "0"])
        .args(["--pid", &me.to_string()]);
    pin_command(&mut cmd, tracer_cpu);
    let r = Running::tracing_to_file(
        cmd,
        Watch {
            count: "\"tid\":".into(),
            ..Watch::default()
        },
    );
    std::thread::spawn(move || {
        enter_private_netns();
        pin_thread(work_cpu);
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
        let addr = l.local_addr().expect("addr");
        for i in 0..CONNECTS {
            if i % 10 == 9 {
                marker_connect(4749);
                continue;
            }
            let c = std::net::TcpStream::connect(addr).expect("connect");
            let (s, _) = l.accept().expect("accept");
            socket2::SockRef::from(&c)
                .set_linger(Some(Duration::ZERO))
                .expect("SO_LINGER");
            drop((c, s));
        }
    })
    .join()
    .expect("workload");
    std::thread::sleep(Duration::from_millis(300));
    let f = r.stop(Duration::from_secs(30));
    let size = std::fs::metadata(&recording).map(|m| m.len()).unwrap_or(0);
    let _ = std::fs::remove_file(&recording);
    let events = f.needle_hits;
    data(
        "pipeline",
        json!({"kind": "record_size", "bin": bin.label, "connects": CONNECTS, "events": events, "bytes": size}),
    );
    println!(
        "bench pipeline: recording of {CONNECTS} loopback connects: {events} events, {size} bytes, {:.1} bytes/event",
        size as f64 / events.max(1) as f64
    );
}

fn main() {
    environment("pipeline");
    let (gen_cpu, tracer_cpu) = cpus();
    pin_thread(gen_cpu);
    let reps = env_usize("TCPTRACE_BENCH_REPS", 3);
    let secs = env_usize("TCPTRACE_BENCH_SECS", 2) as u64;
    let dur = Duration::from_secs(secs);
    let mut bins = vec![Bin {
        path: tcptrace_bin(),
        label: "tcptrace".into(),
    }];
    for (path, label) in baselines() {
        if has_bench_flags(&path) {
            bins.push(Bin {
                path,
                label: format!("tcptrace@{label}"),
            });
        } else {
            eprintln!("bench pipeline: tcptrace@{label} has no bench-only event source: skipped");
        }
    }

    // 1. Highest paced rate drained with zero loss, decode-only sink.
    let ladder = [500e3, 1e6, 1.5e6, 2e6, 2.5e6, 3e6, 4e6, 5e6, 6e6, 8e6];
    for bin in &bins {
        let mut best: Option<f64> = None;
        for &rate in &ladder {
            let mut clean = 0;
            let mut reached = false;
            for _ in 0..reps {
                let r = run(
                    bin,
                    Sink::Quiet,
                    Some(rate),
                    per_call(rate),
                    dur,
                    tracer_cpu,
                );
                report(&r);
                reached |= r.achieved() >= 0.95 * rate;
                if r.lost == 0 && r.received == r.produced && r.achieved() >= 0.95 * rate {
                    clean += 1;
                }
            }
            data(
                "pipeline",
                json!({"kind": "ladder", "bin": bin.label, "rate": rate, "runs": reps,
                       "zero_loss_runs": clean, "generator_reached": reached}),
            );
            if clean > 0 {
                best = Some(rate);
            }
            if clean == 0 || !reached {
                break;
            }
        }
        println!(
            "bench pipeline {}: highest paced rate drained with zero loss (decode only, one core): {}",
            bin.label,
            best.map_or("none of the ladder".into(), |b| format!("{b:.0} events/s"))
        );
        // 2. Unpaced: as fast as the generator goes.
        for _ in 0..reps {
            report(&run(bin, Sink::Quiet, None, 128, dur, tracer_cpu));
        }
    }
    // 3. CPU and memory at fixed rates, each sink.
    for rate in [10e3, 100e3, 1e6] {
        for sink in [Sink::Quiet, Sink::Json, Sink::Human, Sink::Record] {
            report(&run(
                &bins[0],
                sink,
                Some(rate),
                per_call(rate),
                dur,
                tracer_cpu,
            ));
        }
    }
    // 4. Bytes per recorded event.
    bytes_per_event(&bins[0], gen_cpu, tracer_cpu);
}
