//! The host around the traced events, read from /proc: sysctls, TcpExt
//! counters and socket states per network namespace, the processes that
//! hold the listeners involved and their limits. The diagnosis reads these
//! snapshots; a recording carries the ones its live findings used, so a
//! replay judges with what the live host showed.
//!
//! Everything is read under a root directory (`/` on a live host, a fixture
//! tree in tests):
//! - namespaces are found through `<root>/proc/<pid>/task/<tid>/ns/net`
//!   (threads count: a test or a container runtime may move one thread
//!   only) and `<root>/run/netns/*`; our own is `<root>/proc/self/ns/net`;
//! - counters, sockets and own addresses of a namespace come from the
//!   `net/` directory of a task inside it (`netstat`, `tcp`, `tcp6`,
//!   `fib_trie`, `if_inet6`);
//! - sysctls are per namespace and `/proc/sys/net` shows the opener's, so
//!   for our own namespace they are read from `<root>/proc/sys`, and for
//!   another one (live host only) from a short-lived thread that enters it
//!   with setns(2). That thread also reads the namespace's `net/` files, so
//!   namespaces that only a `/run/netns` mount keeps alive are covered too.
//!   In a fixture tree, other namespaces have no sysctls.
//!
//! One file per source: [`sysctl`], [`netstat`] (TcpExt counters),
//! [`sockets`] (/proc/net/tcp and what a namespace's sockets add up to),
//! [`process`] (open files, RLIMIT_NOFILE, scheduler state), [`holders`]
//! (which processes hold a socket), [`netns`] (finding and entering
//! namespaces); [`snapshot`] decides what to read and puts it together.

#[cfg(test)]
pub mod fixture;
pub mod holders;
pub mod netns;
pub mod netstat;
pub mod process;
pub mod snapshot;
pub mod sockets;
pub mod sysctl;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

pub use self::{
    process::ProcessInfo,
    snapshot::{Needs, Scope, Snapshotter},
    sockets::{Listener, NetnsSnapshot, PortStates},
    sysctl::{Sysctls, DEFAULT_PORT_RANGE},
};

/// Everything the rules read from the host at one instant. Serializable so
/// a recording can carry it for replay.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HostSnapshot {
    pub own_netns: u64,
    /// TcpExt counters per namespace.
    pub netstat: BTreeMap<u64, BTreeMap<String, u64>>,
    /// Sysctls and sockets of the namespaces of interest.
    pub netns: BTreeMap<u64, NetnsSnapshot>,
    pub processes: BTreeMap<u32, ProcessInfo>,
    /// (netns, listening port) → pid holding that listener (the lowest).
    pub listener_owners: BTreeMap<String, u32>,
    /// (netns, listening port) → every pid holding that listener, lowest
    /// first (bounded, see `holders::MAX_HOLDERS`).
    pub listener_holders: BTreeMap<String, Vec<u32>>,
    /// Every namespace reachable when this snapshot was taken (a baseline
    /// uses it to tell namespaces created later, whose counters start at 0).
    pub known_netns: BTreeSet<u64>,
}

impl HostSnapshot {
    /// A counter's value in this baseline: its reading, 0 for a namespace
    /// that did not exist yet, `None` when it was not read.
    pub fn counter_before(&self, ino: u64, name: &str) -> Option<u64> {
        match self.netstat.get(&ino) {
            Some(m) => Some(m.get(name).copied().unwrap_or(0)),
            None if !self.known_netns.is_empty() && !self.known_netns.contains(&ino) => Some(0),
            None => None,
        }
    }
}

/// The key of `listener_owners` and `listener_holders`: `netns:port`.
pub fn owner_key(netns: u64, port: u16) -> String {
    format!("{netns}:{port}")
}
