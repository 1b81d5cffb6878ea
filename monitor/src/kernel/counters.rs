//! Reads the per-CPU frame counters and sums them per slot.
//!
//! A report reads every slot in use: in BPF_MAP_LOOKUP_BATCH calls of a
//! bounded size (`BATCH_COPIES` per-CPU copies), not a syscall per slot,
//! which with 1,000 ports was most of a report's CPU time. Kernels
//! without batch lookups on arrays (before 5.6) are read slot by slot.

use std::os::fd::AsFd as _;

use anyhow::Context as _;
use aya::{
    Ebpf,
    maps::{IterableMap as _, MapData, PerCpuArray},
};
use monitor_common::{FrameCounters, names};

use super::batch;

/// Per-CPU copies read per batch call: the scratch buffer's size (26 KiB),
/// whatever the number of slots; a few calls per report.
const BATCH_COPIES: usize = 256;

pub struct CounterReader {
    counters: PerCpuArray<MapData, FrameCounters>,
    /// Possible CPUs: the copies of each slot.
    cpus: usize,
    batch: batch::Support,
}

impl CounterReader {
    pub fn take(ebpf: &mut Ebpf) -> anyhow::Result<Self> {
        let map = ebpf
            .take_map(names::COUNTERS)
            .with_context(|| format!("map {} missing from the eBPF object", names::COUNTERS))?;
        Ok(Self {
            counters: PerCpuArray::try_from(map).context("counter map has the wrong type")?,
            cpus: batch::possible_cpus()?,
            batch: batch::Support::default(),
        })
    }

    /// Reads slot by slot from now on, as on kernels without batch lookups
    /// on arrays (before 5.6): a switch for tests, so that path is checked
    /// against the batch one on a kernel that has both.
    pub fn without_batch(&mut self) {
        self.batch.off();
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

    /// Calls `each` with every slot below `end` and its counters summed
    /// over the CPUs, in slot order.
    pub fn read_each(
        &mut self,
        end: u32,
        mut each: impl FnMut(u32, &FrameCounters),
    ) -> anyhow::Result<()> {
        let chunk = (BATCH_COPIES / self.cpus).max(1) as u32;
        let mut copies = Vec::new();
        let mut first = 0;
        while first < end {
            let n = chunk.min(end - first);
            copies.resize(n as usize * self.cpus, FrameCounters::default());
            let fd = self.counters.map().fd().as_fd();
            let read = self
                .batch
                .read(|| batch::lookup_per_cpu(fd, first, n, &mut copies))
                .context("cannot read the frame counters")?;
            if !read {
                break;
            }
            for (i, per_cpu) in copies.chunks(self.cpus).enumerate() {
                let mut sum = FrameCounters::default();
                per_cpu.iter().for_each(|c| sum.add(c));
                each(first + i as u32, &sum);
            }
            first += n;
        }
        // Without batch lookups: the rest slot by slot.
        for slot in first..end {
            each(slot, &self.read(slot)?);
        }
        Ok(())
    }

    /// Zeroes a slot before it is given to a new interface.
    pub fn clear(&mut self, slot: u32) -> anyhow::Result<()> {
        let zeros = aya::maps::PerCpuValues::try_from(vec![FrameCounters::default(); self.cpus])
            .context("building zeroed per-CPU values")?;
        self.counters
            .set(slot, zeros, 0)
            .with_context(|| format!("cannot clear counter slot {slot}"))
    }
}
