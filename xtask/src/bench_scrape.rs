//! The metrics endpoint in BENCHMARKS.md: what the `scrape` bench
//! (`tcptrace/benches/scrape.rs`) measured, as a section of its own —
//! scrapes under a flood of events (lost and received with and without
//! them) and scrape latency and size at 10 and 1,000 listeners.
//! `cargo xtask bench` renders it with the rest; `cargo xtask bench
//! --scrape-only` runs that bench alone and replaces the section in the
//! existing report.

use std::{fmt::Write as _, process::Command};

use anyhow::{bail, Result};
use serde_json::Value;

use crate::{
    artifacts,
    bench::{run_bench, BenchArgs, Place},
    sh::root,
};

const HEADING: &str = "## Metrics endpoint (`--metrics`)";

fn rows<'a>(p: &'a Place, kind: &'a str) -> impl Iterator<Item = &'a Value> {
    p.data
        .iter()
        .filter(move |v| v["bench"] == "scrape" && v["kind"] == kind)
}

fn ms(v: &Value, k: &str) -> String {
    v[k].as_f64().map_or("–".into(), |x| format!("{x:.2} ms"))
}

/// The section, when the place ran the scrape bench.
pub fn section(s: &mut String, p: &Place) {
    let load: Vec<&Value> = rows(p, "under_load").collect();
    let sizes: Vec<&Value> = rows(p, "listeners").collect();
    if load.is_empty() && sizes.is_empty() {
        return;
    }
    let _ = writeln!(
        s,
        "\n{HEADING}\n\nScrapes under load: the bench-only event source floods the ring buffer at a fixed rate (tcptrace with `--bench-quiet --metrics`, pinned to one CPU; the generator and the scraping client on the other); each rate runs without scrapes and with `GET /metrics` every 10 ms (600 times Prometheus's default interval). The drain must lose nothing it did not lose without scrapes, and every scrape must answer.\n\n| rate | scrapes | failed | latency median | p99 | max | produced | received | lost |\n|---|---|---|---|---|---|---|---|---|"
    );
    for v in &load {
        let scraped = v["scrape_every_ms"].is_u64();
        let _ = writeln!(
            s,
            "| {:.0}k/s | {} | {} | {} | {} | {} | {} | {} | {} |",
            v["rate"].as_f64().unwrap_or(0.0) / 1e3,
            if scraped {
                v["scrapes"].to_string()
            } else {
                "none".into()
            },
            if scraped {
                v["failed"].to_string()
            } else {
                "–".into()
            },
            ms(v, "ms_median"),
            ms(v, "ms_p99"),
            ms(v, "ms_max"),
            v["produced"],
            v["received"],
            v["lost"],
        );
    }
    let _ = writeln!(s, "\n{}", verdict(&load));
    if !sizes.is_empty() {
        let _ = writeln!(
            s,
            "\nScrape latency and size by listeners (each with one third-ACK overflow event and two answered handshakes, in a private namespace traced with `--netns`); 50 scrapes each after one untimed scrape. Series: sample lines in the text format.\n\n| listeners | `--metrics-top-listeners` | series | bytes per scrape | latency min | median | p99 | max | failed |\n|---|---|---|---|---|---|---|---|---|"
        );
        for v in sizes {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {:.0} | {} | {} | {} | {} | {} |",
                v["listeners"],
                v["top"],
                v["series"],
                v["bytes_median"].as_f64().unwrap_or(0.0),
                ms(v, "ms_min"),
                ms(v, "ms_median"),
                ms(v, "ms_p99"),
                ms(v, "ms_max"),
                v["failed"],
            );
        }
    }
}

/// Per rate: whether the runs with scrapes lost no more than the worst run
/// without, and every scrape answered.
fn verdict(load: &[&Value]) -> String {
    let mut rates: Vec<f64> = load.iter().filter_map(|v| v["rate"].as_f64()).collect();
    rates.sort_by(f64::total_cmp);
    rates.dedup();
    let parts: Vec<String> = rates
        .iter()
        .map(|&rate| {
            let at: Vec<&&Value> = load.iter().filter(|v| v["rate"] == rate).collect();
            let lost = |scraped: bool| {
                at.iter()
                    .filter(|v| v["scrape_every_ms"].is_u64() == scraped)
                    .filter_map(|v| v["lost"].as_u64())
                    .max()
                    .unwrap_or(0)
            };
            let failed: u64 = at.iter().filter_map(|v| v["failed"].as_u64()).sum();
            let scrapes: u64 = at.iter().filter_map(|v| v["scrapes"].as_u64()).sum();
            let met = lost(true) <= lost(false) && failed == 0 && scrapes > 0;
            format!(
                "at {:.0}k/s, most lost with scrapes {} vs without {}, {scrapes} scrapes, {failed} failed: {}",
                rate / 1e3,
                lost(true),
                lost(false),
                if met { "met" } else { "**not met**" }
            )
        })
        .collect();
    format!(
        "Scrapes keep answering and the drain loses nothing it did not lose without them: {}.",
        parts.join("; ")
    )
}

/// `cargo xtask bench --scrape-only`: the scrape bench alone on this
/// machine, its section replacing the one in the existing report (or added
/// before the raw numbers).
pub fn run_alone(args: &BenchArgs) -> Result<()> {
    let tcptrace = artifacts::static_tcptrace()?;
    let benches = artifacts::static_benches()?;
    let Some((_, bin)) = benches.iter().find(|(n, _)| n == "scrape") else {
        bail!("no scrape bench among {benches:?}");
    };
    let mut place = Place {
        name: "host".into(),
        ..Place::default()
    };
    let mut cmd = Command::new(bin);
    cmd.env("TCPTRACE_BIN", &tcptrace)
        .env("TCPTRACE_BENCH_REPS", args.reps.to_string());
    run_bench(&mut place, "scrape", &mut cmd);
    if !place.failures.is_empty() {
        bail!("scrape bench: {}", place.failures.join("; "));
    }
    let mut new = String::new();
    section(&mut new, &place);
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let _ = writeln!(
        new,
        "\n(`cargo xtask bench --scrape-only` on {date}; load average {}.)\n\n<details><summary>scrape: raw lines</summary>\n\n```",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    for l in &place.lines {
        let _ = writeln!(new, "{l}");
    }
    for v in &place.data {
        let _ = writeln!(new, "benchdata {v}");
    }
    let _ = writeln!(new, "```\n</details>");
    let path = root().join(&args.output);
    crate::report_section::write(&path, HEADING, &new)
}
