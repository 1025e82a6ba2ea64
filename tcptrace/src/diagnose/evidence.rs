//! What the rules may ask of the host: the snapshot now and the baseline
//! taken when the watch began (for counter deltas). Both are optional: a
//! replay of a recording from another machine has neither, and the rules
//! then work from the events alone.

use serde_json::{json, Map, Value};

use crate::host::{
    owner_key, HostSnapshot, Listener, NetnsSnapshot, PortStates, ProcessInfo, Sysctls,
};

#[derive(Clone, Copy, Debug, Default)]
pub struct HostView<'a> {
    pub start: Option<&'a HostSnapshot>,
    pub now: Option<&'a HostSnapshot>,
}

impl<'a> HostView<'a> {
    pub fn netns(&self, ino: u64) -> Option<&'a NetnsSnapshot> {
        self.now?.netns.get(&ino)
    }

    pub fn sysctls(&self, ino: u64) -> Option<&'a Sysctls> {
        self.netns(ino)
            .map(|n| &n.sysctls)
            .filter(|s| !s.is_empty())
    }

    /// A sysctl of `ino`'s namespace; `None` when not read.
    pub fn sysctl(&self, ino: u64, f: impl Fn(&Sysctls) -> Option<u64>) -> Option<u64> {
        self.sysctls(ino).and_then(f)
    }

    /// Whether this kernel still has `tcp_tw_recycle` (removed in 4.12):
    /// from the namespace itself, else from our own.
    pub fn tw_recycle(&self, ino: u64) -> Option<u64> {
        self.sysctls(ino)
            .and_then(|s| s.tcp_tw_recycle)
            .or_else(|| self.sysctls(self.now?.own_netns)?.tcp_tw_recycle)
    }

    /// How much a TcpExt counter grew during the watch in namespace `ino`.
    pub fn delta(&self, ino: u64, counter: &str) -> Option<u64> {
        let now = self.now?.netstat.get(&ino)?.get(counter)?;
        let before = self.start?.counter_before(ino, counter)?;
        Some(now.saturating_sub(before))
    }

    /// The counters among `names` that exist, as an evidence object.
    pub fn deltas(&self, ino: u64, names: &[&str]) -> Option<Value> {
        let m: Map<String, Value> = names
            .iter()
            .filter_map(|n| Some(((*n).to_owned(), json!(self.delta(ino, n)?))))
            .collect();
        (!m.is_empty()).then_some(Value::Object(m))
    }

    pub fn listener(
        &self,
        ino: u64,
        port: u16,
        addr: Option<std::net::IpAddr>,
    ) -> Option<&'a Listener> {
        self.netns(ino)?.listener(port, addr)
    }

    pub fn port_states(&self, ino: u64, port: u16) -> Option<&'a PortStates> {
        let ns = self.netns(ino).filter(|n| n.sockets_read)?;
        static NONE: PortStates = PortStates {
            established: 0,
            close_wait: 0,
            time_wait: 0,
        };
        Some(ns.listener_ports.get(&port).unwrap_or(&NONE))
    }

    pub fn process(&self, pid: u32) -> Option<&'a ProcessInfo> {
        self.now?.processes.get(&pid)
    }

    /// Every process holding the listener on `port` (lowest pid first).
    pub fn listener_holders(&self, ino: u64, port: u16) -> &'a [u32] {
        self.now
            .and_then(|n| n.listener_holders.get(&owner_key(ino, port)))
            .map_or(&[], Vec::as_slice)
    }

    pub fn listener_owner(&self, ino: u64, port: u16) -> Option<u32> {
        self.now?
            .listener_owners
            .get(&owner_key(ino, port))
            .copied()
    }

    /// Namespaces with counters now and a baseline (a reading at the start,
    /// or none because they were created since).
    pub fn netns_with_deltas(&self) -> Vec<u64> {
        let (Some(now), Some(start)) = (self.now, self.start) else {
            return Vec::new();
        };
        now.netstat
            .keys()
            .filter(|k| start.counter_before(**k, "").is_some())
            .copied()
            .collect()
    }
}

/// Builds an evidence object, leaving out unknown values.
#[derive(Clone, Debug, Default)]
pub struct Evidence(pub Map<String, Value>);

impl Evidence {
    pub fn set(&mut self, k: &str, v: impl Into<Value>) -> &mut Self {
        self.0.insert(k.to_owned(), v.into());
        self
    }

    pub fn opt<T: Into<Value>>(&mut self, k: &str, v: Option<T>) -> &mut Self {
        if let Some(v) = v {
            self.0.insert(k.to_owned(), v.into());
        }
        self
    }
}
