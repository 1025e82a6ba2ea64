//! "Cost on healthy traffic" in BENCHMARKS.md: program runs per unit of
//! work, counted by the kernel (`tcptrace/benches/cost.rs` prints them as
//! `benchdata` objects with `"bench": "cost"`), per place (this machine,
//! each VM kernel) and per tracer, before/after (`--baseline`) in one run.
//!
//! `cargo xtask bench --only cost` measures this section alone and splices
//! it into the existing report (`report_section`) instead of rewriting the rest.

use std::{fmt::Write as _, path::Path};

use anyhow::Result;
use serde_json::Value;

use crate::bench::Place;

/// The section's heading; `--only cost` replaces from it to the next `## `.
pub const HEADING: &str = "## Cost on healthy traffic";

/// Environment for the cost bench inside an emulated VM: fewer units (run
/// counts are exact, so small workloads suffice), one round.
pub const VM_ENV: &str = "TCPTRACE_COST_CONNS=100 TCPTRACE_COST_BULK_MB=16 \
                          TCPTRACE_COST_IDLE_S=2 TCPTRACE_COST_ROUNDS=1";

/// What a healthy connection still runs under `--attach auto`, and why.
const MINIMUM: &str = "
### What a healthy connection runs, and why

Under `--attach auto`, per hook:

| hook | runs on healthy traffic | why |
|---|---|---|
| `connect` | 2 per connect() (entry, return) | the latency is the time between the two, as in bpftrace's script |
| `handshake` | 4 per loopback connection: `tcp_connect` and `tcp_finish_connect` once per active open, `tcp_close` once per socket (both ends); the failures' `sk_error_report` runs only on socket errors. 6 on kernels without `sk_error_report` (5.10): failures are taken at `tcp_done`, which every end runs | the start, the success, and the application giving up during the handshake (a close while in SYN_SENT) are the three things an active open's latency needs; no function marks the last without running on every close. Where neither fentry nor kprobes attach: none by default; with `--handshake-state-changes`, `sock:inet_sock_set_state`, every state change, 10 per loopback connection, the only tracepoint where a non-blocking connect()'s handshake ends |
| `port_search` | 2 per connect() (`__inet_hash_connect` entry, return) | the port search's own latency and outcome, per call |
| `syn_drop` | 3 per SYN (`tcp_v4/v6_conn_request` entry, return; `tcp_make_synack`) | the function returns 0 whether it answered the SYN or dropped it: only the SYN-ACK built in between tells them apart, and the entry keeps the queues as the SYN found them |
| `listen_overflow` | 2 per third ACK before 6.15 (`tcp_v4/v6_syn_recv_sock` entry, return); none from 6.15 | from 6.15 an overflow is a `kfree_skb` drop reason, which runs only on drops |
| `paws_syn_recv` | 1 per third ACK (`tcp_check_req`) | its drop reason (6.15+) does not carry the request's `ts_recent` |
| `validate_incoming` | none where `kfree_skb` names drop reasons (6.0+): with the receiving socket (6.11+), else its drops are told by call site and `tcp_oow_rate_limited` and `tcp_send_challenge_ack` name the socket, both running only on PAWS drops, out-of-window segments and challenge ACKs | before 6.0, `tcp_validate_incoming` runs for every slow-path segment (entry and return), which is the function form `--attach fentry` keeps; on 5.10 the hook is unavailable (`tcp_send_challenge_ack` is inlined there, and `kfree_skb` names no reasons) |
| `paws_time_wait`, `paws_syn_sent` | none where `kfree_skb` names the reason and the receiving socket (6.16+, 6.12+) | before that, the deciding function runs for every segment that reaches it: `tcp_timewait_state_process` per segment to a TIME-WAIT socket, `tcp_rcv_state_process` per segment of a socket not ESTABLISHED |
| `handshake_rtx`, `synack_retrans`, `rst_sent`, `listen_owner` | none (retransmits, RSTs sent, listen() calls) | |

A kernel without kprobes and trampolines (this machine) attaches tracepoints only: `connect` runs there, and `handshake` too with `--handshake-state-changes` (`tcptrace[+state changes]`).
";

const WORKLOADS: [(&str, &str); 4] = [
    ("conn", "connection"),
    ("syn", "SYN"),
    ("bulk", "segment"),
    ("idle", "second"),
];

fn runs(p: &Place) -> impl Iterator<Item = &Value> {
    p.data
        .iter()
        .filter(|v| v["bench"] == "cost" && v["kind"] == "runs")
}

fn tracers(p: &Place) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for v in runs(p) {
        let t = v["tracer"].as_str().unwrap_or("?").to_owned();
        if !out.contains(&t) {
            out.push(t);
        }
    }
    out
}

fn find<'a>(p: &'a Place, tracer: &str, workload: &str) -> Option<&'a Value> {
    runs(p).find(|v| v["tracer"] == tracer && v["workload"] == workload)
}

fn per(v: &Value, field: &str) -> Option<f64> {
    let units = v["units"].as_f64().filter(|u| *u > 0.0)?;
    Some(v[field].as_f64()? / units)
}

/// `name runs/unit` for every program that ran, largest first; with
/// `timed`, each program's own ns per run too.
fn breakdown(v: &Value, timed: bool) -> String {
    let units = v["units"].as_f64().unwrap_or(1.0).max(1.0);
    let mut progs: Vec<(String, f64, f64)> = v["programs"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|p| {
                    let runs = p["runs"].as_f64().unwrap_or(0.0);
                    let ns = p["ns"].as_f64().unwrap_or(0.0);
                    (
                        p["name"].as_str().unwrap_or("?").to_owned(),
                        runs / units,
                        ns / runs.max(1.0),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    progs.sort_by(|a, b| b.1.total_cmp(&a.1));
    progs
        .iter()
        .map(|(n, r, ns)| {
            if timed {
                format!("`{n}` {} ({ns:.0} ns/run)", fmt_runs(*r))
            } else {
                format!("`{n}` {}", fmt_runs(*r))
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn fmt_runs(x: f64) -> String {
    if x == 0.0 {
        "0".into()
    } else if x >= 0.1 {
        format!("{x:.2}")
    } else {
        format!("{x:.4}")
    }
}

fn table(s: &mut String, p: &Place, emulated: bool) {
    let _ = writeln!(
        s,
        "\n| tracer | runs / connection | runs / SYN | runs / segment (bulk) | runs / s (idle) |{}",
        if emulated {
            ""
        } else {
            " program ns / connection | program ns / SYN | CPU ns / connection (cgroup) |"
        }
    );
    let _ = writeln!(
        s,
        "|---|---|---|---|---|{}",
        if emulated { "" } else { "---|---|---|" }
    );
    for t in tracers(p) {
        let cell = |w: &str, f: &str| {
            find(p, &t, w)
                .and_then(|v| per(v, f))
                .map_or("–".into(), |x| {
                    if f == "runs" {
                        fmt_runs(x)
                    } else {
                        format!("{x:.0}")
                    }
                })
        };
        let _ = write!(
            s,
            "| {t} | {} | {} | {} | {} |",
            cell("conn", "runs"),
            cell("syn", "runs"),
            cell("bulk", "runs"),
            cell("idle", "runs")
        );
        if !emulated {
            let _ = write!(
                s,
                " {} | {} | {} |",
                cell("conn", "run_ns"),
                cell("syn", "run_ns"),
                cell("conn", "cpu_ns")
            );
        }
        s.push('\n');
    }
    for v in p
        .data
        .iter()
        .filter(|v| v["bench"] == "cost" && v["kind"] == "skipped")
    {
        let _ = writeln!(
            s,
            "\n{} did not start here: {}",
            v["tracer"].as_str().unwrap_or("?"),
            v["why"].as_str().unwrap_or("?")
        );
    }
    let _ = writeln!(
        s,
        "\nPrograms that ran, per unit of work{}:\n",
        if emulated {
            ""
        } else {
            " (and each one's ns per run)"
        }
    );
    for t in tracers(p) {
        for (w, unit) in WORKLOADS {
            if let Some(v) = find(p, &t, w) {
                let b = breakdown(v, !emulated);
                if !b.is_empty() {
                    let _ = writeln!(s, "- {t}, per {unit} ({w}): {b}");
                }
            }
        }
    }
}

/// The section, or None when no place measured it.
pub fn section(places: &[Place]) -> Option<String> {
    if !places.iter().any(|p| runs(p).next().is_some()) {
        return None;
    }
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\n{HEADING}\n\nProgram runs counted by the kernel (`bpf_prog_info` `run_cnt`/`run_time_ns` of every program the tracer loaded, with BPF run-time stats on, as `kernel.bpf_stats_enabled=1` does), before and after fixed workloads, divided by the work done (`tcptrace/benches/cost.rs`): `conn`, healthy loopback connections (connect, accept, 1 KB each way, FIN close); `syn`, handshakes to a listener with room (connect, accept, FIN close, no data), per answered SYN; `bulk`, one connection carrying 256 MiB (16 MiB in the VMs), per received segment (`Tcp: InSegs` delta, handshake and ACKs included, so the handshake's and close's runs spread over it); `idle`, nothing done for a few seconds (whatever else the machine runs). The workload runs in a network namespace of its own; on a shared machine the round with the fewest runs of 3 is kept (others' traffic only adds runs). Run counts are exact and comparable across kernels, also under emulation; nanoseconds only on this machine. tcptrace runs with every hook and `--min-latency 10ms` (no event printed); `bpftrace[connect]` is the connect()-latency script of the hot-path section, `bpftrace[same tracepoints]` the script below on every tracepoint tcptrace attaches on this kernel (the fair peer) but `sock:inet_sock_set_state`; `tcptrace[+state changes]` is tcptrace with `--handshake-state-changes` (handshakes timed on `sock:inet_sock_set_state` where no function hook attaches), `bpftrace[same + state changes]` the whole script, its fair peer. CPU is the cgroup holding the workload threads and the tracer process (softirq work on loopback runs in their context). In the VMs, `tcptrace[auto]` is what a host gets (`--attach auto`: drop-reason forms first where the kernel has them); `[fentry]` and `[kprobe]` force one mechanism on every function hook, as the test matrix does."
    );
    for (i, p) in places.iter().enumerate() {
        if runs(p).next().is_none() {
            continue;
        }
        let _ = writeln!(s, "\n### {}", p.name);
        table(&mut s, p, i > 0);
    }
    s.push_str(MINIMUM);
    if let Some(v) = places.first().and_then(|h| {
        h.data
            .iter()
            .find(|v| v["bench"] == "cost" && v["kind"] == "bpftrace")
    }) {
        let _ = writeln!(
            s,
            "\n`bpftrace[same + state changes]` ({}; `bpftrace[same tracepoints]` is the same without `sock:inet_sock_set_state`):\n\n```\n{}\n```",
            v["version"].as_str().unwrap_or("?"),
            v["fair_script"].as_str().unwrap_or("").trim()
        );
    }
    Some(s)
}

/// `--only`: the cost section spliced into the report at `path` (the rest
/// kept as it was), and the run's raw cost lines printed.
pub fn write_only(path: &Path, places: &[Place]) -> Result<()> {
    for p in places {
        for f in &p.failures {
            eprintln!("bench: {}: {f}", p.name);
        }
    }
    let Some(section) = section(places) else {
        anyhow::bail!("no cost numbers were measured");
    };
    crate::report_section::write(path, HEADING, &section)
}
