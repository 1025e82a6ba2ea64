//! Which processes hold a socket: one pass over `/proc/*/fd`, matching the
//! `socket:[INODE]` links. The process that called listen() is not always
//! the one that accepts (nginx's master listens, its workers inherit the
//! socket and accept, each under its own RLIMIT_NOFILE), so every holder
//! of a listening socket is a candidate for "who is not accepting".
//!
//! The scan is bounded (processes, descriptors per process, holders per
//! socket) and tolerates processes and descriptors that vanish mid-scan:
//! whatever cannot be read is skipped.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::Path,
};

/// Processes looked at in one scan.
const MAX_PROCESSES: usize = 65_536;
/// Descriptors looked at per process (a server may hold a million).
const MAX_FDS_PER_PROCESS: usize = 65_536;
/// Descriptors looked at in one scan, all processes together.
const MAX_FDS_TOTAL: usize = 4_000_000;
/// Holders remembered per socket (prefork servers fork many workers).
pub const MAX_HOLDERS: usize = 64;

/// The inode of a `socket:[N]` link target.
fn socket_inode(target: &Path) -> Option<u64> {
    target
        .to_str()?
        .strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// For each wanted socket inode, the pids holding it, lowest first (at
/// most [`MAX_HOLDERS`]). `proc` is a /proc directory.
pub fn scan(proc: &Path, wanted: &BTreeSet<u64>) -> BTreeMap<u64, Vec<u32>> {
    let mut out: BTreeMap<u64, Vec<u32>> = BTreeMap::new();
    if wanted.is_empty() {
        return out;
    }
    let Ok(rd) = fs::read_dir(proc) else {
        return out;
    };
    let mut pids: Vec<u32> = rd
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .take(MAX_PROCESSES)
        .collect();
    pids.sort_unstable();
    let mut budget = MAX_FDS_TOTAL;
    for pid in pids {
        if budget == 0 {
            break;
        }
        // Gone since the listing, or not ours to read: skip it.
        let Ok(fds) = fs::read_dir(proc.join(pid.to_string()).join("fd")) else {
            continue;
        };
        // A process holding one socket in several descriptors counts once.
        let mut held = BTreeSet::new();
        for e in fds
            .filter_map(Result::ok)
            .take(MAX_FDS_PER_PROCESS.min(budget))
        {
            budget -= 1;
            let Some(inode) = fs::read_link(e.path()).ok().and_then(|t| socket_inode(&t)) else {
                continue;
            };
            if wanted.contains(&inode) {
                held.insert(inode);
            }
        }
        for inode in held {
            let v = out.entry(inode).or_default();
            if v.len() < MAX_HOLDERS {
                v.push(pid);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{super::fixture::Tree, *};

    #[test]
    fn every_holder_of_a_socket_is_found() {
        let t = Tree::new("holders");
        // Master 10 and workers 11, 12 share socket 555; 12 holds it twice;
        // 13 holds another socket; 14 has no fd directory (exited).
        for (pid, fds) in [
            (10, &["socket:[555]", "/dev/null"][..]),
            (11, &["socket:[555]", "socket:[9]"][..]),
            (12, &["socket:[555]", "socket:[555]", "pipe:[3]"][..]),
            (13, &["socket:[556]"][..]),
        ] {
            for (i, target) in fds.iter().enumerate() {
                t.link(&format!("proc/{pid}/fd/{i}"), target);
            }
        }
        t.file("proc/14/comm", "gone\n");
        let got = scan(&t.0.join("proc"), &[555, 556, 557].into());
        assert_eq!(got[&555], vec![10, 11, 12]);
        assert_eq!(got[&556], vec![13]);
        assert!(!got.contains_key(&557));
        assert!(scan(&t.0.join("proc"), &BTreeSet::new()).is_empty());
        assert!(scan(&t.0.join("nonexistent"), &[555].into()).is_empty());
    }
}
