//! Types and names of the "confirmed drops" layer: a program on the kernel's
//! `kfree_skb` tracepoint counts the frames the kernel frees as dropped on a
//! watched interface, per (namespace, ifindex, drop reason).
//!
//! Drop-reason values and kernel struct offsets are not ABI: userspace reads
//! them from the running kernel's BTF and hands them to the program as
//! globals (the `GLOBAL_*` names below). Nothing here hard-codes them.

/// Capacity of `DROPS`: one entry per (watched interface, reason seen).
/// Preallocated (tracing programs on PREEMPT_RT kernels may only use
/// preallocated hash maps), so memory is `entries * CPUs * 8` bytes for the
/// values; 8192 entries is 64 KiB per CPU.
pub const MAX_DROP_KEYS: u32 = 8192;

/// Program names in the eBPF object.
pub mod names {
    /// `tp_btf/kfree_skb`: preferred, needs BTF (Linux >= 5.5).
    pub const PROGRAM_TP_BTF: &str = "macdrop_kfree_skb_btf";
    /// `raw_tracepoint/kfree_skb`: fallback when tp_btf does not load.
    pub const PROGRAM_RAW_TP: &str = "macdrop_kfree_skb_raw";
    /// The kernel tracepoint both programs attach to.
    pub const TRACEPOINT: &str = "kfree_skb";

    /// Per-CPU hash `DropKey -> u64`.
    pub const DROPS: &str = "MACDROP_DROPS";
    /// Per-CPU array of `SlotDrops`, indexed by counter slot.
    pub const SLOT_DROPS: &str = "MACDROP_SLOT_DROPS";

    /// Byte offset of `sk_buff.dev` (a `struct net_device *`).
    pub const GLOBAL_OFF_SKB_DEV: &str = "MACDROP_OFF_SKB_DEV";
    /// Byte offset of `net_device.ifindex` (an `int`).
    pub const GLOBAL_OFF_DEV_IFINDEX: &str = "MACDROP_OFF_DEV_IFINDEX";
    /// Byte offset of `net_device.nd_net.net` (a `struct net *`).
    pub const GLOBAL_OFF_DEV_NET: &str = "MACDROP_OFF_DEV_NET";
    /// Byte offset of `net.ns.inum` (an `unsigned int`).
    pub const GLOBAL_OFF_NET_INUM: &str = "MACDROP_OFF_NET_INUM";
    /// Value of `SKB_CONSUMED` (not a drop), or `REASON_NONE`.
    pub const GLOBAL_REASON_CONSUMED: &str = "MACDROP_REASON_CONSUMED";
}

/// A reason value no kernel uses (`SKB_DROP_REASON_SUBSYS_MASK` keeps real
/// values far below it): the default of `GLOBAL_REASON_CONSUMED`, and its
/// value on kernels whose enum has no `SKB_CONSUMED`.
pub const REASON_NONE: u32 = u32::MAX;

/// Key of `DROPS`: frames the kernel dropped with `reason` whose `skb->dev`
/// was interface `ifindex` of the network namespace with inode `netns`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct DropKey {
    pub netns: u32,
    pub ifindex: u32,
    /// The kernel's `enum skb_drop_reason` value, subsystem bits included.
    pub reason: u32,
    pub _pad: u32,
}

impl DropKey {
    pub const fn new(netns: u32, ifindex: u32, reason: u32) -> Self {
        Self {
            netns,
            ifindex,
            reason,
            _pad: 0,
        }
    }
}

/// Reasons a counter slot holds in [`SlotDrops`].
pub const DROP_WAYS: usize = 2;

/// Value of `SLOT_DROPS`, per counter slot and CPU: the drops of the
/// slot's interface under the first `DROP_WAYS` reasons this CPU saw for
/// it (a way is free while its count is 0). A flood drops its frames
/// under one or two reasons, so each costs an array slot the verifier
/// inlines instead of a hash lookup; a drop under any further reason goes
/// to `DROPS`. Userspace adds both up per (interface, reason) and zeroes a
/// slot before giving it to another interface.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct SlotDrops {
    pub frames: [u64; DROP_WAYS],
    /// The kernel's `enum skb_drop_reason` value of each way.
    pub reason: [u32; DROP_WAYS],
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: #[repr(C)], Copy, only u32 fields, no implicit padding.
    unsafe impl aya::Pod for super::DropKey {}
    // SAFETY: #[repr(C)], Copy, u64 then u32 arrays, 24 bytes (asserted below), no implicit padding.
    unsafe impl aya::Pod for super::SlotDrops {}
}

const _: () = assert!(core::mem::size_of::<SlotDrops>() == 8 * DROP_WAYS + 4 * DROP_WAYS);

const _: () = assert!(core::mem::size_of::<DropKey>() == 16);
