//! `tcptrace daemon`: the live run for every host, all the time. No
//! per-event output: findings as JSON lines when they appear or change
//! (stdout or `--findings-log`), metrics (`--metrics`), the flight
//! recorder (`--record-dir`, segments with retention), a status line on
//! SIGUSR1 and `/healthz` details, and the capabilities not needed after
//! attach dropped. docs/daemon.md describes it.

use std::{path::PathBuf, time::Duration};

use anyhow::{bail, Result};
use clap::{ArgAction, Args};

use super::{
    live::{self, Daemon},
    record::parse_size,
};
use crate::{
    args::{parse_duration, LiveArgs},
    record::{retention::Retention, segments::SegmentConfig},
};

#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// Append the findings (JSON lines) to FILE instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub findings_log: Option<PathBuf>,
    /// Flight recorder: write the event stream to segment files in DIR
    /// (made if missing, mode 0700).
    #[arg(long, value_name = "DIR")]
    pub record_dir: Option<PathBuf>,
    /// Start a new segment before one passes SIZE (k, M, G).
    #[arg(long, value_name = "SIZE", value_parser = parse_size, default_value = "64M",
          requires = "record_dir")]
    pub segment_size: u64,
    /// Start a new segment when one is this old.
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true,
          value_parser = parse_duration, default_value = "10m", requires = "record_dir")]
    pub segment_time: Duration,
    /// Remove segments whose events are older than this.
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true,
          value_parser = parse_duration, default_value = "24h", requires = "record_dir")]
    pub keep: Duration,
    /// Keep the segments under SIZE on disk, oldest removed first.
    #[arg(long, value_name = "SIZE", value_parser = parse_size, default_value = "2G",
          requires = "record_dir")]
    pub max_disk: u64,
    /// After attach, drop every capability not needed any more.
    #[arg(long, value_name = "BOOL", default_value_t = true, action = ArgAction::Set)]
    pub drop_caps: bool,
    #[command(flatten)]
    pub live: LiveArgs,
}

impl DaemonArgs {
    /// What the live run does as the daemon; bounds that cannot hold are
    /// one-line errors.
    fn daemon(&self) -> Result<Daemon> {
        if self.segment_size > self.max_disk / 2 {
            bail!(
                "--segment-size {} must be at most half of --max-disk {}: the segment being \
                 written and the ones kept must fit together",
                self.segment_size,
                self.max_disk
            );
        }
        if self.segment_time < Duration::from_secs(1) {
            bail!("--segment-time must be at least 1s");
        }
        if self.keep < self.segment_time {
            bail!("--keep must be at least --segment-time");
        }
        Ok(Daemon {
            findings_log: self.findings_log.clone(),
            segments: self.record_dir.as_ref().map(|dir| SegmentConfig {
                dir: dir.clone(),
                segment_size: self.segment_size,
                segment_time: self.segment_time,
                retention: Retention {
                    keep: Some(self.keep),
                    max_disk: Some(self.max_disk),
                },
            }),
            drop_caps: self.drop_caps,
        })
    }
}

pub fn run(args: DaemonArgs) -> Result<()> {
    let daemon = args.daemon()?;
    crate::privilege::check_start()?;
    live::runtime()
        .and_then(|rt| rt.block_on(live::session(&args.live, live::Mode::Daemon(&daemon))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::{Cli, Command};
    use clap::Parser as _;

    fn parse(args: &[&str]) -> Result<DaemonArgs, String> {
        let cli = Cli::try_parse_from(["tcptrace", "daemon"].iter().chain(args))
            .map_err(|e| e.to_string().lines().next().unwrap_or_default().to_owned())?;
        match cli.command {
            Some(Command::Daemon(d)) => Ok(d),
            _ => Err("not the daemon".into()),
        }
    }

    #[test]
    fn defaults_and_flags() {
        let d = parse(&[]).unwrap();
        assert!(d.drop_caps && d.record_dir.is_none() && d.findings_log.is_none());
        let cfg = d.daemon().unwrap();
        assert!(cfg.segments.is_none());
        let d = parse(&[
            "--record-dir",
            "/var/lib/tcptrace",
            "--segment-size",
            "1M",
            "--segment-time",
            "30s",
            "--keep",
            "2h",
            "--max-disk",
            "10M",
            "--drop-caps",
            "false",
            "--metrics",
            "9100",
        ])
        .unwrap();
        assert!(!d.drop_caps);
        let seg = d.daemon().unwrap().segments.unwrap();
        assert_eq!(
            seg,
            SegmentConfig {
                dir: "/var/lib/tcptrace".into(),
                segment_size: 1 << 20,
                segment_time: Duration::from_secs(30),
                retention: Retention {
                    keep: Some(Duration::from_secs(7200)),
                    max_disk: Some(10 << 20),
                },
            }
        );
    }

    #[test]
    fn bad_flags_are_one_line_errors() {
        let err = |args: &[&str]| match parse(args) {
            Ok(d) => d.daemon().err().map(|e| e.to_string()).unwrap_or_default(),
            Err(e) => e,
        };
        assert_eq!(
            err(&[
                "--record-dir",
                "d",
                "--segment-size",
                "8M",
                "--max-disk",
                "10M"
            ]),
            "--segment-size 8388608 must be at most half of --max-disk 10485760: the segment \
             being written and the ones kept must fit together"
        );
        assert_eq!(
            err(&["--segment-size", "1M"]),
            "error: the following required arguments were not provided:"
        );
        assert_eq!(
            err(&["--record-dir", "d", "--max-disk", "lots"]),
            "error: invalid value 'lots' for '--max-disk <SIZE>': \"lots\": use a number of \
             bytes with an optional k, M or G"
        );
        assert_eq!(
            err(&["--record-dir", "d", "--keep", "-1h"]),
            "error: invalid value '-1h' for '--keep <DURATION>': durations cannot be negative: \
             a duration is a positive number with a unit (us, ms, s, m, h), e.g. 30s or 500ms"
        );
        assert_eq!(
            err(&["--record-dir", "d", "--segment-time", "500ms"]),
            "--segment-time must be at least 1s"
        );
        assert_eq!(
            err(&["--drop-caps", "maybe"]),
            "error: invalid value 'maybe' for '--drop-caps <BOOL>'"
        );
    }
}
