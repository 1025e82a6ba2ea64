//! The TCP sysctls the rules read, from one namespace's `/proc/sys`.

use std::{fs, path::Path};

use serde::{Deserialize, Serialize};

/// Linux's default `ip_local_port_range`, used when it cannot be read.
pub const DEFAULT_PORT_RANGE: (u16, u16) = (32768, 60999);

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
    /// How many times connect() resends a SYN (before the linear ones).
    pub tcp_syn_retries: Option<u64>,
    /// SYN retransmissions on a linear 1 s timeout before the exponential
    /// backoff (6.x kernels that have it; `None`: absent, all exponential).
    pub tcp_syn_linear_timeouts: Option<u64>,
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
            tcp_syn_retries: num("net/ipv4/tcp_syn_retries"),
            tcp_syn_linear_timeouts: num("net/ipv4/tcp_syn_linear_timeouts"),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_port_ranges() {
        assert_eq!(parse_port_range("32768\t60999\n"), Some((32768, 60999)));
        assert_eq!(parse_port_range("9 1"), None);
    }
}
