//! The maps userspace fills (configuration) and reads (counters). Names and
//! key/value layouts come from `monitor_common`.

use aya_ebpf::{
    macros::map,
    maps::{HashMap, PerCpuArray},
};
use monitor_common::{
    AddrKey, FrameCounters, IfConfig, IfKey, MAX_INTERFACES, MAX_LOCAL_ADDRS, MAX_LOCAL_MACS,
    MacKey,
};

/// Watched interfaces: (netns, ifindex) -> slot and how to judge `own`.
/// Frames on interfaces missing here are not counted.
#[map(name = "MACDROP_IFACES")]
pub static IFACES: HashMap<IfKey, IfConfig> = HashMap::with_max_entries(MAX_INTERFACES, 0);

/// Frame counters per slot, one copy per CPU (no atomics on the hot path).
#[map(name = "MACDROP_COUNTERS")]
pub static COUNTERS: PerCpuArray<FrameCounters> = PerCpuArray::with_max_entries(MAX_INTERFACES, 0);

/// MACs known to each MAC domain: the destinations a watched bridge
/// delivers to the host (its local FDB entries, as read by userspace from
/// the FDB, never assumed) with value `MAC_LOCAL`, and the domain's previous
/// MACs with value `MAC_PREVIOUS`.
#[map(name = "MACDROP_LOCAL_MACS")]
pub static LOCAL_MACS: HashMap<MacKey, u8> = HashMap::with_max_entries(MAX_LOCAL_MACS, 0);

/// IP addresses of the namespace (IPv4-mapped for IPv4).
#[map(name = "MACDROP_LOCAL_ADDRS")]
pub static LOCAL_ADDRS: HashMap<AddrKey, u8> = HashMap::with_max_entries(MAX_LOCAL_ADDRS, 0);

/// Inode number of the network namespace this object instance serves; set
/// by userspace at load time (`EbpfLoader::override_global`).
#[unsafe(no_mangle)]
static MACDROP_NETNS_INO: u32 = 0;

#[inline(always)]
pub fn netns_ino() -> u32 {
    // read_volatile: the value is patched after compilation, so the compiler
    // must not fold the initializer.
    unsafe { core::ptr::read_volatile(&MACDROP_NETNS_INO) }
}
