//! The daemon's health: events per second, bytes on disk, lost events,
//! hooks attached, recorder errors. One line on SIGUSR1 (stderr), the
//! details of `/healthz`, and the recorder's metrics
//! (`tcptrace_recorder_bytes`, `tcptrace_recorder_errors_total`).

use std::{collections::BTreeMap, fmt::Write as _};

/// The daemon's state, refreshed every second.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Health {
    pub events: u64,
    pub events_per_s: f64,
    pub lost: u64,
    pub hooks_attached: usize,
    pub hooks: usize,
    /// `--record-dir`: (directory, disk use of its segments).
    pub record_dir: Option<(String, u64)>,
    /// Segments this run started.
    pub segments: u64,
    /// Events the recorder could not write.
    pub events_not_written: u64,
    /// Recorder errors by kind (`disk_full`, `dir_missing`, `io`).
    pub recorder_errors: BTreeMap<&'static str, u64>,
}

impl Health {
    /// `events 1234 (56/s), lost 0, hooks 11/11, disk 1.2 MiB in DIR (3
    /// segments), not written 0, recorder errors none`
    pub fn line(&self) -> String {
        let mut s = format!(
            "events {} ({:.0}/s), lost {}, hooks {}/{} attached",
            self.events, self.events_per_s, self.lost, self.hooks_attached, self.hooks
        );
        if let Some((dir, bytes)) = &self.record_dir {
            let _ = write!(
                s,
                ", disk {} ({bytes} bytes) in {} ({} segments started), not written {}, \
                 recorder errors ",
                crate::record::fmt_bytes(*bytes),
                crate::escape::Escaped(dir),
                self.segments,
                self.events_not_written
            );
            if self.recorder_errors.is_empty() {
                s.push_str("none");
            } else {
                let errors: Vec<String> = self
                    .recorder_errors
                    .iter()
                    .map(|(k, n)| format!("{k} {n}"))
                    .collect();
                s.push_str(&errors.join(", "));
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_with_every_figure() {
        let mut h = Health {
            events: 1234,
            events_per_s: 56.4,
            lost: 2,
            hooks_attached: 10,
            hooks: 11,
            ..Health::default()
        };
        assert_eq!(h.line(), "events 1234 (56/s), lost 2, hooks 10/11 attached");
        h.record_dir = Some(("/var/lib/tcptrace\n".into(), 2048));
        h.segments = 3;
        h.recorder_errors.insert("disk_full", 4);
        assert_eq!(
            h.line(),
            "events 1234 (56/s), lost 2, hooks 10/11 attached, disk 2.0 KiB (2048 bytes) in \
             /var/lib/tcptrace\\n (3 segments started), not written 0, recorder errors \
             disk_full 4"
        );
    }
}
