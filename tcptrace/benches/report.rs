//! Report: the time and peak memory of `tcptrace report` on a large
//! recording. The recording is made with the bench-only event source
//! (`--bench-flood PID:N`: synthetic connect records for each getppid()
//! call of this process, `--pid` keeping real events out; with
//! `--bench-flood-varied` their times, ports, addresses, latencies and
//! errors vary as real connects' do, so the file has a real size) paced at
//! about a million events a second, to a file on tmpfs; then `tcptrace report`
//! reads it, timed, its peak RSS taken from wait4()'s rusage (the
//! report's own, not the recorder's). One run per size in
//! `TCPTRACE_BENCH_REPORT_EVENTS` (comma-separated; default 1, 10 and 150
//! million events, the last about a gigabyte).
//! Needs root.

mod common;

use std::{
    process::Command,
    time::{Duration, Instant},
};

use common::*;
use serde_json::json;

const PER_CALL: u32 = 50;
const CALLS_PER_SEC: f64 = 20_000.0;

/// Runs `cmd` to its end: (wall seconds, peak RSS in KiB, success).
#[allow(
    clippy::zombie_processes,
    reason = "reaped by wait4, which also returns its rusage"
)]
fn measured(cmd: &mut Command) -> (f64, u64, bool) {
    let t0 = Instant::now();
    let child = cmd.spawn().expect("spawn tcptrace report");
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: wait4 on our own child, with pointers to live locals; the
    // Child handle is not waited on afterwards.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    let wall = t0.elapsed().as_secs_f64();
    assert_eq!(pid, child.id() as i32, "wait4 failed");
    let ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    (wall, usage.ru_maxrss as u64, ok)
}

/// A number from the page: the text of the element with `id`.
fn page_number(page: &str, id: &str) -> u64 {
    let open = format!("id=\"{id}\">");
    page.split_once(&open)
        .and_then(|(_, rest)| rest.split('<').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

fn main() {
    // Nothing here makes connections; a namespace of its own all the same,
    // as every bench.
    enter_private_netns();
    environment("report");
    let bin = tcptrace_bin();
    if !has_bench_flags(&bin) {
        eprintln!("report: {bin} has no bench flags: skipped");
        return;
    }
    // 1 M, 10 M, then about a gigabyte: the same peak memory is the point.
    let sizes = std::env::var("TCPTRACE_BENCH_REPORT_EVENTS")
        .unwrap_or_else(|_| "1000000,10000000,150000000".into());
    for n in sizes.split(',') {
        let n: u64 = n
            .trim()
            .parse()
            .expect("TCPTRACE_BENCH_REPORT_EVENTS: comma-separated event counts");
        run(&bin, n.max(1));
    }
}

/// Records `events` flood events, then reports them.
fn run(bin: &str, events: u64) {
    let me = std::process::id();
    let rec = tmpfs_file("report.rec");
    let page = tmpfs_file("report.html");
    let mut cmd = Command::new(bin);
    cmd.arg("record")
        .arg("-o")
        .arg(&rec)
        .args(["--pid", &me.to_string()])
        .arg("--bench-flood")
        .arg(format!("{me}:{PER_CALL}"))
        .arg("--bench-flood-varied");
    let r = Running::tracing_to_file(cmd, Watch::default());
    let g0 = Instant::now();
    getppid_paced(
        Some(CALLS_PER_SEC),
        events.div_ceil(u64::from(PER_CALL)),
        Duration::MAX,
    );
    let gen_secs = g0.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(1500));
    let f = r.stop(Duration::from_secs(60));
    assert!(f.success, "tcptrace record failed");
    let size = std::fs::metadata(&rec).map_or(0, |m| m.len());

    let (wall, rss_kib, ok) = measured(
        Command::new(bin)
            .arg("report")
            .arg(&rec)
            .arg("-o")
            .arg(&page)
            .stderr(std::process::Stdio::null()),
    );
    assert!(ok, "tcptrace report failed");
    let html = std::fs::read_to_string(&page).unwrap_or_default();
    let recorded = page_number(&html, "total-events");
    let lost = page_number(&html, "lost-total");
    let _ = std::fs::remove_file(&rec);
    let _ = std::fs::remove_file(&page);
    eprintln!(
        "report: {recorded} events ({lost} lost) in {:.1} MB recorded in {gen_secs:.1} s; \
         tcptrace report: {wall:.2} s, peak RSS {:.1} MiB, page {:.0} KiB",
        size as f64 / 1e6,
        rss_kib as f64 / 1024.0,
        html.len() as f64 / 1024.0
    );
    data(
        "report",
        json!({"kind": "run", "events": recorded, "lost": lost, "recording_bytes": size,
               "wall_secs": wall, "peak_rss_kib": rss_kib, "page_bytes": html.len(),
               "gen_secs": gen_secs}),
    );
}
