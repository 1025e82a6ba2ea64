//! `tcptrace record`: the live run, with every event and the kernel
//! counters written to a recording file.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::live::{self, Recording};
use crate::args::LiveArgs;

#[derive(Debug, Args)]
pub struct RecordArgs {
    /// Recording file to write (mode 0600: it holds real addresses).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: PathBuf,
    /// Keep each recording file under SIZE bytes (suffixes k, M, G: powers of
    /// 1024). Without --rotate, recording stops when FILE is full.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_size: Option<u64>,
    /// With --max-size: when FILE is full, rename it FILE.1 (FILE.1 to FILE.2,
    /// …) and start a new FILE, keeping at most N older files.
    #[arg(long, value_name = "N", requires = "max_size",
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub rotate: Option<u32>,
    /// Also write the packets of events that carry them to a pcapng file.
    #[arg(long, value_name = "FILE")]
    pub pcap: Option<PathBuf>,
    /// Also print the live view (events, periodic summaries) on stdout;
    /// --json implies it.
    #[arg(long)]
    pub print: bool,
    #[command(flatten)]
    pub live: LiveArgs,
}

/// "10M", "512k", "1G", "4096": bytes, suffixes are powers of 1024.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits);
    let num: u64 = num
        .parse()
        .map_err(|_| format!("{s:?}: use a number of bytes with an optional k, M or G"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => return Err(format!("{s:?}: unknown unit (use k, M or G)")),
    };
    let size = num
        .checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))?;
    if size < 64 << 10 {
        return Err(format!("{s:?}: --max-size must be at least 64k"));
    }
    Ok(size)
}

pub fn run(args: RecordArgs) -> Result<()> {
    let recording = Recording {
        output: &args.output,
        max_size: args.max_size,
        rotate: args.rotate.unwrap_or(0),
        pcap: args.pcap.as_deref(),
        print: args.print,
    };
    live::runtime()
        .and_then(|rt| rt.block_on(live::session(&args.live, live::Mode::Record(&recording))))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("10M").unwrap(), 10 << 20);
        assert_eq!(parse_size("512k").unwrap(), 512 << 10);
        assert_eq!(parse_size("1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_size("100000").unwrap(), 100_000);
        assert!(parse_size("10").unwrap_err().contains("at least"));
        assert!(parse_size("ten").is_err());
        assert!(parse_size("5x").is_err());
        assert!(parse_size("99999999999999G").is_err());
    }

    #[test]
    fn record_and_replay_command_lines() {
        use crate::commands::{replay::TimeArg, Cli, Command};
        use clap::Parser as _;
        let cli = Cli::try_parse_from([
            "tcptrace",
            "record",
            "-o",
            "run.rec",
            "--max-size",
            "10M",
            "--rotate",
            "3",
            "--json",
            "--interval",
            "0",
            "--pcap",
            "run.pcapng",
        ])
        .unwrap();
        let Some(Command::Record(r)) = cli.command else {
            panic!("not a record command")
        };
        assert_eq!(r.output, PathBuf::from("run.rec"));
        assert_eq!((r.max_size, r.rotate), (Some(10 << 20), Some(3)));
        assert!(r.live.json && !r.print);
        assert_eq!(r.live.interval, Duration::ZERO);
        assert_eq!(r.pcap, Some(PathBuf::from("run.pcapng")));
        let err = Cli::try_parse_from(["tcptrace", "record", "-o", "f", "--rotate", "2"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("--max-size"), "{err}");
        assert!(Cli::try_parse_from(["tcptrace", "record"]).is_err());

        let cli = Cli::try_parse_from([
            "tcptrace",
            "replay",
            "a.rec.1",
            "a.rec",
            "--json",
            "--since",
            "30s",
            "--until",
            "2024-05-01T10:00:00Z",
            "--pcap",
            "out.pcapng",
            "--port",
            "80",
        ])
        .unwrap();
        let Some(Command::Replay(r)) = cli.command else {
            panic!("not a replay command")
        };
        assert_eq!(r.files, [PathBuf::from("a.rec.1"), PathBuf::from("a.rec")]);
        assert!(r.json && !r.info);
        assert_eq!(r.since, Some(TimeArg::After(Duration::from_secs(30))));
        assert!(matches!(r.until, Some(TimeArg::Wall(_))));
        assert_eq!(r.filter.port, Some(80));
        assert!(Cli::try_parse_from(["tcptrace", "replay"]).is_err());
        assert!(Cli::try_parse_from(["tcptrace", "replay", "f", "--since", "soon"]).is_err());
        let err = Cli::try_parse_from(["tcptrace", "replay", "f", "--until", "-5s"])
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(
                "error: invalid value '-5s' for '--until <T>': times cannot be negative"
            ),
            "{err}"
        );
    }
}
