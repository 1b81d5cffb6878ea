//! The classifier: one pass over the Ethernet header, optional VLAN tags and
//! the network header's destination address. No hash lookup on the common
//! paths:
//!
//! - every frame: the interface's config, an array indexed by ifindex
//!   (`IF_BY_INDEX`; the `IFACES` hash only for ifindexes beyond it), and
//!   its counters, a per-CPU array slot. Both lookups are inlined by the
//!   verifier into a few instructions;
//! - broadcast, multicast, and unicast to the interface's verified fast MAC
//!   (`own` in the common case): nothing more;
//! - other unicast: a bit of the MAC filter; only when it is set (the
//!   destination is one of the domain's local or previous MACs, or a rare
//!   filter collision) a hash lookup in `LOCAL_MACS`;
//! - foreign unicast: the destination IP's slot of the address table, a
//!   direct-mapped copy of `LOCAL_ADDRS` that answers exactly, the alarm
//!   (`host_ip_wrong_mac`) included; only a slot shared by several host
//!   addresses sends the frame to a hash lookup in `LOCAL_ADDRS`.
//!
//! The MAC filter is exact in the direction that matters: a clear bit
//! proves the key absent from `LOCAL_MACS`, a set bit only sends the frame
//! to the hash lookup that decides. Userspace keeps the filter and the table
//! in step with the hash maps (`kernel::config`); interfaces configured
//! without `IF_FILTERED` take the hash lookups every time.
//!
//! What "own" means is the kernel's delivery rule (`monitor/src/delivery.rs`
//! states it, from the kernel source): userspace turns it into, per
//! receiving interface and VLAN path, the destinations the kernel delivers
//! (`LOCAL_MACS`, keyed by `vlan_path`), so this program needs no knowledge
//! of bridges, VLAN devices or filtering. Untagged frames to the verified
//! fast MAC take the fast path; everything else is one keyed lookup (after
//! the filter bit). A bridge device takes each unicast frame's verdict
//! from the port that passed it up (`PASSUP`).
//!
//! The plain-Rust reference model in `monitor/src/classify.rs` defines the
//! same classes; the `test_run` tests hold the two in agreement.

use aya_ebpf::EbpfContext;

use monitor_common::{
    AddrKey, AddrSlot, BROADCAST_WORD, FrameCounters, IF_BRIDGE, IF_FAST_MAC_VALID, IF_FILTERED,
    IF_HANDOFF, IF_HANDOFF_ANY, IF_PASSUP_FAST, IF_PORT, IF_TC_MUTED, IF_WATCHED, IfConfig, IfKey,
    MAC_LOCAL, MAC_PREVIOUS, MacKey, SlotCounters, VERDICT_HOST_IP, VERDICT_OWN, VERDICT_STALE,
    VERDICT_VALID, VLANS_UNTAGGED, addr_slot, mac_filter_bit_of_word, mismatch_bits, vlan_path,
    vlan_tag_code,
};

use crate::maps::{
    ADDR_TABLE, COUNTERS, HANDOFF_SEEN, IF_BY_INDEX, IFACES, LOCAL_ADDRS, LOCAL_MACS, MAC_FILTER,
    PASSUP, filter_has, netns_ino,
};

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_ARP: u16 = 0x0806;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const VLAN_HLEN: usize = 4;
/// Where an untagged frame's EtherType is.
const ETHERTYPE_OFF: usize = 12;
/// The MAC's bits of a `PASSUP` word (`mac_word`).
const MAC_BITS: u64 = 0xffff_ffff_ffff;

/// Returns a pointer to `LEN` bytes at `off`, or None if they are not all
/// inside the frame. The explicit check is what the verifier needs.
#[inline(always)]
pub fn bytes_at<const LEN: usize>(
    data: usize,
    data_end: usize,
    off: usize,
) -> Option<*const [u8; LEN]> {
    let start = data + off;
    if start + LEN > data_end {
        return None;
    }
    Some(start as *const [u8; LEN])
}

/// The `mac_word` of the 6 bytes at `p`: one u64 load (the object is
/// built with misaligned loads allowed: `build.rs`) and a mask, so the
/// destination lives in one register and in no other form.
///
/// # Safety
/// `p` points to 8 readable bytes (checked against `data_end`: the
/// Ethernet header holds them).
#[inline(always)]
pub unsafe fn mac_word_at(p: *const u8) -> u64 {
    // SAFETY: 8 readable bytes at `p`, per the caller.
    let word = unsafe { core::ptr::read_unaligned(p.cast::<u64>()) };
    // `mac_word` is little-endian: byte 0 in the low bits.
    u64::from_le(word) & MAC_BITS
}

#[inline(always)]
fn be16_at(data: usize, data_end: usize, off: usize) -> Option<u16> {
    let p = bytes_at::<2>(data, data_end, off)?;
    // SAFETY: 2 bytes inside the frame, checked by `bytes_at`.
    Some(u16::from_be_bytes(unsafe { *p }))
}

/// Counts one frame received on `ifindex`. Never touches the frame.
/// `frame`: reads the frame's bounds (`data`, `data_end`) from the
/// context, after the configuration's lookup: to the compiler each inlined
/// map lookup is a helper call, and values read before it would be held
/// across it as stack spills and reloads. `hook_tag`: the `vlan_tag_code`
/// of the VLAN tag the kernel already took out of the frame data (at tc,
/// the outermost tag sits in `skb->vlan_tci`), 0 if none, so the VLAN
/// path and the walk to the network header still cover the frame's tags
/// as on the wire, as XDP and the reference model do.
///
/// The frame is classified first and counted after (`Decided`), so the
/// counters' pointer is not held across the classifier's lookups either.
///
/// Returns what the hook and the mismatch path need ([`Counted`]); None if
/// the interface has no configuration (logged through `ctx`, rate-bound:
/// see `klog`), or if the frame is counted by the other hook (`hook`:
/// which program is asking; see `counted_here`).
#[inline(always)]
pub fn count_frame<C: EbpfContext>(
    ctx: &C,
    frame: impl FnOnce(&C) -> (usize, usize),
    ifindex: u32,
    hook_tag: u32,
    hook: Hook,
) -> Option<Counted> {
    // The namespace is read where a key needs it (`netns_ino`, a load),
    // not held in a register across the lookups.
    let Some(cfg) = if_config(ifindex, netns_ino) else {
        crate::klog::unconfigured(ctx, netns_ino(), ifindex);
        return None;
    };
    // One test of flags already loaded: interfaces not being handed off
    // pay nothing more.
    if cfg.flags & IF_HANDOFF_ANY != 0 && !counted_here(cfg.flags, ifindex, hook) {
        return None;
    }
    let (data, data_end) = frame(ctx);
    let decided = decide(cfg, data, data_end, hook_tag, hook);
    let counters = COUNTERS.get_ptr_mut(cfg.slot)?;
    // SAFETY: a per-CPU array slot, valid for the whole program run and
    // touched by nothing else on this CPU meanwhile.
    let counters: &'static mut SlotCounters = unsafe { &mut *counters };
    decided.count_into(&mut counters.frames);
    Some(Counted {
        counters,
        cfg,
        mismatch: decided.mismatch(cfg.flags),
        proto_off: decided.proto_off,
    })
}

/// A frame `count_frame` counted.
pub struct Counted {
    /// The interface's counters (this CPU's copy), so that a hook which
    /// knows more than the frame bytes (tc: the kernel's `pkt_type`) can
    /// count that into the same slot, and the flow sampler
    /// (`flows::sample`) count beside them.
    pub counters: &'static mut SlotCounters,
    /// The interface's configuration, so the mismatch path does not look
    /// it up again.
    pub cfg: &'static IfConfig,
    /// The frame's mismatch bits (`monitor_common::MISMATCH_*`), 0 for
    /// every common case.
    pub mismatch: u8,
    /// Where the EtherType after the frame's VLAN tags is
    /// (`frame_vlan_path`), so a flow record finds the destination IP
    /// without walking the tags again; meaningful only when `mismatch` is
    /// not 0.
    pub proto_off: usize,
}

/// The program asking `count_frame` to count a frame.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    Xdp,
    Tc,
}

/// During a hand-off from generic XDP to TCX (both attached to the
/// interface), whether `hook` counts the frame: XDP always does, and marks
/// it; tc counts only frames XDP did not mark, and none while muted. The
/// two run for the same skb on the same CPU, XDP first, with nothing in
/// between that could receive another frame, so the per-CPU marker pairs
/// them exactly. Flows and evidence follow (a frame not counted here is
/// not recorded here).
#[inline(always)]
fn counted_here(flags: u32, ifindex: u32, hook: Hook) -> bool {
    let Some(seen) = HANDOFF_SEEN.get_ptr_mut(0) else {
        // Cannot happen (a one-entry array); XDP counts, as without tc.
        return hook == Hook::Xdp;
    };
    // SAFETY: this CPU's copy, touched by nothing else during the run.
    let seen = unsafe { &mut *seen };
    match hook {
        Hook::Xdp => {
            if flags & IF_HANDOFF != 0 {
                *seen = ifindex;
            }
            true
        }
        Hook::Tc => {
            let marked = *seen == ifindex;
            if marked {
                *seen = 0;
            }
            !marked && flags & IF_TC_MUTED == 0
        }
    }
}

/// The configuration of a watched interface: its `IF_BY_INDEX` entry, or
/// for an ifindex beyond the array (or an entry not written there) its
/// `IFACES` entry (keyed with the namespace `netns` gives).
#[inline(always)]
pub fn if_config(ifindex: u32, netns: impl FnOnce() -> u32) -> Option<&'static IfConfig> {
    if let Some(cfg) = IF_BY_INDEX.get(ifindex)
        && cfg.flags & IF_WATCHED != 0
    {
        return Some(cfg);
    }
    // SAFETY: a map lookup; the entry is only read, and userspace changes entries by replacing them whole.
    unsafe {
        IFACES.get(IfKey {
            netns: netns(),
            ifindex,
        })
    }
}

/// The classification proper: which counter the frame goes to, and for
/// foreign unicast its verdict bits and where its EtherType after the
/// tags is.
#[inline(always)]
fn decide(cfg: &IfConfig, data: usize, data_end: usize, hook_tag: u32, hook: Hook) -> Decided {
    // A frame too short for an Ethernet header has no class of its own.
    let Some(eth) = bytes_at::<ETH_HLEN>(data, data_end, 0) else {
        return Decided::of(Class::Runt);
    };
    // SAFETY: `eth` is ETH_HLEN bytes inside the frame (checked by `bytes_at`), of which these are the first 8.
    let dst = unsafe { mac_word_at(eth.cast()) };

    // The group bit: the first bit on the wire.
    if dst & 1 != 0 {
        return Decided::of(if dst == BROADCAST_WORD {
            Class::Broadcast
        } else {
            Class::Multicast
        });
    }
    // Untagged: no tag taken out by the hook and none in the header read
    // above, so the common case needs no further read.
    // SAFETY: `eth` is ETH_HLEN bytes inside the frame.
    let ethertype = u16::from_be_bytes(unsafe { [(*eth)[12], (*eth)[13]] });
    let untagged = hook_tag == 0 && ethertype != ETH_P_8021Q && ethertype != ETH_P_8021AD;
    let fast = untagged && cfg.flags & IF_FAST_MAC_VALID != 0 && is_fast_mac(cfg, dst);
    // The fast path ends here unless a bridge device's program may read
    // this frame's verdict (a port with `IF_PASSUP_FAST`), or this is a
    // bridge device at generic XDP, which cannot see whether the port's
    // receive path took a tag out, so the port's verdict comes first.
    let bridge = cfg.flags & IF_BRIDGE != 0;
    if fast && cfg.flags & IF_PASSUP_FAST == 0 && !(bridge && hook == Hook::Xdp) {
        return Decided::of(Class::Own);
    }
    // The tags are walked once, here: the verdict needs their path, a
    // mismatched frame's flow record the offset after them.
    let (vlans, proto_off) = if untagged {
        (VLANS_UNTAGGED, ETHERTYPE_OFF)
    } else {
        frame_vlan_path(data, data_end, hook_tag)
    };
    let verdict = if bridge && let Some(verdict) = passed_up_verdict(dst) {
        verdict
    } else if fast {
        VERDICT_OWN
    } else {
        unicast_verdict(cfg, dst, data, data_end, (vlans, proto_off), untagged)
    };
    if cfg.flags & IF_PORT != 0 {
        leave_verdict(dst, verdict);
    }
    if verdict & VERDICT_OWN != 0 {
        return Decided::of(Class::Own);
    }
    Decided {
        class: Class::Foreign,
        verdict,
        proto_off,
    }
}

/// The counter a frame goes to (`FrameCounters`; `total` as well, always).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    Runt,
    Broadcast,
    Multicast,
    Own,
    Foreign,
}

/// The classifier's decision on one frame, counted by `count_into`.
#[derive(Clone, Copy)]
struct Decided {
    class: Class,
    /// For `Class::Foreign`, its `VERDICT_HOST_IP` and `VERDICT_STALE`
    /// bits; 0 otherwise.
    verdict: u64,
    /// For `Class::Foreign`, where its EtherType after its tags is.
    proto_off: usize,
}

impl Decided {
    #[inline(always)]
    fn of(class: Class) -> Self {
        Self {
            class,
            verdict: 0,
            proto_off: 0,
        }
    }

    #[inline(always)]
    fn count_into(self, c: &mut FrameCounters) {
        c.total += 1;
        match self.class {
            Class::Runt => c.runt += 1,
            Class::Broadcast => c.broadcast += 1,
            Class::Multicast => c.multicast += 1,
            Class::Own => c.own += 1,
            Class::Foreign => {
                c.foreign_unicast += 1;
                if self.verdict & VERDICT_STALE != 0 {
                    c.stale_mac += 1;
                }
                if self.verdict & VERDICT_HOST_IP != 0 {
                    c.host_ip_wrong_mac += 1;
                }
            }
        }
    }

    /// The frame's mismatch bits (`monitor_common::MISMATCH_*`), 0 for
    /// every class but foreign unicast.
    #[inline(always)]
    fn mismatch(self, if_flags: u32) -> u8 {
        if self.class != Class::Foreign {
            return 0;
        }
        let host_ip = self.verdict & VERDICT_HOST_IP != 0;
        let stale = self.verdict & VERDICT_STALE != 0;
        mismatch_bits(if_flags, host_ip, stale)
    }
}

/// The verdict on a unicast frame to `dst` (`VERDICT_*` bits), other than
/// an untagged one to the fast MAC: own if the kernel delivers it to the
/// host, else foreign, with whether its destination IP is the host's and
/// whether `dst` is a previous MAC. `(vlans, proto_off)`: the frame's
/// `frame_vlan_path`; `untagged`: whether it had no tag at all.
#[inline(always)]
fn unicast_verdict(
    cfg: &IfConfig,
    dst: u64,
    data: usize,
    data_end: usize,
    (vlans, proto_off): (u32, usize),
    untagged: bool,
) -> u64 {
    // The caller took untagged frames to the fast MAC; a frame with only a
    // priority tag is untagged to the kernel, and so may be to it too.
    if !untagged
        && vlans == VLANS_UNTAGGED
        && cfg.flags & IF_FAST_MAC_VALID != 0
        && is_fast_mac(cfg, dst)
    {
        return VERDICT_OWN;
    }
    let known = known_mac(cfg, vlans, dst);
    if known == Some(MAC_LOCAL) {
        return VERDICT_OWN;
    }
    let mut verdict = 0;
    if known == Some(MAC_PREVIOUS) {
        verdict |= VERDICT_STALE;
    }
    if dst_ip_is_local(cfg, data, data_end, proto_off) {
        verdict |= VERDICT_HOST_IP;
    }
    verdict
}

/// The `vlan_path` of the frame's tags: the one the hook took out
/// (`hook_tag`, 0 if none), then those still in the data, outer first; and
/// the offset of the EtherType after the tags read (at most
/// `MAX_VLAN_TAGS` in all, counting the one the hook took out), so the
/// network header is found without walking them again. A tag counts when its TPID and TCI are
/// inside the frame. Straight-line code, one read per tag: a loop here
/// multiplied the states the verifier explores in the programs' later
/// paths several times over.
#[inline(always)]
fn frame_vlan_path(data: usize, data_end: usize, hook_tag: u32) -> (u32, usize) {
    let (t0, off) = if hook_tag != 0 {
        (hook_tag, ETHERTYPE_OFF)
    } else {
        match tag_at(data, data_end, ETHERTYPE_OFF) {
            Some(code) => (code, ETHERTYPE_OFF + VLAN_HLEN),
            None => return (VLANS_UNTAGGED, ETHERTYPE_OFF),
        }
    };
    let Some(t1) = tag_at(data, data_end, off) else {
        return (vlan_path(&[t0, 0, 0], 1), off);
    };
    let Some(t2) = tag_at(data, data_end, off + VLAN_HLEN) else {
        return (vlan_path(&[t0, t1, 0], 2), off + VLAN_HLEN);
    };
    let more = usize::from(tag_at(data, data_end, off + 2 * VLAN_HLEN).is_some());
    (vlan_path(&[t0, t1, t2], 3 + more), off + 2 * VLAN_HLEN)
}

/// The `vlan_tag_code` of the tag at `off`, if one is there whole.
#[inline(always)]
fn tag_at(data: usize, data_end: usize, off: usize) -> Option<u32> {
    let tag = bytes_at::<4>(data, data_end, off)?;
    // One load for TPID and TCI (misaligned loads allowed: `build.rs`),
    // not four byte loads and their shifts.
    // SAFETY: 4 bytes inside the frame, checked by `bytes_at`.
    let word = u32::from_be(unsafe { core::ptr::read_unaligned(tag.cast::<u32>()) });
    let (tpid, tci) = ((word >> 16) as u16, word as u16);
    if tpid != ETH_P_8021Q && tpid != ETH_P_8021AD {
        return None;
    }
    Some(vlan_tag_code(tpid, tci))
}

/// The verdict a port's program left for the frame being passed up to
/// this bridge device on this CPU, if it was for `dst`; the slot is
/// cleared, so a verdict is taken once.
#[inline(always)]
fn passed_up_verdict(dst: u64) -> Option<u64> {
    let slot = PASSUP.get_ptr_mut(0)?;
    // SAFETY: this CPU's copy, touched by nothing else during the run.
    let slot = unsafe { &mut *slot };
    let word = *slot;
    if word & VERDICT_VALID == 0 || word & MAC_BITS != dst {
        return None;
    }
    *slot = 0;
    Some(word & (VERDICT_OWN | VERDICT_HOST_IP | VERDICT_STALE))
}

/// A port leaves its verdict on every unicast frame it counts (on the fast
/// path only with `IF_PASSUP_FAST`), so the slot holds the latest such
/// frame's: a frame the bridge passes up reaches the bridge device's
/// program before this CPU receives another. Where the fast path leaves
/// nothing, the bridge device never reads the slot for that frame.
#[inline(always)]
fn leave_verdict(dst: u64, verdict: u64) {
    if let Some(slot) = PASSUP.get_ptr_mut(0) {
        // SAFETY: this CPU's copy, touched by nothing else during the run.
        unsafe { *slot = VERDICT_VALID | verdict | dst };
    }
}

/// Whether `dst` (a `mac_word`) is the interface's fast MAC. This compare
/// is most of the `own` path.
#[inline(always)]
fn is_fast_mac(cfg: &IfConfig, dst: u64) -> bool {
    dst == cfg.fast_mac
}

/// What the interface's MAC domain knows about unicast `dst` in VLAN path
/// `vlans`, other than the fast MAC: `MAC_LOCAL` (the kernel delivers it
/// to the host), `MAC_PREVIOUS` (a MAC the bridge or interface used to
/// have; userspace keeps those for every path that delivers anything), or
/// None (not delivered).
#[inline(always)]
fn known_mac(cfg: &IfConfig, vlans: u32, dst: u64) -> Option<u8> {
    if cfg.mac_domain == 0 {
        return None;
    }
    if cfg.flags & IF_FILTERED != 0
        && !filter_has(&MAC_FILTER, mac_filter_bit_of_word(cfg.mac_domain, dst))
    {
        return None;
    }
    let key = MacKey::of_word(netns_ino(), cfg.mac_domain, vlans, dst);
    // SAFETY: a map lookup, the value copied out at once.
    unsafe { LOCAL_MACS.get(key) }.copied()
}

/// Where a frame's destination IP is: the IPv4 destination or the
/// Ethernet/IPv4 ARP target (4 bytes), or the IPv6 destination (16 bytes),
/// as pointers into the frame (checked to be inside it).
pub enum DstAddr {
    V4(*const [u8; 4]),
    V6(*const [u8; 16]),
}

/// The frame's destination address, its EtherType (after its tags) being
/// at `proto_off` (`frame_vlan_path`); None for other protocols and frames
/// too short to hold it. The classifier's and the flow record's, so both
/// read the same address.
#[inline(always)]
pub fn dst_addr_at(data: usize, data_end: usize, proto_off: usize) -> Option<DstAddr> {
    let proto = be16_at(data, data_end, proto_off)?;
    let l3 = proto_off + 2;
    match proto {
        // Destination address at byte 16 of the IPv4 header.
        ETH_P_IP => Some(DstAddr::V4(bytes_at::<4>(data, data_end, l3 + 16)?)),
        ETH_P_IPV6 => Some(DstAddr::V6(bytes_at::<16>(data, data_end, l3 + 24)?)),
        ETH_P_ARP => {
            // Only Ethernet/IPv4 ARP: htype 1, ptype 0x0800, hlen 6, plen 4;
            // the target protocol address is at byte 24.
            // SAFETY: 6 bytes inside the frame, checked by `bytes_at`.
            let h = unsafe { *bytes_at::<6>(data, data_end, l3)? };
            if h != [0, 1, 0x08, 0x00, 6, 4] {
                return None;
            }
            Some(DstAddr::V4(bytes_at::<4>(data, data_end, l3 + 24)?))
        }
        _ => None,
    }
}

/// The outermost VLAN ID still in the frame data, if it is tagged.
#[inline(always)]
pub fn vlan_in_data(data: usize, data_end: usize) -> Option<u16> {
    let proto = be16_at(data, data_end, 12)?;
    if proto != ETH_P_8021Q && proto != ETH_P_8021AD {
        return None;
    }
    Some(be16_at(data, data_end, 14)? & 0x0fff)
}

/// Is the frame's destination IPv4/IPv6 address (or ARP target address) an
/// address of this namespace? `proto_off`: where its EtherType is, after
/// its tags (`frame_vlan_path`).
#[inline(always)]
fn dst_ip_is_local(cfg: &IfConfig, data: usize, data_end: usize, proto_off: usize) -> bool {
    let filtered = cfg.flags & IF_FILTERED != 0;
    let key = match dst_addr_at(data, data_end, proto_off) {
        Some(DstAddr::V4(a)) => {
            // SAFETY: inside the frame, checked by `dst_addr_at`.
            let a = unsafe { *a };
            if filtered && let Some(local) = addr_table_says(AddrSlot::v4(&a).hi, || 0) {
                return local;
            }
            AddrKey::v4(netns_ino(), a)
        }
        Some(DstAddr::V6(a)) => {
            // SAFETY: inside the frame, checked by `dst_addr_at`.
            let a = unsafe { &*a };
            // The second word first: most slots are empty, and then the
            // first is never read.
            let hi = || u64::from_le_bytes([a[8], a[9], a[10], a[11], a[12], a[13], a[14], a[15]]);
            let lo = || u64::from_le_bytes([a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]]);
            if filtered && let Some(local) = addr_table_says(hi(), lo) {
                return local;
            }
            AddrKey::v6(netns_ino(), *a)
        }
        None => return false,
    };
    // SAFETY: a map lookup; only its presence is used.
    unsafe { LOCAL_ADDRS.get(key) }.is_some()
}

/// What the address table says about the address whose `AddrSlot` words
/// are `hi` and `lo()`: Some(true) if it is the address in its slot,
/// Some(false) if the slot is empty or holds another address, None if
/// several host addresses share the slot (or it cannot be read): then
/// `LOCAL_ADDRS` decides.
#[inline(always)]
fn addr_table_says(hi: u64, lo: impl FnOnce() -> u64) -> Option<bool> {
    let slot = ADDR_TABLE.get(addr_slot(hi))?;
    if *slot == AddrSlot::SHARED {
        return None;
    }
    // The slot's address, the first word read only if the second matches;
    // an empty slot holds no address (not even `::`).
    Some(*slot != AddrSlot::EMPTY && slot.hi == hi && slot.lo == lo())
}
