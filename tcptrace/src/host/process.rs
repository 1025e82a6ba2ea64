//! One process as the rules see it: its name, open files against its
//! RLIMIT_NOFILE, and its scheduler state.

use std::{fs, path::Path};

use serde::{Deserialize, Serialize};

/// Open files and their limit for one process.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessInfo {
    pub comm: String,
    pub open_fds: Option<u64>,
    /// RLIMIT_NOFILE soft and hard limits; `None` for unlimited or unreadable.
    pub nofile_soft: Option<u64>,
    pub nofile_hard: Option<u64>,
    /// Scheduler state letter from /proc/PID/stat (R, S, D, T...).
    pub state: Option<String>,
}

impl ProcessInfo {
    /// True when the next open()/accept() fails with EMFILE.
    pub fn at_fd_limit(&self) -> bool {
        matches!((self.open_fds, self.nofile_soft), (Some(n), Some(l)) if n >= l)
    }

    /// True when stopped (T: SIGSTOP/SIGTSTP; t: a tracer): it runs no
    /// code, so it accepts nothing until resumed.
    pub fn stopped(&self) -> bool {
        matches!(self.state.as_deref(), Some("T" | "t"))
    }

    /// Reads `<proc>/PID/{comm,fd,limits,stat}`; `None` when the process
    /// is gone (no comm).
    pub fn read(proc: &Path, pid: u32) -> Option<Self> {
        let dir = proc.join(pid.to_string());
        let comm = fs::read_to_string(dir.join("comm")).ok()?;
        let open_fds = fs::read_dir(dir.join("fd"))
            .ok()
            .map(|rd| rd.filter_map(Result::ok).count() as u64);
        let (nofile_soft, nofile_hard) = fs::read_to_string(dir.join("limits"))
            .map(|t| parse_nofile(&t))
            .unwrap_or((None, None));
        let state = fs::read_to_string(dir.join("stat"))
            .ok()
            .and_then(|t| parse_stat_state(&t));
        Some(Self {
            comm: comm.trim().to_owned(),
            open_fds,
            nofile_soft,
            nofile_hard,
            state,
        })
    }
}

/// Soft and hard "Max open files" of /proc/PID/limits.
pub fn parse_nofile(limits: &str) -> (Option<u64>, Option<u64>) {
    limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .map(|rest| {
            let mut it = rest.split_whitespace().map(|v| v.parse::<u64>().ok());
            (it.next().flatten(), it.next().flatten())
        })
        .unwrap_or((None, None))
}

/// The scheduler state letter of `/proc/PID/stat` (R, S, D, T, t, Z...).
/// comm may hold spaces and parentheses: the state follows the last ')'.
pub fn parse_stat_state(stat: &str) -> Option<String> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let s = rest.split_whitespace().next()?;
    (s.len() == 1).then(|| s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_limits() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \nMax cpu time              unlimited            unlimited            seconds   \nMax open files            1024                 524288               files     \n";
        assert_eq!(parse_nofile(limits), (Some(1024), Some(524288)));
    }

    #[test]
    fn state_follows_the_last_parenthesis() {
        assert_eq!(
            parse_stat_state("42 (nginx) T 1 42 42 0 -1").as_deref(),
            Some("T")
        );
        assert_eq!(
            parse_stat_state("42 (a) b) (c) S 1 42").as_deref(),
            Some("S")
        );
        assert_eq!(parse_stat_state("42 (x"), None);
        assert_eq!(parse_stat_state("42 (x) "), None);
    }
}
