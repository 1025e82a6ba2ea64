//! tcptrace: live eBPF tracer for TCP failures.

mod btf;
mod cli;
mod event;
mod filter;
mod hist;
mod hooks;
mod kernel;
mod live;
mod loader;
mod output;
mod paws;
mod summary;
mod syn;

use std::process::ExitCode;

use anyhow::Result;
use clap::Parser as _;
use tcptrace_common::Config;

use crate::cli::{Cli, Command};

fn check(attach: hooks::AttachMode, json: bool) -> Result<()> {
    let loaded = loader::load(attach, Config::default());
    let hooks = match loaded {
        Ok(l) => l.hooks,
        Err(e) => return Err(e),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&hooks)?);
    } else {
        println!("{:<12} {:<11} DETAIL", "HOOK", "MECHANISM");
        for h in &hooks {
            println!("{}", loader::describe(h));
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Check { attach, json }) => check(attach, json),
        None => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(live::run(cli.live))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tcptrace: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
