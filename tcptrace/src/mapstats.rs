//! How full the kernel's per-thread and per-socket state maps are: entries
//! against capacity, and inserts that failed, per map. Read at every summary
//! (and recorder snapshot) so a map that fills up is seen, not guessed.
//!
//! Entries of hash maps are counted by walking the keys
//! (`BPF_MAP_GET_NEXT_KEY`), at most about twice the capacity of syscalls per
//! map; those of per-task storage, which cannot be walked, by the programs.
//! A walk that was expensive (a nearly full map) is reused for ten times its
//! own duration, so frequent snapshots never spend more than a tenth of a
//! core on it.

use std::{
    cell::RefCell,
    collections::HashSet,
    fmt::Write as _,
    io,
    os::fd::{AsFd as _, AsRawFd as _, BorrowedFd, OwnedFd},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use aya::maps::{Map, MapData, PerCpuArray};
use serde::{Deserialize, Serialize};
use tcptrace_common::statemaps::{StateMap, CONNECT_IN_FLIGHT, FULL_MAP};

use crate::escape::Escaped;

/// One state map at one instant.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MapFill {
    /// Short name (`StateMap::name`).
    pub name: String,
    pub entries: u64,
    /// 0 for per-task storage, which has no fixed capacity.
    pub capacity: u64,
    /// Least recently used entries are evicted when full (instead of new
    /// inserts failing).
    pub lru: bool,
    /// Inserts that failed because the map was full (or, for the kprobe call
    /// stack, deeper than it holds): each is an event not tracked.
    pub full_failures: u64,
}

impl MapFill {
    /// At least 80 % full.
    pub fn nearly_full(&self) -> bool {
        self.capacity > 0 && self.entries * 5 >= self.capacity * 4
    }

    fn percent(&self) -> u64 {
        (self.entries * 100).checked_div(self.capacity).unwrap_or(0)
    }
}

/// A state map and where its entries are counted.
struct Handle {
    map: StateMap,
    source: Source,
}

enum Source {
    /// A hash map's fd (a duplicate, independent of who owns the map) and
    /// shape.
    Keys {
        fd: OwnedFd,
        key_size: usize,
        capacity: u32,
        lru: bool,
    },
    /// Per-task storage: no capacity; the programs count what they hold.
    Counted(PerCpuArray<MapData, u64>),
}

struct Walked {
    at: Instant,
    cost: Duration,
    entries: Vec<u64>,
}

/// The state maps of a loaded object.
pub struct StateMaps {
    handles: Vec<Handle>,
    failures: PerCpuArray<MapData, u64>,
    last: RefCell<Option<Walked>>,
}

impl StateMaps {
    /// Call before other readers take maps out of `ebpf`: the hash maps are
    /// only borrowed (their fds duplicated); the counters are taken.
    pub fn take(ebpf: &mut aya::Ebpf) -> Result<Self> {
        let counts = ebpf
            .take_map(CONNECT_IN_FLIGHT)
            .with_context(|| format!("map {CONNECT_IN_FLIGHT} missing from the object"))?;
        let failures = ebpf
            .take_map(FULL_MAP)
            .with_context(|| format!("map {FULL_MAP} missing from the object"))?;
        Self::from_maps(ebpf, counts, failures)
    }

    /// A reader on `CONNECT_IN_FLIGHT` and `STATE_MAP_FULL` handles the
    /// caller got (taken, or borrowed through a duplicate fd by the metrics
    /// endpoint); the hash maps are borrowed from `ebpf` as in [`Self::take`].
    pub fn from_maps(ebpf: &aya::Ebpf, counts: Map, failures: Map) -> Result<Self> {
        let mut counts = Some(counts);
        let handles = StateMap::ALL
            .iter()
            .map(|&m| {
                if m.per_task() {
                    let counts = counts
                        .take()
                        .with_context(|| format!("more than one map uses {CONNECT_IN_FLIGHT}"))?;
                    let counts = PerCpuArray::try_from(counts).context(CONNECT_IN_FLIGHT)?;
                    return Ok(Handle {
                        map: m,
                        source: Source::Counted(counts),
                    });
                }
                let name = m.map_name();
                let map = ebpf
                    .map(name)
                    .with_context(|| format!("map {name} missing from the object"))?;
                let (data, lru) = match map {
                    Map::HashMap(d) | Map::PerCpuHashMap(d) => (d, false),
                    Map::LruHashMap(d) | Map::PerCpuLruHashMap(d) => (d, true),
                    other => bail!("map {name} is not a hash map: {other:?}"),
                };
                let info = data.info().with_context(|| format!("map {name}: info"))?;
                let fd = data
                    .fd()
                    .as_fd()
                    .try_clone_to_owned()
                    .with_context(|| format!("map {name}: duplicating its fd"))?;
                Ok(Handle {
                    map: m,
                    source: Source::Keys {
                        fd,
                        key_size: info.key_size() as usize,
                        capacity: info.max_entries(),
                        lru,
                    },
                })
            })
            .collect::<Result<_>>()?;
        let failures = PerCpuArray::try_from(failures).context(FULL_MAP)?;
        Ok(Self {
            handles,
            failures,
            last: RefCell::new(None),
        })
    }

    /// Every state map now.
    pub fn read(&self) -> Result<Vec<MapFill>> {
        let entries = self.entries()?;
        self.handles
            .iter()
            .zip(entries)
            .map(|(h, entries)| {
                let full_failures = self
                    .failures
                    .get(&(h.map as u32), 0)
                    .with_context(|| format!("reading {FULL_MAP}"))?
                    .iter()
                    .sum();
                let (capacity, lru) = match &h.source {
                    Source::Keys { capacity, lru, .. } => (u64::from(*capacity), *lru),
                    Source::Counted(_) => (0, false),
                };
                Ok(MapFill {
                    name: h.map.name().to_owned(),
                    entries,
                    capacity,
                    lru,
                    full_failures,
                })
            })
            .collect()
    }

    fn entries(&self) -> Result<Vec<u64>> {
        let mut last = self.last.borrow_mut();
        if let Some(w) = last.as_ref() {
            if w.at.elapsed() < w.cost * 10 {
                return Ok(w.entries.clone());
            }
        }
        let start = Instant::now();
        let entries = self
            .handles
            .iter()
            .map(|h| match &h.source {
                Source::Keys {
                    fd,
                    key_size,
                    capacity,
                    ..
                } => count_keys(fd.as_fd(), *key_size, *capacity)
                    .with_context(|| format!("counting the entries of {}", h.map.map_name())),
                Source::Counted(counts) => Ok(counts
                    .get(&0, 0)
                    .with_context(|| format!("reading {CONNECT_IN_FLIGHT}"))?
                    .iter()
                    .fold(0u64, |sum, n| sum.wrapping_add(*n))),
            })
            .collect::<Result<Vec<_>>>()?;
        *last = Some(Walked {
            at: Instant::now(),
            cost: start.elapsed(),
            entries: entries.clone(),
        });
        Ok(entries)
    }
}

/// Distinct keys in a hash map. A walk restarts from the first key when the
/// current one is deleted under it, so keys are deduplicated and the walk is
/// bounded.
fn count_keys(fd: BorrowedFd<'_>, key_size: usize, capacity: u32) -> io::Result<u64> {
    let mut seen: HashSet<Vec<u8>> = HashSet::new();
    let mut current: Option<Vec<u8>> = None;
    let mut next = vec![0u8; key_size];
    for _ in 0..2 * capacity as usize + 2 {
        if !next_key(fd, current.as_deref(), &mut next)? {
            break;
        }
        seen.insert(next.clone());
        current = Some(next.clone());
    }
    Ok((seen.len() as u64).min(u64::from(capacity)))
}

/// `BPF_MAP_GET_NEXT_KEY`: the key after `key` (the first with None) into
/// `next`; false at the end of the map.
fn next_key(fd: BorrowedFd<'_>, key: Option<&[u8]>, next: &mut [u8]) -> io::Result<bool> {
    const BPF_MAP_GET_NEXT_KEY: libc::c_long = 4;
    #[repr(C)]
    struct Attr {
        map_fd: u32,
        _pad: u32,
        key: u64,
        next_key: u64,
        flags: u64,
    }
    let attr = Attr {
        map_fd: fd.as_raw_fd() as u32,
        _pad: 0,
        key: key.map_or(0, |k| k.as_ptr() as u64),
        next_key: next.as_mut_ptr() as u64,
        flags: 0,
    };
    // SAFETY: `key` and `next` are live buffers of the map's key size; the
    // kernel reads one key from `key` and writes one into `next`.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_MAP_GET_NEXT_KEY,
            &raw const attr,
            std::mem::size_of::<Attr>(),
        )
    };
    if ret == 0 {
        return Ok(true);
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::ENOENT) {
        Ok(false)
    } else {
        Err(err)
    }
}

/// The summary lines: one compact line for every map, then a warning per map
/// that is nearly full or lost inserts. Nothing for a recording without them.
pub fn render_text(maps: &[MapFill], out: &mut String) {
    if maps.is_empty() {
        return;
    }
    let all_lru = maps.iter().filter(|m| m.capacity > 0).all(|m| m.lru);
    let parts: Vec<String> = maps
        .iter()
        .map(|m| {
            let mut p = if m.capacity == 0 {
                format!("{} {} (per task)", Escaped(&m.name), m.entries)
            } else {
                format!("{} {}/{}", Escaped(&m.name), m.entries, m.capacity)
            };
            if m.lru && !all_lru {
                p.push_str(" (LRU)");
            }
            if m.nearly_full() || m.full_failures > 0 {
                p.push('!');
            }
            p
        })
        .collect();
    let _ = writeln!(
        out,
        "state maps{}: {}",
        if all_lru { " (LRU)" } else { "" },
        parts.join("  ")
    );
    for m in maps {
        if m.nearly_full() {
            let _ = writeln!(
                out,
                "WARNING: state map {} is {}% full ({}/{}): {}",
                Escaped(&m.name),
                m.percent(),
                m.entries,
                m.capacity,
                if m.lru {
                    "its least recently used entries are being evicted (their events are lost)"
                } else {
                    "new entries will fail"
                }
            );
        }
        if m.full_failures > 0 {
            let _ = writeln!(
                out,
                "WARNING: state map {}: {} inserts failed ({}): those events were not tracked",
                Escaped(&m.name),
                m.full_failures,
                if m.capacity == 0 {
                    "task storage not allocated"
                } else {
                    "map full"
                }
            );
        }
    }
}

/// One kernel state map: entries against capacity.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MapJson {
    pub capacity: u64,
    pub entries: u64,
    pub full_failures: u64,
    pub lru: bool,
    pub name: String,
}

/// The summary's `maps`: `[{"name","entries","capacity","lru","full_failures"}]`.
pub fn to_json(maps: &[MapFill]) -> Vec<MapJson> {
    maps.iter()
        .map(|m| MapJson {
            name: m.name.clone(),
            entries: m.entries,
            capacity: m.capacity,
            lru: m.lru,
            full_failures: m.full_failures,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fill(name: &str, entries: u64, capacity: u64, lru: bool, full_failures: u64) -> MapFill {
        MapFill {
            name: name.into(),
            entries,
            capacity,
            lru,
            full_failures,
        }
    }

    #[test]
    fn compact_line_and_warnings() {
        let maps = [
            fill("connect", 3, 0, false, 0),
            fill("port_search", 0, 16384, false, 2),
            fill("syn_ghosts", 6554, 8192, true, 0),
        ];
        let mut out = String::new();
        render_text(&maps, &mut out);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0],
            "state maps: connect 3 (per task)  port_search 0/16384!  syn_ghosts 6554/8192 (LRU)!"
        );
        assert_eq!(
            lines[1],
            "WARNING: state map port_search: 2 inserts failed (map full): those events were not tracked"
        );
        assert!(
            lines[2]
                .starts_with("WARNING: state map syn_ghosts is 80% full (6554/8192): its least"),
            "{out}"
        );
        assert_eq!(lines.len(), 3, "{out}");
    }

    #[test]
    fn all_lru_maps_say_so_once() {
        let mut out = String::new();
        render_text(
            &[
                fill("connect", 2, 0, false, 0),
                fill("port_search", 0, 16384, true, 0),
                fill("syn_ghosts", 1, 8192, true, 0),
            ],
            &mut out,
        );
        assert_eq!(
            out,
            "state maps (LRU): connect 2 (per task)  port_search 0/16384  syn_ghosts 1/8192\n"
        );
        let mut none = String::new();
        render_text(&[], &mut none);
        assert!(none.is_empty());
    }

    #[test]
    fn eighty_percent_is_nearly_full() {
        assert!(!fill("a", 6553, 8192, true, 0).nearly_full());
        assert!(fill("a", 6554, 8192, true, 0).nearly_full());
        assert!(!fill("a", 0, 0, true, 0).nearly_full());
    }

    #[test]
    fn json_fields() {
        let j = json!(to_json(&[fill("listen_owners", 7, 16384, true, 1)]));
        assert_eq!(
            j,
            json!([{"name": "listen_owners", "entries": 7, "capacity": 16384, "lru": true, "full_failures": 1}])
        );
    }
}
