//! `tcptrace check`: every hook, the mechanism it would use on this kernel,
//! or why it cannot attach.

use anyhow::Result;
use clap::Args;
use tcptrace_common::Config;

use crate::{hooks::AttachMode, loader};

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// How function hooks attach.
    #[arg(long, value_enum, default_value_t = AttachMode::Auto)]
    pub attach: AttachMode,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(CheckArgs { attach, json }: CheckArgs) -> Result<()> {
    let loaded = loader::load(attach, Config::default());
    let hooks = match loaded {
        Ok(l) => l.hooks,
        Err(e) => return Err(e),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&hooks)?);
    } else {
        println!(
            "{:<w$} {:<11} DETAIL",
            "HOOK",
            "MECHANISM",
            w = loader::HOOK_COLUMN
        );
        for h in &hooks {
            println!("{}", loader::describe(h));
        }
    }
    Ok(())
}
