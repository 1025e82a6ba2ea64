//! TcpExt counters of a namespace's /proc/net/netstat.

use std::collections::BTreeMap;

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

#[cfg(test)]
mod tests {
    use super::{super::fixture::netstat, *};

    #[test]
    fn parses_netstat_tcpext_only() {
        let m = parse_netstat(&netstat([1, 2, 3, 4, 5, 6, 7]));
        assert_eq!(m["ListenOverflows"], 2);
        assert_eq!(m["TCPChallengeACK"], 7);
        assert!(!m.contains_key("InNoRoutes"));
    }
}
