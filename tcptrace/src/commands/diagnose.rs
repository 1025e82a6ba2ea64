//! `tcptrace diagnose`: watch for a while (the live run with only the
//! findings printed), or read a saved `--json` stream, then print the
//! findings. The engine is in `diagnose/`.

use std::time::Duration;

use anyhow::Result;
use clap::Args;

use super::live;
use crate::{
    args::{FilterArgs, LiveArgs},
    diagnose::session::offline,
    hooks::HookArgs,
    output::findings::write_findings,
};

/// `tcptrace diagnose`: watch, then print only the findings.
#[derive(Debug, Args)]
pub struct DiagnoseArgs {
    /// How long to watch (e.g. 10s, 2m).
    #[arg(
        long,
        allow_hyphen_values = true,
        value_parser = crate::args::parse_duration,
        default_value = "10s"
    )]
    pub duration: Duration,
    /// Print findings as JSON Lines (objects of kind "finding").
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub hooks: HookArgs,
    /// Diagnose a saved `tcptrace --json` stream (a file, or - for stdin)
    /// instead of tracing; host numbers are then unknown.
    #[arg(long, value_name = "FILE")]
    pub input: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub filter: FilterArgs,
}

/// Watches through the live run, or reads `--input`.
pub fn run(args: DiagnoseArgs) -> Result<()> {
    let Some(path) = args.input.clone() else {
        return live::run(args.into_live());
    };
    if !args.filter.describe().is_empty() {
        anyhow::bail!("filters apply while tracing; with --input, filter the JSON stream first");
    }
    let reader: Box<dyn std::io::BufRead> = if path.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        let f =
            std::fs::File::open(&path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        Box::new(std::io::BufReader::new(f))
    };
    let findings = offline(reader)?;
    let mut out = std::io::stdout().lock();
    write_findings(&mut out, &findings, args.json)?;
    Ok(())
}

impl DiagnoseArgs {
    /// The live run's arguments for the watch: findings only.
    fn into_live(self) -> LiveArgs {
        LiveArgs {
            json: self.json,
            interval: Duration::ZERO,
            duration: Some(self.duration),
            // Every event counts for the rules, printed or not.
            min_latency: Duration::ZERO,
            hooks: self.hooks,
            filter: self.filter,
            diagnose: true,
            bench: Default::default(),
            metrics: Default::default(),
        }
    }
}
