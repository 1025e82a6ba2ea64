//! The kernel maps the endpoint reads at each scrape, through duplicates of
//! their fds (the live run's own readers keep theirs): histograms and
//! their sums, lost events, RSTs sent, per-listener SYN counters, state
//! maps, and the programs the kernel skipped. Where a map has a reader of
//! its own the live run's summaries use too ([`hist::read_all`],
//! [`RstSentMap`], [`SynMaps`], [`StateMaps`]), it is read through that;
//! only the handles differ (commands/live.rs takes the maps, this module
//! duplicates their fds).

use std::{os::fd::AsFd as _, sync::Mutex};

use anyhow::{bail, Context as _, Result};
use aya::maps::{Map, MapData, PerCpuArray};
use tcptrace_common::{maps, statemaps, syn::ListenerCounters, EventKind, HistId, Stat};

use crate::{
    hist::{self, Histogram},
    mapstats::{MapFill, StateMaps},
    paws::maps::RstSentMap,
    progstats::ProgramStats,
    syn::{ListenerId, SynMaps},
};

/// One histogram with the sum of its values.
#[derive(Clone, Debug, Default)]
pub struct HistRead {
    pub hist: Histogram,
    pub sum_ns: u64,
}

/// SYNs a listener answered: normal, cookie, fastopen.
pub fn answered(c: &ListenerCounters) -> [u64; 3] {
    [c.answered_normal, c.answered_cookie, c.answered_fastopen]
}

/// Everything read at one scrape.
#[derive(Clone, Debug, Default)]
pub struct KernelRead {
    pub hists: Vec<(HistId, HistRead)>,
    pub lost: Vec<(EventKind, u64)>,
    pub stats: Vec<(Stat, u64)>,
    pub rst_sent: Vec<(String, u64)>,
    /// Answered SYNs summed over CPUs, the queue state of the CPU that saw
    /// the newest SYN.
    pub listeners: Vec<(ListenerId, ListenerCounters)>,
    pub maps: Vec<MapFill>,
    pub missed: Vec<(String, u64)>,
}

pub struct KernelReader {
    hists: PerCpuArray<MapData, u64>,
    sums: PerCpuArray<MapData, u64>,
    lost: PerCpuArray<MapData, u64>,
    stats: PerCpuArray<MapData, u64>,
    rst_sent: RstSentMap,
    syn: SynMaps,
    /// Caches its walks between reads, hence the lock.
    state: Mutex<StateMaps>,
    /// Set once every program is loaded.
    programs: Mutex<ProgramStats>,
}

impl std::fmt::Debug for KernelReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelReader").finish_non_exhaustive()
    }
}

/// An owned handle on map `name` of `ebpf`, through a duplicate of its fd.
fn dup(ebpf: &aya::Ebpf, name: &str) -> Result<Map> {
    let map = ebpf
        .map(name)
        .with_context(|| format!("map {name} missing from the object"))?;
    let data = match map {
        Map::PerCpuArray(d) | Map::PerCpuHashMap(d) | Map::PerCpuLruHashMap(d) => d,
        other => bail!("map {name} is not a per-CPU map: {other:?}"),
    };
    let fd = data
        .fd()
        .as_fd()
        .try_clone_to_owned()
        .with_context(|| format!("map {name}: duplicating its fd"))?;
    let data = MapData::from_fd(fd).with_context(|| format!("map {name}: opening its fd"))?;
    Ok(match map {
        Map::PerCpuArray(_) => Map::PerCpuArray(data),
        Map::PerCpuLruHashMap(_) => Map::PerCpuLruHashMap(data),
        _ => Map::PerCpuHashMap(data),
    })
}

fn sum(map: &PerCpuArray<MapData, u64>, i: u32, name: &str) -> Result<u64> {
    Ok(map
        .get(&i, 0)
        .with_context(|| format!("reading {name}[{i}]"))?
        .iter()
        .fold(0u64, |a, n| a.wrapping_add(*n)))
}

impl KernelReader {
    /// Call before the live run takes its own maps out of `ebpf`.
    pub fn open(ebpf: &aya::Ebpf, rst_names: Vec<String>) -> Result<Self> {
        let array = |name: &str| -> Result<PerCpuArray<MapData, u64>> {
            PerCpuArray::try_from(dup(ebpf, name)?).with_context(|| format!("map {name}"))
        };
        Ok(Self {
            hists: array(maps::HISTOGRAMS)?,
            sums: array(maps::HIST_SUMS)?,
            lost: array(maps::LOST)?,
            stats: array(maps::STATS)?,
            rst_sent: RstSentMap::from_map(dup(ebpf, maps::RST_SENT)?, rst_names)?,
            syn: SynMaps::from_maps(
                dup(ebpf, maps::SYN_ANSWERED)?,
                dup(ebpf, maps::SYN_LISTENERS)?,
            )?,
            state: Mutex::new(StateMaps::from_maps(
                ebpf,
                dup(ebpf, statemaps::CONNECT_IN_FLIGHT)?,
                dup(ebpf, statemaps::FULL_MAP)?,
            )?),
            programs: Mutex::new(ProgramStats::default()),
        })
    }

    /// Every program is loaded: watch them for kernel skips.
    pub fn set_programs(&self, programs: ProgramStats) {
        *self.programs.lock().unwrap_or_else(|e| e.into_inner()) = programs;
    }

    pub fn read(&self) -> Result<KernelRead> {
        let hists = hist::read_all(&self.hists)?
            .into_iter()
            .map(|(id, hist)| {
                let sum_ns = sum(&self.sums, id as u32, maps::HIST_SUMS)?;
                Ok((id, HistRead { hist, sum_ns }))
            })
            .collect::<Result<_>>()?;
        let lost = EventKind::ALL
            .iter()
            .map(|&k| Ok((k, sum(&self.lost, k as u32, maps::LOST)?)))
            .collect::<Result<_>>()?;
        let stats = Stat::ALL
            .iter()
            .map(|&s| Ok((s, sum(&self.stats, s as u32, maps::STATS)?)))
            .collect::<Result<_>>()?;
        let rst_sent = self.rst_sent.read_every_slot()?;
        let maps = self
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .read()?;
        let missed = self
            .programs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .missed();
        Ok(KernelRead {
            hists,
            lost,
            stats,
            rst_sent,
            listeners: self.syn.read()?.listeners,
            maps,
            missed,
        })
    }
}
