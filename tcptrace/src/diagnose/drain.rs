//! Who drains a listener's accept queue, and why it may not: every process
//! holding the listening socket (the one that called listen() is not always
//! the one that accepts: nginx's master listens, its workers accept), each
//! with its open files against RLIMIT_NOFILE and its scheduler state. The
//! verdict names the holder at its fd limit (accept() fails with EMFILE) or
//! the stopped one (SIGSTOP: it runs no code), else the listener's owner.
//! Shared by the event-based and counter-based accept-queue findings.

use serde_json::Value;

use super::{evidence::Evidence, listen::CLOSE_WAIT_PILE, Context};
use crate::host::ProcessInfo;

/// Holders listed in the evidence (the verdict looks at all of them).
const MAX_LISTED: usize = 16;
/// Holders named one by one in advice.
const MAX_NAMED: usize = 4;

/// A process and what was read of it.
pub type Proc<'a> = (u32, &'a ProcessInfo);

/// What the holders of one listener say about its drain.
#[derive(Debug, Default)]
pub struct Verdict<'a> {
    /// Every holder read (and the owner), lowest pid first.
    pub holders: Vec<Proc<'a>>,
    pub at_limit: Vec<Proc<'a>>,
    pub stopped: Vec<Proc<'a>>,
}

impl<'a> Verdict<'a> {
    /// The holders of the listener on `port` in `netns`; without a scan of
    /// its holders (older snapshots), `owner` (the event's pid or the
    /// recorded owner) stands for them. An owner that no longer holds the
    /// socket is not a holder.
    pub fn read(ctx: &Context<'a>, netns: u64, port: u16, owner: Option<u32>) -> Self {
        let h = &ctx.host;
        let mut pids: Vec<u32> = h.listener_holders(netns, port).to_vec();
        if pids.is_empty() {
            pids.extend(owner);
        }
        pids.sort_unstable();
        pids.dedup();
        let holders: Vec<Proc<'a>> = pids
            .into_iter()
            .filter_map(|p| Some((p, h.process(p)?)))
            .collect();
        let at_limit = holders
            .iter()
            .copied()
            .filter(|(_, i)| i.at_fd_limit())
            .collect();
        let stopped = holders
            .iter()
            .copied()
            .filter(|(_, i)| i.stopped())
            .collect();
        Self {
            holders,
            at_limit,
            stopped,
        }
    }

    /// The process the verdict is about: at its fd limit, else stopped,
    /// else the owner, else the first holder.
    pub fn primary(&self, owner: Option<u32>) -> Option<Proc<'a>> {
        self.at_limit
            .first()
            .or_else(|| self.stopped.first())
            .or_else(|| self.holders.iter().find(|(p, _)| Some(*p) == owner))
            .or_else(|| self.holders.first())
            .copied()
    }

    /// Whether the cause was found in a holder.
    pub fn explained(&self) -> bool {
        !self.at_limit.is_empty() || !self.stopped.is_empty()
    }

    /// The clause a finding's summary ends with ("" when unexplained).
    pub fn summary_clause(&self) -> String {
        if !self.at_limit.is_empty() {
            format!(
                "{} out of file descriptors (accept() fails with EMFILE)",
                is_are(&names(&self.at_limit))
            )
        } else if !self.stopped.is_empty() {
            format!(
                "{}, which {} the listening socket, {} stopped",
                names(&self.stopped),
                if self.stopped.len() == 1 {
                    "holds"
                } else {
                    "hold"
                },
                if self.stopped.len() == 1 { "is" } else { "are" },
            )
        } else {
            String::new()
        }
    }
}

/// `comm (pid N)`. comm is data from the traced system (any process may
/// set it): control characters are escaped so it cannot forge a line.
pub fn who(pid: u32, comm: &str) -> String {
    if comm.is_empty() {
        return format!("pid {pid}");
    }
    let safe: String = comm
        .chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect();
    format!("{safe} (pid {pid})")
}

fn names(ps: &[Proc<'_>]) -> String {
    let mut v: Vec<String> = ps
        .iter()
        .take(MAX_NAMED)
        .map(|(p, i)| who(*p, &i.comm))
        .collect();
    if ps.len() > MAX_NAMED {
        v.push(format!("{} more", ps.len() - MAX_NAMED));
    }
    v.join(", ")
}

fn is_are(names: &str) -> String {
    if names.contains(", ") {
        format!("{names} are")
    } else {
        format!("{names} is")
    }
}

fn process_json(pid: u32, p: &ProcessInfo) -> Value {
    let mut e = Evidence::default();
    e.set("pid", pid)
        .set("comm", p.comm.clone())
        .opt("open_fds", p.open_fds)
        .opt("nofile_soft", p.nofile_soft)
        .opt("nofile_hard", p.nofile_hard)
        .set("at_fd_limit", p.at_fd_limit())
        .opt("state", p.state.clone());
    Value::Object(e.0)
}

/// Evidence and advice about the drain of the listener on `port`: the
/// primary process's fields at the top (`pid`, `comm`, `open_fds`,
/// `nofile_soft`, `nofile_hard`, `at_fd_limit`), every holder under
/// `holders`, CLOSE_WAIT pile-up. Returns whether the cause was found.
pub fn advise(
    e: &mut Evidence,
    advice: &mut Vec<String>,
    v: &Verdict<'_>,
    owner: Option<(u32, Option<String>)>,
    port: u16,
    close_wait: Option<u64>,
) -> bool {
    let owner_pid = owner.as_ref().map(|o| o.0);
    let primary = v.primary(owner_pid);
    let who_ = match (primary, &owner) {
        (Some((p, i)), _) => who(p, &i.comm),
        (None, Some((p, c))) => who(*p, c.as_deref().unwrap_or("")),
        (None, None) => "the listening process".into(),
    };
    match primary {
        Some((pid, p)) => {
            e.set("pid", pid)
                .set("comm", p.comm.clone())
                .opt("open_fds", p.open_fds)
                .opt("nofile_soft", p.nofile_soft)
                .opt("nofile_hard", p.nofile_hard)
                .set("at_fd_limit", p.at_fd_limit())
                .opt("state", p.state.clone());
        }
        None => {
            if let Some((pid, comm)) = &owner {
                e.set("pid", *pid).opt("comm", comm.clone());
            }
        }
    }
    if !v.holders.is_empty() {
        let list: Vec<Value> = v
            .holders
            .iter()
            .take(MAX_LISTED)
            .map(|(pid, p)| process_json(*pid, p))
            .collect();
        e.set("holders", Value::Array(list))
            .set("holders_total", v.holders.len());
    }
    let others = |them: &[Proc<'_>]| -> String {
        let rest: Vec<Proc<'_>> = v
            .holders
            .iter()
            .copied()
            .filter(|(p, _)| !them.iter().any(|(q, _)| q == p))
            .collect();
        if rest.is_empty() {
            String::new()
        } else {
            format!(
                " It is not the only holder of the listening socket ({} also {} it): the limit and state that matter are those of the process that accepts, which may not be the one that called listen().",
                names(&rest),
                if rest.len() == 1 { "holds" } else { "hold" }
            )
        }
    };
    for (pid, p) in v.at_limit.iter().take(MAX_NAMED) {
        advice.push(format!(
            "{} has {} open files, its RLIMIT_NOFILE soft limit ({}): accept() fails with EMFILE, so it stops draining the accept queue although its threads look alive. Raise that process's limit (LimitNOFILE= in its systemd unit, ulimit -n, or the server's own setting such as nginx's worker_rlimit_nofile; hard limit {}) and look for leaked descriptors.{}",
            who(*pid, &p.comm),
            p.open_fds.unwrap_or(0),
            p.nofile_soft.unwrap_or(0),
            p.nofile_hard.map_or("unlimited".into(), |h| h.to_string()),
            others(&v.at_limit),
        ));
    }
    if !v.stopped.is_empty() {
        let pids: Vec<String> = v.stopped.iter().map(|(p, _)| p.to_string()).collect();
        advice.push(format!(
            "{} the listening socket but {} stopped (state T: SIGSTOP or SIGTSTP; t: a debugger): a stopped process runs no code and accepts nothing until resumed — `kill -CONT {}`, and find what stopped it.{}",
            if v.stopped.len() == 1 {
                format!("{} holds", names(&v.stopped))
            } else {
                format!("{} hold", names(&v.stopped))
            },
            if v.stopped.len() == 1 { "is" } else { "are" },
            pids.join(" "),
            others(&v.stopped),
        ));
    }
    if let Some(cw) = close_wait {
        e.set("close_wait_on_port", cw);
        if cw >= CLOSE_WAIT_PILE {
            advice.push(format!(
                "{cw} connections on port {port} are in CLOSE_WAIT: their peers closed but {who_} never called close() on them — it is stuck or leaking sockets (each one also holds a file descriptor)."
            ));
        }
    }
    v.explained()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(comm: &str, fds: u64, soft: u64, state: &str) -> ProcessInfo {
        ProcessInfo {
            comm: comm.into(),
            open_fds: Some(fds),
            nofile_soft: Some(soft),
            nofile_hard: Some(soft),
            state: Some(state.into()),
        }
    }

    #[test]
    fn the_holder_at_its_limit_is_the_verdict() {
        let master = p("nginx", 7, 20000, "S");
        let worker = p("nginx", 16, 16, "S");
        let v = Verdict {
            holders: vec![(10, &master), (11, &worker)],
            at_limit: vec![(11, &worker)],
            stopped: vec![],
        };
        assert_eq!(v.primary(Some(10)).map(|x| x.0), Some(11));
        let (mut e, mut a) = (Evidence::default(), Vec::new());
        assert!(advise(&mut e, &mut a, &v, Some((10, None)), 80, Some(0)));
        assert_eq!(e.0["pid"], 11);
        assert_eq!(e.0["at_fd_limit"], true);
        assert_eq!(e.0["holders"][0]["pid"], 10);
        assert_eq!(e.0["holders"][0]["at_fd_limit"], false);
        assert_eq!(e.0["holders"][1]["nofile_soft"], 16);
        assert_eq!(e.0["holders_total"], 2);
        assert_eq!(a.len(), 1, "{a:?}");
        assert!(
            a[0].starts_with("nginx (pid 11) has 16 open files, its RLIMIT_NOFILE soft limit (16)"),
            "{a:?}"
        );
        assert!(a[0].contains("nginx (pid 10) also holds it"), "{a:?}");
        assert_eq!(
            v.summary_clause(),
            "nginx (pid 11) is out of file descriptors (accept() fails with EMFILE)"
        );
    }

    #[test]
    fn comm_is_data() {
        assert_eq!(who(7, "evil\n- fix"), "evil\\n- fix (pid 7)");
        assert_eq!(who(7, ""), "pid 7");
        assert_eq!(who(7, "nginx"), "nginx (pid 7)");
    }

    #[test]
    fn a_stopped_holder_is_named() {
        let master = p("nginx", 7, 20000, "S");
        let worker = p("nginx", 9, 1024, "T");
        let v = Verdict {
            holders: vec![(10, &master), (11, &worker)],
            at_limit: vec![],
            stopped: vec![(11, &worker)],
        };
        let (mut e, mut a) = (Evidence::default(), Vec::new());
        assert!(advise(&mut e, &mut a, &v, None, 80, None));
        assert_eq!(e.0["pid"], 11);
        assert_eq!(e.0["state"], "T");
        assert!(
            a[0].starts_with("nginx (pid 11) holds the listening socket but is stopped"),
            "{a:?}"
        );
        assert!(a[0].contains("kill -CONT 11"), "{a:?}");
        assert_eq!(
            v.summary_clause(),
            "nginx (pid 11), which holds the listening socket, is stopped"
        );
        // Nobody at a limit or stopped: the owner, unexplained.
        let v = Verdict {
            holders: vec![(10, &master)],
            ..Verdict::default()
        };
        let (mut e, mut a) = (Evidence::default(), Vec::new());
        assert!(!advise(&mut e, &mut a, &v, Some((10, None)), 80, Some(12)));
        assert_eq!(e.0["pid"], 10);
        assert!(a[0].contains("12 connections on port 80 are in CLOSE_WAIT"));
        assert_eq!(v.summary_clause(), "");
    }
}
