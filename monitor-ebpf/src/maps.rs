//! The maps userspace fills (configuration) and reads (counters). Names and
//! key/value layouts come from `monitor_common`.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, PerCpuArray},
};
use monitor_common::{
    ADDR_TABLE_SLOTS, AddrKey, AddrSlot, IFINDEX_DIRECT, IfConfig, IfKey, MAC_FILTER_WORDS,
    MAX_INTERFACES, MAX_LOCAL_ADDRS, MAX_LOCAL_MACS, MacKey, NO_PREALLOC, SlotCounters,
};

/// Watched interfaces: (netns, ifindex) -> slot and how to judge `own`.
/// Frames on interfaces missing here are not counted. Holds every watched
/// interface; the classifier and the drop counter (`classify::if_config`)
/// consult it only for those `IF_BY_INDEX` cannot hold.
#[map(name = "MACDROP_IFACES")]
pub static IFACES: HashMap<IfKey, IfConfig> = HashMap::with_max_entries(MAX_INTERFACES, 0);

/// The same configurations indexed by ifindex, for ifindexes below
/// `IFINDEX_DIRECT` (entries without `IF_WATCHED` are unused): the
/// classifier's per-frame lookup, an array index the verifier inlines
/// instead of a hash lookup. The object serves one namespace, so the
/// ifindex alone is the key.
#[map(name = "MACDROP_IF_BY_INDEX")]
pub static IF_BY_INDEX: Array<IfConfig> = Array::with_max_entries(IFINDEX_DIRECT, 0);

/// Frame counters per slot (and the slot's flow sampler count), one copy
/// per CPU (no atomics on the hot path).
#[map(name = "MACDROP_COUNTERS")]
pub static COUNTERS: PerCpuArray<SlotCounters> = PerCpuArray::with_max_entries(MAX_INTERFACES, 0);

/// Per receiving interface (its MAC domain) and VLAN path: the
/// destinations the kernel delivers to the host from it (value
/// `MAC_LOCAL`, computed by userspace from the FDB, the VLAN devices and
/// the bridge's VLANs, never assumed), and the previous MACs of the
/// interface or its bridge (`MAC_PREVIOUS`).
#[map(name = "MACDROP_LOCAL_MACS")]
pub static LOCAL_MACS: HashMap<MacKey, u8> = HashMap::with_max_entries(MAX_LOCAL_MACS, NO_PREALLOC);

/// IP addresses of the namespace (IPv4-mapped for IPv4).
#[map(name = "MACDROP_LOCAL_ADDRS")]
pub static LOCAL_ADDRS: HashMap<AddrKey, u8> =
    HashMap::with_max_entries(MAX_LOCAL_ADDRS, NO_PREALLOC);

/// The hand-off marker (`monitor_common::IF_HANDOFF`), one u32 per CPU:
/// the ifindex whose generic XDP program counted the frame this CPU is
/// receiving, so that the tc program that runs next for the same skb does
/// not count it again. Per CPU because the two run back to back on the
/// CPU that receives the frame, with nothing else in between.
#[map(name = "MACDROP_HANDOFF_SEEN")]
pub static HANDOFF_SEEN: PerCpuArray<u32> = PerCpuArray::with_max_entries(1, 0);

/// A port's verdict on the unicast frame it just counted, one u64 per CPU
/// (`monitor_common::VERDICT_*` | destination MAC): the bridge device's
/// program takes it for the same frame when the bridge passes it up, which
/// happens on the same CPU right after the port's hooks ran
/// (`br_handle_frame` -> `br_pass_frame_up` -> `netif_receive_skb`).
#[map(name = "MACDROP_PASSUP")]
pub static PASSUP: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Bit filter over the keys of `LOCAL_MACS` (`monitor_common::mac_filter_bit`):
/// a clear bit proves a destination unknown to the domain, so most foreign
/// unicast is classified without a hash lookup.
#[map(name = "MACDROP_MAC_FILTER")]
pub static MAC_FILTER: Array<u64> = Array::with_max_entries(MAC_FILTER_WORDS, 0);

/// The addresses of `LOCAL_ADDRS`, direct-mapped (`monitor_common::AddrSlot`):
/// whether a destination is the host's, mostly without a hash lookup.
#[map(name = "MACDROP_ADDR_TABLE")]
pub static ADDR_TABLE: Array<AddrSlot> = Array::with_max_entries(ADDR_TABLE_SLOTS, 0);

/// Whether `bit` is set in `filter`; true if it cannot be read, so that a
/// filter problem costs a hash lookup, never a wrong class.
#[inline(always)]
pub fn filter_has(filter: &Array<u64>, bit: u32) -> bool {
    match filter.get(bit >> 6) {
        Some(word) => *word & (1u64 << (bit & 63)) != 0,
        None => true,
    }
}

/// Inode number of the network namespace this object instance serves; set
/// by userspace at load time (`EbpfLoader::override_global`).
#[unsafe(no_mangle)]
static MACDROP_NETNS_INO: u32 = 0;

#[inline(always)]
pub fn netns_ino() -> u32 {
    // read_volatile: the value is patched after compilation, so the compiler
    // must not fold the initializer.
    // SAFETY: a valid reference to a global.
    unsafe { core::ptr::read_volatile(&MACDROP_NETNS_INO) }
}
