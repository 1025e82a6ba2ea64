//! Prometheus metrics (`--metrics ADDR:PORT`): an HTTP endpoint serving
//! `/metrics` (Prometheus text, or OpenMetrics when the scraper asks for
//! it) and `/healthz`, on a thread of its own.
//!
//! The live run starts the [`Endpoint`] before it loads the programs, and
//! the pipeline builds a metrics sink for it beside the other outputs
//! (event, summary, flush, finish; the findings come from the diagnosis
//! earlier in the list); the sink keeps the event-derived totals, and the
//! collector reads the kernel maps (histograms, lost events, per-listener
//! SYN counters, state maps, program skips) at each scrape; the daemon adds
//! its [`Health`] (recorder bytes and errors, `/healthz` details). Replay serves
//! no metrics. The drain never
//! waits for a scrape: it updates the shared totals only when their lock is
//! free and keeps its increments aside otherwise. docs/metrics.md lists
//! every metric, label and bound.

mod addr;
mod collector;
mod exposition;
mod findings;
mod health;
mod kernel;
mod server;
mod sink;
mod topk;
mod totals;

pub use addr::{Bound, MetricsAddr};
pub use health::Health;
pub use kernel::KernelReader;
pub use sink::Endpoint;

use clap::Args;

/// `--metrics` and the bounds on its label sets.
#[derive(Clone, Debug, Default, Args)]
pub struct MetricsArgs {
    /// Serve Prometheus metrics on ADDR:PORT (`/metrics`, `/healthz`); a
    /// bare PORT binds the loopback address.
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics: Option<MetricsAddr>,
    /// Listeners with their own series; the others add up in
    /// `listener="other"`.
    #[arg(long, value_name = "K", default_value_t = 64)]
    pub metrics_top_listeners: usize,
    /// Also export PAWS rejects and received RSTs per peer address.
    #[arg(long)]
    pub metrics_per_peer: bool,
    /// With --metrics-per-peer: peers with their own series; the others
    /// add up in `peer="other"`.
    #[arg(long, value_name = "K", default_value_t = 64)]
    pub metrics_top_peers: usize,
}

/// Label bounds of one run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    pub listeners: usize,
    /// `None`: no per-peer series.
    pub peers: Option<usize>,
}

impl MetricsArgs {
    pub fn bounds(&self) -> Bounds {
        Bounds {
            listeners: self.metrics_top_listeners,
            peers: self.metrics_per_peer.then_some(self.metrics_top_peers),
        }
    }

    /// Binds the endpoint's socket, so that a taken port or a port this
    /// process may not bind fails at start, before anything is loaded.
    pub fn bind(&self) -> anyhow::Result<Option<Bound>> {
        self.metrics.as_ref().map(MetricsAddr::bind).transpose()
    }
}
