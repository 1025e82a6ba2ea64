//! Stand-in for the `filter` module (`FilterArgs`, `Filter::matches`) being
//! added on main; replay only needs `Filter::matches(&Event) -> bool`. To be
//! replaced by the real module when the branches merge.

use clap::Args;

use crate::event::Event;

#[derive(Clone, Debug, Default, Args)]
pub struct FilterArgs {
    /// Only events of this process id (repeatable).
    #[arg(long, value_name = "PID")]
    pub pid: Vec<u32>,
    /// Only events of this command name (repeatable).
    #[arg(long, value_name = "COMM")]
    pub comm: Vec<String>,
    /// Only events with this local or remote port (repeatable).
    #[arg(long, value_name = "PORT")]
    pub port: Vec<u16>,
}

pub struct Filter(FilterArgs);

impl Filter {
    pub fn new(args: &FilterArgs) -> Self {
        Self(args.clone())
    }

    pub fn matches(&self, ev: &Event) -> bool {
        let f = &self.0;
        (f.pid.is_empty() || f.pid.contains(&ev.pid))
            && (f.comm.is_empty() || f.comm.contains(&ev.comm))
            && (f.port.is_empty()
                || f.port.contains(&ev.endpoints.sport)
                || f.port.contains(&ev.endpoints.dport))
    }
}
