//! Reads the per-CPU frame counters and sums them per slot.

use anyhow::Context as _;
use aya::{
    Ebpf,
    maps::{MapData, PerCpuArray},
};
use monitor_common::{FrameCounters, names};

pub struct CounterReader {
    counters: PerCpuArray<MapData, FrameCounters>,
}

impl CounterReader {
    pub fn take(ebpf: &mut Ebpf) -> anyhow::Result<Self> {
        let map = ebpf
            .take_map(names::COUNTERS)
            .with_context(|| format!("map {} missing from the eBPF object", names::COUNTERS))?;
        Ok(Self {
            counters: PerCpuArray::try_from(map).context("counter map has the wrong type")?,
        })
    }

    /// Sum over all CPUs of the counters in `slot`.
    pub fn read(&self, slot: u32) -> anyhow::Result<FrameCounters> {
        let per_cpu = self
            .counters
            .get(&slot, 0)
            .with_context(|| format!("cannot read counter slot {slot}"))?;
        let mut sum = FrameCounters::default();
        for c in per_cpu.iter() {
            sum.add(c);
        }
        Ok(sum)
    }

    /// Zeroes a slot before it is given to a new interface.
    pub fn clear(&mut self, slot: u32) -> anyhow::Result<()> {
        let cpus = aya::util::nr_cpus().map_err(|(what, e)| anyhow::anyhow!("{what}: {e}"))?;
        let zeros = aya::maps::PerCpuValues::try_from(vec![FrameCounters::default(); cpus])
            .context("building zeroed per-CPU values")?;
        self.counters
            .set(slot, zeros, 0)
            .with_context(|| format!("cannot clear counter slot {slot}"))
    }
}
