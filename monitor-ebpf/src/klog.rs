//! Rare kernel-side events, as aya-log records for userspace to show
//! (`monitor/src/kernel/klog.rs`, `--kernel-log`). Only paths no counted
//! frame takes log anything, so the per-frame cost is the same whatever
//! the level; with `--kernel-log off` userspace sets `AYA_LOG_LEVEL` to 0
//! before the load, and the verifier drops the records' code altogether.
//!
//! Each record is rate-bound per CPU (one per second): an event that hits
//! every frame (say, a configuration bug) must not fill the log ring.

use aya_ebpf::{EbpfContext, helpers::bpf_ktime_get_ns, macros::map, maps::PerCpuArray};
use aya_log_ebpf::warn;

/// Per CPU: the earliest time (ns since boot) this CPU may log again.
#[map(name = "MACDROP_LOG_NEXT")]
static NEXT: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// At most one record per second per CPU.
const GAP_NS: u64 = 1_000_000_000;

/// Whether this CPU may log now; if so, the next second is taken.
#[inline(always)]
fn may_log() -> bool {
    let Some(next) = NEXT.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: a helper without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    // SAFETY: this CPU's copy, touched by nothing else during the run.
    let next = unsafe { &mut *next };
    if now < *next {
        return false;
    }
    *next = now + GAP_NS;
    true
}

/// A frame on an interface the program runs on but has no configuration
/// for: userspace writes the configuration before it attaches and removes
/// it only after it detaches, so this is a macdrop bug (or another tool
/// that attached macdrop's program), and the frame is not counted.
#[inline(always)]
pub fn unconfigured<C: EbpfContext>(ctx: &C, netns: u32, ifindex: u32) {
    if may_log() {
        warn!(
            ctx,
            "frame on ifindex {} (netns {}) not counted: macdrop has no configuration for it",
            ifindex,
            netns
        );
    }
}
