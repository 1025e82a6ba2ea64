//! The argument groups several commands share: the live run's flags
//! ([`LiveArgs`], taken by the default command, `record` and, filled in,
//! `diagnose`), the filter ([`FilterArgs`], defined with its rules in
//! `filter.rs`) and the duration form every duration flag parses.

use std::time::Duration;

use clap::Args;

pub use crate::filter::FilterArgs;
use crate::hooks::HookArgs;

#[derive(Debug, Args)]
pub struct LiveArgs {
    /// Print JSON Lines (one object per event, then summaries) instead of text.
    #[arg(long)]
    pub json: bool,
    /// Print a summary this often (e.g. 1s, 500ms); 0 disables periodic summaries.
    #[arg(long, allow_hyphen_values = true, value_parser = parse_duration, default_value = "1s")]
    pub interval: Duration,
    /// Stop after this long (e.g. 30s, 5m).
    #[arg(long, allow_hyphen_values = true, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Only print successful calls at least this slow (failures always print);
    /// histograms still count every call.
    #[arg(long, allow_hyphen_values = true, value_parser = parse_duration, default_value = "0s")]
    pub min_latency: Duration,
    #[command(flatten)]
    pub hooks: HookArgs,
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Set by `tcptrace diagnose`: print only the findings.
    #[arg(skip)]
    pub diagnose: bool,
    #[command(flatten)]
    pub bench: crate::bench_flood::BenchArgs,
    #[command(flatten)]
    pub metrics: crate::metrics::MetricsArgs,
}

/// What a duration is, for every error about one.
pub const DURATION_FORM: &str =
    "a duration is a positive number with a unit (us, ms, s, m, h), e.g. 30s or 500ms";

/// `-5s`, `-.5s`: a minus sign before a number (`--json`, a flag given
/// where the value should be, is not "negative").
pub fn is_negative(s: &str) -> bool {
    s.strip_prefix('-')
        .and_then(|r| r.chars().next())
        .is_some_and(|c| c.is_ascii_digit() || c == '.')
}

/// A duration argument. Its flags take values starting with `-`
/// (`allow_hyphen_values`) so that `--duration -5s` reaches this parser
/// and gets this one-line explanation, not clap's "unexpected argument".
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if is_negative(s) {
        return Err(format!("durations cannot be negative: {DURATION_FORM}"));
    }
    humantime::parse_duration(s).map_err(|_| DURATION_FORM.to_owned())
}
