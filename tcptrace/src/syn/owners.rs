//! Listener owners found in /proc, for listeners created before tcptrace
//! started; replay uses only what the live run found.

use std::{collections::HashMap, fs};

use super::decode::Owner;
use crate::event::{Detail, Event};

/// What a /proc scan found for a listener's socket inode: (pid, comm) of a
/// process holding it, or None.
pub type OwnerLookup = (u64, Option<(u32, String)>);

/// Socket inode → (pid, comm) of a process holding it, for listeners that
/// were created before tcptrace started. One /proc scan per unknown inode.
#[derive(Default)]
pub struct Owners {
    cache: HashMap<u64, Option<(u32, String)>>,
    /// Replay: never scan this host's /proc, only use what the recording
    /// says the live run found ([`Owners::learn`]).
    offline: bool,
}

impl Owners {
    pub fn offline() -> Self {
        Self {
            offline: true,
            ..Self::default()
        }
    }

    /// A lookup the live run made (from a recording).
    pub fn learn(&mut self, (ino, owner): OwnerLookup) {
        self.cache.insert(ino, owner);
    }

    /// Fills pid/comm of a SYN event from the listener's owner; returns the
    /// /proc lookup when one was made (the recorder stores it).
    pub fn fill(&mut self, ev: &mut Event) -> Option<OwnerLookup> {
        let Detail::Syn(d) = &mut ev.detail else {
            return None;
        };
        if d.owner.is_some() || d.listener_ino == 0 {
            return None;
        }
        let ino = d.listener_ino;
        let mut lookup = None;
        let found = match self.cache.get(&ino) {
            Some(found) => found.clone(),
            None if self.offline => None,
            None => {
                let found = find_socket_owner(ino);
                self.cache.insert(ino, found.clone());
                lookup = Some((ino, found.clone()));
                found
            }
        };
        if let Some((pid, comm)) = found {
            ev.pid = pid;
            ev.comm = comm;
            d.owner = Some(Owner::Proc);
        }
        lookup
    }
}

fn find_socket_owner(ino: u64) -> Option<(u32, String)> {
    let want = format!("socket:[{ino}]");
    for proc_entry in fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = proc_entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = fs::read_dir(proc_entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == want.as_str()) {
                let comm = fs::read_to_string(proc_entry.path().join("comm"))
                    .map(|c| c.trim_end().to_owned())
                    .unwrap_or_default();
                return Some((pid, comm));
            }
        }
    }
    None
}
