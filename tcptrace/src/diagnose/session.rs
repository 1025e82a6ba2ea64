//! The diagnosis inside a live run, a replay and `tcptrace diagnose`: the
//! engine fed with every event, a host baseline taken at the start, a
//! fresh snapshot at every summary, the findings handed to the outputs;
//! and the reading of a saved JSON Lines stream (`diagnose --input`). The
//! command itself is `commands/diagnose.rs`.

use std::borrow::Cow;

use anyhow::{anyhow, Result};
use serde::Deserialize;

use super::{evidence::HostView, hookset::HookSet, Context, Engine, Finding};
use crate::host::{snapshot::Baseline, HostSnapshot, Needs, Scope, Snapshotter};
use crate::{
    event::{json::EventJson, Event},
    filter::FilterArgs,
    summary::json::SummaryJson,
};

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
/// summary object for what only the summary carries. Lines that are not
/// JSON are an error; JSON that is not an event is passed over.
pub fn offline(input: impl std::io::BufRead) -> Result<Vec<Finding>> {
    /// What a line is, read before the rest of it.
    #[derive(Deserialize)]
    struct Kind<'a> {
        #[serde(borrow)]
        kind: Option<Cow<'a, str>>,
    }
    let mut engine = Engine::default();
    let mut summary = None;
    for (i, line) in input.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let not_json = |e: serde_json::Error| anyhow!("line {}: not JSON: {e}", i + 1);
        let kind = match serde_json::from_str::<Kind<'_>>(&line) {
            Ok(k) => k.kind,
            Err(e) if e.is_data() => continue,
            Err(e) => return Err(not_json(e)),
        };
        match kind.as_deref() {
            Some("summary") => summary = serde_json::from_str::<SummaryJson>(&line).ok(),
            Some("finding") => {}
            _ => match serde_json::from_str::<EventJson<'_>>(&line) {
                Ok(ev) => engine.observe(&ev),
                Err(e) if e.is_data() => {}
                Err(e) => return Err(not_json(e)),
            },
        }
    }
    Ok(engine.evaluate(&Context {
        summary: summary.as_ref(),
        host: HostView::default(),
        counters: Scope::Needed,
        hooks: &HookSet::default(),
    }))
}

/// The two host snapshots a live evaluation used: stored in recordings so a
/// replay computes the same findings.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct HostPair {
    pub start: HostSnapshot,
    pub now: HostSnapshot,
}

/// The diagnosis as a sink: fed every event, it evaluates at every summary
/// and hands the findings to the outputs after it.
pub struct Session {
    engine: Engine,
    /// The host view of the last summary (live), or the recorded one to use
    /// for the next summary (replay).
    host_view: Option<HostPair>,
    /// The live host to read sysctls, counters and sockets from; `None` when
    /// diagnosing a recording on another machine or later.
    host: Option<(Snapshotter, Baseline)>,
    scope: Scope,
}

impl Session {
    pub fn start(filter: &FilterArgs) -> Self {
        let snap = Snapshotter::live();
        let scope = counter_scope(filter);
        let baseline = snap.baseline(scope, &Needs::default());
        Self {
            engine: Engine::default(),
            host_view: None,
            host: Some((snap, baseline)),
            scope,
        }
    }

    /// Diagnosis of a replayed recording: from its events and summaries
    /// only, never from the host replaying it.
    ///
    /// The recorded host views hold the namespaces the live run
    /// read (all of them, without a filter), so the findings may weigh
    /// the same ones (`scope`), as the live run did.
    pub fn offline_scoped(scope: Scope) -> Self {
        Self {
            engine: Engine::default(),
            host_view: None,
            host: None,
            scope,
        }
    }

    /// One decoded event.
    pub fn observe_decoded(&mut self, ev: &Event, boot_offset_ns: i64) {
        self.engine.observe_decoded(ev, boot_offset_ns);
    }

    /// Findings now. Live: from a fresh host snapshot (kept for
    /// `take_host_view`). Replay: from the recorded host view, if any.
    pub fn evaluate(&mut self, summary: Option<&SummaryJson>, hooks: &HookSet) -> Vec<Finding> {
        if let Some((snap, base)) = &mut self.host {
            let now = snap.snapshot_since(&self.engine.needs(), self.scope, base);
            self.host_view = Some(HostPair {
                start: base.snapshot.clone(),
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
            hooks,
        })
    }

    /// Whether it snapshots this host (live), or only knows what a
    /// recording says (replay, `--input`).
    pub fn has_host(&self) -> bool {
        self.host.is_some()
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        output::{findings::FindingsOnly, json::JsonLines},
        sink::{Sink, SummaryStep},
        summary::{KernelCounters, Summary},
    };
    use serde_json::{json, Value};

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

    fn session() -> Session {
        Session {
            engine: Engine::default(),
            host_view: None,
            host: Some((Snapshotter::new("/nonexistent-root"), Baseline::default())),
            scope: Scope::Needed,
        }
    }

    fn drop_ev() -> Value {
        json!({"kind": "syn_drop", "time": "2026-03-01T10:00:00Z", "netns": 1, "saddr": "10.0.0.1", "sport": 80,
               "daddr": "10.0.0.9", "dport": 4000, "cause": "accept_queue_full", "backlog": 2, "backlog_max": 1})
    }

    fn observe(s: &mut Session, v: &Value) {
        s.engine
            .observe(&serde_json::from_value(v.clone()).unwrap());
    }

    /// One summary step through the diagnosis and then `out`, as the
    /// pipeline runs it; `summary` as a saved stream has it.
    fn step(s: &mut Session, out: &mut dyn Sink, summary: Value, final_: bool) {
        let (state, k, hooks) = (
            Summary::default(),
            KernelCounters::default(),
            HookSet::default(),
        );
        let mut step = SummaryStep {
            summary: &state,
            counters: &k,
            json: serde_json::from_value(summary).unwrap(),
            final_,
            hooks: &hooks,
            recorded_host: None,
            findings: None,
            host_view: None,
        };
        s.summary(&mut step).unwrap();
        out.summary(&mut step).unwrap();
        out.flush().unwrap();
    }

    #[test]
    fn json_prints_fresh_findings_then_the_summary() {
        let mut s = session();
        let mut out = JsonLines::new(Vec::new(), true);
        observe(&mut s, &drop_ev());
        step(&mut s, &mut out, json!({"kind": "summary"}), false);
        step(&mut s, &mut out, json!({"kind": "summary"}), false);
        observe(&mut s, &drop_ev());
        step(&mut s, &mut out, json!({"kind": "summary"}), true);
        let lines: Vec<Value> = String::from_utf8(out.into_inner())
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
        let mut s = session();
        let mut out = FindingsOnly::new(Vec::new(), false);
        observe(&mut s, &drop_ev());
        step(&mut s, &mut out, json!({"kind": "summary"}), false);
        assert!(out.get_ref().is_empty());
        step(&mut s, &mut out, json!({"kind": "summary"}), true);
        let text = String::from_utf8(out.into_inner()).unwrap();
        assert!(text.starts_with("findings: 1\n"), "{text}");
        assert!(!text.contains("summary text") && !text.contains("--- "));
        let mut healthy = session();
        let mut out = FindingsOnly::new(Vec::new(), true);
        step(&mut healthy, &mut out, json!({}), true);
        assert!(out.into_inner().is_empty(), "no finding, no JSON line");
    }
}
