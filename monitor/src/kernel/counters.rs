//! Reads the per-CPU frame counters and sums them per slot.
//!
//! A report reads every slot in use: in BPF_MAP_LOOKUP_BATCH calls of a
//! bounded size (`batch::SlotArray`), not a syscall per slot, which with
//! 1,000 ports was most of a report's CPU time. Kernels without batch
//! lookups on arrays (before 5.6) are read slot by slot.

use aya::Ebpf;
use monitor_common::{FrameCounters, SlotCounters, names};

use super::batch::SlotArray;

/// The counter slots' frame counters (`SlotCounters::frames`; the flow
/// sampler's count beside them is the kernel's business).
pub struct CounterReader {
    counters: SlotArray<SlotCounters>,
}

impl CounterReader {
    pub fn take(ebpf: &mut Ebpf) -> anyhow::Result<Self> {
        Ok(Self {
            counters: SlotArray::take(ebpf, names::COUNTERS)?,
        })
    }

    /// Reads slot by slot from now on, as on kernels without batch lookups
    /// on arrays (before 5.6): a switch for tests, so that path is checked
    /// against the batch one on a kernel that has both.
    pub fn without_batch(&mut self) {
        self.counters.without_batch();
    }

    /// Sum over all CPUs of the counters in `slot`.
    pub fn read(&self, slot: u32) -> anyhow::Result<FrameCounters> {
        Ok(sum(&self.counters.read(slot)?))
    }

    /// Calls `each` with every slot below `end` and its counters summed
    /// over the CPUs, in slot order.
    pub fn read_each(
        &mut self,
        end: u32,
        mut each: impl FnMut(u32, &FrameCounters),
    ) -> anyhow::Result<()> {
        self.counters
            .read_each(end, |slot, per_cpu| each(slot, &sum(per_cpu)))
    }

    /// Zeroes a slot before it is given to a new interface.
    pub fn clear(&mut self, slot: u32) -> anyhow::Result<()> {
        self.counters.clear(slot)
    }
}

fn sum(per_cpu: &[SlotCounters]) -> FrameCounters {
    let mut sum = FrameCounters::default();
    per_cpu.iter().for_each(|c| sum.add(&c.frames));
    sum
}
