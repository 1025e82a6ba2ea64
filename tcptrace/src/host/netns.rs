//! Network namespaces: finding every one reachable (through a task inside
//! it or a `/run/netns` mount) and reading one's `net/` directory, from a
//! thread that enters it where a task's view is not enough.

use std::{
    collections::BTreeMap,
    fs,
    net::IpAddr,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

use super::{
    netstat::parse_netstat,
    sockets::{parse_fib_trie_local, parse_if_inet6, parse_proc_net_tcp, SockLine},
    sysctl::Sysctls,
};

/// How many namespaces one snapshot reads counters for.
const MAX_NETNS: usize = 512;

/// How many namespaces a baseline holds open: a quarter of the usual
/// RLIMIT_NOFILE soft limit (1024), so the rest of tcptrace keeps its file
/// descriptors. Namespaces beyond it are read unpinned.
const MAX_PINS: usize = 256;

/// What was read from one namespace.
#[derive(Debug, Default)]
pub(super) struct NetRead {
    pub netstat: Option<BTreeMap<String, u64>>,
    pub socks: Vec<SockLine>,
    pub sockets_read: bool,
    /// The namespace's own addresses (`fib_trie` LOCAL, `if_inet6`).
    pub local_addrs: Vec<IpAddr>,
    pub sysctls: Sysctls,
}

/// How to reach one namespace.
#[derive(Clone, Debug, Default)]
pub(super) struct NsAccess {
    /// A task inside it (its `net/` directory shows the namespace).
    pub task: Option<PathBuf>,
    /// A file setns(2) accepts for it.
    pub ns_file: Option<PathBuf>,
}

pub(super) fn ns_inode_of_link(path: &Path) -> Option<u64> {
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

/// Every namespace reachable through a task or /run/netns.
pub(super) fn discover(root: &Path) -> BTreeMap<u64, NsAccess> {
    let mut out: BTreeMap<u64, NsAccess> = BTreeMap::new();
    let mut pids = numeric_dirs(&root.join("proc"));
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
        let Ok(rd) = fs::read_dir(root.join(dir)) else {
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

/// Reads a namespace's `net/` directory (`sysctls` left empty): its
/// counters, and with `sockets` its socket tables (costly on a busy host:
/// not for baselines).
pub(super) fn read_net_dir(net: &Path, sockets: bool) -> NetRead {
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
    if let Ok(t) = fs::read_to_string(net.join("fib_trie")) {
        r.local_addrs.extend(parse_fib_trie_local(&t));
    }
    if let Ok(t) = fs::read_to_string(net.join("if_inet6")) {
        r.local_addrs.extend(parse_if_inet6(&t));
    }
    r
}

/// Reads a namespace's counters, sockets and sysctls from a thread that
/// enters it (sysctls under /proc/sys are those of the opener's namespace).
pub(super) fn read_in_netns(ns_file: &Path, sockets: bool) -> anyhow::Result<NetRead> {
    use anyhow::Context as _;
    let file = fs::File::open(ns_file).with_context(|| format!("opening {}", ns_file.display()))?;
    let handle = std::thread::Builder::new()
        .name("tcptrace-netns".into())
        .spawn(move || -> anyhow::Result<NetRead> {
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
                .context("setns into a network namespace")?;
            let mut r = read_net_dir(Path::new("/proc/thread-self/net"), sockets);
            r.sysctls = Sysctls::read(Path::new("/proc/sys"));
            Ok(r)
        })
        .context("starting the namespace reader thread")?;
    handle
        .join()
        .map_err(|_| anyhow::anyhow!("namespace reader thread panicked"))?
}

/// Open handles on the namespaces a baseline read. A namespace's inode
/// number is given to a new namespace once the old one is freed, and a
/// baseline keyed by inode would then lend the old namespace's counters to
/// the new one (its deltas would start from the old readings). While a
/// handle is open the namespace is not freed, so a baseline reading always
/// belongs to the namespace it was read from; [`NetnsPins::release_gone`]
/// lets go of those nothing else reaches any more.
#[derive(Debug, Default)]
pub struct NetnsPins(pub(super) BTreeMap<u64, fs::File>);

/// Whether a namespace could be held open.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Pin {
    Held,
    /// It is gone (or its only task moved on): its reading may belong to
    /// another namespace by now.
    Gone,
    /// Not allowed or not possible here: kept unpinned.
    Unpinned,
}

impl NetnsPins {
    /// Opens `access`'s namespace file and checks it is still `ino`.
    pub(super) fn pin(&mut self, ino: u64, access: &NsAccess) -> Pin {
        let Some(path) = &access.ns_file else {
            return Pin::Unpinned;
        };
        if self.0.len() >= MAX_PINS {
            return Pin::Unpinned;
        }
        match fs::File::open(path) {
            Ok(f) => match f.metadata() {
                Ok(md) if md.ino() == ino => {
                    self.0.insert(ino, f);
                    Pin::Held
                }
                Ok(_) => Pin::Gone,
                Err(_) => Pin::Unpinned,
            },
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ESRCH)) => Pin::Gone,
            Err(_) => Pin::Unpinned,
        }
    }

    /// Closes the handles of namespaces no task or mount in `found`
    /// reaches and returns their inodes (the baseline forgets them, so a
    /// new namespace given the same number counts from zero).
    pub(super) fn release_gone(&mut self, found: &BTreeMap<u64, NsAccess>) -> Vec<u64> {
        let gone: Vec<u64> = self
            .0
            .keys()
            .copied()
            .filter(|ino| !found.contains_key(ino))
            .collect();
        for ino in &gone {
            self.0.remove(ino);
        }
        gone
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_hold_what_they_name_and_let_go_of_what_is_gone() {
        let own = ns_inode_of_link(Path::new("/proc/self/ns/net")).expect("own netns");
        let at = |p: &str| NsAccess {
            task: None,
            ns_file: Some(PathBuf::from(p)),
        };
        let mut pins = NetnsPins::default();
        assert_eq!(pins.pin(own, &at("/proc/self/ns/net")), Pin::Held);
        // Another inode behind the path: the one asked for is gone.
        assert_eq!(pins.pin(own + 1, &at("/proc/self/ns/net")), Pin::Gone);
        assert_eq!(pins.pin(7, &at("/proc/self/no-such-file")), Pin::Gone);
        assert_eq!(pins.pin(7, &NsAccess::default()), Pin::Unpinned);
        let mut full = NetnsPins::default();
        for i in 0..MAX_PINS as u64 {
            full.0
                .insert(u64::MAX - i, fs::File::open("/proc/self/ns/net").unwrap());
        }
        assert_eq!(full.pin(own, &at("/proc/self/ns/net")), Pin::Unpinned);
        let mut found = BTreeMap::new();
        found.insert(own, at("/proc/self/ns/net"));
        assert!(pins.release_gone(&found).is_empty());
        assert_eq!(pins.release_gone(&BTreeMap::new()), vec![own]);
        assert!(pins.release_gone(&BTreeMap::new()).is_empty());
    }
}
