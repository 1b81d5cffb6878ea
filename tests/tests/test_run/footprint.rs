//! What one session's object holds before any frame: `--all-netns` loads
//! one per watched namespace, so slack here is paid hundreds of times
//! (docs/performance.md, the scale part, measures it; this keeps the two
//! causes found there from coming back).

use aya::maps::{Map, MapInfo};
use macdrop::kernel::klog::{self, KernelLog};
use monitor_common::{NO_PREALLOC, drops, names};

fn info(ebpf: &aya::Ebpf, name: &str) -> MapInfo {
    match ebpf
        .map(name)
        .unwrap_or_else(|| panic!("map {name} missing"))
    {
        Map::RingBuf(m) | Map::HashMap(m) | Map::PerCpuHashMap(m) => m.info().unwrap(),
        _ => panic!("map {name} has an unexpected type"),
    }
}

/// The log ring is sized for the level and the CPUs (`klog::ring_bytes`),
/// not aya-log-ebpf's fixed 128 KiB; the classifier's MAC and address maps
/// are not preallocated, while the maps the `kfree_skb` program uses are
/// (kernels before 6.1 refuse or warn about tracing programs on maps
/// without preallocation).
#[test]
fn a_sessions_object_holds_no_preallocated_slack() {
    let (ebpf, _) = super::load_here();

    let cpus = aya::util::nr_cpus().unwrap();
    assert_eq!(klog::level(), KernelLog::Warn, "the default level");
    let ring = info(&ebpf, klog::RING).max_entries();
    assert_eq!(ring, klog::ring_bytes_here());
    if cpus < 128 {
        assert!(ring < 128 * 1024, "log ring of {ring} bytes on {cpus} CPUs");
    }

    for name in [names::LOCAL_MACS, names::LOCAL_ADDRS] {
        assert_eq!(
            info(&ebpf, name).map_flags() & NO_PREALLOC,
            NO_PREALLOC,
            "{name} is preallocated"
        );
    }
    for name in [names::IFACES, drops::names::DROPS] {
        assert_eq!(
            info(&ebpf, name).map_flags() & NO_PREALLOC,
            0,
            "{name}, which the kfree_skb program uses, is not preallocated"
        );
    }
}
