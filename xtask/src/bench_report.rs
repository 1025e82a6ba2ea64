//! BENCHMARKS.md from what `cargo xtask bench` collected: the targets of
//! DESIGN.md checked as ratios against peers measured in the same run, the
//! tables behind them, and every raw line.

use std::fmt::Write as _;

use serde_json::Value;

use crate::bench::{Activity, Place};

pub struct Run {
    pub command: String,
    pub started: String,
    pub commit: String,
    pub baselines: Vec<String>,
    pub cpu: String,
    pub activity: (Activity, Activity),
    pub places: Vec<Place>,
}

fn f64s(v: &Value) -> Vec<f64> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default()
}

fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::NAN, f64::min)
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

fn ns(x: f64) -> String {
    if x.is_nan() {
        "–".into()
    } else {
        format!("{x:.0}")
    }
}

/// An added cost with its sign: `+120`, or `-80` when noise put the traced
/// run below the untraced one.
fn added_ns(x: f64) -> String {
    if x.is_nan() || x < 0.0 {
        ns(x)
    } else {
        format!("+{}", ns(x))
    }
}

fn ratio(a: f64, b: f64) -> Option<f64> {
    (a.is_finite() && b.is_finite() && b > 0.0).then(|| a / b)
}

fn fmt_ratio(r: Option<f64>) -> String {
    r.map_or("–".into(), |r| format!("{r:.2}"))
}

fn data<'a>(p: &'a Place, bench: &'a str, kind: &'a str) -> impl Iterator<Item = &'a Value> {
    p.data
        .iter()
        .filter(move |v| v["bench"] == bench && v["kind"] == kind)
}

/// Hot-path samples of one tracer on one workload.
struct Hot {
    wall: Vec<f64>,
    cpu: Vec<f64>,
}

fn hot(p: &Place, workload: &str, tracer: &str) -> Option<Hot> {
    data(p, "hotpath", "ns_per_call")
        .find(|v| v["workload"] == workload && v["tracer"] == tracer)
        .map(|v| Hot {
            wall: f64s(&v["samples"]),
            cpu: f64s(&v["cpu_samples"]),
        })
}

fn tracers(p: &Place, workload: &str) -> Vec<String> {
    data(p, "hotpath", "ns_per_call")
        .filter(|v| v["workload"] == workload)
        .filter_map(|v| v["tracer"].as_str().map(str::to_owned))
        .collect()
}

fn workloads(p: &Place) -> Vec<String> {
    let mut w: Vec<String> = data(p, "hotpath", "ns_per_call")
        .filter_map(|v| v["workload"].as_str().map(str::to_owned))
        .collect();
    w.dedup();
    w
}

/// Added ns per call of `tracer` over no tracer: (from minima, from medians).
fn added(p: &Place, workload: &str, tracer: &str) -> Option<(f64, f64)> {
    let (t, n) = (hot(p, workload, tracer)?, hot(p, workload, "none")?);
    Some((
        min(&t.wall) - min(&n.wall),
        median(&t.wall) - median(&n.wall),
    ))
}

/// tcptrace restricted (hidden `--bench-hooks connect`) to the hooks the
/// bpftrace script has.
const SAME_HOOKS: &str = "tcptrace[connect only]";

/// bpftrace with empty programs on the connect() tracepoints.
const FLOOR: &str = "bpftrace[empty programs]";

/// In the VM kernels: tcptrace's connect hook alone on fentry/fexit, the
/// same hook on the syscall tracepoints (`--attach kprobe` keeps connect
/// there), and tcptrace's empty programs on those tracepoints (hidden
/// `--bench-floor`), the floor under bpftrace's script.
const VM_FENTRY_CONNECT: &str = "tcptrace-fentry[connect only]";
const VM_TP_CONNECT: &str = "tcptrace-kprobe[connect only]";
const VM_FLOOR: &str = "tcptrace[empty programs]";

/// Targets and how this run measured against them.
pub struct Verdict {
    /// Which target: `hotpath`, `startup`, `attach`, `pipeline`, `record`.
    pub key: &'static str,
    pub target: String,
    pub measured: String,
    pub met: Option<bool>,
}

fn verdicts(run: &Run) -> Vec<Verdict> {
    let mut out = Vec::new();
    let Some(host) = run.places.first() else {
        return out;
    };
    for w in workloads(host) {
        let Some(b) = added(host, &w, "bpftrace") else {
            continue;
        };
        // The same hooks as the bpftrace script; then every hook.
        let same = added(host, &w, SAME_HOOKS);
        let all = added(host, &w, "tcptrace");
        let Some(t) = same.or(all) else { continue };
        let (rmin, rmed) = (ratio(t.0, b.0), ratio(t.1, b.1));
        let mut measured = format!(
            "tcptrace {} ns, bpftrace {} ns (medians): **{}** (from minima: {} vs {}, {})",
            added_ns(t.1),
            added_ns(b.1),
            fmt_ratio(rmed),
            added_ns(t.0),
            added_ns(b.0),
            fmt_ratio(rmin)
        );
        if let Some(f) = added(host, &w, FLOOR) {
            let _ = write!(
                measured,
                "; empty programs on the same tracepoints (the floor of any tracer there): {} ns",
                added_ns(f.1)
            );
        }
        if let (Some(_), Some(a)) = (same, all) {
            let _ = write!(
                measured,
                "; with every hook this kernel allows: {} ns ({})",
                added_ns(a.1),
                fmt_ratio(ratio(a.1, b.1))
            );
        }
        out.push(Verdict {
            key: "hotpath",
            target: format!(
                "hot path `{w}`: ns added per call by the same hooks, tcptrace / bpftrace ≤ 0.5"
            ),
            measured,
            met: rmed.map(|r| r <= 0.5),
        });
    }
    let startup = |tracer: &str| {
        host.data
            .iter()
            .filter(|v| v["bench"] == "startup")
            .find(|v| v["tracer"] == tracer)
            .map(|v| (f64s(&v["attached"]), f64s(&v["first_event"])))
    };
    if let Some((att, first)) = startup("tcptrace") {
        if let Some((batt, bfirst)) = startup("bpftrace") {
            let r = ratio(median(&first), median(&bfirst));
            out.push(Verdict {
                key: "startup",
                target: "start to first event, tcptrace / bpftrace ≤ 0.5".into(),
                measured: format!(
                    "{} ms vs {} ms (medians): **{}** (minima {} vs {} ms, {})",
                    ns(median(&first)),
                    ns(median(&bfirst)),
                    fmt_ratio(r),
                    ns(min(&first)),
                    ns(min(&bfirst)),
                    fmt_ratio(ratio(min(&first), min(&bfirst)))
                ),
                met: r.map(|r| r <= 0.5),
            });
            let _ = batt;
        }
        out.push(Verdict {
            key: "attach",
            target: "start to probes attached well under 1 s".into(),
            measured: format!(
                "{} ms median, {} ms max",
                ns(median(&att)),
                ns(att.iter().copied().fold(f64::NAN, f64::max))
            ),
            met: Some(median(&att) < 1000.0),
        });
    }
    let ladder: Vec<&Value> = data(host, "pipeline", "ladder")
        .filter(|v| v["bin"] == "tcptrace")
        .collect();
    if !ladder.is_empty() {
        let all_clean = ladder
            .iter()
            .take_while(|v| v["zero_loss_runs"] == v["runs"])
            .filter_map(|v| v["rate"].as_f64())
            .fold(0.0, f64::max);
        let some_clean = ladder
            .iter()
            .filter(|v| v["zero_loss_runs"].as_u64().unwrap_or(0) > 0)
            .filter_map(|v| v["rate"].as_f64())
            .fold(0.0, f64::max);
        out.push(Verdict {
            key: "pipeline",
            target: "≥ 2 M events/s drained and decoded on one core, zero loss".into(),
            measured: format!(
                "every run clean up to **{:.1} M/s**; at least one clean run up to {:.1} M/s",
                all_clean / 1e6,
                some_clean / 1e6
            ),
            met: Some(all_clean >= 2e6),
        });
    }
    if let Some(v) = data(host, "pipeline", "record_size").find(|v| v["bin"] == "tcptrace") {
        let (bytes, events) = (
            v["bytes"].as_f64().unwrap_or(0.0),
            v["events"].as_f64().unwrap_or(0.0),
        );
        out.push(Verdict {
            key: "record",
            target: "recording: a few bytes per event".into(),
            measured: format!(
                "{:.1} bytes/event ({} events, {} bytes, loopback connects)",
                bytes / events.max(1.0),
                events,
                bytes
            ),
            met: Some(events > 0.0 && bytes / events < 16.0),
        });
    }
    out
}

/// In a VM kernel (BPF trampolines): the connect hook alone on fentry/fexit,
/// on the syscall tracepoints, and empty programs on those tracepoints.
/// bpftrace's script runs programs there, so where calls produce no event
/// its cost is that floor plus its own work.
fn vm_connect_table(s: &mut String, vm: &Place) {
    let rows: Vec<String> = workloads(vm)
        .iter()
        .filter_map(|w| {
            let fentry = added(vm, w, VM_FENTRY_CONNECT)?.1;
            let tp = added(vm, w, VM_TP_CONNECT)?.1;
            let floor = added(vm, w, VM_FLOOR)?.1;
            Some(format!(
                "| {w} | {} | {} | {} | {} | {} |",
                added_ns(fentry),
                added_ns(tp),
                added_ns(floor),
                fmt_ratio(ratio(fentry, tp)),
                fmt_ratio(ratio(fentry, floor))
            ))
        })
        .collect();
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(
        s,
        "
The connect hook alone, ns added per call (medians):

| workload | on fentry/fexit | on the syscall tracepoints | empty programs on those tracepoints | fentry ÷ tracepoints | fentry ÷ empty programs |
|---|---|---|---|---|---|"
    );
    for r in rows {
        let _ = writeln!(s, "{r}");
    }
}

fn hotpath_tables(s: &mut String, p: &Place, emulated: bool) {
    let works = workloads(p);
    if works.is_empty() {
        return;
    }
    let peer = if emulated {
        "tcptrace-kprobe"
    } else {
        "bpftrace"
    };
    let _ = writeln!(
        s,
        "\n| workload | tracer | ns/call min | ns/call median | added (min) | added (median) | added, thread CPU (median) | added ÷ {peer}'s (median) |\n|---|---|---|---|---|---|---|---|"
    );
    for w in &works {
        let none_cpu = hot(p, w, "none")
            .map(|h| median(&h.cpu))
            .unwrap_or(f64::NAN);
        let peer_added = added(p, w, peer).map(|a| a.1);
        for t in tracers(p, w) {
            let Some(h) = hot(p, w, &t) else { continue };
            let a = added(p, w, &t).unwrap_or((f64::NAN, f64::NAN));
            let r = if t == "none" || t == peer {
                "–".into()
            } else {
                fmt_ratio(peer_added.and_then(|b| ratio(a.1, b)))
            };
            let _ = writeln!(
                s,
                "| {w} | {t} | {} | {} | {} | {} | {} | {r} |",
                ns(min(&h.wall)),
                ns(median(&h.wall)),
                if t == "none" { "–".into() } else { ns(a.0) },
                if t == "none" { "–".into() } else { ns(a.1) },
                // The paced workload's thread also spins between calls.
                if t == "none" || w == "eisconn_paced" {
                    "–".into()
                } else {
                    ns(median(&h.cpu) - none_cpu)
                },
            );
        }
    }
    // Reports and losses per tracer, over every session.
    let mut rows: Vec<(String, [f64; 7])> = Vec::new();
    for v in data(p, "hotpath", "session") {
        let t = v["tracer"].as_str().unwrap_or("?").to_owned();
        let vals = [
            v["eisconn_calls"].as_f64().unwrap_or(0.0),
            v["eisconn_reported"].as_f64().unwrap_or(0.0),
            v["lost"].as_f64().unwrap_or(0.0),
            v["tracer_cpu_ns"].as_f64().unwrap_or(0.0),
            v["syns"].as_f64().unwrap_or(0.0),
            v["listen_overflows"].as_f64().unwrap_or(0.0),
            f64::from(v["foreign_programs"].as_u64().unwrap_or(0) > 0),
        ];
        match rows.iter_mut().find(|(n, _)| *n == t) {
            Some((_, acc)) => acc.iter_mut().zip(vals).for_each(|(a, v)| *a += v),
            None => rows.push((t, vals)),
        }
    }
    if !rows.is_empty() {
        let _ = writeln!(
            s,
            "\nEvery session, summed: EISCONN failures made and reported (every one is a printed event for both tracers), events lost, the tracer process's own CPU time over the session per EISCONN report (with every hook, the session's other events count in it too), SYNs sent to the full listener and the kernel's ListenOverflows count for them, and sessions that began with another tracer's connect() programs loaded (someone else's tracer would add its cost to every figure, \"none\" included).\n\n| tracer | EISCONN calls | reported | lost | tracer CPU per report | SYNs | ListenOverflows | sessions with another tracer |\n|---|---|---|---|---|---|---|---|"
        );
        for (t, v) in rows {
            let _ = writeln!(
                s,
                "| {t} | {:.0} | {:.0} | {:.0} | {} | {:.0} | {:.0} | {:.0} |",
                v[0],
                v[1],
                v[2],
                if v[1] > 0.0 {
                    format!("{} ns", ns(v[3] / v[1]))
                } else {
                    "–".into()
                },
                v[4],
                v[5],
                v[6]
            );
        }
    }
}

/// How each tcptrace run attached its hooks (first session of each).
fn attach_lines(s: &mut String, p: &Place) {
    let runs: Vec<&Value> = data(p, "hotpath", "attach").collect();
    if runs.is_empty() {
        return;
    }
    let _ = writeln!(
        s,
        "\nHooks and mechanisms, as each tcptrace run reported them:\n"
    );
    for v in runs {
        let _ = writeln!(s, "- {}:", v["tracer"].as_str().unwrap_or("?"));
        for l in v["lines"].as_array().into_iter().flatten() {
            let line = l.as_str().unwrap_or("");
            // Long failure notes: the hook, its mechanism, the start of why.
            let short: String = line.chars().take(160).collect();
            let _ = writeln!(
                s,
                "  `{}{}`",
                short,
                if short.len() < line.len() { " …" } else { "" }
            );
        }
    }
}

fn startup_table(s: &mut String, p: &Place) {
    let rows: Vec<&Value> = p
        .data
        .iter()
        .filter(|v| v["bench"] == "startup" && v["tracer"].is_string())
        .collect();
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(
        s,
        "\n| tracer | starts | attached, min | attached, median | first event, min | first event, median |\n|---|---|---|---|---|---|"
    );
    for v in rows {
        let (a, f) = (f64s(&v["attached"]), f64s(&v["first_event"]));
        let _ = writeln!(
            s,
            "| {} | {} | {} ms | {} ms | {} ms | {} ms |",
            v["tracer"].as_str().unwrap_or("?"),
            f.len(),
            ns(min(&a)),
            ns(median(&a)),
            ns(min(&f)),
            ns(median(&f))
        );
    }
}

/// The heading of the pipeline section, which `--only pipeline` rewrites
/// alone.
pub const PIPELINE_HEADING: &str = "## Pipeline: ring buffer to userspace";

/// The pipeline section from the host's place.
pub fn pipeline_section(s: &mut String, h: &Place) {
    let _ = writeln!(
        s,
        "\n{PIPELINE_HEADING}\n\nThe bench-only event source (hidden `--bench-flood PID:N`: a program on the getppid() tracepoint emitting N synthetic 104-byte connect records per call of one process; never loaded otherwise) drives the real drain loop."
    );
    pipeline_tables(s, h);
}

fn pipeline_tables(s: &mut String, p: &Place) {
    let ladder: Vec<&Value> = data(p, "pipeline", "ladder").collect();
    if !ladder.is_empty() {
        let _ = writeln!(
            s,
            "\nPaced rates, decode-only sink (`--bench-quiet`: decoded, summarised and diagnosed, only the final summary printed), tcptrace pinned to one CPU, the generator on the other. A rate counts when the generator reached it and tcptrace received every event.\n\n| binary | rate | runs | runs with zero loss |\n|---|---|---|---|"
        );
        for v in ladder {
            let _ = writeln!(
                s,
                "| {} | {:.1} M/s | {} | {}{} |",
                v["bin"].as_str().unwrap_or("?"),
                v["rate"].as_f64().unwrap_or(0.0) / 1e6,
                v["runs"],
                v["zero_loss_runs"],
                if v["generator_reached"] == false {
                    " (generator fell short)"
                } else {
                    ""
                }
            );
        }
    }
    let runs: Vec<&Value> = data(p, "pipeline", "run").collect();
    if !runs.is_empty() {
        let _ = writeln!(
            s,
            "\nEvery run: offered rate, events received and lost, tcptrace's CPU (share of one core over the run) and memory.\n\n| binary | sink | target | achieved | received | lost | CPU | RSS | peak RSS |\n|---|---|---|---|---|---|---|---|---|"
        );
        for v in runs {
            let gen = v["gen_secs"].as_f64().unwrap_or(1.0);
            let _ = writeln!(
                s,
                "| {} | {} | {} | {:.0}/s | {} | {} | {:.0}% | {} MiB | {} MiB |",
                v["bin"].as_str().unwrap_or("?"),
                v["sink"].as_str().unwrap_or("?"),
                v["target_rate"]
                    .as_f64()
                    .map_or("max".into(), |r| format!("{r:.0}/s")),
                v["produced"].as_f64().unwrap_or(0.0) / gen,
                v["received"],
                v["lost"],
                100.0 * v["cpu_secs"].as_f64().unwrap_or(0.0)
                    / v["wall_secs"].as_f64().unwrap_or(1.0),
                v["rss_kib"].as_u64().unwrap_or(0) / 1024,
                v["hwm_kib"].as_u64().unwrap_or(0) / 1024,
            );
        }
    }
}

fn raw(s: &mut String, p: &Place) {
    let _ = writeln!(
        s,
        "\n<details><summary>{}: raw lines</summary>\n\n```",
        p.name
    );
    for l in &p.lines {
        let _ = writeln!(s, "{l}");
    }
    for v in &p.data {
        let _ = writeln!(s, "benchdata {v}");
    }
    let _ = writeln!(s, "```\n</details>");
}

pub fn render(run: &Run) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Benchmarks\n");
    let _ = writeln!(
        s,
        "Written by `{}` on {} at commit `{}`{}. Every claim is a ratio against a peer measured in the same run on the same machine: bpftrace running the same connect() hooks (script below), no tracer at all, and in the VM kernels `--attach fentry` against `--attach kprobe`. Machines are shared and noisy, so each figure comes from many runs, shown as minimum and median.\n",
        run.command,
        run.started,
        run.commit,
        if run.baselines.is_empty() {
            String::new()
        } else {
            format!(
                ", with older builds measured beside it (before and after in the same run): {}",
                run.baselines.join("; ")
            )
        }
    );
    let host = run.places.first();
    let env = host.and_then(|h| h.data.iter().find(|v| v["kind"] == "env"));
    let _ = writeln!(
        s,
        "Host: {}, {} CPUs, kernel {}.",
        run.cpu,
        env.map_or("?".into(), |e| e["cpus"].to_string()),
        env.and_then(|e| e["kernel"].as_str()).unwrap_or("?")
    );
    let (before, after) = &run.activity;
    let _ = writeln!(
        s,
        "Load average before the host benches: {}; after: {}.",
        before.loadavg, after.loadavg
    );
    let busy: Vec<&String> = before.top.iter().chain(&after.top).collect();
    if busy.is_empty() {
        let _ = writeln!(s, "No other process used 5% of a CPU or more.");
    } else {
        let _ = writeln!(
            s,
            "Also running (ps: %CPU over the process's life, elapsed, name), before and after:\n"
        );
        for l in busy {
            let _ = writeln!(s, "    {l}");
        }
    }

    let _ = writeln!(
        s,
        "\n## Targets\n\n| target | measured | met |\n|---|---|---|"
    );
    let vs = verdicts(run);
    for v in &vs {
        let _ = writeln!(
            s,
            "| {} | {} | {} |",
            v.target,
            v.measured,
            match v.met {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "–",
            }
        );
    }
    let _ = writeln!(s, "\n{}", crate::bench_notes::notes(&vs));

    if let Some(h) = host {
        let _ = writeln!(
            s,
            "\n## Hot path on this machine's kernel\n\nns per call of the workload thread (pinned to CPU 0; tracers on CPU 1), per batch; *added* is the tracer's figure minus no tracer's. `eisconn`: connect() again on a connected socket (fails fast with EISCONN; every tracer runs its whole connect path and prints the failure; batches of at most 12,000 calls, each started once every report of the last was printed, so what is measured is delivered events, not drops). `eisconn_paced`: the same calls 20 µs apart, timing only the calls: the reader has caught up before each event, which is when a ring-buffer submit without flags wakes it (tcptrace before wake-up batching) and when a perf-buffer output always does (bpftrace). `loopback`: connect()/accept()/RST close on loopback, below the 1 ms print threshold (histograms only), timing only the connect() calls. `synflood`: non-blocking connect()s to a listener whose accept queue is full (one SYN each, dropped), timing only the connect() calls. `tcptrace` attaches every hook this kernel allows (`--min-latency 1ms`, text output); `tcptrace[connect only]` only the hook the bpftrace script has (hidden `--bench-hooks connect`): the same-hooks comparison the target asks for. bpftrace runs the script below with the same threshold and 512 perf-buffer pages per CPU. `bpftrace[empty programs]` attaches empty programs to the same two syscall tracepoints: the floor under any tracer that hooks connect() there. `tcptrace@REV` rows are older builds measured in the same run."
        );
        hotpath_tables(&mut s, h, false);
        attach_lines(&mut s, h);
        if let Some(v) = h.data.iter().find(|v| v["kind"] == "bpftrace") {
            let _ = writeln!(
                s,
                "\nbpftrace ({}) script:\n\n```\n{}\n```",
                v["version"].as_str().unwrap_or("?"),
                v["script"].as_str().unwrap_or("").trim()
            );
        }
        let _ = writeln!(
            s,
            "\n## Start-up\n\nFrom starting the process to its first printed event while a thread calls connect() (refused) every 2 ms, and to \"probes attached\" (tcptrace: its `tracing;` line, printed once every hook is attached; bpftrace: `Attaching N probes...`, printed just before it attaches, so a lower bound). The tracers take turns."
        );
        startup_table(&mut s, h);
        pipeline_section(&mut s, h);
        crate::bench_scrape::section(&mut s, h);
        let ps: Vec<&String> = h
            .lines
            .iter()
            .filter(|l| l.starts_with("bench port_search"))
            .collect();
        if !ps.is_empty() {
            let _ = writeln!(s, "\n## Port search latency (this kernel)\n");
            for l in ps {
                let _ = writeln!(s, "    {l}");
            }
        }
        if !h.failures.is_empty() {
            let _ = writeln!(s, "\nFailures on this machine:\n");
            for f in &h.failures {
                let _ = writeln!(s, "- {f}");
            }
        }
    }
    let vms: Vec<&Place> = run.places.iter().skip(1).collect();
    if !vms.is_empty() {
        let _ = writeln!(
            s,
            "\n## Hot path per hook in the VM kernels\n\nThe same workloads under QEMU with TCG (no KVM): every instruction is emulated, so absolute nanoseconds mean nothing; only ratios between tracers measured in the same VM do. tcptrace runs with every hook required to attach by one mechanism: `--attach fentry` (fentry/fexit where the hook has function targets) and `--attach kprobe` (kprobe/kretprobe); hooks on stable tracepoints use them in both. The last column compares each tracer's added cost with `--attach kprobe`'s. The hook lists show what each run attached: a hook that cannot use fentry on a kernel (6.1: a function with more than six arguments) is absent from that kernel's fentry run, not replaced by a kprobe. The connect hook runs on fentry/fexit (`inet_stream_connect`) under `--attach fentry` and on the syscall tracepoints under `--attach kprobe` (a kretprobe would cost more than they do); `[connect only]` rows run that hook alone, and `tcptrace[empty programs]` (hidden `--bench-floor`) attaches two empty programs to the connect() syscall tracepoints instead of any hook: the floor under any tracer there, bpftrace's script included, which is not installed in these VMs."
        );
        for p in vms {
            let _ = writeln!(s, "\n### {}", p.name);
            hotpath_tables(&mut s, p, true);
            vm_connect_table(&mut s, p);
            attach_lines(&mut s, p);
            for l in p
                .lines
                .iter()
                .filter(|l| l.starts_with("bench port_search"))
            {
                let _ = writeln!(s, "\n    {l}");
            }
            for f in &p.failures {
                let _ = writeln!(s, "\n- failure: {f}");
            }
        }
    }
    if let Some(cost) = crate::bench_runs::section(&run.places) {
        s.push_str(&cost);
    }
    let _ = writeln!(s, "\n## Raw numbers");
    for p in &run.places {
        raw(&mut s, p);
    }
    s
}
