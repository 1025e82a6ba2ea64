//! Where the server of a slow connect() is, when it is on this host: a
//! listener in any network namespace that a SYN to the destination
//! reaches. Evidence first: listener events (`syn_drop`,
//! `listen_overflow`) carry their namespace, the address the peer sent to
//! and the peer, so a listener on the destination port that received SYNs
//! at the destination address from the client's own address is the one
//! the client's route reached. Without such events, the namespaces whose
//! `ListenOverflows` grew and whose snapshot holds a listener answering at
//! the destination (bound to it, or a wildcard listener where the address
//! is the namespace's own), preferring the one holding connections from
//! the client. The client's own namespace comes first (its local table is
//! consulted before any route: a loopback or own address never leaves
//! it). When one address answers in several namespaces and nothing tells
//! which one the route reaches, every one is named and the match is
//! marked ambiguous. Pure: reads only the engine's tallies and the host
//! view, so a replay finds what the live run found.

use std::{
    collections::{BTreeSet, HashSet},
    net::IpAddr,
};

use serde_json::{json, Value};

use super::{endpoint, listen, listen::Listeners, Context};

/// How a listener was tied to the destination, strongest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Via {
    /// A listener of the client's own namespace on a wildcard address
    /// (the address it was reached at is not known).
    SameNetns,
    /// The destination address answers in that namespace.
    Address,
    /// SYNs from the client's address reached that listener at the
    /// destination address (events), or it holds connections from it.
    Route,
    /// The client's own namespace holds the address: local delivery.
    Local,
}

impl Via {
    pub fn name(self) -> &'static str {
        match self {
            Self::SameNetns => "same_netns",
            Self::Address => "address",
            Self::Route => "route",
            Self::Local => "local",
        }
    }
}

/// One server-side cause.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Side {
    /// The finding that describes it (`accept_queue_overflow`, ...).
    pub id: &'static str,
    pub subject: String,
    pub netns: u64,
    pub listen_addr: Option<IpAddr>,
    pub port: u16,
    pub via: Via,
    /// Drop/overflow events at that listener; `None` from counters.
    pub events: Option<u64>,
    /// The `ListenOverflows` delta of that namespace, when known.
    pub listen_overflows: Option<u64>,
}

impl Side {
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "id": self.id,
            "subject": self.subject,
            "netns": self.netns,
            "port": self.port,
            "match": self.via.name(),
        });
        if let Value::Object(m) = &mut v {
            if let Some(a) = self.listen_addr {
                m.insert("listen_addr".into(), json!(a.to_string()));
            }
            match self.events {
                Some(n) => m.insert("events".into(), json!(n)),
                None => m.insert("source".into(), json!("counters")),
            };
            if let Some(n) = self.listen_overflows {
                m.insert("listen_overflows".into(), json!(n));
            }
        }
        v
    }

    /// "the accept queue of listener 10.0.0.1:80 in netns N is overflowing
    /// (ListenOverflows +12 there)".
    pub fn because(&self, client_netns: u64) -> String {
        let l = endpoint(self.listen_addr, self.port);
        let place = if self.netns == client_netns {
            format!("the local listener {l}")
        } else {
            format!("listener {l} in netns {}", self.netns)
        };
        let what = match self.id {
            "syn_queue_full" => format!("the SYN queue of {place} is full"),
            _ => format!("the accept queue of {place} is overflowing"),
        };
        match self.listen_overflows.filter(|&n| n > 0) {
            Some(n) if self.id == "accept_queue_overflow" => {
                format!("{what} (ListenOverflows +{n} in netns {})", self.netns)
            }
            _ => what,
        }
    }
}

/// The server side of one destination.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resolved {
    pub sides: Vec<Side>,
    /// Several namespaces matched equally well.
    pub ambiguous: bool,
}

/// The listeners on this host that a connect() from `client_netns` (from
/// `saddrs`) to `daddr:dport` reached, best match only.
pub fn resolve(
    ctx: &Context<'_>,
    client_netns: u64,
    daddr: IpAddr,
    dport: u16,
    saddrs: &BTreeSet<IpAddr>,
    ls: &Listeners,
) -> Resolved {
    let h = &ctx.host;
    let mut found: Vec<Side> = Vec::new();
    for (k, l) in ls
        .by_key
        .iter()
        .filter(|(k, l)| k.port == dport && l.dropping())
    {
        let own = k.netns == client_netns;
        if daddr.is_loopback() && !own {
            continue;
        }
        let at_addr = k.addr == Some(daddr) || l.local_addrs.contains(&daddr);
        let via = match (own, at_addr) {
            (true, true) => Via::Local,
            (false, true) if saddrs.iter().any(|s| l.peers.contains_key(s)) => Via::Route,
            (false, true) => Via::Address,
            (true, false) if k.addr.is_none_or(|a| a.is_unspecified()) => Via::SameNetns,
            _ => continue,
        };
        let accept = l.accept_events();
        let (id, events) = if accept > 0 {
            ("accept_queue_overflow", accept)
        } else {
            ("syn_queue_full", l.syn_queue_events())
        };
        found.push(Side {
            id,
            subject: listen::subject(k),
            netns: k.netns,
            listen_addr: k.addr,
            port: k.port,
            via,
            events: Some(events),
            listen_overflows: h.delta(k.netns, "ListenOverflows"),
        });
    }
    if found.is_empty() {
        found = from_counters(ctx, client_netns, daddr, dport, saddrs);
    }
    let Some(best) = found.iter().map(|s| s.via).max() else {
        return Resolved::default();
    };
    found.retain(|s| s.via == best);
    let namespaces: HashSet<u64> = found.iter().map(|s| s.netns).collect();
    Resolved {
        ambiguous: namespaces.len() > 1,
        sides: found,
    }
}

/// Namespaces whose `ListenOverflows` grew, with a listener answering at
/// `daddr:dport` in their snapshot.
fn from_counters(
    ctx: &Context<'_>,
    client_netns: u64,
    daddr: IpAddr,
    dport: u16,
    saddrs: &BTreeSet<IpAddr>,
) -> Vec<Side> {
    let h = &ctx.host;
    let mut out = Vec::new();
    for ino in h.netns_with_deltas() {
        let Some(n) = h.delta(ino, "ListenOverflows").filter(|&n| n > 0) else {
            continue;
        };
        let own = ino == client_netns;
        if daddr.is_loopback() && !own {
            continue;
        }
        let Some(ns) = h.netns(ino) else { continue };
        let (listener, via) = match ns.listener_for(daddr, dport) {
            Some(l) if own => (l, Via::Local),
            Some(l) => {
                let from_client = ns
                    .listener_peers
                    .get(&dport)
                    .is_some_and(|p| saddrs.iter().any(|s| p.contains(s)));
                (
                    l,
                    if from_client {
                        Via::Route
                    } else {
                        Via::Address
                    },
                )
            }
            // A local listener on the port whose address is not known to
            // answer at daddr (no address list): the client's own only.
            None if own => match ns.listener(dport, Some(daddr)) {
                Some(l) => (l, Via::SameNetns),
                None => continue,
            },
            None => continue,
        };
        out.push(Side {
            id: "accept_queue_overflow",
            subject: format!("netns {ino}"),
            netns: ino,
            listen_addr: Some(listener.addr),
            port: dport,
            via,
            events: None,
            listen_overflows: Some(n),
        });
    }
    out
}
