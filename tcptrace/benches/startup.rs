//! Time to first event: from starting the tracer process to the first event
//! it prints, while a background thread calls connect() (refused, so every
//! tracer prints it) every 2 ms; and from start to "probes attached"
//! (tcptrace: its `tracing;` line, printed once every hook is attached;
//! bpftrace: its `Attaching N probes...` line, printed just before it
//! attaches, so a lower bound). tcptrace and bpftrace take turns. Needs root.

mod common;

use std::{
    process::Command,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use common::*;
use serde_json::json;

const PORT: u16 = 4748;

type MakeCmd = Box<dyn Fn() -> Command>;
const EVERY: Duration = Duration::from_millis(2);

fn main() {
    environment("startup");
    let (work_cpu, tracer_cpu) = cpus();
    let rounds = env_usize("TCPTRACE_BENCH_STARTS", 10);
    let stop = Arc::new(AtomicBool::new(false));
    let bg = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            enter_private_netns();
            pin_thread(work_cpu);
            while !stop.load(Ordering::Relaxed) {
                marker_connect(PORT);
                std::thread::sleep(EVERY);
            }
        })
    };
    pin_thread(tracer_cpu);
    let needle = format!("127.0.0.1:{PORT}");
    let mut tracers: Vec<(&str, MakeCmd, &str)> = vec![(
        "tcptrace",
        Box::new(|| {
            let mut c = Command::new(tcptrace_bin());
            c.args(["--interval", "0", "--min-latency", "1ms"]);
            c
        }),
        "tracing;",
    )];
    // Older tcptrace binaries beside this one.
    for (path, label) in baselines() {
        let name: &'static str = Box::leak(format!("tcptrace@{label}").into_boxed_str());
        tracers.push((
            name,
            Box::new(move || {
                let mut c = Command::new(&path);
                c.args(["--interval", "0", "--min-latency", "1ms"]);
                c
            }),
            "tracing;",
        ));
    }
    if let Some(bin) = bpftrace_bin() {
        tracers.push((
            "bpftrace",
            Box::new(move || bpftrace_connect(&bin, 1_000_000)),
            "Attaching",
        ));
    }
    let mut attached = vec![Vec::new(); tracers.len()];
    let mut first = vec![Vec::new(); tracers.len()];
    for round in 0..rounds {
        for k in 0..tracers.len() {
            let ti = (k + round) % tracers.len();
            let (name, make, ready) = &tracers[ti];
            let mut cmd = make();
            pin_command(&mut cmd, tracer_cpu);
            let mut r = Running::spawn(
                cmd,
                Watch {
                    first: needle.clone(),
                    ready: (*ready).into(),
                    ..Watch::default()
                },
            );
            let t_first = r.wait_needle(Duration::from_secs(120), EVERY, || {});
            let t_ready = r.wait_ready(Duration::from_secs(1));
            let started = r.started;
            let err = r.stderr_text();
            let f = r.stop(Duration::from_secs(30));
            let (Some(t_first), Some(t_ready)) = (t_first, t_ready) else {
                panic!("{name}: no event or no attach line: {err}");
            };
            assert!(f.success, "{name} failed: {err}");
            let ms = |t: std::time::Instant| (t - started).as_secs_f64() * 1e3;
            attached[ti].push(ms(t_ready));
            first[ti].push(ms(t_first));
        }
    }
    stop.store(true, Ordering::Relaxed);
    let _ = bg.join();
    for (ti, (name, _, _)) in tracers.iter().enumerate() {
        data(
            "startup",
            json!({"tracer": name, "unit": "ms", "attached": attached[ti], "first_event": first[ti]}),
        );
        println!(
            "bench startup {name}: attached min={:.0}ms median={:.0}ms; first event min={:.0}ms median={:.0}ms",
            min(&attached[ti]),
            median(&attached[ti]),
            min(&first[ti]),
            median(&first[ti])
        );
    }
}
