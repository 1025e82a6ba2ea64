//! Per-peer view of PAWS rejects and received RSTs for the summary, with an
//! estimate of how many timestamp clocks sit behind one peer address.
//!
//! Clock rule: every TSval seen from a peer address (the rejected `tsval` and
//! the `ts_recent` it lost to, which that address sent earlier) is placed on
//! a clock. A clock is the range of values seen on it. A value joins a clock
//! when it lies at most [`SLACK`] ticks below the range, or above it by no
//! more than [`SLACK`] plus the milliseconds elapsed since the range last
//! grew (RFC 7323 clocks tick at most once per millisecond). Anything else
//! starts a new clock. One host keeps one clock towards one server address
//! (Linux randomises the offset per address pair), so two or more clocks
//! behind a single address mean several hosts share it, as behind a NAT —
//! the case where a SYN from the second host fails PAWS against the first
//! host's TIME_WAIT socket. SYN-SENT rejects compare our own clock and are
//! left out.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
    net::IpAddr,
};

use serde_json::{json, Value};
use tcptrace_common::paws::{PawsSite, RstVerdict};

use crate::event::{Detail, Event};

/// Reordering slack: 65536 ticks (about a minute at 1 kHz).
pub const SLACK: u32 = 1 << 16;
/// Peers tracked one by one; more are only counted.
const MAX_PEERS: usize = 4096;
/// Clocks and flows kept per peer.
const MAX_CLOCKS: usize = 64;
const MAX_FLOWS: usize = 1024;
/// Peers listed in the summary.
pub const TOP: usize = 10;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Clock {
    lo: u32,
    hi: u32,
    /// When `hi` was last raised, ms.
    hi_at_ms: u64,
}

impl Clock {
    /// Places `v` on this clock if it belongs there.
    fn take(&mut self, v: u32, at_ms: u64) -> bool {
        let span = self.hi.wrapping_sub(self.lo);
        let above = v.wrapping_sub(self.lo);
        if above <= span {
            return true;
        }
        let grown = u32::try_from(at_ms.saturating_sub(self.hi_at_ms)).unwrap_or(u32::MAX);
        let allowance = SLACK.saturating_add(grown).min(u32::MAX / 4);
        if above - span <= allowance {
            self.hi = v;
            self.hi_at_ms = self.hi_at_ms.max(at_ms);
            return true;
        }
        if self.lo.wrapping_sub(v) <= SLACK {
            self.lo = v;
            return true;
        }
        false
    }
}

/// The clocks seen behind one address.
#[derive(Clone, Debug, Default)]
pub struct Clocks(Vec<Clock>);

impl Clocks {
    pub fn observe(&mut self, v: u32, at_ms: u64) {
        if self.0.iter_mut().any(|c| c.take(v, at_ms)) {
            return;
        }
        if self.0.len() < MAX_CLOCKS {
            self.0.push(Clock {
                lo: v,
                hi: v,
                hi_at_ms: at_ms,
            });
        }
    }

    pub fn count(&self) -> usize {
        self.0.len()
    }
}

#[derive(Clone, Debug, Default)]
struct PeerPaws {
    rejects: u64,
    by_site: BTreeMap<&'static str, u64>,
    /// (local address, local port, peer port)
    flows: BTreeSet<(IpAddr, u16, u16)>,
    clocks: Clocks,
}

#[derive(Clone, Debug, Default)]
pub struct PawsStats {
    paws_by_site: BTreeMap<&'static str, u64>,
    peers: BTreeMap<IpAddr, PeerPaws>,
    rst_by_verdict: BTreeMap<&'static str, u64>,
    rst_peers: BTreeMap<IpAddr, BTreeMap<&'static str, u64>>,
    /// Events from peers beyond [`MAX_PEERS`]: in the totals, not per peer.
    untracked: u64,
}

impl PawsStats {
    pub fn observe(&mut self, ev: &Event) {
        let peer = ev.endpoints.daddr;
        let room = self.peers.len() < MAX_PEERS;
        match &ev.detail {
            Detail::PawsReject(p) => {
                *self.paws_by_site.entry(p.site.name()).or_default() += 1;
                if !room && !self.peers.contains_key(&peer) {
                    self.untracked += 1;
                    return;
                }
                let e = self.peers.entry(peer).or_default();
                e.rejects += 1;
                *e.by_site.entry(p.site.name()).or_default() += 1;
                if e.flows.len() < MAX_FLOWS {
                    e.flows
                        .insert((ev.endpoints.saddr, ev.endpoints.sport, ev.endpoints.dport));
                }
                if p.site != PawsSite::SynSent {
                    let at_ms = ev.ts_ns / 1_000_000;
                    if let Some(ts_recent) = p.ts_recent.filter(|&t| t != 0) {
                        e.clocks.observe(ts_recent, at_ms);
                    }
                    e.clocks.observe(p.tsval, at_ms);
                }
            }
            Detail::Rst(r) => {
                *self.rst_by_verdict.entry(r.verdict.name()).or_default() += 1;
                if !room && !self.rst_peers.contains_key(&peer) {
                    self.untracked += 1;
                    return;
                }
                *self
                    .rst_peers
                    .entry(peer)
                    .or_default()
                    .entry(r.verdict.name())
                    .or_default() += 1;
            }
            _ => {}
        }
    }

    /// Peers by PAWS rejects, most first.
    fn top_paws(&self) -> Vec<(&IpAddr, &PeerPaws)> {
        let mut v: Vec<_> = self.peers.iter().collect();
        v.sort_by(|a, b| {
            (b.1.rejects, b.1.clocks.count())
                .cmp(&(a.1.rejects, a.1.clocks.count()))
                .then(a.0.cmp(b.0))
        });
        v.truncate(TOP);
        v
    }

    fn top_rst(&self) -> Vec<(&IpAddr, &BTreeMap<&'static str, u64>)> {
        let mut v: Vec<_> = self.rst_peers.iter().collect();
        let total = |m: &BTreeMap<&str, u64>| m.values().sum::<u64>();
        v.sort_by(|a, b| total(b.1).cmp(&total(a.1)).then(a.0.cmp(b.0)));
        v.truncate(TOP);
        v
    }

    pub fn render_text(&self, rst_sent: &[(String, u64)], out: &mut String) {
        if !self.paws_by_site.is_empty() {
            let total: u64 = self.paws_by_site.values().sum();
            let _ = writeln!(out, "paws rejects: {total} ({})", join(&self.paws_by_site));
            let _ = writeln!(
                out,
                "  {:<40} {:>8} {:>7} {:>6}  SITES",
                "PEER", "REJECTS", "CLOCKS", "FLOWS"
            );
            for (peer, p) in self.top_paws() {
                let flag = if p.clocks.count() > 1 {
                    "  <- several timestamp clocks behind one address (NAT?)"
                } else {
                    ""
                };
                let _ = writeln!(
                    out,
                    "  {:<40} {:>8} {:>7} {:>6}  {}{flag}",
                    peer.to_string(),
                    p.rejects,
                    p.clocks.count(),
                    p.flows.len(),
                    join(&p.by_site),
                );
            }
        }
        if !self.rst_by_verdict.is_empty() {
            let _ = writeln!(out, "rst received: {}", join(&self.rst_by_verdict));
            let _ = writeln!(
                out,
                "  {:<40} {:>8} {:>13} {:>7}",
                "PEER", "ACCEPTED", "CHALLENGE_ACK", "IGNORED"
            );
            for (peer, m) in self.top_rst() {
                let n = |v: RstVerdict| m.get(v.name()).copied().unwrap_or(0);
                let _ = writeln!(
                    out,
                    "  {:<40} {:>8} {:>13} {:>7}",
                    peer.to_string(),
                    n(RstVerdict::Accepted),
                    n(RstVerdict::ChallengeAck),
                    n(RstVerdict::Ignored),
                );
            }
        }
        let sent: Vec<&(String, u64)> = rst_sent.iter().filter(|(_, n)| *n > 0).collect();
        if !sent.is_empty() {
            let total: u64 = sent.iter().map(|(_, n)| n).sum();
            // Names as the (possibly recorded, so untrusted) counters carry them.
            let per: Vec<String> = sent
                .iter()
                .map(|(r, n)| format!("{}={n}", crate::escape::Escaped(r)))
                .collect();
            let _ = writeln!(out, "rst sent: {total} ({})", per.join(", "));
        }
        if self.untracked > 0 {
            let _ = writeln!(
                out,
                "paws/rst events from peers beyond the first {MAX_PEERS}: {}",
                self.untracked
            );
        }
    }

    pub fn to_json(&self, rst_sent: &[(String, u64)]) -> Value {
        let peers: Vec<Value> = self
            .top_paws()
            .into_iter()
            .map(|(peer, p)| {
                json!({
                    "peer": peer.to_string(),
                    "rejects": p.rejects,
                    "clocks": p.clocks.count(),
                    "flows": p.flows.len(),
                    "by_site": p.by_site,
                })
            })
            .collect();
        let rst_peers: Vec<Value> = self
            .top_rst()
            .into_iter()
            .map(|(peer, m)| {
                let mut v = json!({"peer": peer.to_string()});
                for verdict in RstVerdict::ALL {
                    v[verdict.name()] = json!(m.get(verdict.name()).copied().unwrap_or(0));
                }
                v
            })
            .collect();
        let sent: serde_json::Map<String, Value> = rst_sent
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(r, n)| (r.clone(), json!(n)))
            .collect();
        json!({
            "paws": {
                "rejects": self.paws_by_site.values().sum::<u64>(),
                "by_site": self.paws_by_site,
                "top_peers": peers,
            },
            "rst_received": {
                "by_verdict": self.rst_by_verdict,
                "top_peers": rst_peers,
            },
            "rst_sent": {
                "total": rst_sent.iter().map(|(_, n)| n).sum::<u64>(),
                "by_reason": sent,
            },
            "untracked_peers_events": self.untracked,
        })
    }
}

fn join(m: &BTreeMap<&str, u64>) -> String {
    m.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_host_is_one_clock() {
        let mut c = Clocks::default();
        // A reordered segment one second behind, then the clock advancing
        // with time.
        c.observe(5_000_000, 0);
        c.observe(4_999_000, 0);
        c.observe(5_600_000, 600_000);
        c.observe(6_000_000, 1_000_000);
        assert_eq!(c.count(), 1);
    }

    #[test]
    fn two_hosts_are_two_clocks() {
        let mut c = Clocks::default();
        c.observe(3_000_000_000, 1000);
        c.observe(100_000, 1000);
        c.observe(100_500, 1500);
        c.observe(3_000_000_700, 1700);
        assert_eq!(c.count(), 2);
    }

    #[test]
    fn clocks_wrap_around() {
        let mut c = Clocks::default();
        c.observe(u32::MAX - 10, 0);
        c.observe(5, 100);
        assert_eq!(c.count(), 1);
    }

    #[test]
    fn a_jump_beyond_elapsed_time_is_another_clock() {
        let mut c = Clocks::default();
        c.observe(1_000_000, 0);
        // 10 s later a value 100 s ahead cannot come from a 1 kHz clock.
        c.observe(1_100_000, 10_000);
        assert_eq!(c.count(), 2);
    }
}
