//! The recorder as a sink of the pipeline: it takes the raw ring-buffer
//! records (before decoding) with the listener owners and containers found for them, a
//! counter snapshot every second and at every summary, and closes the file
//! at the end. Live, `record` and the daemon add it to the same list as
//! their other outputs.

use anyhow::Result;

use super::{format::MarkerKind, Recorder};
use crate::{
    event::Event,
    sink::{Lookups, Sink, SummaryStep},
    summary::{KernelCounters, RecordingStop},
};

pub struct RecordSink {
    rec: Recorder,
    /// `--max-size` reached was said once.
    said_full: bool,
}

impl RecordSink {
    pub fn new(rec: Recorder) -> Self {
        Self {
            rec,
            said_full: false,
        }
    }
}

impl Sink for RecordSink {
    fn event(&mut self, _: &Event, _: i64) -> Result<()> {
        Ok(())
    }

    fn summary(&mut self, _: &mut SummaryStep<'_>) -> Result<()> {
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        self.rec.finish()
    }

    /// A listener owner found in /proc and a container resolved go into
    /// the recording (in the block of this record), so replay fills them
    /// in the same way.
    fn raw(&mut self, raw: &[u8], found: &Lookups) -> bool {
        if let Some(owner) = &found.owner {
            self.rec.owner(owner.clone());
        }
        if let Some(container) = &found.container {
            self.rec.container(container.clone());
        }
        self.rec.push(raw)
    }

    fn tick(&mut self, k: &KernelCounters) -> Result<bool> {
        self.rec.tick(k)?;
        if self.rec.full() {
            if !self.said_full {
                self.said_full = true;
                eprintln!(
                    "tcptrace: {} reached --max-size: stopping",
                    self.rec.path().display()
                );
            }
            return Ok(true);
        }
        // The writer said why on stderr already; stop as at --max-size,
        // the final summary counts what was lost.
        Ok(self.rec.stopped().is_some())
    }

    fn marker(&mut self, final_: bool, k: &KernelCounters, host: Option<&str>) {
        let kind = if final_ {
            MarkerKind::Final
        } else {
            MarkerKind::Summary
        };
        self.rec.marker(kind, k, host.map(str::to_owned));
    }

    fn recording_stop(&self) -> Option<RecordingStop> {
        self.rec.stopped()
    }
}
