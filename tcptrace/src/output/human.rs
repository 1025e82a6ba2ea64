//! One aligned line per event for a person at a terminal, and the
//! summary and findings as text.

use std::io::{IsTerminal as _, Write};

use anyhow::Result;

use crate::{
    diagnose::render_text,
    escape::Escaped,
    event::{json::wall_time, Columns, Event},
    hist::fmt_ns,
    sink::{Sink, SummaryStep},
};

/// The text output: the column header, one line per event, and every
/// summary followed by its findings.
pub struct Text<W: Write> {
    out: W,
    human: Human,
    /// Print events (the summaries print regardless).
    show_events: bool,
}

impl<W: Write> Text<W> {
    /// Prints the column header when events are shown.
    pub fn new(mut out: W, show_events: bool) -> Result<Self> {
        if show_events {
            writeln!(out, "{HEADER}")?;
        }
        out.flush()?;
        Ok(Self {
            out,
            human: Human::new(),
            show_events,
        })
    }
}

impl<W: Write> Sink for Text<W> {
    fn event(&mut self, ev: &Event, boot_offset_ns: i64) -> Result<()> {
        if self.show_events {
            writeln!(self.out, "{}", self.human.line(ev, boot_offset_ns))?;
        }
        Ok(())
    }

    fn summary(&mut self, step: &mut SummaryStep<'_>) -> Result<()> {
        let title = if step.final_ {
            "final summary"
        } else {
            "summary"
        };
        write!(
            self.out,
            "{}",
            step.summary.render_text(step.counters, title)
        )?;
        if let Some(findings) = &step.findings {
            write!(self.out, "{}", render_text(findings))?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        self.out.flush()?;
        Ok(())
    }
}

pub struct Human {
    color: bool,
}

pub const HEADER: &str = "TIME             KIND              PID     COMM             LOCAL                  PEER                   LATENCY  RESULT";

impl Human {
    pub fn new() -> Self {
        Self {
            color: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        }
    }

    /// Without colours (tests, pipes).
    #[cfg(test)]
    pub fn plain() -> Self {
        Self { color: false }
    }

    pub fn line(&self, ev: &Event, boot_offset_ns: i64) -> String {
        let time = wall_time(ev.ts_ns, boot_offset_ns);
        // HH:MM:SS.micros from the RFC 3339 form.
        let clock = time.get(11..26).unwrap_or(&time);
        let e = &ev.endpoints;
        let local = endpoint(e.saddr, e.sport);
        let peer = endpoint(e.daddr, e.dport);
        let Columns {
            latency_ns: latency,
            mut result,
            failed,
        } = ev.detail.family().text(ev);
        if self.color && failed {
            result = format!("\x1b[31m{result}\x1b[0m");
        }
        let mut line = format!(
            "{clock:<16} {:<17} {:<7} {:<16} {local:<22} {peer:<22} {:>8} {result}",
            ev.kind.name(),
            ev.pid,
            Escaped(&ev.comm),
            latency.map(fmt_ns).unwrap_or_else(|| "-".into()),
        );
        // Where the task ran, after the result: lines of tasks outside
        // containers keep their form.
        if let Some(c) = &ev.container {
            line.push_str("  ");
            line.push_str(&c.text());
        }
        line
    }
}

/// Port 0 (not chosen yet) prints as `*`.
fn endpoint(addr: std::net::IpAddr, port: u16) -> String {
    crate::endpoint::Endpoint {
        addr: Some(addr),
        port: (port != 0).then_some(port),
    }
    .to_string()
}

#[cfg(test)]
mod tests {
    use tcptrace_common::EventKind;

    use super::*;
    use crate::event::{decode, tests::raw_latency};

    #[test]
    fn line_is_aligned_with_header() {
        let h = Human { color: false };
        let ev = decode(&raw_latency(EventKind::PortSearch, 2, 99)).unwrap();
        let line = h.line(&ev, 0);
        assert!(line.contains("port_search"), "{line}");
        assert!(line.contains("127.0.0.1:40000"), "{line}");
        assert!(line.ends_with("EADDRNOTAVAIL probed=7"), "{line}");
        assert_eq!(line.find("port_search"), HEADER.find("KIND"));
        assert_eq!(line.find("127.0.0.1"), HEADER.find("LOCAL"));
    }

    #[test]
    fn task_names_are_escaped() {
        let h = Human { color: false };
        let mut ev = decode(&raw_latency(EventKind::Connect, 2, 111)).unwrap();
        ev.comm = "\x1b[31mEVIL\x1b[2J\x07".into();
        let line = h.line(&ev, 0);
        assert!(line.contains(r" \x1b[31mEVIL\x1b[2J\x07 "), "{line}");
        assert!(!line.chars().any(char::is_control), "{line:?}");
        // Colour codes are still ours to send: only the name is escaped.
        let h = Human { color: true };
        let line = h.line(&ev, 0);
        assert!(line.contains(r"\x1b[31mEVIL"), "{line}");
        assert!(line.ends_with("\x1b[31mECONNREFUSED\x1b[0m"), "{line:?}");
    }

    #[test]
    fn container_follows_the_result_escaped() {
        use crate::container::{Container, ContainerId, Runtime};
        let h = Human { color: false };
        let mut ev = decode(&raw_latency(EventKind::Connect, 2, 111)).unwrap();
        let before = h.line(&ev, 0);
        ev.container = Some(std::sync::Arc::new(Container {
            runtime: Runtime::Docker,
            id: ContainerId::parse(&"0f".repeat(32)).unwrap(),
            pod_uid: None,
            pod: Some("\u{9b}2Jweb\n".into()),
            namespace: Some("prod".into()),
            name: Some("app".into()),
        }));
        let line = h.line(&ev, 0);
        assert_eq!(
            line,
            format!(r"{before}  pod=prod/\u{{9b}}2Jweb\n container=app id=0f0f0f0f0f0f")
        );
        assert!(!line.chars().any(char::is_control), "{line:?}");
    }

    #[test]
    fn paws_and_rst_lines() {
        use crate::event::tests::{raw_paws, raw_rst};
        use tcptrace_common::paws::{PawsSite, RstVerdict};
        let h = Human { color: false };
        let line = h.line(
            &decode(&raw_paws(PawsSite::TimeWait, [10, 0, 0, 3], 100, 5000, 0)).unwrap(),
            0,
        );
        assert!(
            line.ends_with("paws time_wait tsval=100 ts_recent=5000 behind=4900"),
            "{line}"
        );
        assert_eq!(line.find("paws_reject"), HEADER.find("KIND"));
        let line = h.line(
            &decode(&raw_rst(RstVerdict::ChallengeAck, 1100)).unwrap(),
            0,
        );
        assert!(
            line.ends_with("rst challenge_ack seq=1100 rcv_nxt=1000 wnd=500 dist=0"),
            "{line}"
        );
    }
}
