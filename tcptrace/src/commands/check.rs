//! `tcptrace check`: every hook, the mechanism it would use on this kernel,
//! or why it cannot attach.

use anyhow::Result;
use clap::Args;
use tcptrace_common::Config;

use crate::{hooks::HookArgs, loader};

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub hooks: HookArgs,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(CheckArgs { hooks, json }: CheckArgs) -> Result<()> {
    let loaded = loader::load(hooks, Config::default());
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
