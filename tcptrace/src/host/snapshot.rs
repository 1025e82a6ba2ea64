//! Taking a host snapshot: counters of the namespaces in scope, sysctls and
//! sockets of those the rules need or whose signal counters moved, and the
//! processes holding the listeners involved.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use super::{
    holders,
    netns::{discover, ns_inode_of_link, read_in_netns, read_net_dir, NetnsPins, NsAccess, Pin},
    owner_key,
    process::ProcessInfo,
    sockets::NetnsSnapshot,
    sysctl::Sysctls,
    HostSnapshot,
};

/// What the rules want read in detail.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Needs {
    pub netns: BTreeSet<u64>,
    /// (netns, port) of listeners whose owner process matters.
    pub listeners: BTreeSet<(u64, u16)>,
    pub pids: BTreeSet<u32>,
}

/// Which namespaces counters are read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Every namespace found.
    All,
    /// Only this one (`--netns`).
    Netns(u64),
    /// Only those in [`Needs`] (other filters: counters cannot be filtered).
    Needed,
}

/// Counters that make a namespace worth a closer look without events.
pub const SIGNAL_COUNTERS: [&str; 3] =
    ["ListenOverflows", "TCPReqQFullDrop", "TCPReqQFullDoCookies"];

/// The counters later snapshots are compared with. On the live host it
/// holds the namespaces it read open (see [`NetnsPins`]), so a namespace
/// freed during the run and a new one given its inode number are never
/// taken for one another.
#[derive(Debug, Default)]
pub struct Baseline {
    pub snapshot: HostSnapshot,
    pins: NetnsPins,
}

impl Baseline {
    /// Forgets the namespaces nothing in `found` reaches any more.
    fn forget_gone(&mut self, found: &BTreeMap<u64, NsAccess>) {
        for ino in self.pins.release_gone(found) {
            self.snapshot.netstat.remove(&ino);
            self.snapshot.known_netns.remove(&ino);
        }
    }
}

/// Reads host snapshots under a root directory.
#[derive(Clone, Debug)]
pub struct Snapshotter {
    root: PathBuf,
}

impl Snapshotter {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn live() -> Self {
        Self::new("/")
    }

    fn is_live(&self) -> bool {
        self.root == Path::new("/")
    }

    fn proc(&self) -> PathBuf {
        self.root.join("proc")
    }

    pub fn own_netns(&self) -> u64 {
        ns_inode_of_link(&self.proc().join("self/ns/net")).unwrap_or(0)
    }

    /// Reads a namespace: counters, and with `detail` its sysctls and sockets.
    fn read_netns(
        &self,
        ino: u64,
        own: u64,
        access: &NsAccess,
        detail: bool,
    ) -> Option<(BTreeMap<String, u64>, Option<NetnsSnapshot>)> {
        let from_task = || Some(read_net_dir(&access.task.as_ref()?.join("net"), detail));
        let read = if ino == own {
            let mut r = read_net_dir(&self.proc().join("self/net"), detail);
            if detail {
                r.sysctls = Sysctls::read(&self.proc().join("sys"));
            }
            Some(r)
        } else if self.is_live() && (detail || access.task.is_none()) {
            // Sysctls need setns; so do namespaces no task is in.
            access
                .ns_file
                .as_ref()
                .and_then(|f| read_in_netns(f, detail).ok())
                .or_else(from_task)
        } else {
            from_task()
        };
        let r = read?;
        let snap = detail.then(|| {
            let mut s = NetnsSnapshot {
                sysctls: r.sysctls,
                ..NetnsSnapshot::default()
            };
            if r.sockets_read {
                s.add_sockets(&r.socks);
            }
            s.set_local_addrs(r.local_addrs);
            s
        });
        Some((r.netstat.unwrap_or_default(), snap))
    }

    /// Takes a snapshot: counters of the namespaces in `scope`, details of
    /// the needed ones and of those whose [`SIGNAL_COUNTERS`] moved since
    /// `baseline`, and the owners of the listeners involved.
    #[cfg(test)]
    pub fn snapshot(
        &self,
        needs: &Needs,
        scope: Scope,
        baseline: Option<&HostSnapshot>,
    ) -> HostSnapshot {
        self.snapshot_of(discover(&self.root), needs, scope, baseline)
    }

    /// [`Snapshotter::snapshot`] against a baseline that first forgets the
    /// namespaces gone since the last one.
    pub fn snapshot_since(
        &self,
        needs: &Needs,
        scope: Scope,
        baseline: &mut Baseline,
    ) -> HostSnapshot {
        let found = discover(&self.root);
        baseline.forget_gone(&found);
        self.snapshot_of(found, needs, scope, Some(&baseline.snapshot))
    }

    fn snapshot_of(
        &self,
        found: BTreeMap<u64, NsAccess>,
        needs: &Needs,
        scope: Scope,
        baseline: Option<&HostSnapshot>,
    ) -> HostSnapshot {
        let own = self.own_netns();
        let mut snap = HostSnapshot {
            own_netns: own,
            ..HostSnapshot::default()
        };
        let in_scope = |ino: u64| match scope {
            Scope::All => true,
            Scope::Netns(n) => n == ino,
            Scope::Needed => needs.netns.contains(&ino),
        };
        let empty = NsAccess::default();
        let mut detail_for: BTreeSet<u64> = needs.netns.clone();
        if scope == Scope::All || scope == Scope::Netns(own) {
            detail_for.insert(own);
        }
        for (&ino, access) in found.iter().filter(|(i, _)| in_scope(**i)) {
            if !detail_for.contains(&ino) {
                if let Some((netstat, _)) = self.read_netns(ino, own, access, false) {
                    snap.netstat.insert(ino, netstat);
                }
            }
        }
        for &ino in &detail_for {
            let access = found.get(&ino).unwrap_or(&empty);
            if let Some((netstat, Some(detail))) = self.read_netns(ino, own, access, true) {
                snap.netstat.insert(ino, netstat);
                snap.netns.insert(ino, detail);
            }
        }
        // Namespaces whose signal counters moved get a closer look.
        let moved: BTreeSet<u64> = snap
            .netstat
            .iter()
            .filter(|(ino, now)| {
                SIGNAL_COUNTERS.iter().any(|c| {
                    let before = baseline.and_then(|b| b.counter_before(**ino, c));
                    before.is_some_and(|b| now.get(*c).copied().unwrap_or(0) > b)
                })
            })
            .map(|(ino, _)| *ino)
            .collect();
        for &ino in moved.difference(&detail_for) {
            let access = found.get(&ino).unwrap_or(&empty);
            if let Some((netstat, Some(detail))) = self.read_netns(ino, own, access, true) {
                snap.netstat.insert(ino, netstat);
                snap.netns.insert(ino, detail);
            }
        }
        // Owners: listeners asked for, and in namespaces whose signal
        // counters moved, every listener with a non-empty accept queue.
        let mut wanted: BTreeMap<u64, (u64, u16)> = BTreeMap::new();
        for (&ino, ns) in &snap.netns {
            for l in &ns.listeners {
                let asked = needs.listeners.contains(&(ino, l.port));
                let busy = l.backlog > 0 && moved.contains(&ino);
                if asked || busy {
                    wanted.insert(l.inode, (ino, l.port));
                }
            }
        }
        wanted.retain(|inode, _| *inode != 0);
        let mut pids = needs.pids.clone();
        let inodes: BTreeSet<u64> = wanted.keys().copied().collect();
        for (inode, holders) in holders::scan(&self.proc(), &inodes) {
            let Some(&(ino, port)) = wanted.get(&inode) else {
                continue;
            };
            let key = owner_key(ino, port);
            if let Some(&first) = holders.first() {
                snap.listener_owners.insert(key.clone(), first);
            }
            pids.extend(holders.iter().copied());
            snap.listener_holders.insert(key, holders);
        }
        for pid in pids {
            if let Some(p) = self.process(pid) {
                snap.processes.insert(pid, p);
            }
        }
        snap
    }

    /// Counters of every namespace in scope: the baseline for deltas. On
    /// the live host the namespaces read are held open; one gone before it
    /// could be is left out, as if it had never been seen.
    pub fn baseline(&self, scope: Scope, needs: &Needs) -> Baseline {
        let own = self.own_netns();
        let found = discover(&self.root);
        let mut base = Baseline::default();
        base.snapshot.own_netns = own;
        base.snapshot.known_netns = found.keys().copied().collect();
        for (ino, access) in found {
            let wanted = match scope {
                Scope::All => true,
                Scope::Netns(n) => n == ino,
                Scope::Needed => needs.netns.contains(&ino),
            };
            if !wanted {
                continue;
            }
            if self.is_live() && ino != own && base.pins.pin(ino, &access) == Pin::Gone {
                base.snapshot.known_netns.remove(&ino);
                continue;
            }
            if let Some((netstat, _)) = self.read_netns(ino, own, &access, false) {
                base.snapshot.netstat.insert(ino, netstat);
            }
        }
        base
    }

    pub fn process(&self, pid: u32) -> Option<ProcessInfo> {
        ProcessInfo::read(&self.proc(), pid)
    }
}

#[cfg(test)]
mod tests {
    use super::{
        super::fixture::{fixture_host, Tree},
        *,
    };

    #[test]
    fn snapshot_from_a_fixture_tree() {
        let t = Tree::new("snapshot");
        fixture_host(&t);
        let s = Snapshotter::new(&t.0);
        assert_eq!(s.own_netns(), 100);
        let needs = Needs {
            netns: [100, 200].into(),
            listeners: [(100, 8080)].into(),
            pids: BTreeSet::new(),
        };
        let snap = s.snapshot(&needs, Scope::All, None);
        assert_eq!(snap.own_netns, 100);
        assert_eq!(snap.netstat[&100]["ListenOverflows"], 10);
        assert_eq!(snap.netstat[&200]["TCPChallengeACK"], 3);
        let own = &snap.netns[&100];
        assert_eq!(own.sysctls.somaxconn, Some(128));
        assert_eq!(own.sysctls.tcp_tw_recycle, None);
        assert_eq!(own.listeners[0].backlog, 129);
        assert_eq!(own.listener_ports[&8080].close_wait, 20);
        let other = &snap.netns[&200];
        assert!(other.sysctls.is_empty(), "no setns in a fixture tree");
        assert_eq!(other.time_wait_total, 1);
        assert_eq!(other.holders[0].dport, 5555);
        assert_eq!(snap.listener_owners[&owner_key(100, 8080)], 7);
        let p = &snap.processes[&7];
        assert_eq!(p.comm, "server");
        assert_eq!((p.open_fds, p.nofile_soft), (Some(4), Some(4)));
        assert!(p.at_fd_limit());
    }

    #[test]
    fn counters_that_moved_pull_in_details() {
        let t = Tree::new("signal");
        fixture_host(&t);
        let s = Snapshotter::new(&t.0);
        let mut base = s.baseline(Scope::All, &Needs::default()).snapshot;
        base.netstat
            .get_mut(&100)
            .unwrap()
            .insert("ListenOverflows".into(), 4);
        let snap = s.snapshot(&Needs::default(), Scope::All, Some(&base));
        // ListenOverflows moved in 100: details and the busy listener's owner.
        assert!(snap.netns.contains_key(&100));
        assert_eq!(snap.listener_owners[&owner_key(100, 8080)], 7);
        // Nothing moved in 200: counters only.
        assert!(!snap.netns.contains_key(&200));
        assert!(snap.netstat.contains_key(&200));
        // A namespace that appeared after the baseline counts from zero.
        let mut base2 = base.clone();
        base2.netstat.remove(&200);
        base2.known_netns.remove(&200);
        assert_eq!(base2.counter_before(200, "TCPChallengeACK"), Some(0));
        assert_eq!(base.counter_before(200, "TCPChallengeACK"), Some(3));
        assert_eq!(HostSnapshot::default().counter_before(200, "X"), None);
        // A baseline forgets namespaces no longer found, so one given the
        // same inode later counts from zero.
        let mut pinned = Baseline {
            snapshot: base.clone(),
            pins: NetnsPins::default(),
        };
        let mut found = discover(&t.0);
        pinned.forget_gone(&found);
        assert_eq!(
            pinned.snapshot.counter_before(200, "TCPChallengeACK"),
            Some(3)
        );
        found.remove(&200);
        pinned
            .pins
            .0
            .insert(200, std::fs::File::open(&t.0).unwrap());
        pinned.forget_gone(&found);
        assert_eq!(
            pinned.snapshot.counter_before(200, "TCPChallengeACK"),
            Some(0)
        );
        // Scope limited to one namespace.
        let only = s.snapshot(&Needs::default(), Scope::Netns(200), Some(&base));
        assert_eq!(only.netstat.keys().copied().collect::<Vec<_>>(), vec![200]);
    }
}
