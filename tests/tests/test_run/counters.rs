//! The frame counters as a report reads them: every slot in use in batch
//! lookups of a bounded size, summed over the CPUs, and the same on the
//! slot-by-slot path kernels before 5.6 take.

use aya::maps::{Map, MapData, PerCpuArray, PerCpuValues};
use macdrop::kernel::counters::CounterReader;
use monitor_common::{FrameCounters, MAX_INTERFACES, SlotCounters, names};

/// Each CPU's copy of a slot, distinct in every field, slot and CPU (the
/// flow sampler's count too, which no read may add to a frame counter).
fn copy(slot: u32, cpu: usize) -> SlotCounters {
    let mut c = SlotCounters::default();
    for (i, field) in c.frames.values_mut().into_iter().enumerate() {
        *field = u64::from(slot) << 20 | (cpu as u64) << 8 | i as u64;
    }
    c.flow_sampler = u64::from(slot) << 20 | (cpu as u64) << 8 | 0xff;
    c
}

#[test]
fn batch_and_slot_by_slot_reads_sum_every_slot_alike() {
    let (mut ebpf, _) = super::load_here();
    let id = match ebpf.map(names::COUNTERS).expect("counter map") {
        Map::PerCpuArray(m) => m.info().unwrap().id(),
        _ => panic!("the counter map is not a per-CPU array"),
    };
    let mut reader = CounterReader::take(&mut ebpf).unwrap();
    // A second handle on the same map, to write what the programs would.
    let mut writer: PerCpuArray<_, SlotCounters> =
        PerCpuArray::try_from(Map::PerCpuArray(MapData::from_id(id).unwrap())).unwrap();
    let cpus = aya::util::nr_cpus().unwrap();
    // More slots than one batch call reads on any machine, ending mid-call.
    let end = 1_000.min(MAX_INTERFACES);
    for slot in 0..end {
        let values = PerCpuValues::try_from((0..cpus).map(|c| copy(slot, c)).collect::<Vec<_>>());
        writer.set(slot, values.unwrap(), 0).unwrap();
    }
    let want: Vec<FrameCounters> = (0..end)
        .map(|slot| {
            let mut sum = FrameCounters::default();
            (0..cpus).for_each(|c| sum.add(&copy(slot, c).frames));
            sum
        })
        .collect();

    let mut batch = Vec::new();
    reader
        .read_each(end, |slot, c| batch.push((slot, *c)))
        .unwrap();
    let slots: Vec<u32> = batch.iter().map(|(s, _)| *s).collect();
    assert_eq!(
        slots,
        (0..end).collect::<Vec<_>>(),
        "every slot once, in order"
    );
    for (slot, c) in &batch {
        assert_eq!(*c, want[*slot as usize], "batch read of slot {slot}");
        assert_eq!(
            reader.read(*slot).unwrap(),
            *c,
            "single read of slot {slot}"
        );
    }

    reader.without_batch();
    let mut one_by_one = Vec::new();
    reader
        .read_each(end, |slot, c| one_by_one.push((slot, *c)))
        .unwrap();
    assert_eq!(one_by_one, batch, "slot-by-slot and batch reads");

    // A read of none is nothing.
    reader
        .read_each(0, |slot, _| panic!("slot {slot} of none"))
        .unwrap();
}
