//! The command line: [`Cli`] and its subcommands, one module each. The
//! argument groups they share are in `args.rs`; `main.rs` dispatches.

pub mod check;
pub mod daemon;
pub mod diagnose;
pub mod live;
pub mod record;
pub mod replay;
pub mod report;
pub mod selftest;

use clap::{Parser, Subcommand};

use crate::args::LiveArgs;

/// Live eBPF tracer for the TCP failures counters only hint at.
#[derive(Debug, Parser)]
#[command(name = "tcptrace", version, about)]
pub struct Cli {
    /// More on stderr: -v adds the kernel programs' diagnostics (failed
    /// kernel reads, unexpected states), -vv and -vvv more detail. RUST_LOG,
    /// when set, takes precedence.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub live: LiveArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List every hook, the mechanism it would use on this kernel, or why it cannot attach.
    Check(check::CheckArgs),
    /// Watch for a while, then print only the findings: root cause and fix.
    Diagnose(diagnose::DiagnoseArgs),
    /// Run all the time: findings log, metrics, flight recorder, least privilege.
    Daemon(daemon::DaemonArgs),
    /// Trace live and record the events and kernel counters to a file.
    Record(record::RecordArgs),
    /// Print a recording as the live run printed it (text or JSON, filtered, as pcapng).
    Replay(replay::ReplayArgs),
    /// Write a recording as one self-contained HTML incident report.
    Report(report::ReportArgs),
    /// Prove on this kernel that every hook sees what the kernel does (reproductions in throwaway namespaces).
    Selftest(selftest::SelftestArgs),
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{
        commands::check::CheckArgs,
        hooks::{AttachMode, HookArgs},
    };
    use clap::CommandFactory as _;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("tcptrace").chain(args.iter().copied()))
    }

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults() {
        let cli = parse(&[]).unwrap();
        assert!(cli.command.is_none());
        assert!(!cli.live.json);
        assert_eq!(cli.live.interval, Duration::from_secs(1));
        assert_eq!(cli.live.min_latency, Duration::ZERO);
        assert_eq!(cli.live.duration, None);
        assert_eq!(cli.live.hooks, HookArgs::default());
    }

    #[test]
    fn live_flags() {
        let cli = parse(&[
            "--json",
            "--interval",
            "250ms",
            "--duration",
            "2m",
            "--min-latency",
            "10us",
            "--attach",
            "kprobe",
            "--handshake-state-changes",
        ])
        .unwrap();
        assert!(cli.live.json);
        assert_eq!(cli.live.interval, Duration::from_millis(250));
        assert_eq!(cli.live.duration, Some(Duration::from_secs(120)));
        assert_eq!(cli.live.min_latency, Duration::from_micros(10));
        assert_eq!(
            cli.live.hooks,
            HookArgs {
                attach: AttachMode::Kprobe,
                handshake_state_changes: true
            }
        );
    }

    #[test]
    fn check_subcommand() {
        let cli = parse(&["check", "--attach", "fentry"]).unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::Check(CheckArgs {
                hooks: HookArgs {
                    attach: AttachMode::Fentry,
                    handshake_state_changes: false
                },
                json: false
            }))
        ));
    }

    #[test]
    fn selftest_subcommand() {
        let cli = parse(&["selftest", "--attach", "kprobe", "--json"]).unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::Selftest(selftest::SelftestArgs {
                hooks: HookArgs {
                    attach: AttachMode::Kprobe,
                    handshake_state_changes: false
                },
                json: true
            }))
        ));
        assert!(parse(&["selftest", "--attach", "bogus"]).is_err());
    }

    #[test]
    fn report_subcommand() {
        let cli = parse(&["report", "a.rec", "b.rec", "-o", "r.html", "--since", "30s"]).unwrap();
        let Some(Command::Report(r)) = cli.command else {
            panic!("not report");
        };
        assert_eq!(r.files.len(), 2);
        assert_eq!(r.output, std::path::PathBuf::from("r.html"));
        assert_eq!(r.events_per_kind, 20);
        assert!(r.since.is_some() && r.until.is_none());
        assert!(parse(&["report", "a.rec"]).is_err(), "-o is required");
    }

    /// The first line of clap's error, which is all it prints besides usage.
    fn first_line(args: &[&str]) -> String {
        let err = parse(args).unwrap_err().to_string();
        err.lines().next().unwrap_or_default().to_owned()
    }

    #[test]
    fn negative_and_invalid_durations_say_what_a_duration_is() {
        assert_eq!(
            first_line(&["--duration", "-5s"]),
            "error: invalid value '-5s' for '--duration <DURATION>': durations cannot be \
             negative: a duration is a positive number with a unit (us, ms, s, m, h), \
             e.g. 30s or 500ms"
        );
        assert_eq!(
            first_line(&["--interval", "-1"]),
            "error: invalid value '-1' for '--interval <INTERVAL>': durations cannot be \
             negative: a duration is a positive number with a unit (us, ms, s, m, h), \
             e.g. 30s or 500ms"
        );
        assert_eq!(
            first_line(&["--min-latency", "5"]),
            "error: invalid value '5' for '--min-latency <MIN_LATENCY>': a duration is a \
             positive number with a unit (us, ms, s, m, h), e.g. 30s or 500ms"
        );
        assert_eq!(
            first_line(&["diagnose", "--duration", "-10s"]),
            "error: invalid value '-10s' for '--duration <DURATION>': durations cannot be \
             negative: a duration is a positive number with a unit (us, ms, s, m, h), \
             e.g. 30s or 500ms"
        );
        assert_eq!(
            first_line(&["record", "-o", "f", "--duration", "-5s"]),
            "error: invalid value '-5s' for '--duration <DURATION>': durations cannot be \
             negative: a duration is a positive number with a unit (us, ms, s, m, h), \
             e.g. 30s or 500ms"
        );
        // A flag where the value belongs is not called negative.
        assert_eq!(
            first_line(&["--duration", "--json"]),
            "error: invalid value '--json' for '--duration <DURATION>': a duration is a \
             positive number with a unit (us, ms, s, m, h), e.g. 30s or 500ms"
        );
        // Zero still means "off" for --interval, and other values parse.
        assert_eq!(
            parse(&["--interval", "0"]).unwrap().live.interval,
            Duration::ZERO
        );
        assert_eq!(
            parse(&["--duration", "1h"]).unwrap().live.duration,
            Some(Duration::from_secs(3600))
        );
    }

    #[test]
    fn bad_values_are_rejected_with_a_hint() {
        let err = parse(&["--interval", "soon"]).unwrap_err().to_string();
        assert!(err.contains("500ms"), "{err}");
        assert!(parse(&["--attach", "uprobe"]).is_err());
        assert!(parse(&["--bogus"]).is_err());
    }
}
