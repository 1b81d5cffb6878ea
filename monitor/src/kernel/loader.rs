//! Loads macdrop's eBPF object (built by build.rs, embedded in the binary).

use aya::{Ebpf, EbpfLoader};
use monitor_common::names;

use crate::error::Failure;

/// The object file produced by `monitor/build.rs` from `monitor-ebpf`.
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/macdrop"));

/// Loads the object for one network namespace: the namespace's inode is
/// baked in as a read-only global, so every map key the program builds is
/// (namespace, ifindex) without a helper call per frame. `extra_globals`
/// are more read-only globals to set, e.g. the drop layer's BTF offsets
/// (`drops::DropLayer::globals`); each must exist in the object.
pub fn load(netns_ino: u32, extra_globals: &[(&str, u32)]) -> anyhow::Result<Ebpf> {
    load_with(netns_ino, extra_globals, false)
}

/// `load`, with the evidence ring buffer at its full size when `capture`
/// (`--pcap`), else at one page.
pub fn load_with(
    netns_ino: u32,
    extra_globals: &[(&str, u32)],
    capture: bool,
) -> anyhow::Result<Ebpf> {
    if EBPF_OBJECT.is_empty() {
        anyhow::bail!("this macdrop binary was built without its eBPF object (AYA_BUILD_SKIP?)");
    }
    raise_memlock_limit();
    // Below the process's `--kernel-log` level the verifier drops the
    // records' code (`kernel::klog`).
    let log_level = super::klog::aya_level(super::klog::level());
    let mut loader = EbpfLoader::new();
    loader.override_global(names::NETNS_INO, &netns_ino, true);
    loader.override_global(aya_log::LEVEL, &log_level, true);
    for (name, value) in extra_globals {
        loader.override_global(name, value, true);
    }
    loader.map_max_entries(names::EVIDENCE_RING, super::evidence::ring_bytes(capture));
    let ebpf = loader.load(EBPF_OBJECT).map_err(|e| {
        Failure::environment(format!(
            "the kernel refused macdrop's eBPF maps or programs ({e}); \
                 macdrop needs Linux >= 5.10 with BPF and XDP enabled"
        ))
    })?;
    Ok(ebpf)
}

/// Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK; lift it so map
/// creation does not fail there. Harmless on newer kernels.
fn raise_memlock_limit() {
    let rlim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: plain syscall with a valid pointer.
    let _ = unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &rlim) };
}
