//! The `RST_SENT` map (RSTs this host sent, per `sk_rst_reason` slot), read
//! for every summary.

use anyhow::{Context as _, Result};
use aya::maps::{MapData, PerCpuArray};
use tcptrace_common::maps;

/// The map and the label of each slot ([`super::rst_slot_names`]).
pub struct RstSentMap {
    map: PerCpuArray<MapData, u64>,
    slot_names: Vec<String>,
}

impl RstSentMap {
    pub fn take(ebpf: &mut aya::Ebpf, slot_names: Vec<String>) -> Result<Self> {
        let map = ebpf
            .take_map(maps::RST_SENT)
            .with_context(|| format!("map {} missing from the object", maps::RST_SENT))?;
        Self::from_map(map, slot_names)
    }

    /// From a handle on the map (the metrics endpoint's duplicate of its fd).
    pub fn from_map(map: aya::maps::Map, slot_names: Vec<String>) -> Result<Self> {
        Ok(Self {
            map: PerCpuArray::try_from(map).with_context(|| format!("map {}", maps::RST_SENT))?,
            slot_names,
        })
    }

    /// RSTs sent per slot label, slots with none left out.
    pub fn read(&self) -> Result<Vec<(String, u64)>> {
        Ok(self
            .read_every_slot()?
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .collect())
    }

    /// RSTs sent per slot label, every slot.
    pub fn read_every_slot(&self) -> Result<Vec<(String, u64)>> {
        let sum = |i: u32| -> Result<u64> {
            Ok(self
                .map
                .get(&i, 0)
                .context("reading a counter map")?
                .iter()
                .sum())
        };
        self.slot_names
            .iter()
            .zip(0u32..)
            .map(|(name, i)| Ok((name.clone(), sum(i)?)))
            .collect()
    }
}
