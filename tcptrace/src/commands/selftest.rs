//! `tcptrace selftest`: proof on this kernel that every attached hook sees
//! what the kernel does, from reproductions in throwaway namespaces.

use anyhow::{bail, Result};
use clap::Args;

use crate::{hooks::HookArgs, loader, selftest};

#[derive(Debug, Args)]
pub struct SelftestArgs {
    #[command(flatten)]
    pub hooks: HookArgs,
    /// Print the verdicts as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(SelftestArgs { hooks, json }: SelftestArgs) -> Result<()> {
    let verdicts = selftest::run(hooks)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&verdicts)?);
    } else {
        println!(
            "{:<w$} {:<11} {:<11} DETAIL",
            "HOOK",
            "MECHANISM",
            "VERDICT",
            w = loader::HOOK_COLUMN
        );
        for v in &verdicts {
            println!("{v}");
        }
    }
    let failed: Vec<&str> = verdicts
        .iter()
        .filter(|v| v.verdict.fails())
        .map(|v| v.hook)
        .collect();
    if !failed.is_empty() {
        bail!("selftest failed for {}", failed.join(", "));
    }
    Ok(())
}
