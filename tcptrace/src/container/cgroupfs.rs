//! Cgroup v2 id → path. On cgroup v2 a cgroup's id (what the kernel's
//! `bpf_get_current_cgroup_id()` returns, the events' `cgroup`) is the
//! inode number of its directory in the cgroup2 filesystem (kernfs node
//! id; 64-bit hosts).
//!
//! Two ways in, no privilege needed beyond reading the tree (every
//! cgroup directory is world-readable):
//! 1. the event's task: `/proc/<pid>/cgroup` names its cgroup v2 path
//!    (`0::/...`), taken only when that directory's inode is the event's
//!    id (the task may have moved, or exited and its pid been reused);
//! 2. otherwise a walk of the tree, bounded in depth and entries, that
//!    notes every container cgroup by inode (at most one walk a second).
//!
//! `open_by_handle_at()` with the id as a kernfs file handle would be one
//! call, but needs CAP_DAC_READ_SEARCH, which lets a process read any file
//! on the host: the daemon does not take it for this.

use std::{collections::HashMap, fs, os::unix::fs::MetadataExt as _, path::PathBuf};

use walkdir::WalkDir;

use super::path::{self, PathInfo};

/// Deepest a walk goes (the kernel's default `cgroup.max.depth` is
/// unlimited; Kubernetes nodes use about six levels).
pub const MAX_DEPTH: usize = 32;
/// Most directories one walk looks at.
pub const MAX_WALK: usize = 100_000;
/// Most container cgroups one walk remembers.
pub const MAX_CONTAINERS: usize = 16_384;
/// Longest `/proc/<pid>/cgroup` read.
const MAX_PROC_CGROUP: u64 = 64 * 1024;

/// Where the cgroup2 filesystem is mounted, from `/proc/self/mountinfo`:
/// `/sys/fs/cgroup` on unified hosts, `/sys/fs/cgroup/unified` on hybrid
/// ones. None where cgroup v2 is not mounted.
pub fn find_root() -> Option<PathBuf> {
    let info = fs::read_to_string("/proc/self/mountinfo").ok()?;
    root_in_mountinfo(&info)
}

/// The mount point of the first `cgroup2` line (mountinfo: mount point is
/// field 5, the type the first field after ` - `; octal escapes as `\040`).
fn root_in_mountinfo(info: &str) -> Option<PathBuf> {
    info.lines().find_map(|line| {
        let (before, after) = line.split_once(" - ")?;
        if after.split(' ').next()? != "cgroup2" {
            return None;
        }
        before.split(' ').nth(4).map(|m| PathBuf::from(unescape(m)))
    })
}

fn unescape(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)))
            .and_then(|d| std::str::from_utf8(d).ok())
            .and_then(|d| u8::from_str_radix(d, 8).ok());
        match octal {
            Some(c) => {
                out.push(c);
                i += 4;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The cgroup v2 tree under `root`.
#[derive(Clone, Debug)]
pub struct CgroupFs {
    root: PathBuf,
}

impl CgroupFs {
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    /// The path (relative to the root) of the cgroup with this id, if
    /// it is task `pid`'s cgroup (checked by inode).
    pub fn via_proc(&self, id: u64, pid: u32) -> Option<String> {
        use std::io::Read as _;
        if pid == 0 {
            return None;
        }
        let mut text = String::new();
        fs::File::open(format!("/proc/{pid}/cgroup"))
            .ok()?
            .take(MAX_PROC_CGROUP)
            .read_to_string(&mut text)
            .ok()?;
        let rel = text.lines().find_map(|l| l.strip_prefix("0::"))?;
        let rel = rel.trim_start_matches('/');
        // A path outside our cgroup namespace reads `/../..`: not ours to join.
        if rel.split('/').any(|c| c == "..") {
            return None;
        }
        let dir = self.root.join(rel);
        (fs::metadata(&dir).ok()?.ino() == id).then(|| rel.to_owned())
    }

    /// Every container cgroup in the tree, by id, with what its path
    /// says: one walk, bounded in depth and entries, that answers every
    /// miss until the next.
    pub fn containers(&self) -> HashMap<u64, PathInfo> {
        use walkdir::DirEntryExt as _;
        WalkDir::new(&self.root)
            .max_depth(MAX_DEPTH)
            .follow_links(false)
            .same_file_system(true)
            .into_iter()
            .filter_entry(|e| e.file_type().is_dir())
            .take(MAX_WALK)
            .flatten()
            .filter_map(|e| {
                let rel = e.path().strip_prefix(&self.root).ok()?;
                Some((e.ino(), path::parse(&rel.to_string_lossy())?))
            })
            .take(MAX_CONTAINERS)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup2_mount_point_from_mountinfo() {
        let hybrid = "25 24 0:22 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755\n\
                      26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(
            root_in_mountinfo(hybrid),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        let unified = "30 1 0:26 / /sys/fs/cgroup rw shared:4 - cgroup2 cgroup2 rw\n";
        assert_eq!(
            root_in_mountinfo(unified),
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
        let spaced = r"30 1 0:26 / /mnt/my\040cg rw - cgroup2 none rw";
        assert_eq!(root_in_mountinfo(spaced), Some(PathBuf::from("/mnt/my cg")));
        assert_eq!(
            root_in_mountinfo("30 1 0:26 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu"),
            None
        );
        assert_eq!(root_in_mountinfo("garbage\n - \n"), None);
        assert_eq!(unescape(r"a\\b\0"), r"a\\b\0");
    }

    #[test]
    fn walk_notes_container_directories_by_inode() {
        let dir = std::env::temp_dir().join(format!("tcptrace-cgfs-{}", std::process::id()));
        let id = "c".repeat(64);
        let deep = dir.join(format!("system.slice/docker-{id}.scope"));
        fs::create_dir_all(&deep).unwrap();
        fs::create_dir_all(dir.join("user.slice/session-1.scope")).unwrap();
        let cg = CgroupFs::new(dir.clone());
        let found = cg.containers();
        let ino = fs::metadata(&deep).unwrap().ino();
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[&ino].id.as_str(), id);
        assert_eq!(cg.via_proc(ino, 0), None);
        // Our own cgroup is not in this tree.
        assert_eq!(cg.via_proc(ino, std::process::id()), None);
        fs::remove_dir_all(&dir).unwrap();
    }
}
