//! tcptrace: live eBPF tracer for TCP failures.

mod bench_flood;
mod btf;
mod commands;
mod connect;
mod diagnose;
mod endpoint;
mod escape;
mod event;
mod filter;
mod hist;
mod hooks;
mod host;
mod kernel;
mod loader;
mod mapstats;
mod output;
mod paws;
mod pcapng;
mod pipeline;
mod progstats;
mod record;
mod sink;
mod summary;
mod syn;
mod tracefs;

use std::process::ExitCode;

use anyhow::Result;
use clap::Parser as _;
use tcptrace_common::Config;

use crate::commands::{live, replay, Cli, Command};

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

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

fn run_live(args: commands::LiveArgs) -> Result<()> {
    runtime().and_then(|rt| rt.block_on(live::run(args)))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = match cli.verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level)).init();
    let result = match cli.command {
        Some(Command::Check { attach, json }) => check(attach, json),
        Some(Command::Diagnose(d)) => d.run(run_live),
        Some(Command::Record(args)) => {
            runtime().and_then(|rt| rt.block_on(live::session(&args.live, Some(&args))))
        }
        Some(Command::Replay(args)) => replay::run(args),
        None => run_live(cli.live),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tcptrace: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
