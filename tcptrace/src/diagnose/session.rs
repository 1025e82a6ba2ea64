//! The diagnosis inside a live run and `tcptrace diagnose`: the engine fed
//! with every event, a host baseline taken at the start, a fresh snapshot
//! at every summary, and what gets printed.

use std::{collections::HashMap, io::Write, time::Duration};

use clap::Args;
use serde_json::Value;

use super::{evidence::HostView, hookset::HookSet, render_text, Context, Engine, Finding};
use crate::{
    cli::LiveArgs,
    filter::FilterArgs,
    hooks::AttachMode,
    host::{HostSnapshot, Needs, Scope, Snapshotter},
};

/// `tcptrace diagnose`: watch, then print only the findings.
#[derive(Debug, Args)]
pub struct DiagnoseArgs {
    /// How long to watch (e.g. 10s, 2m).
    #[arg(
        long,
        allow_hyphen_values = true,
        value_parser = crate::cli::parse_duration,
        default_value = "10s"
    )]
    pub duration: Duration,
    /// Print findings as JSON Lines (objects of kind "finding").
    #[arg(long)]
    pub json: bool,
    /// How function hooks attach: fentry/fexit where allowed, else kprobe.
    #[arg(long, value_enum, default_value_t = AttachMode::Auto)]
    pub attach: AttachMode,
    /// Diagnose a saved `tcptrace --json` stream (a file, or - for stdin)
    /// instead of tracing; host numbers are then unknown.
    #[arg(long, value_name = "FILE")]
    pub input: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub filter: FilterArgs,
}

impl DiagnoseArgs {
    /// Runs the watch through `live`, or reads `--input`.
    pub fn run(self, live: impl FnOnce(LiveArgs) -> anyhow::Result<()>) -> anyhow::Result<()> {
        let Some(path) = self.input.clone() else {
            return live(self.into_live());
        };
        if !self.filter.describe().is_empty() {
            anyhow::bail!(
                "filters apply while tracing; with --input, filter the JSON stream first"
            );
        }
        let reader: Box<dyn std::io::BufRead> = if path.as_os_str() == "-" {
            Box::new(std::io::stdin().lock())
        } else {
            let f = std::fs::File::open(&path)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            Box::new(std::io::BufReader::new(f))
        };
        let findings = offline(reader)?;
        let mut out = std::io::stdout().lock();
        write_findings(&mut out, &findings, self.json)?;
        Ok(())
    }

    pub fn into_live(self) -> LiveArgs {
        LiveArgs {
            json: self.json,
            interval: Duration::ZERO,
            duration: Some(self.duration),
            // Every event counts for the rules, printed or not.
            min_latency: Duration::ZERO,
            attach: self.attach,
            filter: self.filter,
            diagnose: true,
            bench: Default::default(),
            metrics: Default::default(),
        }
    }
}

/// Namespaces whose counters may speak for themselves under this filter:
/// counters carry no process, port or address, so only an unfiltered run
/// or a `--netns` filter can use them.
pub fn counter_scope(f: &FilterArgs) -> Scope {
    let others = f.pid.is_some()
        || f.comm.is_some()
        || f.port.is_some()
        || f.addr.is_some()
        || f.cgroup.is_some();
    match (others, f.netns) {
        (false, None) => Scope::All,
        (false, Some(n)) => Scope::Netns(u64::from(n)),
        (true, _) => Scope::Needed,
    }
}

/// Findings for a saved JSON Lines stream: every event, and the last
/// summary object for what only the summary carries.
pub fn offline(input: impl std::io::BufRead) -> anyhow::Result<Vec<Finding>> {
    let mut engine = Engine::default();
    let mut summary = None;
    for (i, line) in input.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(&line)
            .map_err(|e| anyhow::anyhow!("line {}: not JSON: {e}", i + 1))?;
        match v.get("kind").and_then(Value::as_str) {
            Some("summary") => summary = Some(v),
            Some("finding") => {}
            _ => engine.observe(&v),
        }
    }
    Ok(engine.evaluate(&Context {
        summary: summary.as_ref(),
        host: HostView::default(),
        counters: Scope::Needed,
        hooks: &HookSet::default(),
    }))
}

fn write_findings(out: &mut dyn Write, findings: &[Finding], json: bool) -> std::io::Result<()> {
    if json {
        for f in findings {
            writeln!(out, "{}", f.to_json())?;
        }
    } else {
        write!(out, "{}", render_text(findings))?;
    }
    out.flush()
}

/// The two host snapshots a live evaluation used: stored in recordings so a
/// replay computes the same findings.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct HostPair {
    pub start: HostSnapshot,
    pub now: HostSnapshot,
}

pub struct Session {
    engine: Engine,
    /// The host view of the last summary (live), or the recorded one to use
    /// for the next summary (replay).
    host_view: Option<HostPair>,
    /// The live host to read sysctls, counters and sockets from; `None` when
    /// diagnosing a recording on another machine or later.
    host: Option<(Snapshotter, HostSnapshot)>,
    scope: Scope,
    /// Finding key → count when last printed as a JSON line.
    printed: HashMap<String, u64>,
    /// `tcptrace diagnose`: nothing but the findings, at the end.
    only_findings: bool,
    /// Which hooks attached (live), for advice and skip accounting.
    hooks: HookSet,
    /// The findings of the last summary (for the metrics).
    last: Vec<Finding>,
}

impl Session {
    pub fn start(filter: &FilterArgs, only_findings: bool) -> Self {
        let snap = Snapshotter::live();
        let scope = counter_scope(filter);
        let baseline = snap.baseline(scope, &Needs::default());
        Self {
            engine: Engine::default(),
            host_view: None,
            host: Some((snap, baseline)),
            scope,
            printed: HashMap::new(),
            only_findings,
            hooks: HookSet::default(),
            last: Vec::new(),
        }
    }

    /// Diagnosis of a replayed recording: from its events and summaries
    /// only, never from the host replaying it.
    pub fn offline() -> Self {
        Self {
            engine: Engine::default(),
            host_view: None,
            host: None,
            scope: Scope::Needed,
            printed: HashMap::new(),
            only_findings: false,
            hooks: HookSet::default(),
            last: Vec::new(),
        }
    }

    /// The hooks of this run, once attached.
    pub fn set_hooks(&mut self, hooks: HookSet) {
        self.hooks = hooks;
    }

    /// Whether events are printed (not in `tcptrace diagnose`).
    pub fn show_events(&self) -> bool {
        !self.only_findings
    }

    /// One event, as `output::json::event` prints it.
    pub fn observe(&mut self, event: &Value) {
        self.engine.observe(event);
    }

    /// A decoded event, without building its JSON form where the engine
    /// can read the record itself.
    pub fn observe_event(&mut self, event: &crate::event::Event, boot_offset_ns: i64) {
        self.engine.observe_event(event, boot_offset_ns);
    }

    /// Findings now. Live: from a fresh host snapshot (kept for
    /// `take_host_view`). Replay: from the recorded host view, if any.
    pub fn evaluate(&mut self, summary: Option<&Value>) -> Vec<Finding> {
        if let Some((snap, base)) = &self.host {
            let now = snap.snapshot(&self.engine.needs(), self.scope, Some(base));
            self.host_view = Some(HostPair {
                start: base.clone(),
                now,
            });
        }
        let view = self.host_view.as_ref();
        self.engine.evaluate(&Context {
            summary,
            host: HostView {
                start: view.map(|v| &v.start),
                now: view.map(|v| &v.now),
            },
            counters: self.scope,
            hooks: &self.hooks,
        })
    }

    /// The findings of the last summary.
    pub fn findings(&self) -> &[Finding] {
        &self.last
    }

    /// The host view the last live summary used (JSON, for the recording).
    pub fn take_host_view(&mut self) -> Option<String> {
        self.host.as_ref()?;
        self.host_view
            .take()
            .and_then(|v| serde_json::to_string(&v).ok())
    }

    /// Replay: the host view the live run recorded for the next summary.
    pub fn set_recorded_host_view(&mut self, json: Option<&str>) {
        self.host_view = json.and_then(|j| serde_json::from_str(j).ok());
    }

    /// Findings that are new or whose count changed since last printed.
    fn fresh<'a>(&mut self, findings: &'a [Finding]) -> Vec<&'a Finding> {
        findings
            .iter()
            .filter(|f| self.printed.insert(f.key(), f.count) != Some(f.count))
            .collect()
    }

    /// The summary step. JSON: fresh `finding` lines, then the summary
    /// object with every finding under `findings`. Text: the summary, then
    /// the findings. In `tcptrace diagnose`: only the findings, at the end.
    pub fn summary(
        &mut self,
        out: &mut dyn Write,
        summary: Value,
        text: impl FnOnce() -> String,
        json: bool,
        final_: bool,
    ) -> std::io::Result<()> {
        if self.only_findings && !final_ {
            return Ok(());
        }
        let findings = self.evaluate(Some(&summary));
        self.last.clone_from(&findings);
        if self.only_findings {
            return write_findings(out, &findings, json);
        }
        if json {
            for f in self.fresh(&findings) {
                writeln!(out, "{}", f.to_json())?;
            }
            let mut summary = summary;
            if let Value::Object(m) = &mut summary {
                m.insert(
                    "findings".into(),
                    Value::Array(findings.iter().map(Finding::to_json).collect()),
                );
            }
            writeln!(out, "{summary}")?;
        } else {
            write!(out, "{}{}", text(), render_text(&findings))?;
        }
        out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn offline_reads_a_saved_stream() {
        let text = format!(
            "{}\n\n{}\n{}\n",
            drop_ev(),
            json!({"kind": "connect", "netns": 1, "errno": 0, "latency_ns": 5, "daddr": "10.0.0.1", "dport": 80}),
            json!({"kind": "summary", "final": true})
        );
        let f = offline(text.as_bytes()).unwrap();
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].id, "accept_queue_overflow");
        assert!(offline("{oops".as_bytes())
            .unwrap_err()
            .to_string()
            .contains("line 1"));
    }

    #[test]
    fn counters_follow_the_filter() {
        assert_eq!(counter_scope(&FilterArgs::default()), Scope::All);
        let f = FilterArgs {
            netns: Some(7),
            ..FilterArgs::default()
        };
        assert_eq!(counter_scope(&f), Scope::Netns(7));
        let f = FilterArgs {
            port: Some(80),
            netns: Some(7),
            ..FilterArgs::default()
        };
        assert_eq!(counter_scope(&f), Scope::Needed);
    }

    fn session(only: bool) -> Session {
        Session {
            engine: Engine::default(),
            host_view: None,
            host: Some((
                Snapshotter::new("/nonexistent-root"),
                HostSnapshot::default(),
            )),
            scope: Scope::Needed,
            printed: HashMap::new(),
            only_findings: only,
            hooks: HookSet::default(),
            last: Vec::new(),
        }
    }

    fn drop_ev() -> Value {
        json!({"kind": "syn_drop", "time": "2026-03-01T10:00:00Z", "netns": 1, "saddr": "10.0.0.1", "sport": 80,
               "daddr": "10.0.0.9", "dport": 4000, "cause": "accept_queue_full", "backlog": 2, "backlog_max": 1})
    }

    #[test]
    fn json_prints_fresh_findings_then_the_summary() {
        let mut s = session(false);
        s.observe(&drop_ev());
        let mut out = Vec::new();
        s.summary(
            &mut out,
            json!({"kind": "summary"}),
            String::new,
            true,
            false,
        )
        .unwrap();
        s.summary(
            &mut out,
            json!({"kind": "summary"}),
            String::new,
            true,
            false,
        )
        .unwrap();
        s.observe(&drop_ev());
        s.summary(
            &mut out,
            json!({"kind": "summary"}),
            String::new,
            true,
            true,
        )
        .unwrap();
        let lines: Vec<Value> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let kinds: Vec<&str> = lines.iter().map(|l| l["kind"].as_str().unwrap()).collect();
        // Printed once, unchanged the second time, again when its count grew.
        assert_eq!(
            kinds,
            ["finding", "summary", "summary", "finding", "summary"]
        );
        assert_eq!(lines[3]["count"], 2);
        assert_eq!(lines[4]["findings"][0]["id"], "accept_queue_overflow");
    }

    #[test]
    fn diagnose_mode_prints_only_findings_at_the_end() {
        let mut s = session(true);
        s.observe(&drop_ev());
        let mut out = Vec::new();
        s.summary(
            &mut out,
            json!({"kind": "summary"}),
            || "summary text".into(),
            false,
            false,
        )
        .unwrap();
        assert!(out.is_empty());
        s.summary(
            &mut out,
            json!({"kind": "summary"}),
            || "summary text".into(),
            false,
            true,
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("findings: 1\n"), "{text}");
        assert!(!text.contains("summary text"));
        let mut healthy = session(true);
        let mut out = Vec::new();
        healthy
            .summary(&mut out, json!({}), String::new, true, true)
            .unwrap();
        assert!(out.is_empty(), "no finding, no JSON line");
    }
}
