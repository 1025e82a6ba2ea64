//! The diagnosis as a sink: the engine sees every event, and at every
//! summary hands the outputs after it the findings (and the host view they
//! used). The engine is [`crate::diagnose::session::Session`].

use anyhow::Result;

use crate::{
    diagnose::session::Session,
    event::Event,
    sink::{Sink, SummaryStep},
};

impl Sink for Session {
    fn event(&mut self, ev: &Event, boot_offset_ns: i64) -> Result<()> {
        self.observe_decoded(ev, boot_offset_ns);
        Ok(())
    }

    fn summary(&mut self, step: &mut SummaryStep<'_>) -> Result<()> {
        if !self.has_host() {
            self.set_recorded_host_view(step.recorded_host);
        }
        step.findings = Some(self.evaluate(Some(&step.json), step.hooks));
        step.host_view = self.take_host_view();
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        Ok(())
    }
}
