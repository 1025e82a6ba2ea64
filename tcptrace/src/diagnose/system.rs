//! Host snapshots for the diagnosis: sysctls, TcpExt counters and socket
//! states per network namespace, and the limits of the processes that own
//! the listeners involved.
//!
//! Everything is read under a root directory (`/` on a live host, a fixture
//! tree in tests):
//! - namespaces are found through `<root>/proc/<pid>/task/<tid>/ns/net`
//!   (threads count: a test or a container runtime may move one thread
//!   only) and `<root>/run/netns/*`; our own is `<root>/proc/self/ns/net`;
//! - counters and sockets of a namespace come from the `net/` directory of
//!   a task inside it (`netstat`, `tcp`, `tcp6`);
//! - sysctls are per namespace and `/proc/sys/net` shows the opener's, so
//!   for our own namespace they are read from `<root>/proc/sys`, and for
//!   another one (live host only) from a short-lived thread that enters it
//!   with setns(2). That thread also reads the namespace's `net/` files, so
//!   namespaces that only a `/run/netns` mount keeps alive are covered too.
//!   In a fixture tree, other namespaces have no sysctls.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    fs,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

/// How many namespaces one snapshot reads counters for.
const MAX_NETNS: usize = 512;
/// Destinations listed as holders of the ephemeral range.
const TOP_DESTINATIONS: usize = 5;
/// Linux's default `ip_local_port_range`, used when it cannot be read.
pub const DEFAULT_PORT_RANGE: (u16, u16) = (32768, 60999);

/// TCP states as printed in /proc/net/tcp.
pub mod state {
    pub const ESTABLISHED: u8 = 0x01;
    pub const TIME_WAIT: u8 = 0x06;
    pub const CLOSE_WAIT: u8 = 0x08;
    pub const LISTEN: u8 = 0x0A;
}

/// The sysctls the rules read, from one namespace. `None`: not readable
/// (or, for `tcp_tw_recycle`, absent: removed in 4.12).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Sysctls {
    pub somaxconn: Option<u64>,
    pub tcp_max_syn_backlog: Option<u64>,
    pub tcp_syncookies: Option<u64>,
    pub tcp_abort_on_overflow: Option<u64>,
    pub tcp_timestamps: Option<u64>,
    pub tcp_tw_reuse: Option<u64>,
    pub tcp_max_tw_buckets: Option<u64>,
    pub ip_local_port_range: Option<(u16, u16)>,
    pub tcp_tw_recycle: Option<u64>,
}

impl Sysctls {
    /// Reads `<proc_sys>/net/...` (`proc_sys` is a `/proc/sys` directory).
    pub fn read(proc_sys: &Path) -> Self {
        let num = |rel: &str| -> Option<u64> {
            fs::read_to_string(proc_sys.join(rel))
                .ok()?
                .trim()
                .parse()
                .ok()
        };
        let range = fs::read_to_string(proc_sys.join("net/ipv4/ip_local_port_range"))
            .ok()
            .and_then(|s| parse_port_range(&s));
        Self {
            somaxconn: num("net/core/somaxconn"),
            tcp_max_syn_backlog: num("net/ipv4/tcp_max_syn_backlog"),
            tcp_syncookies: num("net/ipv4/tcp_syncookies"),
            tcp_abort_on_overflow: num("net/ipv4/tcp_abort_on_overflow"),
            tcp_timestamps: num("net/ipv4/tcp_timestamps"),
            tcp_tw_reuse: num("net/ipv4/tcp_tw_reuse"),
            tcp_max_tw_buckets: num("net/ipv4/tcp_max_tw_buckets"),
            ip_local_port_range: range,
            tcp_tw_recycle: num("net/ipv4/tcp_tw_recycle"),
        }
    }

    /// True when nothing could be read (e.g. a fixture without sysctls).
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

pub fn parse_port_range(s: &str) -> Option<(u16, u16)> {
    let mut it = s.split_whitespace().map(str::parse::<u16>);
    match (it.next(), it.next()) {
        (Some(Ok(lo)), Some(Ok(hi))) if lo <= hi => Some((lo, hi)),
        _ => None,
    }
}

/// `TcpExt` counters of /proc/net/netstat by name.
pub fn parse_netstat(text: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let mut lines = text.lines();
    while let (Some(names), Some(values)) = (lines.next(), lines.next()) {
        let (Some(("TcpExt", names)), Some(("TcpExt", values))) =
            (names.split_once(':'), values.split_once(':'))
        else {
            continue;
        };
        for (n, v) in names.split_whitespace().zip(values.split_whitespace()) {
            if let Ok(v) = v.parse() {
                out.insert(n.to_owned(), v);
            }
        }
    }
    out
}

/// One line of /proc/net/tcp or tcp6.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SockLine {
    pub local: IpAddr,
    pub lport: u16,
    pub remote: IpAddr,
    pub rport: u16,
    pub state: u8,
    pub tx_queue: u64,
    /// For a listener: `sk_ack_backlog`, connections waiting for accept().
    pub rx_queue: u64,
    pub inode: u64,
}

fn parse_hex_addr(s: &str) -> Option<(IpAddr, u16)> {
    let (addr, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    // The kernel prints each 32-bit word of the address as a native-endian
    // integer.
    let mut bytes = Vec::with_capacity(16);
    for i in (0..addr.len()).step_by(8) {
        let w = u32::from_str_radix(addr.get(i..i + 8)?, 16).ok()?;
        bytes.extend_from_slice(&w.to_ne_bytes());
    }
    let ip = match <[u8; 4]>::try_from(bytes.as_slice()) {
        Ok(b) => IpAddr::V4(Ipv4Addr::from(b)),
        Err(_) => {
            let v6 = Ipv6Addr::from(<[u8; 16]>::try_from(bytes.as_slice()).ok()?);
            match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(v6),
            }
        }
    };
    Some((ip, port))
}

/// Parses /proc/net/tcp or tcp6 text; malformed lines are skipped.
pub fn parse_proc_net_tcp(text: &str) -> Vec<SockLine> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let c: Vec<&str> = line.split_whitespace().collect();
            let (local, lport) = parse_hex_addr(c.get(1)?)?;
            let (remote, rport) = parse_hex_addr(c.get(2)?)?;
            let state = u8::from_str_radix(c.get(3)?, 16).ok()?;
            let (tx, rx) = c.get(4)?.split_once(':')?;
            Some(SockLine {
                local,
                lport,
                remote,
                rport,
                state,
                tx_queue: u64::from_str_radix(tx, 16).ok()?,
                rx_queue: u64::from_str_radix(rx, 16).ok()?,
                inode: c.get(9)?.parse().ok()?,
            })
        })
        .collect()
}

/// A listening socket now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listener {
    pub addr: IpAddr,
    pub port: u16,
    /// Connections waiting in its accept queue now.
    pub backlog: u64,
    pub inode: u64,
}

/// Connections on one local port, by state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortStates {
    pub established: u64,
    pub close_wait: u64,
    pub time_wait: u64,
}

/// A destination and the ephemeral ports its connections hold.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub daddr: IpAddr,
    pub dport: u16,
    /// Sockets to it whose local port is in `ip_local_port_range`.
    pub ports: u64,
    pub time_wait: u64,
}

/// What one namespace looked like at the snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NetnsSnapshot {
    pub sysctls: Sysctls,
    /// Whether the socket tables below were read.
    pub sockets_read: bool,
    pub listeners: Vec<Listener>,
    /// Per listening port: the connections on it (accepted or waiting).
    pub listener_ports: BTreeMap<u16, PortStates>,
    pub time_wait_total: u64,
    pub close_wait_total: u64,
    /// Sockets (not listeners) with a local port in the ephemeral range.
    pub ephemeral_in_use: u64,
    pub ephemeral_time_wait: u64,
    /// Destinations holding most of the ephemeral range, most first.
    pub holders: Vec<Holder>,
}

impl NetnsSnapshot {
    /// Aggregates socket lines: listeners, states per listening port,
    /// ephemeral-range use per destination.
    pub fn add_sockets(&mut self, socks: &[SockLine]) {
        let (lo, hi) = self
            .sysctls
            .ip_local_port_range
            .unwrap_or(DEFAULT_PORT_RANGE);
        self.sockets_read = true;
        let listening: BTreeSet<u16> = socks
            .iter()
            .filter(|s| s.state == state::LISTEN)
            .map(|s| s.lport)
            .chain(self.listeners.iter().map(|l| l.port))
            .collect();
        let mut holders: HashMap<(IpAddr, u16), Holder> = self
            .holders
            .drain(..)
            .map(|h| ((h.daddr, h.dport), h))
            .collect();
        for s in socks {
            match s.state {
                state::LISTEN => {
                    self.listeners.push(Listener {
                        addr: s.local,
                        port: s.lport,
                        backlog: s.rx_queue,
                        inode: s.inode,
                    });
                    continue;
                }
                state::TIME_WAIT => self.time_wait_total += 1,
                state::CLOSE_WAIT => self.close_wait_total += 1,
                _ => {}
            }
            if listening.contains(&s.lport) {
                let p = self.listener_ports.entry(s.lport).or_default();
                match s.state {
                    state::ESTABLISHED => p.established += 1,
                    state::CLOSE_WAIT => p.close_wait += 1,
                    state::TIME_WAIT => p.time_wait += 1,
                    _ => {}
                }
            } else if (lo..=hi).contains(&s.lport) {
                self.ephemeral_in_use += 1;
                let tw = u64::from(s.state == state::TIME_WAIT);
                self.ephemeral_time_wait += tw;
                let h = holders.entry((s.remote, s.rport)).or_insert(Holder {
                    daddr: s.remote,
                    dport: s.rport,
                    ports: 0,
                    time_wait: 0,
                });
                h.ports += 1;
                h.time_wait += tw;
            }
        }
        let mut holders: Vec<Holder> = holders.into_values().collect();
        holders.sort_by(|a, b| {
            b.ports
                .cmp(&a.ports)
                .then(a.daddr.cmp(&b.daddr))
                .then(a.dport.cmp(&b.dport))
        });
        holders.truncate(TOP_DESTINATIONS);
        self.holders = holders;
    }

    pub fn listener(&self, port: u16, addr: Option<IpAddr>) -> Option<&Listener> {
        let mut on_port = self.listeners.iter().filter(|l| l.port == port);
        match addr {
            Some(a) => on_port.find(|l| l.addr == a || l.addr.is_unspecified()),
            None => on_port.next(),
        }
    }
}

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

pub fn owner_key(netns: u64, port: u16) -> String {
    format!("{netns}:{port}")
}

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

/// What was read from one namespace.
#[derive(Debug, Default)]
struct NetRead {
    netstat: Option<BTreeMap<String, u64>>,
    socks: Vec<SockLine>,
    sockets_read: bool,
    sysctls: Sysctls,
}

/// How to reach one namespace.
#[derive(Clone, Debug, Default)]
struct NsAccess {
    /// A task inside it (its `net/` directory shows the namespace).
    task: Option<PathBuf>,
    /// A file setns(2) accepts for it.
    ns_file: Option<PathBuf>,
}

/// Reads host snapshots under a root directory.
#[derive(Clone, Debug)]
pub struct Snapshotter {
    root: PathBuf,
}

fn ns_inode_of_link(path: &Path) -> Option<u64> {
    let target = fs::read_link(path).ok()?;
    let s = target.to_str()?;
    s.strip_prefix("net:[")?.strip_suffix(']')?.parse().ok()
}

fn numeric_dirs(dir: &Path) -> Vec<(u32, PathBuf)> {
    let Ok(rd) = fs::read_dir(dir) else {
        return Vec::new();
    };
    rd.filter_map(Result::ok)
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path())))
        .collect()
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

    /// Every namespace reachable through a task or /run/netns.
    fn discover(&self) -> BTreeMap<u64, NsAccess> {
        let mut out: BTreeMap<u64, NsAccess> = BTreeMap::new();
        let mut pids = numeric_dirs(&self.proc());
        pids.sort();
        for (_, pid_dir) in pids {
            for (_, task) in numeric_dirs(&pid_dir.join("task")) {
                let link = task.join("ns/net");
                let Some(ino) = ns_inode_of_link(&link) else {
                    continue;
                };
                let e = out.entry(ino).or_default();
                if e.task.is_none() {
                    e.task = Some(task.clone());
                    e.ns_file = Some(link);
                }
            }
            if out.len() >= MAX_NETNS {
                return out;
            }
        }
        for dir in ["run/netns", "var/run/netns"] {
            let Ok(rd) = fs::read_dir(self.root.join(dir)) else {
                continue;
            };
            for e in rd.filter_map(Result::ok) {
                if let Ok(md) = fs::metadata(e.path()) {
                    out.entry(md.ino())
                        .or_default()
                        .ns_file
                        .get_or_insert(e.path());
                }
            }
        }
        out
    }

    /// Reads a namespace's `net/` directory (`sysctls` left empty).
    /// Reads a namespace's `net/` directory: its counters, and with
    /// `sockets` its socket tables (costly on a busy host: not for baselines).
    fn read_net_dir(net: &Path, sockets: bool) -> NetRead {
        let mut r = NetRead {
            netstat: fs::read_to_string(net.join("netstat"))
                .ok()
                .map(|t| parse_netstat(&t)),
            ..NetRead::default()
        };
        if !sockets {
            return r;
        }
        for f in ["tcp", "tcp6"] {
            if let Ok(t) = fs::read_to_string(net.join(f)) {
                r.sockets_read = true;
                r.socks.extend(parse_proc_net_tcp(&t));
            }
        }
        r
    }

    /// Reads a namespace: counters, and with `detail` its sysctls and sockets.
    fn read_netns(
        &self,
        ino: u64,
        own: u64,
        access: &NsAccess,
        detail: bool,
    ) -> Option<(BTreeMap<String, u64>, Option<NetnsSnapshot>)> {
        let from_task = || {
            Some(Self::read_net_dir(
                &access.task.as_ref()?.join("net"),
                detail,
            ))
        };
        let read = if ino == own {
            let mut r = Self::read_net_dir(&self.proc().join("self/net"), detail);
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
            s
        });
        Some((r.netstat.unwrap_or_default(), snap))
    }

    /// Takes a snapshot: counters of the namespaces in `scope`, details of
    /// the needed ones and of those whose [`SIGNAL_COUNTERS`] moved since
    /// `baseline`, and the owners of the listeners involved.
    pub fn snapshot(
        &self,
        needs: &Needs,
        scope: Scope,
        baseline: Option<&HostSnapshot>,
    ) -> HostSnapshot {
        let own = self.own_netns();
        let found = self.discover();
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
        for (inode, holders) in super::holders::scan(&self.proc(), &inodes) {
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

    /// Counters of every namespace in scope: the baseline for deltas.
    pub fn baseline(&self, scope: Scope, needs: &Needs) -> HostSnapshot {
        let own = self.own_netns();
        let found = self.discover();
        let mut snap = HostSnapshot {
            own_netns: own,
            known_netns: found.keys().copied().collect(),
            ..HostSnapshot::default()
        };
        for (ino, access) in found {
            let wanted = match scope {
                Scope::All => true,
                Scope::Netns(n) => n == ino,
                Scope::Needed => needs.netns.contains(&ino),
            };
            if wanted {
                if let Some((netstat, _)) = self.read_netns(ino, own, &access, false) {
                    snap.netstat.insert(ino, netstat);
                }
            }
        }
        snap
    }

    pub fn process(&self, pid: u32) -> Option<ProcessInfo> {
        let dir = self.proc().join(pid.to_string());
        let comm = fs::read_to_string(dir.join("comm")).ok()?;
        let open_fds = fs::read_dir(dir.join("fd"))
            .ok()
            .map(|rd| rd.filter_map(Result::ok).count() as u64);
        let (nofile_soft, nofile_hard) = fs::read_to_string(dir.join("limits"))
            .map(|t| parse_nofile(&t))
            .unwrap_or((None, None));
        let state = fs::read_to_string(dir.join("stat"))
            .ok()
            .and_then(|t| super::holders::parse_stat_state(&t));
        Some(ProcessInfo {
            comm: comm.trim().to_owned(),
            open_fds,
            nofile_soft,
            nofile_hard,
            state,
        })
    }
}

/// Reads a namespace's counters, sockets and sysctls from a thread that
/// enters it (sysctls under /proc/sys are those of the opener's namespace).
fn read_in_netns(ns_file: &Path, sockets: bool) -> anyhow::Result<NetRead> {
    use anyhow::Context as _;
    let file = fs::File::open(ns_file).with_context(|| format!("opening {}", ns_file.display()))?;
    let handle = std::thread::Builder::new()
        .name("tcptrace-netns".into())
        .spawn(move || -> anyhow::Result<NetRead> {
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
                .context("setns into a network namespace")?;
            let mut r = Snapshotter::read_net_dir(Path::new("/proc/thread-self/net"), sockets);
            r.sysctls = Sysctls::read(Path::new("/proc/sys"));
            Ok(r)
        })
        .context("starting the namespace reader thread")?;
    handle
        .join()
        .map_err(|_| anyhow::anyhow!("namespace reader thread panicked"))?
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// A scratch directory removed on drop.
    pub struct Tree(pub PathBuf);

    impl Tree {
        pub fn new(name: &str) -> Self {
            let p =
                std::env::temp_dir().join(format!("tcptrace-diag-{}-{name}", std::process::id()));
            let _ = fs::remove_dir_all(&p);
            fs::create_dir_all(&p).unwrap();
            Self(p)
        }

        pub fn file(&self, rel: &str, text: &str) -> &Self {
            let p = self.0.join(rel);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, text).unwrap();
            self
        }

        pub fn link(&self, rel: &str, target: &str) -> &Self {
            let p = self.0.join(rel);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::os::unix::fs::symlink(target, p).unwrap();
            self
        }
    }

    impl Drop for Tree {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    pub const NETSTAT_HEAD: &str = "TcpExt: SyncookiesSent ListenOverflows ListenDrops TCPReqQFullDrop TCPReqQFullDoCookies PAWSEstab TCPChallengeACK\n";

    pub fn netstat(values: [u64; 7]) -> String {
        let v: Vec<String> = values.iter().map(u64::to_string).collect();
        format!(
            "{NETSTAT_HEAD}TcpExt: {}\nIpExt: InNoRoutes InTruncatedPkts\nIpExt: 0 0\n",
            v.join(" ")
        )
    }

    pub const TCP_HEAD: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n";

    /// One /proc/net/tcp line for an IPv4 socket.
    pub fn tcp4(
        local: [u8; 4],
        lport: u16,
        remote: [u8; 4],
        rport: u16,
        st: u8,
        rx: u64,
        inode: u64,
    ) -> String {
        let hex = |a: [u8; 4]| format!("{:08X}", u32::from_le_bytes(a));
        format!(
            "   0: {}:{lport:04X} {}:{rport:04X} {st:02X} 00000000:{rx:08X} 00:00000000 00000000     0        0 {inode} 1 0000000000000000 100 0 0 10 0\n",
            hex(local),
            hex(remote)
        )
    }

    pub fn sysctls(t: &Tree, prefix: &str, somaxconn: u64, range: &str) {
        t.file(
            &format!("{prefix}/net/core/somaxconn"),
            &format!("{somaxconn}\n"),
        )
        .file(&format!("{prefix}/net/ipv4/tcp_max_syn_backlog"), "512\n")
        .file(&format!("{prefix}/net/ipv4/tcp_syncookies"), "1\n")
        .file(&format!("{prefix}/net/ipv4/tcp_abort_on_overflow"), "0\n")
        .file(&format!("{prefix}/net/ipv4/tcp_timestamps"), "1\n")
        .file(&format!("{prefix}/net/ipv4/tcp_tw_reuse"), "2\n")
        .file(&format!("{prefix}/net/ipv4/tcp_max_tw_buckets"), "262144\n")
        .file(
            &format!("{prefix}/net/ipv4/ip_local_port_range"),
            &format!("{range}\n"),
        );
    }

    #[test]
    fn parses_netstat_tcpext_only() {
        let m = parse_netstat(&netstat([1, 2, 3, 4, 5, 6, 7]));
        assert_eq!(m["ListenOverflows"], 2);
        assert_eq!(m["TCPChallengeACK"], 7);
        assert!(!m.contains_key("InNoRoutes"));
    }

    #[test]
    fn parses_proc_net_tcp_v4_and_v6() {
        let text = format!(
            "{TCP_HEAD}{}{}",
            tcp4([127, 0, 0, 1], 8080, [0, 0, 0, 0], 0, 0x0A, 3, 1234),
            tcp4([10, 0, 0, 2], 40000, [10, 0, 0, 9], 5432, 0x06, 0, 0)
        );
        let s = parse_proc_net_tcp(&text);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].local, "127.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(
            (s[0].lport, s[0].state, s[0].rx_queue, s[0].inode),
            (8080, 0x0A, 3, 1234)
        );
        assert_eq!(s[1].remote, "10.0.0.9".parse::<IpAddr>().unwrap());
        assert_eq!(s[1].rport, 5432);
        // ::1 port 8080 listening, and ::ffff:127.0.0.1 (folded to IPv4).
        let v6 = format!(
            "{TCP_HEAD}   0: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000001 00:00000000 00000000     0        0 99 1\n   1: 0000000000000000FFFF00000100007F:1F90 0000000000000000FFFF00000100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 0 1\n"
        );
        let s = parse_proc_net_tcp(&v6);
        assert_eq!(s[0].local, "::1".parse::<IpAddr>().unwrap());
        assert_eq!((s[0].lport, s[0].rx_queue, s[0].inode), (8080, 1, 99));
        assert_eq!(s[1].local, "127.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(s[1].rport, 40000);
    }

    #[test]
    fn parses_limits_and_ranges() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \nMax cpu time              unlimited            unlimited            seconds   \nMax open files            1024                 524288               files     \n";
        assert_eq!(parse_nofile(limits), (Some(1024), Some(524288)));
        assert_eq!(parse_port_range("32768\t60999\n"), Some((32768, 60999)));
        assert_eq!(parse_port_range("9 1"), None);
    }

    #[test]
    fn aggregates_sockets() {
        let mut ns = NetnsSnapshot {
            sysctls: Sysctls {
                ip_local_port_range: Some((40000, 40007)),
                ..Sysctls::default()
            },
            ..NetnsSnapshot::default()
        };
        let mut text = String::from(TCP_HEAD);
        text += &tcp4([0; 4], 8080, [0; 4], 0, 0x0A, 5, 77);
        for i in 0..3 {
            text += &tcp4([127, 0, 0, 1], 8080, [127, 0, 0, 1], 50000 + i, 0x08, 0, 0);
        }
        for i in 0..6 {
            let st = if i < 2 { 0x06 } else { 0x01 };
            text += &tcp4([127, 0, 0, 1], 40000 + i, [127, 0, 0, 1], 5555, st, 0, 0);
        }
        text += &tcp4([127, 0, 0, 1], 40006, [127, 0, 0, 2], 80, 0x01, 0, 0);
        ns.add_sockets(&parse_proc_net_tcp(&text));
        assert_eq!(ns.listeners.len(), 1);
        assert_eq!(
            ns.listener(8080, Some("127.0.0.1".parse().unwrap()))
                .unwrap()
                .backlog,
            5
        );
        assert_eq!(ns.listener_ports[&8080].close_wait, 3);
        assert_eq!(ns.close_wait_total, 3);
        assert_eq!(ns.time_wait_total, 2);
        assert_eq!(ns.ephemeral_in_use, 7);
        assert_eq!(ns.ephemeral_time_wait, 2);
        assert_eq!(ns.holders[0].dport, 5555);
        assert_eq!((ns.holders[0].ports, ns.holders[0].time_wait), (6, 2));
        assert_eq!(ns.holders[1].ports, 1);
    }

    /// A fixture host: our namespace 100 with a listener owned by pid 7 (at
    /// its fd limit), and namespace 200 seen through a thread of pid 9.
    pub fn fixture_host(t: &Tree) {
        t.link("proc/self/ns/net", "net:[100]");
        sysctls(t, "proc/sys", 128, "32768 60999");
        t.file("proc/self/net/netstat", &netstat([0, 10, 10, 0, 0, 0, 0]));
        let mut tcp = String::from(TCP_HEAD);
        tcp += &tcp4([0; 4], 8080, [0; 4], 0, 0x0A, 129, 555);
        for i in 0..20 {
            tcp += &tcp4([10, 0, 0, 1], 8080, [10, 0, 0, 9], 50000 + i, 0x08, 0, 0);
        }
        t.file("proc/self/net/tcp", &tcp);
        t.link("proc/7/task/7/ns/net", "net:[100]");
        t.file("proc/7/comm", "server\n");
        t.file(
            "proc/7/limits",
            "Limit                     Soft Limit           Hard Limit           Units     \nMax open files            4                    4096                 files     \n",
        );
        for fd in 0..4 {
            let target = if fd == 3 {
                "socket:[555]".to_owned()
            } else {
                format!("/dev/null{fd}")
            };
            t.link(&format!("proc/7/fd/{fd}"), &target);
        }
        t.link("proc/9/task/9/ns/net", "net:[100]");
        t.link("proc/9/task/10/ns/net", "net:[200]");
        t.file("proc/9/comm", "client\n");
        t.file(
            "proc/9/task/10/net/netstat",
            &netstat([0, 0, 0, 0, 0, 0, 3]),
        );
        let mut tcp = String::from(TCP_HEAD);
        tcp += &tcp4([127, 0, 0, 1], 33000, [127, 0, 0, 1], 5555, 0x06, 0, 0);
        t.file("proc/9/task/10/net/tcp", &tcp);
    }

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
        let mut base = s.baseline(Scope::All, &Needs::default());
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
        // Scope limited to one namespace.
        let only = s.snapshot(&Needs::default(), Scope::Netns(200), Some(&base));
        assert_eq!(only.netstat.keys().copied().collect::<Vec<_>>(), vec![200]);
    }
}
