//! The kernel side of `--pcap`, for one loaded object: the ring buffer of
//! mismatched frames (read asynchronously), the capture budget, and the
//! per-CPU counts of what was captured or not.

use anyhow::Context as _;
use aya::{
    Ebpf,
    maps::{Array, MapData, PerCpuArray, RingBuf},
};
use monitor_common::{
    EVIDENCE_RING_BYTES, EVIDENCE_RING_OFF_BYTES, EvidenceCpu, EvidenceCtl, EvidenceRecord, names,
};
use tokio::io::{Interest, unix::AsyncFd};

/// The ring buffer's size for the loader: full with `--pcap`, one page
/// without (the map exists either way; an idle 256 KiB per namespace is
/// not worth it).
pub fn ring_bytes(capture: bool) -> u32 {
    if capture {
        EVIDENCE_RING_BYTES
    } else {
        EVIDENCE_RING_OFF_BYTES
    }
}

/// What the kernel counted, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub captured: u64,
    pub rate_limited: u64,
    pub ring_full: u64,
    pub copy_failed: u64,
}

impl Counts {
    pub fn add(&mut self, other: &Counts) {
        self.captured += other.captured;
        self.rate_limited += other.rate_limited;
        self.ring_full += other.ring_full;
        self.copy_failed += other.copy_failed;
    }
}

pub struct EvidenceRing {
    ring: AsyncFd<RingBuf<MapData>>,
    ctl: Array<MapData, EvidenceCtl>,
    cpu: PerCpuArray<MapData, EvidenceCpu>,
}

impl EvidenceRing {
    /// Takes the maps out of `ebpf` and opens the budget to `budget` frames.
    pub fn take(ebpf: &mut Ebpf, budget: u64) -> anyhow::Result<Self> {
        let mut take = |name: &str| {
            ebpf.take_map(name)
                .with_context(|| format!("map {name} missing from the eBPF object"))
        };
        let ring = RingBuf::try_from(take(names::EVIDENCE_RING)?)
            .context("evidence ring has the wrong type")?;
        let ctl = Array::try_from(take(names::EVIDENCE_CTL)?)
            .context("evidence control map has the wrong type")?;
        let cpu = PerCpuArray::try_from(take(names::EVIDENCE_CPU)?)
            .context("evidence per-CPU map has the wrong type")?;
        // SAFETY: the ring buffer owns its map's file descriptor, which
        // stays open and the same for as long as the AsyncFd holds it.
        let ring = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
            .map_err(|e| anyhow::anyhow!("cannot poll the evidence ring buffer: {e}"))?;
        let mut this = Self { ring, ctl, cpu };
        this.set_budget(budget)?;
        Ok(this)
    }

    /// Frames the kernel may capture in all (0: capture off).
    pub fn set_budget(&mut self, budget: u64) -> anyhow::Result<()> {
        let ctl = EvidenceCtl { budget, taken: 0 };
        self.ctl
            .set(0, ctl, 0)
            .context("cannot set the evidence budget")
    }

    /// Waits until the ring has records. Readiness is cleared before
    /// returning, so a `drain` right after sees every record that made the
    /// ring readable, and a record submitted later wakes the next wait.
    pub async fn readable(&self) {
        if let Ok(mut guard) = self.ring.readable().await {
            guard.clear_ready();
        }
    }

    /// Takes every record in the ring, in order.
    pub fn drain(&mut self, out: &mut Vec<EvidenceRecord>) {
        let ring = self.ring.get_mut();
        while let Some(item) = ring.next() {
            if item.len() < size_of::<EvidenceRecord>() {
                continue;
            }
            // SAFETY: the kernel writes whole `EvidenceRecord`s (size
            // checked above); read unaligned, as the item is a byte slice.
            out.push(unsafe { item.as_ptr().cast::<EvidenceRecord>().read_unaligned() });
        }
    }

    /// The kernel's counts, summed over CPUs.
    pub fn counts(&self) -> anyhow::Result<Counts> {
        let per_cpu = self
            .cpu
            .get(&0, 0)
            .context("cannot read the evidence counts")?;
        let mut sum = Counts::default();
        for c in per_cpu.iter() {
            sum.add(&Counts {
                captured: c.captured,
                rate_limited: c.rate_limited,
                ring_full: c.ring_full,
                copy_failed: c.copy_failed,
            });
        }
        Ok(sum)
    }
}
