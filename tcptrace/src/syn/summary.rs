//! The SYN part of the summary: per listener, the event stream joined with
//! the kernel's counters.

use std::{collections::BTreeMap, fmt::Write as _, net::IpAddr};

use serde::{Deserialize, Serialize};
use tcptrace_common::syn::{ListenerCounters, SynDropCause};

use super::maps::{ListenerId, SynKernelCounters};
use crate::{
    endpoint::endpoint,
    escape::Escaped,
    event::{Detail, Event},
};

/// Per listener, from the event stream.
#[derive(Clone, Debug, Default)]
pub struct ListenerStats {
    pub pid: u32,
    pub comm: String,
    pub drops: BTreeMap<&'static str, u64>,
    pub overflows: u64,
    pub synack_retransmits: u64,
    pub retransmits_after_overflow: u64,
    /// Queue state at the newest event.
    pub last_ns: u64,
    pub backlog: u32,
    pub backlog_max: u32,
    pub syn_queue: u32,
}

#[derive(Clone, Debug, Default)]
pub struct SynSummary {
    pub listeners: BTreeMap<ListenerId, ListenerStats>,
}

impl SynSummary {
    pub fn observe(&mut self, ev: &Event) {
        let Detail::Syn(d) = &ev.detail else {
            return;
        };
        let id = ListenerId {
            netns: ev.netns,
            addr: d.listen_addr,
            port: ev.endpoints.sport,
        };
        let s = self.listeners.entry(id).or_default();
        if ev.pid != 0 {
            s.pid = ev.pid;
            s.comm.clone_from(&ev.comm);
        }
        match ev.kind.name() {
            "syn_drop" => {
                *s.drops
                    .entry(d.cause.map(SynDropCause::name).unwrap_or("other"))
                    .or_default() += 1;
            }
            "listen_overflow" => s.overflows += 1,
            _ => {
                s.synack_retransmits += 1;
                s.retransmits_after_overflow += u64::from(d.after_overflow);
            }
        }
        if ev.ts_ns >= s.last_ns {
            s.last_ns = ev.ts_ns;
            s.backlog = d.backlog;
            s.backlog_max = d.backlog_max;
            s.syn_queue = d.syn_queue;
        }
    }

    /// Event-stream stats and kernel counters joined per listener.
    fn rows(&self, k: &SynKernelCounters) -> Vec<(ListenerId, ListenerStats, ListenerCounters)> {
        let mut rows: BTreeMap<ListenerId, (ListenerStats, ListenerCounters)> = self
            .listeners
            .iter()
            .map(|(id, s)| (id.clone(), (s.clone(), ListenerCounters::default())))
            .collect();
        for (id, c) in &k.listeners {
            let row = rows.entry(id.clone()).or_default();
            row.1 = *c;
            // The newer of the two queue snapshots wins.
            if c.last_ns > row.0.last_ns {
                row.0.last_ns = c.last_ns;
                row.0.backlog = c.backlog;
                row.0.backlog_max = c.backlog_max;
                row.0.syn_queue = c.syn_queue;
            }
        }
        rows.into_iter().map(|(id, (s, c))| (id, s, c)).collect()
    }

    pub fn render_text(&self, k: &SynKernelCounters, out: &mut String) {
        let total: u64 = k.answered.iter().sum();
        if total == 0 && self.listeners.is_empty() {
            return;
        }
        let _ = writeln!(
            out,
            "SYNs answered: normal {} cookie {} fastopen {}",
            k.answered[0], k.answered[1], k.answered[2]
        );
        for (id, s, c) in self.rows(k) {
            let owner = if s.pid != 0 {
                format!("{}[{}]", Escaped(&s.comm), s.pid)
            } else {
                "?".into()
            };
            let drops: Vec<String> = s.drops.iter().map(|(c, n)| format!("{c}={n}")).collect();
            let _ = writeln!(
                out,
                "  listener {} netns {} {owner}: drops {} overflows {} synack_retransmits {} ({} after overflow) answered normal {} cookie {} backlog {}/{} synq {}",
                endpoint(id.addr, id.port),
                id.netns,
                if drops.is_empty() { "0".into() } else { drops.join(" ") },
                s.overflows,
                s.synack_retransmits,
                s.retransmits_after_overflow,
                c.answered_normal,
                c.answered_cookie,
                s.backlog,
                s.backlog_max,
                s.syn_queue
            );
        }
    }

    /// The summary's `syn_answered` and `listeners`.
    pub fn to_json(&self, k: &SynKernelCounters) -> (Answered, Vec<ListenerJson>) {
        let answered = Answered {
            normal: k.answered[0],
            cookie: k.answered[1],
            fastopen: k.answered[2],
        };
        let listeners = self
            .rows(k)
            .into_iter()
            .map(|(id, s, c)| ListenerJson {
                netns: Some(id.netns),
                addr: Some(id.addr),
                port: Some(id.port),
                pid: s.pid,
                comm: s.comm,
                syn_drops: SynDrops {
                    accept_queue_full: s.drops.get("accept_queue_full").copied().unwrap_or(0),
                    syn_queue_full: s.drops.get("syn_queue_full").copied().unwrap_or(0),
                    other: s.drops.get("other").copied().unwrap_or(0),
                },
                listen_overflows: s.overflows,
                synack_retransmits: s.synack_retransmits,
                synack_retransmits_after_overflow: s.retransmits_after_overflow,
                answered: Answered {
                    normal: c.answered_normal,
                    cookie: c.answered_cookie,
                    fastopen: c.answered_fastopen,
                },
                backlog: s.backlog,
                backlog_max: s.backlog_max,
                syn_queue: s.syn_queue,
            })
            .collect();
        (answered, listeners)
    }
}

/// SYNs answered, by how (the summary's `syn_answered`, and per listener).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Answered {
    pub cookie: u64,
    pub fastopen: u64,
    pub normal: u64,
}

/// SYNs a listener dropped, by cause.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SynDrops {
    pub accept_queue_full: u64,
    pub other: u64,
    pub syn_queue_full: u64,
}

/// One listener in the summary's `listeners` (docs/events-syn.md). When
/// read from a saved stream, fields it lacks are `None` or 0.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ListenerJson {
    pub addr: Option<IpAddr>,
    pub answered: Answered,
    pub backlog: u32,
    pub backlog_max: u32,
    pub comm: String,
    pub listen_overflows: u64,
    pub netns: Option<u32>,
    pub pid: u32,
    pub port: Option<u16>,
    pub syn_drops: SynDrops,
    pub syn_queue: u32,
    pub synack_retransmits: u64,
    pub synack_retransmits_after_overflow: u64,
}

#[cfg(test)]
mod tests {
    use std::net::Ipv6Addr;

    use serde_json::json;
    use tcptrace_common::{syn::flags, EventKind};

    use super::*;
    use crate::syn::tests::raw_syn;

    #[test]
    fn summary_joins_events_and_kernel_counters() {
        let mut s = SynSummary::default();
        for (cause, n) in [(1u8, 3), (2, 1)] {
            for _ in 0..n {
                s.observe(
                    &crate::event::decode(&raw_syn(EventKind::SynDrop, cause, flags::OWNER_KNOWN))
                        .unwrap(),
                );
            }
        }
        s.observe(&crate::event::decode(&raw_syn(EventKind::ListenOverflow, 0, 0)).unwrap());
        s.observe(
            &crate::event::decode(&raw_syn(
                EventKind::SynackRetransmit,
                0,
                flags::AFTER_OVERFLOW,
            ))
            .unwrap(),
        );
        let k = SynKernelCounters {
            answered: [9, 2, 0],
            listeners: vec![(
                ListenerId {
                    netns: 4026532000,
                    addr: IpAddr::V6(Ipv6Addr::UNSPECIFIED),
                    port: 8080,
                },
                ListenerCounters {
                    answered_normal: 9,
                    answered_cookie: 2,
                    last_ns: 1,
                    ..ListenerCounters::default()
                },
            )],
        };
        let (answered, listeners) = s.to_json(&k);
        let (answered, listeners) = (json!(answered), json!(listeners));
        assert_eq!(answered["normal"], 9);
        assert_eq!(listeners.as_array().unwrap().len(), 1, "{listeners}");
        let l = &listeners[0];
        assert_eq!(l["addr"], "::");
        assert_eq!(l["syn_drops"]["accept_queue_full"], 3);
        assert_eq!(l["syn_drops"]["syn_queue_full"], 1);
        assert_eq!(l["listen_overflows"], 1);
        assert_eq!(l["synack_retransmits_after_overflow"], 1);
        assert_eq!(l["answered"]["cookie"], 2);
        assert_eq!(
            (l["backlog"].as_u64(), l["backlog_max"].as_u64()),
            (Some(5), Some(4))
        );
        assert_eq!(l["comm"], "nginx");
        let mut text = String::new();
        s.render_text(&k, &mut text);
        assert!(text.contains("listener [::]:8080"), "{text}");
        assert!(
            text.contains("accept_queue_full=3 syn_queue_full=1"),
            "{text}"
        );
    }

    #[test]
    fn listener_owner_names_are_escaped() {
        let mut ev = crate::event::decode(&raw_syn(EventKind::ListenOverflow, 0, 0)).unwrap();
        ev.comm = "srv\x1b[2J\u{9b}".into();
        let mut s = SynSummary::default();
        s.observe(&ev);
        let mut text = String::new();
        s.render_text(&SynKernelCounters::default(), &mut text);
        assert!(text.contains(r" srv\x1b[2J\u{9b}[7]: "), "{text}");
        assert!(
            !text.trim_end().chars().any(|c| c.is_control() && c != '\n'),
            "{text:?}"
        );
        let (_, listeners) = s.to_json(&SynKernelCounters::default());
        let listeners = json!(listeners);
        assert_eq!(listeners[0]["comm"], "srv\x1b[2J\u{9b}");
    }
}
