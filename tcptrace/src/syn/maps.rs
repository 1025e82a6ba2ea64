//! The SYN maps (answered SYNs, per-listener counters), read for every
//! summary.

use std::net::IpAddr;

use anyhow::{Context as _, Result};
use aya::maps::{Map, MapData, PerCpuArray, PerCpuHashMap};
use tcptrace_common::{
    maps,
    syn::{ListenerCounters, ListenerKey, SynAnswer},
};

use super::decode::addr;

/// A listener as the summary names it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ListenerId {
    pub netns: u32,
    pub addr: IpAddr,
    pub port: u16,
}

impl ListenerId {
    pub(super) fn from_key(k: &ListenerKey) -> Self {
        Self {
            netns: k.netns,
            addr: addr(k.family, &k.addr),
            port: k.port,
        }
    }
}

/// Counters read from the kernel for the summary.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SynKernelCounters {
    /// Answered SYNs by `SynAnswer`, all listeners.
    pub answered: [u64; SynAnswer::COUNT as usize],
    pub listeners: Vec<(ListenerId, ListenerCounters)>,
}

/// The SYN maps, read for every summary.
pub struct SynMaps {
    answered: PerCpuArray<MapData, u64>,
    listeners: PerCpuHashMap<MapData, ListenerKey, ListenerCounters>,
}

impl SynMaps {
    pub fn take(ebpf: &mut aya::Ebpf) -> Result<Self> {
        let mut take = |name: &str| {
            ebpf.take_map(name)
                .with_context(|| format!("map {name} missing from the object"))
        };
        Self::from_maps(take(maps::SYN_ANSWERED)?, take(maps::SYN_LISTENERS)?)
    }

    /// A reader on `SYN_ANSWERED` and `SYN_LISTENERS` handles the caller
    /// got (taken, or borrowed through a duplicate fd by the metrics
    /// endpoint).
    pub fn from_maps(answered: Map, listeners: Map) -> Result<Self> {
        Ok(Self {
            answered: PerCpuArray::try_from(answered).context(maps::SYN_ANSWERED)?,
            listeners: PerCpuHashMap::try_from(listeners).context(maps::SYN_LISTENERS)?,
        })
    }

    pub fn read(&self) -> Result<SynKernelCounters> {
        let mut out = SynKernelCounters::default();
        for a in SynAnswer::ALL {
            out.answered[a as usize] = self
                .answered
                .get(&(a as u32), 0)
                .context("reading SYN_ANSWERED")?
                .iter()
                .sum();
        }
        for item in self.listeners.iter() {
            let Ok((key, per_cpu)) = item else { continue };
            let mut total = ListenerCounters::default();
            let mut newest = 0;
            for c in per_cpu.iter() {
                total.answered_normal += c.answered_normal;
                total.answered_cookie += c.answered_cookie;
                total.answered_fastopen += c.answered_fastopen;
                if c.last_ns >= newest && c.last_ns > 0 {
                    newest = c.last_ns;
                    total.backlog = c.backlog;
                    total.backlog_max = c.backlog_max;
                    total.syn_queue = c.syn_queue;
                }
            }
            total.last_ns = newest;
            out.listeners.push((ListenerId::from_key(&key), total));
        }
        Ok(out)
    }
}
