//! "Report" in BENCHMARKS.md: the time and peak memory of `tcptrace
//! report` on large recordings, from the host's `report` bench
//! (tcptrace/benches/report.rs). Written by `cargo xtask bench --only
//! report` alone, and by a full run; a run without those numbers keeps
//! the section it found.

use std::path::Path;

use anyhow::{bail, Result};
use serde_json::Value;

use crate::bench::Place;

pub const HEADING: &str = "## Report";

fn int(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or(0)
}

/// 10000000 as "10,000,000".
fn grouped(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The section from the host's report runs, `None` without any.
pub fn section(places: &[Place]) -> Option<String> {
    let host = places.iter().find(|p| p.name == "host")?;
    let ours = |kind: &str| -> Vec<&Value> {
        host.data
            .iter()
            .filter(|v| v["bench"] == "report" && v["kind"] == kind)
            .collect()
    };
    let runs = ours("run");
    if runs.is_empty() {
        return None;
    }
    let env = ours("env").first().copied();
    let mut s = format!(
        "{HEADING}\n\nWritten by `cargo xtask bench` (tcptrace/benches/report.rs) on kernel {}, \
         load average {}. The recording is made by `tcptrace record` from the bench-only \
         event source (`--bench-flood --bench-flood-varied`: synthetic connect records \
         whose times, ports, 16 addresses, latencies and 1-in-32 refusals vary as real \
         connects' do, paced at a million a second) on tmpfs; then `tcptrace report FILE -o PAGE` is timed, its peak RSS taken \
         from wait4()'s rusage of that process alone.\n\n\
         | events recorded | recording | `tcptrace report` wall time | peak RSS | page |\n\
         |---|---|---|---|---|\n",
        env.and_then(|e| e["kernel"].as_str()).unwrap_or("?"),
        env.and_then(|e| e["loadavg"].as_str()).unwrap_or("?"),
    );
    for r in &runs {
        s.push_str(&format!(
            "| {} ({} lost) | {:.1} MB | {:.2} s | {} KiB | {:.1} KiB |\n",
            grouped(int(r, "events")),
            int(r, "lost"),
            int(r, "recording_bytes") as f64 / 1e6,
            r["wall_secs"].as_f64().unwrap_or(0.0),
            grouped(int(r, "peak_rss_kib")),
            int(r, "page_bytes") as f64 / 1024.0
        ));
    }
    s.push_str(
        "\nThe report keeps at most 300 intervals and 20 events per kind, so its peak memory \
         is the same whatever the size of the recording, read block by block; the time is \
         replay's decode and summary of every event.\n",
    );
    Some(s)
}

/// `--only report`: the section spliced into the report at `path`.
pub fn write_only(path: &Path, places: &[Place]) -> Result<()> {
    let Some(section) = section(places) else {
        bail!("no report numbers were measured");
    };
    crate::report_section::write(path, HEADING, &section)
}

/// A full run's report with this section: measured now, else as it was.
pub fn keep(report: String, measured: Option<String>, old: &str) -> String {
    match measured {
        Some(s) => crate::report_section::splice(&report, HEADING, &s),
        None => match crate::report_section::find(old, HEADING) {
            Some(s) => crate::report_section::splice(&report, HEADING, s),
            None => report,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn section_from_the_host_runs() {
        let host = Place {
            name: "host".into(),
            data: vec![
                json!({"bench": "report", "kind": "env", "kernel": "6.18", "loadavg": "1.0"}),
                json!({"bench": "report", "kind": "run", "events": 10_000_000u64, "lost": 0,
                       "recording_bytes": 1_118_366u64, "wall_secs": 4.3,
                       "peak_rss_kib": 9672, "page_bytes": 11576}),
            ],
            ..Place::default()
        };
        let s = section(&[host]).unwrap();
        assert!(s.starts_with("## Report\n"), "{s}");
        assert!(
            s.contains("| 10,000,000 (0 lost) | 1.1 MB | 4.30 s | 9,672 KiB | 11.3 KiB |"),
            "{s}"
        );
        assert!(section(&[]).is_none());
        let kept = keep("# B\n".into(), None, "# A\n\n## Report\n\nold\n");
        assert!(kept.contains("## Report\n\nold"), "{kept}");
    }
}
