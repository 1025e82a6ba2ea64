//! `tcptrace daemon`'s findings log: one JSON line (the documented
//! `finding` object) per finding when it first appears and each time it
//! changes (count, evidence, severity, summary), nothing in between; no
//! events and no summaries.

use std::{collections::HashMap, io::Write};

use anyhow::{Context as _, Result};

use crate::{
    event::Event,
    sink::{Sink, SummaryStep},
    summary::json::FindingJson,
};

pub struct FindingsLog<W: Write> {
    out: W,
    /// The last line written per finding (rule and subject).
    logged: HashMap<String, FindingJson>,
}

impl<W: Write> FindingsLog<W> {
    pub fn new(out: W) -> Self {
        Self {
            out,
            logged: HashMap::new(),
        }
    }
}

impl<W: Write> Sink for FindingsLog<W> {
    fn event(&mut self, _: &Event, _: i64) -> Result<()> {
        Ok(())
    }

    fn summary(&mut self, step: &mut SummaryStep<'_>) -> Result<()> {
        for f in step.findings.as_deref().unwrap_or_default() {
            let json = f.to_json();
            let key = f.key();
            if self.logged.get(&key) == Some(&json) {
                continue;
            }
            serde_json::to_writer(&mut self.out, &json).context("writing the findings log")?;
            self.out
                .write_all(b"\n")
                .context("writing the findings log")?;
            self.logged.insert(key, json);
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        self.out.flush().context("writing the findings log")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        diagnose::{hookset::HookSet, tally::Span, Finding, Severity},
        summary::{KernelCounters, Summary},
    };

    fn step_with(findings: Vec<Finding>, log: &mut FindingsLog<Vec<u8>>) {
        let summary = Summary::default();
        let k = KernelCounters::zero();
        let hooks = HookSet::default();
        let mut step = SummaryStep {
            summary: &summary,
            counters: &k,
            json: summary.to_json(&k, false),
            final_: false,
            hooks: &hooks,
            recorded_host: None,
            findings: Some(findings),
            host_view: None,
        };
        log.summary(&mut step).unwrap();
    }

    fn finding(count: u64) -> Finding {
        let mut f = Finding::new(
            "accept_queue_overflow",
            Severity::Critical,
            "listener 0.0.0.0:80".into(),
            &Span::default(),
        );
        f.count = count;
        f
    }

    #[test]
    fn logs_a_finding_when_it_appears_and_when_it_changes() {
        let mut log = FindingsLog::new(Vec::new());
        step_with(vec![finding(3)], &mut log);
        step_with(vec![finding(3)], &mut log);
        step_with(vec![finding(5)], &mut log);
        step_with(vec![], &mut log);
        let text = String::from_utf8(log.out.clone()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0]["count"], 3);
        assert_eq!(lines[1]["count"], 5);
        assert_eq!(lines[1]["kind"], "finding");
        assert_eq!(lines[1]["id"], "accept_queue_overflow");
    }
}
