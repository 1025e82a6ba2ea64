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
mod selftest;
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
        Some(Command::Selftest(args)) => commands::selftest::run(args),
        None => commands::live::run(cli.live),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of stdout went away (`| head`): nothing more to say.
        Err(e) if broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tcptrace: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn broken_pipe(e: &anyhow::Error) -> bool {
    use std::io::ErrorKind::BrokenPipe;
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == BrokenPipe)
            || c.downcast_ref::<serde_json::Error>()
                .is_some_and(|j| j.io_error_kind() == Some(BrokenPipe))
    })
}

#[cfg(test)]
mod tests {
    use anyhow::Context as _;

    #[test]
    fn a_reader_gone_is_no_error_and_a_full_disk_is() {
        let io = |kind| Err::<(), _>(std::io::Error::from(kind));
        let gone = io(std::io::ErrorKind::BrokenPipe).context("writing JSON");
        assert!(super::broken_pipe(&gone.unwrap_err()));
        let full = io(std::io::ErrorKind::StorageFull).context("writing JSON");
        assert!(!super::broken_pipe(&full.unwrap_err()));
    }
}
