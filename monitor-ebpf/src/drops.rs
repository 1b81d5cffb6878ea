//! Confirmed drops: on the kernel's `kfree_skb` tracepoint, count the frames
//! the kernel frees as dropped on a watched interface, per (namespace,
//! ifindex, reason). The XDP classifier says what arrived; this says what
//! the kernel actually threw away, and why.
//!
//! `kfree_skb` fires for every dropped skb of every namespace on the host,
//! so the path is short: a compare against `SKB_CONSUMED`, four kernel reads
//! (skb->dev, dev->nd_net.net, net->ns.inum, dev->ifindex) with early exits
//! (a drop in another namespace ends at the inode compare: each namespace
//! macdrop watches has an object of its own), the watched-interface lookup
//! (the classifier's, `classify::if_config`: an array indexed by ifindex,
//! inlined by the verifier), and only for watched interfaces one per-CPU
//! counter update: in the interface's slot of `SLOT_DROPS` (an array
//! entry, inlined too) for its first two reasons, the `DROPS` hash for any
//! further one. Nothing is sent to userspace per drop.
//!
//! There are no CO-RE relocations in Rust eBPF: every struct offset is a
//! global that userspace fills from the running kernel's BTF at load time.
//! They sit in the object's read-only data, which aya freezes before the
//! programs load, so the verifier knows them as constants. The tp_btf
//! program gets `skb` as a BTF-typed pointer and loads the fields directly:
//! the verifier checks each offset against the kernel's BTF and the JIT
//! turns the loads into ones that yield 0 instead of faulting (the
//! `PROBE_MEM` loads), with no helper call per read. The raw tracepoint
//! program gets a plain number and reads with `bpf_probe_read_kernel`. Both
//! fail cleanly on a bad pointer: `skb->dev` shares a union with
//! `dev_scratch`, which holds a number, not a pointer, for skbs that sat in
//! a socket's receive queue.

use aya_ebpf::{
    bindings::BPF_NOEXIST,
    helpers::bpf_probe_read_kernel,
    macros::map,
    maps::{PerCpuArray, PerCpuHashMap},
};
use monitor_common::{
    MAX_INTERFACES,
    drops::{DropKey, MAX_DROP_KEYS, REASON_NONE, SlotDrops},
};

use crate::{classify::if_config, maps::netns_ino};

/// Drop counters, one copy per CPU: (netns, ifindex, reason) -> frames,
/// for reasons beyond an interface's `SLOT_DROPS` ways.
#[map(name = "MACDROP_DROPS")]
pub static DROPS: PerCpuHashMap<DropKey, u64> = PerCpuHashMap::with_max_entries(MAX_DROP_KEYS, 0);

/// Drop counters of each watched interface's first reasons, per counter
/// slot, one copy per CPU (`SlotDrops`).
#[map(name = "MACDROP_SLOT_DROPS")]
static SLOT_DROPS: PerCpuArray<SlotDrops> = PerCpuArray::with_max_entries(MAX_INTERFACES, 0);

// Set by userspace at load time (`EbpfLoader::override_global`) from BTF.
// The defaults only matter to objects that never load the drop programs
// (the XDP-only paths), so zero offsets are harmless.
#[unsafe(no_mangle)]
static MACDROP_OFF_SKB_DEV: u32 = 0;
#[unsafe(no_mangle)]
static MACDROP_OFF_DEV_IFINDEX: u32 = 0;
#[unsafe(no_mangle)]
static MACDROP_OFF_DEV_NET: u32 = 0;
#[unsafe(no_mangle)]
static MACDROP_OFF_NET_INUM: u32 = 0;
#[unsafe(no_mangle)]
static MACDROP_REASON_CONSUMED: u32 = REASON_NONE;

/// Reads a global patched after compilation; `read_volatile` keeps the
/// compiler from folding the initializer.
#[inline(always)]
fn global(v: &'static u32) -> u32 {
    // SAFETY: a valid reference to a global; volatile only so the load is not folded.
    unsafe { core::ptr::read_volatile(v) }
}

/// How a program reads kernel memory: a `T` at `base + off`, None if the
/// read faults.
pub trait KernelRead {
    fn read<T: Copy>(base: u64, off: u32) -> Option<T>;
}

/// With `bpf_probe_read_kernel`: any program type, any pointer.
pub struct ProbeRead;

impl KernelRead for ProbeRead {
    #[inline(always)]
    fn read<T: Copy>(base: u64, off: u32) -> Option<T> {
        // SAFETY: the helper checks the address and reports a fault as an error instead of faulting.
        unsafe { bpf_probe_read_kernel((base + off as u64) as *const T) }.ok()
    }
}

/// A plain load from a BTF-typed pointer and the pointers read from it
/// (tp_btf): the verifier checks `off` against the kernel's BTF (it is a
/// known constant, see above) and the JIT makes the load yield 0 where it
/// would fault, so a bad pointer reads as 0, never as a crash.
pub struct BtfLoad;

impl KernelRead for BtfLoad {
    #[inline(always)]
    fn read<T: Copy>(base: u64, off: u32) -> Option<T> {
        // SAFETY: see above: a load the verifier checked and the JIT guards.
        Some(unsafe { core::ptr::read_volatile((base + off as u64) as *const T) })
    }
}

/// Counts one `kfree_skb(skb, .., reason, ..)` if `skb->dev` is watched.
#[inline(always)]
pub fn count_drop<R: KernelRead>(skb: u64, reason: u32) {
    // A free with reason SKB_CONSUMED is not a drop. Recent kernels route
    // it to the `consume_skb` tracepoint instead; some older ones with drop
    // reasons passed it here.
    if skb == 0 || reason == global(&MACDROP_REASON_CONSUMED) {
        return;
    }
    let Some(dev) = R::read::<u64>(skb, global(&MACDROP_OFF_SKB_DEV)) else {
        return;
    };
    if dev == 0 {
        return;
    }
    let Some(net) = R::read::<u64>(dev, global(&MACDROP_OFF_DEV_NET)) else {
        return;
    };
    if net == 0 {
        return;
    }
    let Some(netns) = R::read::<u32>(net, global(&MACDROP_OFF_NET_INUM)) else {
        return;
    };
    let Some(ifindex) = R::read::<u32>(dev, global(&MACDROP_OFF_DEV_IFINDEX)) else {
        return;
    };
    // Only the object's own namespace is watched through it; its
    // interfaces are found as the classifier finds them.
    if netns != netns_ino() {
        return;
    }
    let Some(cfg) = if_config(ifindex, || netns) else {
        return;
    };
    if let Some(slot) = SLOT_DROPS.get_ptr_mut(cfg.slot) {
        // SAFETY: this CPU's copy of the slot; the kernel does not nest a
        // tracing program on the CPU it already runs on.
        let d = unsafe { &mut *slot };
        // Written out for the two ways: no loop for the verifier.
        const _: () = assert!(monitor_common::drops::DROP_WAYS == 2);
        if d.frames[0] != 0 && d.reason[0] == reason {
            d.frames[0] += 1;
            return;
        }
        if d.frames[1] != 0 && d.reason[1] == reason {
            d.frames[1] += 1;
            return;
        }
        if d.frames[0] == 0 {
            d.reason[0] = reason;
            d.frames[0] = 1;
            return;
        }
        if d.frames[1] == 0 {
            d.reason[1] = reason;
            d.frames[1] = 1;
            return;
        }
    }
    bump(DropKey::new(netns, ifindex, reason));
}

#[inline(always)]
fn bump(key: DropKey) {
    if let Some(n) = DROPS.get_ptr_mut(key) {
        // SAFETY: this CPU's copy of the entry; the kernel does not nest a
        // tracing program on the CPU it already runs on, so a plain add is
        // enough.
        unsafe { *n += 1 };
        return;
    }
    // First drop of this kind. NOEXIST: if another CPU created the entry
    // since the lookup, count into it instead of overwriting it. A full
    // map fails both ways and the drop goes uncounted.
    if DROPS.insert(key, 1, BPF_NOEXIST as u64).is_err()
        && let Some(n) = DROPS.get_ptr_mut(key)
    {
        // SAFETY: as above: this CPU's copy, not nested.
        unsafe { *n += 1 };
    }
}
