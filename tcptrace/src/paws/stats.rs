//! Per-peer view of PAWS rejects and received RSTs for the summary, with an
//! estimate of how many timestamp clocks one peer's connections carried.
//!
//! The clock count per peer comes from [`PeerClocks`], the same estimator
//! the PAWS findings use.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
    net::IpAddr,
};

use serde::{Deserialize, Serialize};
use tcptrace_common::paws::RstVerdict;

use super::clocks::PeerClocks;
use crate::event::{Detail, Event};

/// Peers tracked one by one; more are only counted.
const MAX_PEERS: usize = 4096;
/// Flows kept per peer.
const MAX_FLOWS: usize = 1024;
/// Peers listed in the summary.
pub const TOP: usize = 10;

#[derive(Clone, Debug, Default)]
struct PeerPaws {
    rejects: u64,
    by_site: BTreeMap<&'static str, u64>,
    /// (local address, local port, peer port)
    flows: BTreeSet<(IpAddr, u16, u16)>,
    clocks: PeerClocks,
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
                e.clocks.observe(p.site, p.tsval, p.ts_recent, p.old_ack);
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
            (b.1.rejects, b.1.clocks.clocks())
                .cmp(&(a.1.rejects, a.1.clocks.clocks()))
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
                let flag = if p.clocks.clocks() > 1 {
                    "  <- two timestamp clocks on one connection (NAT?)"
                } else {
                    ""
                };
                let _ = writeln!(
                    out,
                    "  {:<40} {:>8} {:>7} {:>6}  {}{flag}",
                    peer.to_string(),
                    p.rejects,
                    p.clocks.clocks(),
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

    /// The summary's `paws`, `rst_received`, `rst_sent` and
    /// `untracked_peers_events`.
    pub fn to_json(&self, rst_sent: &[(String, u64)]) -> PawsRstJson {
        let names = |m: &BTreeMap<&'static str, u64>| -> BTreeMap<String, u64> {
            m.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
        };
        let top_peers = self
            .top_paws()
            .into_iter()
            .map(|(peer, p)| PawsPeerJson {
                peer: Some(*peer),
                rejects: p.rejects,
                clocks: p.clocks.clocks(),
                reordered: p.clocks.reordered,
                flows: p.flows.len() as u64,
                by_site: names(&p.by_site),
            })
            .collect();
        let rst_peers = self
            .top_rst()
            .into_iter()
            .map(|(peer, m)| {
                let n = |v: RstVerdict| m.get(v.name()).copied().unwrap_or(0);
                RstPeerJson {
                    peer: Some(*peer),
                    accepted: n(RstVerdict::Accepted),
                    challenge_ack: n(RstVerdict::ChallengeAck),
                    ignored: n(RstVerdict::Ignored),
                }
            })
            .collect();
        PawsRstJson {
            paws: PawsJson {
                rejects: self.paws_by_site.values().sum::<u64>(),
                by_site: names(&self.paws_by_site),
                top_peers,
            },
            rst_received: RstReceivedJson {
                by_verdict: names(&self.rst_by_verdict),
                top_peers: rst_peers,
            },
            rst_sent: RstSentJson {
                total: rst_sent.iter().map(|(_, n)| n).sum::<u64>(),
                by_reason: rst_sent
                    .iter()
                    .filter(|(_, n)| *n > 0)
                    .map(|(r, n)| (r.clone(), *n))
                    .collect(),
            },
            untracked_peers_events: self.untracked,
        }
    }
}

/// The PAWS and RST parts of a summary.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PawsRstJson {
    pub paws: PawsJson,
    pub rst_received: RstReceivedJson,
    pub rst_sent: RstSentJson,
    pub untracked_peers_events: u64,
}

/// The summary's `paws`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PawsJson {
    pub by_site: BTreeMap<String, u64>,
    pub rejects: u64,
    pub top_peers: Vec<PawsPeerJson>,
}

/// A peer by PAWS rejects, with the timestamp clocks its connections
/// proved.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PawsPeerJson {
    pub by_site: BTreeMap<String, u64>,
    pub clocks: u64,
    pub flows: u64,
    pub peer: Option<IpAddr>,
    pub rejects: u64,
    pub reordered: u64,
}

/// The summary's `rst_received`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RstReceivedJson {
    pub by_verdict: BTreeMap<String, u64>,
    pub top_peers: Vec<RstPeerJson>,
}

/// RSTs received from one peer, per verdict.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RstPeerJson {
    pub accepted: u64,
    pub challenge_ack: u64,
    pub ignored: u64,
    pub peer: Option<IpAddr>,
}

/// The summary's `rst_sent`: RSTs this host sent, by reason.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RstSentJson {
    pub by_reason: BTreeMap<String, u64>,
    pub total: u64,
}

fn join(m: &BTreeMap<&str, u64>) -> String {
    m.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}
