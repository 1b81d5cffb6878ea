//! tc egress: frames leaving an uplink, per source-MAC class
//! (`monitor_common::egress`). Attached only to the uplinks the
//! forged-transmits rule needs; a frame leaving any other interface costs
//! one hash miss. Reads the source MAC, looks it up, adds one; never
//! changes the frame or decides its fate.

use aya_ebpf::{
    macros::{classifier, map},
    maps::{HashMap, PerCpuArray},
    programs::TcContext,
};
use monitor_common::egress::{
    EgressCounters, EgressMacKey, MAP_FLAGS, MAX_EGRESS_IFACES, MAX_EGRESS_MACS, counted,
};

#[map(name = "MACDROP_EGRESS_SLOTS")]
static SLOTS: HashMap<u32, u32> = HashMap::with_max_entries(MAX_EGRESS_IFACES, MAP_FLAGS);

#[map(name = "MACDROP_EGRESS_MACS")]
static MACS: HashMap<EgressMacKey, u8> = HashMap::with_max_entries(MAX_EGRESS_MACS, MAP_FLAGS);

#[map(name = "MACDROP_EGRESS_COUNTERS")]
static COUNTERS: PerCpuArray<EgressCounters> = PerCpuArray::with_max_entries(MAX_EGRESS_IFACES, 0);

/// Always TC_ACT_UNSPEC, as `macdrop_tc`: an observer decides nothing.
#[classifier]
pub fn macdrop_tc_egress(ctx: TcContext) -> i32 {
    count(&ctx);
    aya_ebpf::bindings::TC_ACT_UNSPEC
}

#[inline(always)]
fn count(ctx: &TcContext) {
    // SAFETY: a context field read the verifier rewrites into an sk_buff
    // load; on egress `ifindex` is the device the frame leaves.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    // SAFETY: the map's value is a plain u32.
    let Some(slot) = (unsafe { SLOTS.get(ifindex) }) else {
        return;
    };
    let Some(counters) = COUNTERS.get_ptr_mut(*slot) else {
        return;
    };
    // SAFETY: a per-CPU slot of this map, nothing else writes it on this CPU.
    let counters = unsafe { &mut *counters };
    let (data, data_end) = (ctx.data(), ctx.data_end());
    // An Ethernet device's frame always has its header in the linear
    // part; the check is the verifier's.
    if data + 12 > data_end {
        return;
    }
    // SAFETY: bytes 0..12 are inside the packet (checked above).
    let dest = unsafe { core::ptr::read_unaligned(data as *const [u8; 6]) };
    // A multicast group's frame is not counted: no lookup for it.
    if !counted(&dest) {
        return;
    }
    // SAFETY: as above.
    let mac = unsafe { core::ptr::read_unaligned((data + 6) as *const [u8; 6]) };
    // SAFETY: the map's value is a plain u8.
    let class = unsafe { MACS.get(EgressMacKey::new(ifindex, mac)) }.copied();
    counters.count(&dest, class);
}
