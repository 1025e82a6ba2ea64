//! The connect family's part of the summary beside the latency histograms
//! and the error table: the longest port search seen.

use std::fmt::Write as _;

use crate::event::{Detail, Event};

#[derive(Clone, Debug, Default)]
pub struct ConnectSummary {
    /// Most ports probed by one connect() looking for a free local port.
    pub max_ports_probed: u32,
}

impl ConnectSummary {
    pub fn observe(&mut self, ev: &Event) {
        if let Detail::PortSearch(d) = &ev.detail {
            self.max_ports_probed = self.max_ports_probed.max(d.ports_probed);
        }
    }

    pub fn render_text(&self, out: &mut String) {
        if self.max_ports_probed > 0 {
            let _ = writeln!(
                out,
                "port search: at most {} ports probed in one connect()",
                self.max_ports_probed
            );
        }
    }
}
