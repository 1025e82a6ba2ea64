//! The kernel's TCP counters of the calling thread's network namespace
//! (`/proc/thread-self/net/netstat` and `snmp`: counters are per namespace).

use std::collections::HashMap;

use anyhow::{Context as _, Result};

/// One reading of the TcpExt and Tcp counters, by name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Netstat(pub HashMap<String, u64>);

impl Netstat {
    /// Reads the calling thread's namespace's counters.
    pub fn read() -> Result<Netstat> {
        let mut out = HashMap::new();
        for (file, table) in [("netstat", "TcpExt"), ("snmp", "Tcp")] {
            let path = format!("/proc/thread-self/net/{file}");
            let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
            parse_into(&text, table, &mut out);
        }
        Ok(Netstat(out))
    }

    /// Counter `name`, 0 where this kernel has none.
    pub fn get(&self, name: &str) -> u64 {
        self.0.get(name).copied().unwrap_or(0)
    }

    /// How much counter `name` grew since `before`.
    pub fn since(&self, before: &Netstat, name: &str) -> u64 {
        self.get(name).saturating_sub(before.get(name))
    }
}

/// The `table` rows of a /proc/net/{netstat,snmp} text: pairs of lines,
/// names then values, both prefixed `Table: `.
fn parse_into(text: &str, table: &str, out: &mut HashMap<String, u64>) {
    let lines: Vec<&str> = text.lines().collect();
    for pair in lines.windows(2) {
        let [names, values] = pair else { continue };
        let (Some((t1, names)), Some((t2, values))) =
            (names.split_once(": "), values.split_once(": "))
        else {
            continue;
        };
        if t1 != table || t2 != table || names.starts_with(|c: char| c.is_ascii_digit()) {
            continue;
        }
        if values.starts_with(|c: char| c.is_ascii_alphabetic()) {
            continue;
        }
        for (n, v) in names.split_whitespace().zip(values.split_whitespace()) {
            out.insert(n.to_owned(), v.parse().unwrap_or(0));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_read_by_name() {
        let text = "TcpExt: SyncookiesSent ListenOverflows\nTcpExt: 3 7\n\
                    IpExt: InNoRoutes\nIpExt: 1\n";
        let mut m = HashMap::new();
        parse_into(text, "TcpExt", &mut m);
        assert_eq!(m.get("ListenOverflows"), Some(&7));
        assert_eq!(m.get("InNoRoutes"), None);
        let snmp = "Tcp: RtoAlgorithm ActiveOpens\nTcp: 1 12\nUdp: InDatagrams\nUdp: 4\n";
        let mut m = HashMap::new();
        parse_into(snmp, "Tcp", &mut m);
        assert_eq!(m.get("ActiveOpens"), Some(&12));
        assert_eq!(Netstat(m).since(&Netstat::default(), "ActiveOpens"), 12);
    }
}
