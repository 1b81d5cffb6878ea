//! The top offenders: mismatched frames counted per flow (source MAC,
//! destination MAC, outermost VLAN, destination IP) and interface, in a
//! bounded LRU hash with per-CPU values. Called only for frames whose
//! mismatch bits are non-zero, so the common paths never touch the map.
//!
//! Per-CPU values need no atomics and stay exact under concurrency; the
//! kernel zeroes the other CPUs' copies when an entry is created (Linux >=
//! 5.10), and userspace sums them. A hit is one lookup; a new flow costs an
//! insert with BPF_NOEXIST (so a flow another CPU just created is never
//! overwritten) and a second lookup.

use aya_ebpf::{bindings::BPF_NOEXIST, macros::map, maps::LruPerCpuHashMap};
use monitor_common::{
    FLOW_IPV4, FLOW_IPV6, FLOW_NO_IP, FLOW_NO_VLAN, FlowKey, FlowValue, IF_FLOWS, IfConfig,
    MAX_FLOWS,
};

use crate::{
    classify::{DstAddr, bytes_at, dst_addr, vlan_in_data},
    maps::netns_ino,
};

/// Mismatched flows of every watched interface. When full, the kernel
/// evicts the least recently used entry to make room for a new flow.
#[map(name = "MACDROP_FLOWS")]
static FLOWS: LruPerCpuHashMap<FlowKey, FlowValue> =
    LruPerCpuHashMap::with_max_entries(MAX_FLOWS, 0);

const ZERO: FlowValue = FlowValue {
    frames: 0,
    bytes: 0,
    mismatch: 0,
    _pad: [0; 7],
};

/// Records one mismatched frame (`mismatch`: its non-zero bits) received
/// on the interface configured by `cfg`. `hook_vlan`: the outermost VLAN ID when the hook took the
/// tag out of the data (tc: `skb->vlan_tci`); `len`: the frame's length as
/// received, that tag included, asked only when the flow is recorded.
#[inline(always)]
pub fn record(
    cfg: &IfConfig,
    data: usize,
    data_end: usize,
    tags_removed: usize,
    hook_vlan: Option<u16>,
    len: impl FnOnce() -> u64,
    mismatch: u8,
) {
    if cfg.flags & IF_FLOWS == 0 {
        return;
    }
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
    match dst_addr(data, data_end, tags_removed) {
        Some(DstAddr::V4(a)) => {
            key.family = FLOW_IPV4;
            // SAFETY: inside the frame, checked by `dst_addr`.
            let a = unsafe { *a };
            key.dst_ip[..4].copy_from_slice(&a);
        }
        Some(DstAddr::V6(a)) => {
            key.family = FLOW_IPV6;
            // SAFETY: inside the frame, checked by `dst_addr`.
            key.dst_ip = unsafe { *a };
        }
        None => {}
    }
    let value = match FLOWS.get_ptr_mut(key) {
        Some(v) => v,
        None => {
            // EEXIST (another CPU created it meanwhile) is fine: the
            // lookup below finds it; so is any other failure, which the
            // lookup then reports by finding nothing.
            let _ = FLOWS.insert(key, ZERO, BPF_NOEXIST as u64);
            match FLOWS.get_ptr_mut(key) {
                Some(v) => v,
                None => return,
            }
        }
    };
    // SAFETY: this CPU's copy of the entry, touched by nothing else on
    // this CPU during the program run.
    let value = unsafe { &mut *value };
    // No clock read: bpf_ktime_get_ns alone cost ~40 ns per frame on these
    // machines, more than the rest of the record; userspace dates flows to
    // the report in which their count grew (`kernel::flows`).
    value.frames += 1;
    value.bytes += len();
    value.mismatch |= mismatch;
}
