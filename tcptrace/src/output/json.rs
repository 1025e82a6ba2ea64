//! JSON Lines: one object per event, then at every summary the findings
//! that are new or grew and the summary object (field names documented in
//! README.md and docs/events-*.md).

use std::{collections::HashMap, io::Write};

use anyhow::{Context as _, Result};

use crate::{
    diagnose::Finding,
    event::{json::EventJson, Event},
    sink::{Sink, SummaryStep},
};

pub struct JsonLines<W: Write> {
    out: W,
    /// Print events (the summaries print regardless).
    show_events: bool,
    /// Finding key → count when last printed.
    printed: HashMap<String, u64>,
}

impl<W: Write> JsonLines<W> {
    pub fn new(out: W, show_events: bool) -> Self {
        Self {
            out,
            show_events,
            printed: HashMap::new(),
        }
    }

    fn line(&mut self, v: &impl serde::Serialize) -> Result<()> {
        serde_json::to_writer(&mut self.out, v).context("writing JSON")?;
        self.out.write_all(b"\n")?;
        Ok(())
    }

    /// Findings that are new or whose count changed since last printed.
    fn fresh<'a>(&mut self, findings: &'a [Finding]) -> Vec<&'a Finding> {
        findings
            .iter()
            .filter(|f| self.printed.insert(f.key(), f.count) != Some(f.count))
            .collect()
    }

    #[cfg(test)]
    pub fn into_inner(self) -> W {
        self.out
    }
}

impl<W: Write> Sink for JsonLines<W> {
    fn event(&mut self, ev: &Event, boot_offset_ns: i64) -> Result<()> {
        if self.show_events {
            self.line(&EventJson::of(ev, boot_offset_ns))?;
        }
        Ok(())
    }

    /// Fresh `finding` lines, then the summary object with every finding
    /// under `findings`.
    fn summary(&mut self, step: &mut SummaryStep<'_>) -> Result<()> {
        let mut summary = step.json.clone();
        if let Some(findings) = &step.findings {
            for f in self.fresh(findings) {
                self.line(&f.to_json())?;
            }
            summary.findings = Some(findings.iter().map(Finding::to_json).collect());
        }
        self.line(&summary)
    }

    fn flush(&mut self) -> Result<()> {
        self.out.flush()?;
        Ok(())
    }
}
