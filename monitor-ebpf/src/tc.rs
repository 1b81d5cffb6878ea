//! What only the tc hook can count: the kernel's own verdict on the frame's
//! destination, `skb->pkt_type`, set by `eth_type_trans` relative to the
//! receiving device's MAC before tc runs. XDP runs before there is an skb,
//! so it has no such field; the classifier's MAC classes are macdrop's
//! prediction, these counters the kernel's view side by side with it.

use core::mem::offset_of;

use monitor_common::FrameCounters;

/// `PACKET_HOST` .. `PACKET_OTHERHOST` of `include/uapi/linux/if_packet.h`
/// are 0..=3 (stable ABI); anything above is counted as `pkt_other`.
const PACKET_OTHERHOST: u32 = 3;

// The five pkt_* counters are consecutive u64s in PACKET_* order, so the
// kernel's value indexes them directly.
const PKT_BASE: usize = offset_of!(FrameCounters, pkt_host);
const _: () = {
    assert!(offset_of!(FrameCounters, pkt_broadcast) == PKT_BASE + 8);
    assert!(offset_of!(FrameCounters, pkt_multicast) == PKT_BASE + 16);
    assert!(offset_of!(FrameCounters, pkt_otherhost) == PKT_BASE + 24);
    assert!(offset_of!(FrameCounters, pkt_other) == PKT_BASE + 32);
};

/// Counts `pkt_type` into the interface's counters.
///
/// An index rather than a `match`: LLVM folds the match into "base +
/// pkt_type * 8" computed before its range check, which the verifier
/// rejects as an unbounded map access. Clamping first bounds the value the
/// address is computed from.
#[inline(always)]
pub fn count_pkt_type(counters: &mut FrameCounters, pkt_type: u32) {
    let i = if pkt_type > PACKET_OTHERHOST {
        PACKET_OTHERHOST as usize + 1
    } else {
        pkt_type as usize
    };
    // SAFETY: `i` <= 4 and the five counters from `pkt_host` on are
    // consecutive u64s (asserted above), all inside `counters`.
    unsafe {
        let base = (counters as *mut FrameCounters).cast::<u8>().add(PKT_BASE);
        *base.cast::<u64>().add(i) += 1;
    }
}
