//! The top offenders: mismatched frames counted per flow (source MAC,
//! destination MAC, outermost VLAN, destination IP) and interface, in a
//! per-CPU table of buckets (`FlowBucket`, `FLOW_WAYS` flows each),
//! direct-mapped by a hash of the key. Called only for frames whose
//! mismatch bits are non-zero, so the common paths never touch the map.
//!
//! Why not a hash map: an LRU hash update cost ~60 ns per frame (its
//! lock, its LRU lists, an insert for every new flow), the whole budget
//! of a frame in a flood. Here a frame costs a hash of five words, one
//! array lookup the verifier inlines and at most two key comparisons; no
//! lock, no atomics (each CPU owns its copy). What a full bucket costs is
//! said, not hidden: a new flow evicts the way with fewer frames, the
//! bucket counts the eviction and its frames, and a flow that takes a way
//! after an eviction is marked inexact (its count a lower bound), so
//! userspace knows which counts are exact (`kernel::flows`). The class
//! counters stay exact regardless.
//!
//! Under a flood, userspace sets the interface's `flow_sample`
//! (`monitor_common::flow_weight`): then only one mismatched frame in
//! `2^k` per CPU builds its key and touches a bucket, counted `2^k` times
//! and marked sampled; the others cost an increment of a count kept in
//! the interface's counter slot (`SlotCounters::flow_sampler`). The
//! programs ask [`sample`] first and go no further for a frame it passes
//! over: `--pcap`'s rate bound considers the sampled frames only
//! (`evidence::admitted`).

use aya_ebpf::{macros::map, maps::PerCpuArray};
use monitor_common::{
    FLOW_BUCKETS, FLOW_IPV4, FLOW_IPV6, FLOW_NO_IP, FLOW_NO_VLAN, FlowBucket, FlowEntry, FlowKey,
    IF_FLOWS, IfConfig, flow_bucket, flow_weight,
};

use crate::{
    classify::{DstAddr, bytes_at, dst_addr_at, vlan_in_data},
    maps::netns_ino,
};

/// Mismatched flows of every watched interface, per CPU.
#[map(name = "MACDROP_FLOWS")]
static FLOWS: PerCpuArray<FlowBucket> = PerCpuArray::with_max_entries(FLOW_BUCKETS, 0);

/// A mismatched frame the sampler picked: its mismatch bits (non-zero)
/// and how many frames it stands for.
#[derive(Clone, Copy)]
pub struct Picked {
    pub mismatch: u8,
    pub weight: u64,
}

/// Whether a mismatched frame (`mismatch`: its non-zero bits) on the
/// interface configured by `cfg` is recorded, and with what weight
/// (`flow_weight`): every frame with weight 1 unless the interface's flows
/// are sampled; None for a frame the sampler passes over. `count`: the
/// interface's sampler count on this CPU, in its counter slot
/// (`SlotCounters::flow_sampler`: a frame of a flood reaches it without a
/// lookup of its own).
#[inline(always)]
pub fn sample(count: &mut u64, cfg: &IfConfig, mismatch: u8) -> Option<Picked> {
    let mask = cfg.flow_sample;
    if mask == 0 {
        return Some(Picked {
            mismatch,
            weight: 1,
        });
    }
    *count += 1;
    let weight = flow_weight(*count, mask)?;
    Some(Picked { mismatch, weight })
}

/// Whether way `e` holds the flow whose key's words are `w` (five
/// comparisons: an array `==` could become a memcmp call, which BPF lacks).
#[inline(always)]
fn holds(e: &FlowEntry, w: &[u64; 5]) -> bool {
    let k = e.key.words();
    e.frames != 0 && k[0] == w[0] && k[1] == w[1] && k[2] == w[2] && k[3] == w[3] && k[4] == w[4]
}

#[inline(always)]
fn count(e: &mut FlowEntry, weight: u64, len: u64, mismatch: u8) {
    e.frames += weight;
    e.bytes += len * weight;
    e.mismatch |= mismatch;
    e.sampled |= u8::from(weight > 1);
}

/// Records one mismatched frame the sampler picked ([`sample`]) received
/// on the interface configured by `cfg`. `proto_off`: where the EtherType
/// after its tags is (`classify::Counted`); `hook_vlan`: the outermost
/// VLAN ID when the hook took the tag out of the data (tc:
/// `skb->vlan_tci`); `len`: the frame's length as received, that tag
/// included, asked only when the flow is recorded.
#[inline(always)]
pub fn record(
    cfg: &IfConfig,
    data: usize,
    data_end: usize,
    proto_off: usize,
    hook_vlan: Option<u16>,
    len: impl FnOnce() -> u64,
    picked: Picked,
) {
    if cfg.flags & IF_FLOWS == 0 {
        return;
    }
    let Picked { mismatch, weight } = picked;
    let netns = netns_ino();
    // Mismatched frames always have a whole Ethernet header.
    let Some(eth) = bytes_at::<12>(data, data_end, 0) else {
        return;
    };
    // SAFETY: 12 bytes inside the frame, checked above.
    let eth = unsafe { *eth };
    let mut key = FlowKey {
        netns,
        slot: cfg.slot,
        src_mac: [eth[6], eth[7], eth[8], eth[9], eth[10], eth[11]],
        dst_mac: [eth[0], eth[1], eth[2], eth[3], eth[4], eth[5]],
        vlan: match hook_vlan {
            Some(vid) => vid,
            None => vlan_in_data(data, data_end).unwrap_or(FLOW_NO_VLAN),
        },
        family: FLOW_NO_IP,
        _pad: 0,
        dst_ip: [0; 16],
    };
    match dst_addr_at(data, data_end, proto_off) {
        Some(DstAddr::V4(a)) => {
            key.family = FLOW_IPV4;
            // SAFETY: inside the frame, checked by `dst_addr_at`.
            let a = unsafe { *a };
            key.dst_ip[..4].copy_from_slice(&a);
        }
        Some(DstAddr::V6(a)) => {
            key.family = FLOW_IPV6;
            // SAFETY: inside the frame, checked by `dst_addr_at`.
            key.dst_ip = unsafe { *a };
        }
        None => {}
    }
    let w = key.words();
    let Some(bucket) = FLOWS.get_ptr_mut(flow_bucket(w)) else {
        return;
    };
    // SAFETY: this CPU's copy of the bucket, touched by nothing else on
    // this CPU during the program run.
    let b = unsafe { &mut *bucket };
    // No clock read: bpf_ktime_get_ns alone cost ~40 ns per frame on these
    // machines, more than the rest of the record; userspace dates flows to
    // the report in which their count grew (`kernel::flows`).
    let len = len();
    let [w0, w1] = &mut b.ways;
    if holds(w0, w) {
        return count(w0, weight, len, mismatch);
    }
    if holds(w1, w) {
        return count(w1, weight, len, mismatch);
    }
    // A flow new to this CPU's bucket: an empty way, else the way with
    // fewer frames is evicted, and the bucket remembers it.
    let way = if w0.frames == 0 {
        w0
    } else if w1.frames == 0 {
        w1
    } else {
        let way = if w1.frames < w0.frames { w1 } else { w0 };
        b.evictions += 1;
        b.evicted_frames += way.frames;
        way
    };
    *way = FlowEntry {
        key,
        frames: weight,
        bytes: len * weight,
        mismatch,
        exact: u8::from(b.evictions == 0),
        sampled: u8::from(weight > 1),
        _pad: [0; 5],
    };
}
