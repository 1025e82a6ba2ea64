//! tcptrace: live eBPF tracer for TCP failures. This file parses the
//! command line and hands it to the command's module (`commands/`).

mod args;
mod bench_flood;
mod btf;
mod commands;
mod connect;
mod container;
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
mod metrics;
mod output;
mod paws;
mod pcapng;
mod pipeline;
mod privilege;
mod progstats;
mod record;
mod report;
mod sink;
mod summary;
mod syn;
mod tracefs;

use std::process::ExitCode;

use clap::Parser as _;

use crate::commands::{Cli, Command};

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
        Some(Command::Check(args)) => commands::check::run(args),
        Some(Command::Daemon(args)) => commands::daemon::run(args),
        Some(Command::Diagnose(args)) => commands::diagnose::run(args),
        Some(Command::Record(args)) => commands::record::run(args),
        Some(Command::Replay(args)) => commands::replay::run(args),
        Some(Command::Report(args)) => commands::report::run(args),
        None => commands::live::run(cli.live),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tcptrace: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
