//! `tcptrace diagnose`: nothing but the findings, once, at the end.

use std::io::Write;

use anyhow::Result;

use crate::{
    diagnose::{render_text, Finding},
    event::Event,
    sink::{Sink, SummaryStep},
};

pub struct FindingsOnly<W: Write> {
    out: W,
    json: bool,
}

impl<W: Write> FindingsOnly<W> {
    pub fn new(out: W, json: bool) -> Self {
        Self { out, json }
    }

    #[cfg(test)]
    pub fn into_inner(self) -> W {
        self.out
    }

    #[cfg(test)]
    pub fn get_ref(&self) -> &W {
        &self.out
    }
}

/// Findings as JSON Lines (nothing when there are none) or as text.
pub fn write_findings(out: &mut dyn Write, findings: &[Finding], json: bool) -> Result<()> {
    if json {
        for f in findings {
            serde_json::to_writer(&mut *out, &f.to_json())?;
            out.write_all(b"\n")?;
        }
    } else {
        write!(out, "{}", render_text(findings))?;
    }
    out.flush()?;
    Ok(())
}

impl<W: Write> Sink for FindingsOnly<W> {
    fn event(&mut self, _: &Event, _: i64) -> Result<()> {
        Ok(())
    }

    fn summary(&mut self, step: &mut SummaryStep<'_>) -> Result<()> {
        if !step.final_ {
            return Ok(());
        }
        let findings = step.findings.as_deref().unwrap_or_default();
        write_findings(&mut self.out, findings, self.json)
    }

    fn flush(&mut self) -> Result<()> {
        self.out.flush()?;
        Ok(())
    }
}
