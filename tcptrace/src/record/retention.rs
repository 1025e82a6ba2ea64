//! The daemon's segment directory: segment names (sortable by start time,
//! parsed back without opening the file), listing them oldest first, and
//! retention: the oldest segments removed first, by age (`--keep`) and by
//! total disk use (`--max-disk`), never the segment being written.

use std::{
    fs,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context as _, Result};
use chrono::{DateTime, NaiveDateTime, Utc};

const PREFIX: &str = "tcptrace-";
const SUFFIX: &str = ".rec";
/// UTC start time to the nanosecond: fixed width, so names sort as times do.
const TIME_FORMAT: &str = "%Y%m%dT%H%M%S%.9fZ";

/// `tcptrace-20261203T031200.123456789Z.rec` for a segment started at
/// `unix_ns`.
pub fn segment_name(unix_ns: i64) -> String {
    let t = DateTime::<Utc>::from_timestamp_nanos(unix_ns);
    format!("{PREFIX}{}{SUFFIX}", t.format(TIME_FORMAT))
}

/// The start time (Unix ns) a segment name says; `None` for any other
/// name (files that are not segments are left alone).
pub fn parse_segment_name(name: &str) -> Option<i64> {
    let time = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    // Fixed width: "YYYYmmddTHHMMSS.nnnnnnnnnZ".
    if time.len() != 26 {
        return None;
    }
    NaiveDateTime::parse_from_str(time, TIME_FORMAT)
        .ok()?
        .and_utc()
        .timestamp_nanos_opt()
}

/// One segment file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    pub path: PathBuf,
    /// Start time from the name (Unix ns).
    pub start_ns: i64,
    /// Space it takes on disk (allocated blocks, at least its length).
    pub disk_bytes: u64,
}

/// The segments in `dir`, oldest first.
pub fn list(dir: &Path) -> Result<Vec<Segment>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
        let name = entry.file_name();
        let Some(start_ns) = name.to_str().and_then(parse_segment_name) else {
            continue;
        };
        // A segment removed meanwhile (retention of another process, an
        // operator) is simply not listed.
        let Ok(meta) = entry.metadata() else {
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        out.push(Segment {
            path: entry.path(),
            start_ns,
            disk_bytes: (meta.blocks() * 512).max(meta.len()),
        });
    }
    out.sort_by(|a, b| (a.start_ns, &a.path).cmp(&(b.start_ns, &b.path)));
    Ok(out)
}

/// The retention bounds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Retention {
    /// Remove segments whose last event is older than this.
    pub keep: Option<Duration>,
    /// Keep the directory's segments under this many bytes on disk.
    pub max_disk: Option<u64>,
}

/// What [`Retention::enforce`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Enforced {
    pub removed: u64,
    /// Disk use of the segments left (without `need`).
    pub disk_bytes: u64,
}

impl Retention {
    /// Removes the oldest segments of `dir` (never `current`) that are past
    /// `--keep` (a segment ends where the next one starts), then while the
    /// rest plus `need` more bytes would exceed `--max-disk`.
    pub fn enforce(
        &self,
        dir: &Path,
        current: Option<&Path>,
        need: u64,
        now_ns: i64,
    ) -> Result<Enforced> {
        let segments = list(dir)?;
        let mut used: u64 = segments.iter().map(|s| s.disk_bytes).sum();
        let mut removed = 0;
        for (i, s) in segments.iter().enumerate() {
            if Some(s.path.as_path()) == current {
                // Everything after the current segment is newer than it.
                break;
            }
            let ends = segments.get(i + 1).map_or(now_ns, |n| n.start_ns);
            let too_old = self.keep.is_some_and(|keep| {
                let keep = i64::try_from(keep.as_nanos()).unwrap_or(i64::MAX);
                ends < now_ns.saturating_sub(keep)
            });
            let too_big = self.max_disk.is_some_and(|max| used + need > max);
            if !too_old && !too_big {
                break;
            }
            match fs::remove_file(&s.path) {
                Ok(()) => {
                    used = used.saturating_sub(s.disk_bytes);
                    removed += 1;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    used = used.saturating_sub(s.disk_bytes);
                }
                Err(e) => return Err(e).with_context(|| format!("removing {}", s.path.display())),
            }
        }
        Ok(Enforced {
            removed,
            disk_bytes: used,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_by_time_and_parse_back() {
        let t = 1_764_732_720_123_456_789;
        let name = segment_name(t);
        assert_eq!(name, "tcptrace-20251203T033200.123456789Z.rec");
        assert_eq!(parse_segment_name(&name), Some(t));
        assert!(segment_name(t + 1) > name);
        assert!(segment_name(t + 10_000_000_000) > segment_name(t + 999_999_999));
        for bad in [
            "tcptrace-20251203T033200Z.rec",
            "tcptrace-x.rec",
            "other.rec",
            "tcptrace-20251303T033200.123456789Z.rec",
            "tcptrace-20251203T033200.123456789Z.rec.tmp",
            "",
        ] {
            assert_eq!(parse_segment_name(bad), None, "{bad}");
        }
    }

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("tcptrace-ret-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn oldest_go_first_never_the_current_one() {
        let d = dir("size");
        let s = 1_000_000_000_000_000_000i64;
        let paths: Vec<PathBuf> = (0..4)
            .map(|i| {
                let p = d.join(segment_name(s + i * 60_000_000_000));
                fs::write(&p, vec![1u8; 8192]).unwrap();
                p
            })
            .collect();
        fs::write(d.join("notes.txt"), "not a segment").unwrap();
        let one = list(&d).unwrap()[0].disk_bytes;
        assert_eq!(list(&d).unwrap().len(), 4);
        // Room for two segments and 100 bytes more: the two oldest go.
        let r = Retention {
            keep: None,
            max_disk: Some(one * 2 + 100),
        };
        let e = r.enforce(&d, Some(&paths[3]), 100, s).unwrap();
        assert_eq!((e.removed, e.disk_bytes), (2, one * 2));
        let left: Vec<PathBuf> = list(&d).unwrap().into_iter().map(|s| s.path).collect();
        assert_eq!(left, paths[2..]);
        // Never the current one, however small the bound.
        let r = Retention {
            keep: None,
            max_disk: Some(1),
        };
        let e = r.enforce(&d, Some(&paths[2]), 0, s).unwrap();
        assert_eq!(e.removed, 0);
        assert!(d.join("notes.txt").exists());
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn age_counts_from_where_a_segment_ends() {
        let d = dir("age");
        let min = 60_000_000_000i64;
        let s = 1_000_000_000_000_000_000i64;
        for i in 0..3 {
            fs::write(d.join(segment_name(s + i * 10 * min)), b"x").unwrap();
        }
        // Now: 25 minutes after the first start. The first segment ended
        // at 10 min (15 ago), the second at 20 min (5 ago).
        let r = Retention {
            keep: Some(Duration::from_secs(600)),
            max_disk: None,
        };
        let e = r.enforce(&d, None, 0, s + 25 * min).unwrap();
        assert_eq!(e.removed, 1);
        let left = list(&d).unwrap();
        assert_eq!(left[0].start_ns, s + 10 * min);
        assert_eq!(left.len(), 2);
        fs::remove_dir_all(&d).unwrap();
    }
}
