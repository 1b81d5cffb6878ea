//! Types shared by the kernel side (`monitor-ebpf`) and userspace (`monitor`).
//!
//! This is the only place where the layout of a map key or value is defined.
//! Every type is `#[repr(C)]`, has no implicit padding (explicit `_pad`
//! fields instead, zeroed by the constructors), and is plain old data, so the
//! bytes the kernel hashes are exactly the bytes userspace wrote.
#![no_std]

pub mod drops;
pub mod egress;

/// Capacity of the per-interface maps. One slot per watched interface.
pub const MAX_INTERFACES: u32 = 4096;
/// Capacity of the map of delivered and previous MAC addresses, per
/// receiving interface and VLAN path: two per bridge port (the bridge's
/// MAC and the port's own) plus the previous MACs of its bridge, so a
/// bridge with 1,000 ports and a few MAC changes fits.
pub const MAX_LOCAL_MACS: u32 = 32768;
/// Capacity of the map of the host's IP addresses (all families).
pub const MAX_LOCAL_ADDRS: u32 = 8192;
/// `BPF_F_NO_PREALLOC`: the flags of the hash maps that only userspace
/// writes and only the classifiers (XDP, tc) read (`LOCAL_MACS`,
/// `LOCAL_ADDRS`, the egress maps). The object is loaded once per watched
/// namespace, and most namespaces hold a few MACs and addresses: a
/// preallocated map costs its full capacity in kernel memory from the
/// start (3 MiB and 0.75 MiB of the 7.7 MiB per namespace measured on 2
/// CPUs), one without preallocation its buckets plus the entries written.
/// A lookup is the same either way. Not for `IFACES` and the drop table,
/// which the drop program on `kfree_skb` reads or writes: kernels before
/// 6.1 refuse, or warn about, tracing programs using such maps.
pub const NO_PREALLOC: u32 = 1;
/// Interfaces whose ifindex is below this bound have their configuration
/// in an array indexed by ifindex (`IF_BY_INDEX`), so the per-frame lookup
/// is an array index, not a hash; those above it (ifindexes only grow
/// within a namespace, so a host with a long history of containers gets
/// there) are found in the `IFACES` hash, which holds every watched
/// interface. The most entries: 65,536, of 24 bytes each in the kernel
/// (20 rounded up to 8), 1.5 MiB; userspace sizes the array per namespace
/// (`kernel::loader::ifindex_direct`).
pub const IFINDEX_DIRECT: u32 = 65536;
/// log2 of the bits in the MAC filter (see `mac_filter_bit`): 2^18 bits,
/// 32 KiB; at `MAX_LOCAL_MACS` entries 6% of the bits are set, with 1,000
/// (a bridge with 1,000 ports) 0.4%.
pub const MAC_FILTER_BITS: u32 = 18;
/// u64 words of the MAC filter array.
pub const MAC_FILTER_WORDS: u32 = 1 << (MAC_FILTER_BITS - 6);
/// log2 of the slots of the address table (see `AddrSlot`): 8,192 slots
/// of 16 bytes, 128 KiB.
pub const ADDR_TABLE_BITS: u32 = 13;
/// Slots of the address table.
pub const ADDR_TABLE_SLOTS: u32 = 1 << ADDR_TABLE_BITS;
/// log2 of the buckets of the flow table (`FLOWS`, a per-CPU array of
/// `FlowBucket`s, each `FLOW_WAYS` flows): the mismatched flows of every
/// watched interface of one namespace, direct-mapped by `flow_bucket`.
/// 512 buckets of 144 bytes: 72 KiB per CPU per loaded object, 1,024 flows
/// per CPU.
pub const FLOW_BUCKET_BITS: u32 = 9;
/// Buckets of the flow table.
pub const FLOW_BUCKETS: u32 = 1 << FLOW_BUCKET_BITS;
/// Flows per bucket: a new flow takes an empty way, else the way with
/// fewer frames (so a heavy flow keeps its place in a flood of new ones).
pub const FLOW_WAYS: usize = 2;
/// The largest flow sampling `IfConfig::flow_sample` may ask for: one
/// recorded frame in 65,536 (a flood of 1,000 Mpps still gets ~15,000
/// records a second).
pub const FLOW_SAMPLE_MAX: u32 = 1 << 16;

/// Whether the mismatched frame that brought an interface's sampler count
/// (`SlotCounters::flow_sampler`, per CPU, counted before this test) to `count` is
/// recorded in the flow table, and with what weight: every frame with
/// weight 1 while `mask` (`IfConfig::flow_sample`) is 0; else one frame in
/// `mask + 1`, the one whose count is a multiple of it, standing for
/// `mask + 1` frames. The kernel and userspace's tests share this rule.
#[inline(always)]
pub fn flow_weight(count: u64, mask: u32) -> Option<u64> {
    if count & u64::from(mask) != 0 {
        return None;
    }
    Some(u64::from(mask) + 1)
}
/// How many 802.1Q / 802.1ad tags the classifier walks through to reach the
/// network header. Deeper stacks still get a MAC class, but no IP check.
pub const MAX_VLAN_TAGS: usize = 3;

/// Names of the maps and globals in the eBPF object, used by userspace.
pub mod names {
    /// Multi-buffer aware XDP program (Linux >= 5.18).
    pub const XDP_PROGRAM: &str = "macdrop_xdp";
    /// The same classifier without `xdp.frags`, for older kernels.
    pub const XDP_PROGRAM_LEGACY: &str = "macdrop_xdp_legacy";
    /// tc ingress classifier (TCX link, or cls_bpf filter on clsact). Also
    /// the name of its cls_bpf filter, which is how a filter left behind by
    /// a killed macdrop is recognised.
    pub const TC_PROGRAM: &str = "macdrop_tc";
    pub const IFACES: &str = "MACDROP_IFACES";
    /// Array indexed by ifindex (below `IFINDEX_DIRECT`): the same
    /// `IfConfig`s as `IFACES`, found without a hash lookup.
    pub const IF_BY_INDEX: &str = "MACDROP_IF_BY_INDEX";
    /// Bit filter over (MAC domain, MAC) of `LOCAL_MACS` (`mac_filter_bit`).
    pub const MAC_FILTER: &str = "MACDROP_MAC_FILTER";
    /// Direct-mapped table of the addresses of `LOCAL_ADDRS` (`AddrSlot`).
    pub const ADDR_TABLE: &str = "MACDROP_ADDR_TABLE";
    pub const COUNTERS: &str = "MACDROP_COUNTERS";
    pub const LOCAL_MACS: &str = "MACDROP_LOCAL_MACS";
    pub const LOCAL_ADDRS: &str = "MACDROP_LOCAL_ADDRS";
    /// Per-CPU array of `FlowBucket`s: the mismatched flows.
    pub const FLOWS: &str = "MACDROP_FLOWS";
    /// Global (read-only after load) holding the inode number of the network
    /// namespace this object instance serves.
    pub const NETNS_INO: &str = "MACDROP_NETNS_INO";
    /// Ring buffer of `EvidenceRecord`s (`--pcap`).
    pub const EVIDENCE_RING: &str = "MACDROP_EVIDENCE_RING";
    /// One `EvidenceCtl`: the capture budget userspace sets.
    pub const EVIDENCE_CTL: &str = "MACDROP_EVIDENCE_CTL";
    /// Per-CPU `EvidenceCpu`: rate bound state and capture counts.
    pub const EVIDENCE_CPU: &str = "MACDROP_EVIDENCE_CPU";
    /// Per-CPU u32: the ifindex whose generic XDP program counted the frame
    /// being received on this CPU, during a hand-off (`IF_HANDOFF`).
    pub const HANDOFF_SEEN: &str = "MACDROP_HANDOFF_SEEN";
    /// Per-CPU u64: a port's verdict on the unicast frame it just counted
    /// (`VERDICT_*` | destination), for the bridge device (`IF_BRIDGE`).
    pub const PASSUP: &str = "MACDROP_PASSUP";
}

/// Bytes of a mismatched frame kept as evidence (`--pcap`): headers only,
/// Ethernet + VLAN tags + IPv6 + transport fit with room to spare.
pub const EVIDENCE_SNAPLEN: usize = 128;
/// Rate bound of the capture, per CPU: a token bucket of
/// `EVIDENCE_BURST` frames refilled at `EVIDENCE_RATE` frames per second,
/// so a flood of mismatched frames cannot flood the ring buffer (or the
/// file). Per CPU so that the kernel keeps it without atomics (5.10 has no
/// atomic fetch operations): the bound of a host is this times its CPUs.
pub const EVIDENCE_RATE: u64 = 1000;
pub const EVIDENCE_BURST: u64 = 256;
/// Frames turned away without a clock read after each one the rate bound
/// turned away (`EvidenceCpu::skip`): far fewer than the burst, so the
/// credit a skip lets accrue is never more than the bucket holds.
pub const EVIDENCE_SKIP: u64 = 31;
/// Nanoseconds of credit one frame costs.
pub const EVIDENCE_COST_NS: u64 = 1_000_000_000 / EVIDENCE_RATE;
/// Size of the evidence ring buffer with `--pcap` (a power of two, a
/// multiple of the page size): 1,560 records of 168 bytes (with the ring's
/// header), room for the bursts of
/// several CPUs before userspace reads. Without `--pcap` the ring is
/// created at one page (`EVIDENCE_RING_OFF_BYTES`).
pub const EVIDENCE_RING_BYTES: u32 = 256 * 1024;
pub const EVIDENCE_RING_OFF_BYTES: u32 = 4096;

/// `EvidenceRecord::hook`: which program captured the frame.
pub const EVIDENCE_HOOK_XDP: u8 = 1;
pub const EVIDENCE_HOOK_TC: u8 = 2;

/// One mismatched frame's evidence, from the kernel to userspace through the
/// ring buffer (`--pcap`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EvidenceRecord {
    /// `bpf_ktime_get_ns()`: CLOCK_MONOTONIC.
    pub ktime_ns: u64,
    pub netns: u32,
    pub ifindex: u32,
    /// Length of the frame on the wire (at tc, with the VLAN tag the
    /// kernel moved to `skb->vlan_tci` put back).
    pub orig_len: u32,
    /// Bytes of `data` that hold the frame, at most `EVIDENCE_SNAPLEN`.
    pub cap_len: u16,
    /// `MISMATCH_*` bits.
    pub mismatch: u8,
    /// `EVIDENCE_HOOK_*`.
    pub hook: u8,
    /// The frame's first `cap_len` bytes. Longer than the snap length by
    /// a VLAN tag's 4 bytes, which the tc program needs to copy the frame
    /// in one helper call and make room for the tag (the verifier of old
    /// kernels only knows the copy's length is at most 128).
    pub data: [u8; EVIDENCE_DATA],
    pub _pad: [u8; 4],
}

/// Size of `EvidenceRecord::data`: the snap length plus a VLAN tag.
pub const EVIDENCE_DATA: usize = EVIDENCE_SNAPLEN + 4;

/// The capture's control block (`EVIDENCE_CTL`, one entry).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvidenceCtl {
    /// Frames the kernel may still capture in total; 0: capture off (the
    /// only thing the mismatch path reads then).
    pub budget: u64,
    /// Frames captured so far (added to atomically; concurrent CPUs may
    /// overshoot `budget` by a frame each, which userspace drops).
    pub taken: u64,
}

/// Per-CPU state of the capture (`EVIDENCE_CPU`, one entry).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvidenceCpu {
    /// Token bucket: credit in ns (at most `EVIDENCE_BURST *
    /// EVIDENCE_COST_NS`) and when it was last refilled.
    pub credit_ns: u64,
    pub last_ns: u64,
    /// Frames put in the ring buffer.
    pub captured: u64,
    /// Mismatched frames within the budget not captured because of the
    /// rate bound. Under a flood the bound sees only the frames the flow
    /// sampler picks, each standing for `weight` frames: a picked frame
    /// turned away adds its weight, a captured one its weight less one.
    pub rate_limited: u64,
    /// Not captured because the ring buffer was full (userspace behind).
    pub ring_full: u64,
    /// Not captured because the frame could not be copied.
    pub copy_failed: u64,
    /// Frames still to turn away (as rate-limited) without reading the
    /// clock: set when the bound turns a frame away, so a flood pays the
    /// clock read (~40 ns) once per `EVIDENCE_SKIP + 1` frames. The credit
    /// those frames would have found still accrues (the refill is by time
    /// elapsed), so the bound's rate is kept; only its timing coarsens.
    pub skip: u64,
}

/// Identifies an interface host-wide: ifindex is only unique inside one
/// network namespace, so the namespace's inode number is part of the key.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct IfKey {
    pub netns: u32,
    pub ifindex: u32,
}

/// `IfConfig::flags` bit: `fast_mac` is a MAC the kernel delivers to the host
/// on this interface (verified by userspace against the FDB or the device
/// address), so a frame addressed to it is `own` without a map lookup.
pub const IF_FAST_MAC_VALID: u32 = 1;
/// `IfConfig::flags` bit: the entry is a watched interface. Set on every
/// entry userspace writes; an `IF_BY_INDEX` slot without it is unused (the
/// classifier then looks in `IFACES`).
pub const IF_WATCHED: u32 = 2;
/// `IfConfig::flags` bit: userspace keeps the MAC filter (`MAC_FILTER`) and
/// the address table (`ADDR_TABLE`) in step with `LOCAL_MACS` and
/// `LOCAL_ADDRS`, so the classifier may answer from them and skip the hash
/// lookup. Without it (maps filled by hand) every lookup is made.
pub const IF_FILTERED: u32 = 4;
/// `IfConfig::flags` bit: the interface is a bridge port. Unicast to
/// another station's MAC is the bridge's normal forwarding work there, not
/// a misdelivery; on a bridge device or a standalone interface it is a
/// frame the host receives and drops (`PACKET_OTHERHOST`).
pub const IF_PORT: u32 = 8;
/// `IfConfig::flags` bit: record this interface's mismatched frames per
/// flow in `FLOWS` (the top offenders). Userspace clears it for
/// `--top-flows 0`, and then the mismatch path never touches the map.
pub const IF_FLOWS: u32 = 16;
/// `IfConfig::flags` bit, set by userspace only while an interface is
/// handed over from generic XDP to TCX (both attached): the XDP program
/// stores the interface's ifindex in this CPU's `HANDOFF_SEEN` after
/// counting a frame, and the tc program, which runs next for the same skb
/// on the same CPU (`__netif_receive_skb_core`: `do_xdp_generic`, then
/// `sch_handle_ingress`), finds it there, clears it and does not count the
/// frame again. A frame the tc program sees without that mark did not pass
/// XDP (XDP already detached) and is counted there.
pub const IF_HANDOFF: u32 = 32;
/// `IfConfig::flags` bit of the hand-off: the tc program counts nothing on
/// this interface (XDP still counts every frame). Set before the TCX link
/// is created, so that the link's first frames are not counted twice, and
/// cleared only once every frame that passes XDP carries the mark
/// (`IF_HANDOFF` set one RCU grace period earlier). While it is set the tc
/// program still clears a mark it finds, so none is left over from the
/// time XDP marked frames before TCX was attached.
pub const IF_TC_MUTED: u32 = 64;
/// Either hand-off bit: the one test the tc program's common path pays.
pub const IF_HANDOFF_ANY: u32 = IF_HANDOFF | IF_TC_MUTED;
/// `IfConfig::flags` bit: the interface is a bridge device. It sees only
/// the frames a port passed up, and cannot see everything the verdict
/// depends on (the port a frame entered by; at generic XDP, a VLAN tag the
/// port's receive path already took out of the data), so it takes each
/// unicast frame's verdict from the port's program, which ran just before
/// on the same CPU (`PASSUP`), and classifies by itself only when no port
/// left one for that destination. At tc, where it sees the tags, its own
/// fast path (untagged to its verified fast MAC) comes first and needs no
/// verdict (`IF_PASSUP_FAST`).
pub const IF_BRIDGE: u32 = 128;
/// `IfConfig::flags` bit of a port: leave the verdict in `PASSUP` on the
/// fast path too (untagged unicast to the verified fast MAC), not only on
/// the others. Set by default; userspace clears it only where the bridge
/// device reaches the same verdict by itself (`kernel::config`, "quiet
/// fast path"): a bridge device on tc, not VLAN-filtering, whose own fast
/// MAC is this port's. There the bridge's program answers its own fast
/// path without reading `PASSUP`, so the port saves the write on the
/// commonest frame. Everywhere else the bridge may read the slot for such
/// a frame (generic XDP cannot see a tag the port's receive path took out;
/// a filtering bridge may tag the frame on its way up), and the port must
/// overwrite whatever an earlier frame left there.
pub const IF_PASSUP_FAST: u32 = 256;

/// `PASSUP` value bits: the verdict a port's program reached on the
/// unicast frame it just counted, for the bridge device's program. The
/// destination MAC is in the low 48 bits (`mac_word`).
pub const VERDICT_OWN: u64 = 1 << 48;
pub const VERDICT_HOST_IP: u64 = 1 << 49;
pub const VERDICT_STALE: u64 = 1 << 50;
/// Set in every word a port writes, so that an empty slot (0) matches no
/// destination, not even 00:00:00:00:00:00.
pub const VERDICT_VALID: u64 = 1 << 63;

/// A MAC as one number: its six bytes little-endian in the low 48 bits
/// (byte 0 lowest, so the group bit is bit 0). The classifier reads a
/// destination into this form once and compares, hashes and hands it over
/// as one register (six separate bytes, live across the program, were
/// spilled to the stack and reloaded on every path). The low 48 bits of a
/// `PASSUP` word; `mac_filter_bit` hashes it.
#[inline(always)]
pub fn mac_word(mac: &[u8; 6]) -> u64 {
    u64::from_le_bytes([mac[0], mac[1], mac[2], mac[3], mac[4], mac[5], 0, 0])
}

/// The MAC of a `mac_word`.
#[inline(always)]
pub fn mac_of_word(word: u64) -> [u8; 6] {
    let b = word.to_le_bytes();
    [b[0], b[1], b[2], b[3], b[4], b[5]]
}

/// `mac_word` of ff:ff:ff:ff:ff:ff.
pub const BROADCAST_WORD: u64 = 0xffff_ffff_ffff;

/// Why a frame counts as *mismatched* (bits; 0: it does not). Mismatched
/// frames are those that feed the top-offender flows and the pcap evidence:
/// the frames a MAC mismatch makes the host drop or misdeliver, never the
/// normal traffic a bridge forwards between its ports.
///
/// Foreign unicast received by a bridge device or standalone interface:
/// the host gets a frame not addressed to it and drops it.
pub const MISMATCH_FOREIGN: u8 = 1;
/// Foreign unicast whose destination IP (or ARP target) is the host's
/// (`host_ip_wrong_mac`), on any interface: meant for the host, wrong MAC.
pub const MISMATCH_HOST_IP: u8 = 2;
/// Foreign unicast to a previous MAC of the bridge or interface
/// (`stale_mac`), on any interface: a peer with a stale neighbour entry.
pub const MISMATCH_STALE: u8 = 4;

/// The mismatch bits of a foreign unicast frame (`host_ip`, `stale` as
/// counted) received on an interface with `IfConfig::flags` `if_flags`.
/// Shared by the kernel and the reference model's users, so both apply
/// the same rule.
#[inline(always)]
pub fn mismatch_bits(if_flags: u32, host_ip: bool, stale: bool) -> u8 {
    let mut bits = 0;
    if if_flags & IF_PORT == 0 {
        bits |= MISMATCH_FOREIGN;
    }
    if host_ip {
        bits |= MISMATCH_HOST_IP;
    }
    if stale {
        bits |= MISMATCH_STALE;
    }
    bits
}

/// What the classifier needs to know about one watched interface.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct IfConfig {
    /// Index into the per-CPU counter array; assigned by userspace, stable
    /// for the life of the monitor.
    pub slot: u32,
    /// Whose entries of `LOCAL_MACS` decide `own`: 0 means "only
    /// `fast_mac`, untagged" (no lookup at all); otherwise this
    /// interface's own ifindex, under which userspace lists what the
    /// kernel delivers from it per VLAN path (`monitor/src/delivery.rs`).
    pub mac_domain: u32,
    /// `IF_FAST_MAC_*` bits.
    pub flags: u32,
    /// Flow sampling under a flood (`flow_weight`): 0 records every
    /// mismatched frame in the flow table; `2^k - 1` records one in `2^k`
    /// per CPU, counted `2^k` times, so a flood's frames cost little more
    /// than their class counter. Set by userspace from the interface's
    /// mismatched rate (`monitor/src/session/flow_sampling.rs`); the class
    /// counters are exact either way.
    pub flow_sample: u32,
    /// The most common `own` destination (the device's or bridge's MAC)
    /// as a `mac_word` (its top 16 bits 0), so the classifier compares a
    /// frame's destination word with one load and one compare, holding no
    /// second form of the MAC in registers.
    pub fast_mac: u64,
}

/// Key of `LOCAL_MACS`: a destination MAC that matters to one MAC domain
/// (the receiving interface: what the kernel delivers depends on the port
/// a frame enters by, see `monitor/src/delivery.rs`) for frames carrying
/// the VLAN tags `vlans` (`vlan_path`); the value says why (`MAC_LOCAL`
/// or `MAC_PREVIOUS`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct MacKey {
    pub netns: u32,
    pub mac_domain: u32,
    /// `vlan_path` of the frame's tags; `VLANS_UNTAGGED` for none.
    pub vlans: u32,
    /// The MAC's `mac_word`, low 32 bits then the next 16: on this
    /// little-endian layout the MAC's six bytes in order, written by the
    /// classifier as two stores from the word it holds.
    pub mac_lo: u32,
    pub mac_hi: u16,
    pub _pad: u16,
}

/// `LOCAL_MACS` value: the domain delivers this destination to the host.
pub const MAC_LOCAL: u8 = 1;
/// `LOCAL_MACS` value: a MAC the domain's bridge or interface had before a
/// change; frames still sent to it are counted as `stale_mac`.
pub const MAC_PREVIOUS: u8 = 2;
/// How many previous MACs are remembered per MAC domain.
pub const MAX_PREVIOUS_MACS: usize = 8;

impl MacKey {
    pub fn new(netns: u32, mac_domain: u32, vlans: u32, mac: [u8; 6]) -> Self {
        Self::of_word(netns, mac_domain, vlans, mac_word(&mac))
    }

    /// The key of a `mac_word`.
    #[inline(always)]
    pub const fn of_word(netns: u32, mac_domain: u32, vlans: u32, word: u64) -> Self {
        Self {
            netns,
            mac_domain,
            vlans,
            mac_lo: word as u32,
            mac_hi: (word >> 32) as u16,
            _pad: 0,
        }
    }

    /// The key's MAC.
    pub fn mac(&self) -> [u8; 6] {
        mac_of_word(u64::from(self.mac_lo) | u64::from(self.mac_hi) << 32)
    }
}

/// `MacKey::vlans` of an untagged frame (or one whose only tag is a
/// priority tag, VID 0, which the kernel treats as untagged).
pub const VLANS_UNTAGGED: u32 = 0;
/// `MacKey::vlans` of a frame with more VLAN tags than a path holds: no
/// entry has it, so such a frame is never `own` (the kernel delivers it
/// only through a chain of three VLAN devices, which macdrop does not
/// model).
pub const VLANS_TOO_DEEP: u32 = u32::MAX;
/// TPIDs of the tags the kernel takes out of a frame (`eth_type_vlan`).
pub const TPID_8021Q: u16 = 0x8100;
pub const TPID_8021AD: u16 = 0x88a8;

/// One VLAN tag as 16 bits of a `vlan_path`: a marker bit (so a tag is
/// never 0), the protocol (802.1ad or 802.1Q) and the VID; the priority
/// bits are dropped (they do not decide delivery).
#[inline(always)]
pub fn vlan_tag_code(tpid: u16, tci: u16) -> u32 {
    0x8000 | if tpid == TPID_8021AD { 0x1000 } else { 0 } | (tci & 0x0fff) as u32
}

/// The VID of a `vlan_tag_code`.
#[inline(always)]
pub fn vlan_code_vid(code: u32) -> u16 {
    (code & 0x0fff) as u16
}

/// The `MacKey::vlans` of a frame from the codes of its tags as on the
/// wire, outer first (`n` of them, 0 for none): a lone priority tag (VID
/// 0) is no tag to the kernel anywhere; up to two tags make the path
/// (outer in the low 16 bits), a priority tag before another kept (a
/// VLAN-filtering bridge takes it as the port's PVID and leaves the next
/// tag on the frame, which other paths do not); more give
/// `VLANS_TOO_DEEP`. `n` may exceed `codes.len()` by one: a further tag
/// the caller saw but did not decode.
#[inline(always)]
pub fn vlan_path(codes: &[u32; 3], n: usize) -> u32 {
    match n {
        0 => VLANS_UNTAGGED,
        1 if vlan_code_vid(codes[0]) == 0 => VLANS_UNTAGGED,
        1 => codes[0],
        2 => codes[0] | codes[1] << 16,
        _ => VLANS_TOO_DEEP,
    }
}

/// Key of `LOCAL_ADDRS`: an IP address of the namespace. IPv4 addresses are
/// stored IPv4-mapped (`::ffff:a.b.c.d`) so both families share one map.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct AddrKey {
    pub netns: u32,
    pub addr: [u8; 16],
}

impl AddrKey {
    pub const fn v4(netns: u32, a: [u8; 4]) -> Self {
        Self {
            netns,
            addr: [
                0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, a[0], a[1], a[2], a[3],
            ],
        }
    }
    pub const fn v6(netns: u32, addr: [u8; 16]) -> Self {
        Self { netns, addr }
    }
}

/// Multiplier of the filter and table hashes (2^64 / golden ratio: Fibonacci hashing,
/// which spreads consecutive keys such as sequentially assigned MACs and
/// addresses evenly over the top bits).
const FIB: u64 = 0x9e37_79b9_7f4a_7c15;
/// Spreads the MAC domain over the MAC filter's key.
const MIX: u64 = 0xff51_afd7_ed55_8ccd;

/// The bit of `MAC_FILTER` for `mac` in `mac_domain`. The filter has the
/// bit of every key of `LOCAL_MACS` set: a clear bit proves that (domain,
/// MAC) is neither local nor previous, which is what the classifier learns
/// about most foreign unicast without a hash lookup. Shared by the kernel
/// and userspace, so both compute the same bit.
#[inline(always)]
pub fn mac_filter_bit(mac_domain: u32, mac: &[u8; 6]) -> u32 {
    mac_filter_bit_of_word(mac_domain, mac_word(mac))
}

/// `mac_filter_bit` of a MAC in `mac_word` form.
#[inline(always)]
pub fn mac_filter_bit_of_word(mac_domain: u32, mac: u64) -> u32 {
    let k = mac ^ (mac_domain as u64).wrapping_mul(MIX);
    (k.wrapping_mul(FIB) >> (64 - MAC_FILTER_BITS)) as u32
}

/// One slot of the address table (`ADDR_TABLE`): a direct-mapped copy of
/// `LOCAL_ADDRS` that answers "is this an address of the namespace?" with
/// one array lookup and a compare, the alarm path (`host_ip_wrong_mac`)
/// included. The address is stored as `AddrKey` stores it (IPv4-mapped for
/// IPv4), as two little-endian words, in slot `addr_slot(hi)`; a slot is
/// `EMPTY`, holds the one address that hashes there, or is `SHARED` by
/// several (then `LOCAL_ADDRS` decides). Neither marker is a unicast
/// address (`::` and `ffff:...:ffff`), and only unicast addresses are the
/// namespace's.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct AddrSlot {
    pub lo: u64,
    pub hi: u64,
}

impl AddrSlot {
    pub const EMPTY: Self = Self { lo: 0, hi: 0 };
    pub const SHARED: Self = Self {
        lo: u64::MAX,
        hi: u64::MAX,
    };

    /// The slot value for an address as `AddrKey::addr` holds it.
    #[inline(always)]
    pub fn of(addr: &[u8; 16]) -> Self {
        Self {
            lo: u64::from_le_bytes([
                addr[0], addr[1], addr[2], addr[3], addr[4], addr[5], addr[6], addr[7],
            ]),
            hi: u64::from_le_bytes([
                addr[8], addr[9], addr[10], addr[11], addr[12], addr[13], addr[14], addr[15],
            ]),
        }
    }

    /// `of` the IPv4-mapped form of `a`, without building it: the first 8
    /// bytes are zero and the next 8 are `00 00 ff ff a b c d`.
    #[inline(always)]
    pub fn v4(a: &[u8; 4]) -> Self {
        Self {
            lo: 0,
            hi: 0xffff_0000 | (u32::from_le_bytes(*a) as u64) << 32,
        }
    }
}

/// The slot of an address in `ADDR_TABLE`, from its second word only (the
/// IPv4 address itself for IPv4, the interface identifier for IPv6), so the
/// kernel can tell an empty slot before reading the first.
#[inline(always)]
pub fn addr_slot(hi: u64) -> u32 {
    (hi.wrapping_mul(FIB) >> (64 - ADDR_TABLE_BITS)) as u32
}

/// `FlowKey::vlan` of an untagged frame (VLAN IDs are 12 bits).
pub const FLOW_NO_VLAN: u16 = 0xffff;
/// `FlowKey::family`: no destination IP (not IPv4, IPv6 or Ethernet/IPv4
/// ARP, or too short to hold one).
pub const FLOW_NO_IP: u8 = 0;
/// `FlowKey::family`: IPv4 (or the target of an ARP packet), in the first
/// 4 bytes of `dst_ip`.
pub const FLOW_IPV4: u8 = 4;
/// `FlowKey::family`: IPv6, all 16 bytes of `dst_ip`.
pub const FLOW_IPV6: u8 = 6;

/// What names a flow in `FLOWS`: one flow of mismatched frames on one
/// watched interface (its counter slot, which userspace clears the flows of
/// before reusing it). The VLAN is the outermost tag's ID, wherever the
/// hook finds it (at tc the kernel has already moved it into
/// `skb->vlan_tci`); the destination IP is the one the classifier checks
/// against the host's. Aligned to 8 and without implicit padding, so the
/// kernel hashes and compares it as five u64 words (`words`).
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct FlowKey {
    pub netns: u32,
    pub slot: u32,
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    /// Outermost VLAN ID, or `FLOW_NO_VLAN`.
    pub vlan: u16,
    /// `FLOW_NO_IP`, `FLOW_IPV4` or `FLOW_IPV6`.
    pub family: u8,
    pub _pad: u8,
    /// Destination address; zero beyond what `family` uses.
    pub dst_ip: [u8; 16],
}

impl FlowKey {
    /// The key as five u64 words (native byte order), for hashing and
    /// comparing without a byte loop.
    #[inline(always)]
    pub fn words(&self) -> &[u64; 5] {
        // SAFETY: repr(C, align(8)), 40 bytes, every byte a field (no
        // implicit padding: pinned below), so it is a valid [u64; 5].
        unsafe { &*(self as *const Self as *const [u64; 5]) }
    }
}

/// The bucket of `FLOWS` a flow goes to: its key's words mixed by two
/// multiplications, the top `FLOW_BUCKET_BITS` bits taken.
#[inline(always)]
pub fn flow_bucket(w: &[u64; 5]) -> u32 {
    const K: u64 = 0xff51_afd7_ed55_8ccd;
    let macs = (w[1] ^ w[2].rotate_left(29)).wrapping_mul(K);
    let h = macs ^ w[0] ^ w[3] ^ w[4].rotate_left(32);
    (h.wrapping_mul(FIB) >> (64 - FLOW_BUCKET_BITS)) as u32
}

/// One flow in a bucket of `FLOWS`, on one CPU. `frames == 0`: an empty
/// way.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FlowEntry {
    pub key: FlowKey,
    pub frames: u64,
    /// Frame lengths as received, the outermost VLAN tag included.
    pub bytes: u64,
    /// `MISMATCH_*` bits of the frames.
    pub mismatch: u8,
    /// 1 when the flow took its way before any flow was evicted from the
    /// bucket on this CPU: then it was never evicted there, and its counts
    /// hold every frame it had on this CPU. 0: it may have had a way
    /// before, evicted with its counts (the counts are a lower bound).
    pub exact: u8,
    /// 1 when some of its frames were recorded under flow sampling
    /// (`flow_weight` > 1): its counts are then estimates.
    pub sampled: u8,
    pub _pad: [u8; 5],
}

/// One bucket of `FLOWS` on one CPU: `FLOW_WAYS` flows, and what evicting
/// flows from it lost.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FlowBucket {
    pub ways: [FlowEntry; FLOW_WAYS],
    /// Flows evicted from the bucket on this CPU to make room for another.
    pub evictions: u64,
    /// Their frames (counted, then no longer attributed to any flow).
    pub evicted_frames: u64,
}

/// Defines `FrameCounters` from one list of its fields, all `u64`, and
/// what is done to every field alike (`FIELDS`, `values`, `values_mut`), so
/// that a new counter is one line here and `since`, `add` and userspace's
/// checks over the fields need no edit. Field by field, not by viewing the
/// struct as an array: nothing unsafe, and a field that is not a `u64`
/// does not compile.
macro_rules! frame_counters {
    (
        $(#[$outer:meta])*
        pub struct $name:ident {
            $( $(#[$doc:meta])* pub $field:ident: u64, )*
        }
    ) => {
        $(#[$outer])*
        pub struct $name {
            $( $(#[$doc])* pub $field: u64, )*
        }

        impl $name {
            /// The fields' names, in declaration order.
            pub const FIELDS: [&'static str; [$(stringify!($field)),*].len()] =
                [$(stringify!($field)),*];

            /// The fields' values, in `FIELDS` order.
            pub fn values(&self) -> [u64; Self::FIELDS.len()] {
                [$(self.$field),*]
            }

            /// The fields, in `FIELDS` order, to write.
            pub fn values_mut(&mut self) -> [&mut u64; Self::FIELDS.len()] {
                [$(&mut self.$field),*]
            }
        }
    };
}

frame_counters! {
    /// Per-interface frame counters (one copy per CPU in the kernel).
    ///
    /// `total` = `own + broadcast + multicast + foreign_unicast + runt`;
    /// `host_ip_wrong_mac` and `stale_mac` are subsets of `foreign_unicast`.
    #[repr(C)]
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
    pub struct FrameCounters {
        pub total: u64,
        pub own: u64,
        // The kernel's view right after `own`: a frame to the host at tc
        // adds to `total`, `own` and `pkt_host`, so the common frame's
        // counts share a cache line more often than not (per-CPU values
        // are only 8-byte aligned).
        /// The kernel's own view, `skb->pkt_type` as `eth_type_trans` set it
        /// relative to the receiving device's MAC: counted by the tc program
        /// only (XDP runs before there is an skb). PACKET_HOST.
        pub pkt_host: u64,
        /// PACKET_BROADCAST.
        pub pkt_broadcast: u64,
        /// PACKET_MULTICAST.
        pub pkt_multicast: u64,
        /// PACKET_OTHERHOST: what the IP layer drops unless something (a
        /// bridge, macvlan) claims the frame first.
        pub pkt_otherhost: u64,
        /// Any other pkt_type (not expected on ingress).
        pub pkt_other: u64,
        pub broadcast: u64,
        pub multicast: u64,
        pub foreign_unicast: u64,
        pub host_ip_wrong_mac: u64,
        pub runt: u64,
        /// Foreign unicast addressed to a previous MAC of the bridge (or of the
        /// standalone interface): peers with a stale neighbour entry.
        pub stale_mac: u64,
    }
}

impl FrameCounters {
    /// `self - earlier`, field by field (counters only grow; saturating in
    /// case a slot was cleared in between).
    pub fn since(&self, earlier: &Self) -> Self {
        let mut out = *self;
        for (field, old) in out.values_mut().into_iter().zip(earlier.values()) {
            *field = field.saturating_sub(old);
        }
        out
    }

    /// Adds `other` into `self` (summing per-CPU copies, or deltas).
    pub fn add(&mut self, other: &Self) {
        for (field, more) in self.values_mut().into_iter().zip(other.values()) {
            *field += more;
        }
    }
}

/// One counter slot's value in `COUNTERS`, per CPU: the interface's frame
/// counters, and beside them its flow sampler's count (`flow_weight`: the
/// mismatched frames that reached the sampler while the interface's flows
/// were sampled), so that a frame of a flood finds both with one lookup
/// and in the same cache lines. The sampler's count is not a frame class:
/// userspace reads `frames` only.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct SlotCounters {
    pub frames: FrameCounters,
    pub flow_sampler: u64,
}

#[cfg(feature = "user")]
mod pod {
    // Each: #[repr(C)], Copy, only integers and byte arrays, no implicit
    // padding (the sizes are pinned below), so any bytes are a valid value
    // and the kernel hashes exactly the bytes userspace wrote.
    // SAFETY: see above.
    unsafe impl aya::Pod for super::IfKey {}
    // SAFETY: see above.
    unsafe impl aya::Pod for super::IfConfig {}
    // SAFETY: see above.
    unsafe impl aya::Pod for super::MacKey {}
    // SAFETY: see above.
    unsafe impl aya::Pod for super::AddrKey {}
    // SAFETY: see above.
    unsafe impl aya::Pod for super::FrameCounters {}
    // SAFETY: see above.
    unsafe impl aya::Pod for super::SlotCounters {}
    // SAFETY: see above.
    unsafe impl aya::Pod for super::AddrSlot {}
    // SAFETY: see above.
    unsafe impl aya::Pod for super::FlowKey {}
    // SAFETY: see above.
    unsafe impl aya::Pod for super::FlowEntry {}
    // SAFETY: see above.
    unsafe impl aya::Pod for super::FlowBucket {}
    // SAFETY: see above.
    unsafe impl aya::Pod for super::EvidenceRecord {}
    // SAFETY: see above.
    unsafe impl aya::Pod for super::EvidenceCtl {}
    // SAFETY: see above.
    unsafe impl aya::Pod for super::EvidenceCpu {}
}

// The layouts are part of the kernel/user contract: pin them.
const _: () = assert!(core::mem::size_of::<IfKey>() == 8);
const _: () = assert!(core::mem::size_of::<IfConfig>() == 24);
const _: () = assert!(core::mem::size_of::<MacKey>() == 20);
const _: () = assert!(core::mem::size_of::<AddrKey>() == 20);
const _: () = assert!(core::mem::size_of::<FrameCounters>() == 104);
const _: () = assert!(core::mem::size_of::<FrameCounters>() == 8 * FrameCounters::FIELDS.len());
const _: () = assert!(core::mem::size_of::<SlotCounters>() == 112);
const _: () = assert!(core::mem::size_of::<AddrSlot>() == 16);
const _: () = assert!(core::mem::size_of::<FlowKey>() == 40);
const _: () = assert!(core::mem::size_of::<FlowKey>() == 4 + 4 + 6 + 6 + 2 + 1 + 1 + 16);
const _: () = assert!(core::mem::size_of::<FlowEntry>() == 64);
const _: () = assert!(core::mem::size_of::<FlowBucket>() == 144);
const _: () = assert!(core::mem::size_of::<EvidenceRecord>() == 24 + EVIDENCE_DATA + 4);
const _: () = assert!(core::mem::size_of::<EvidenceCtl>() == 16);
const _: () = assert!(core::mem::size_of::<EvidenceCpu>() == 56);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v4_slot_is_that_of_the_mapped_address() {
        for a in [[192, 0, 2, 1], [10, 0, 0, 0], [255, 255, 255, 255], [0; 4]] {
            assert_eq!(AddrSlot::v4(&a), AddrSlot::of(&AddrKey::v4(7, a).addr));
        }
        let unicast = AddrSlot::of(
            &AddrKey::v6(7, [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]).addr,
        );
        assert_ne!(unicast, AddrSlot::EMPTY);
        assert_ne!(unicast, AddrSlot::SHARED);
    }

    #[test]
    fn since_and_add_cover_every_field() {
        // Distinct values per field, so a field left out or mixed up shows.
        let mut later = FrameCounters::default();
        for (i, field) in later.values_mut().into_iter().enumerate() {
            *field = 100 + i as u64;
        }
        let mut earlier = FrameCounters::default();
        for (i, field) in earlier.values_mut().into_iter().enumerate() {
            *field = i as u64;
        }
        assert_eq!(
            later.since(&earlier).values(),
            [100; FrameCounters::FIELDS.len()]
        );
        assert_eq!(earlier.since(&later), FrameCounters::default(), "saturates");
        let mut sum = earlier;
        sum.add(&later.since(&earlier));
        assert_eq!(sum, later);
        assert_eq!(FrameCounters::FIELDS[0], "total");
        assert_eq!(FrameCounters::FIELDS[12], "stale_mac");
        assert_eq!(
            later.values()[6],
            later.pkt_other,
            "values in declaration order"
        );
    }

    #[test]
    fn filter_bits_spread_consecutive_keys() {
        // 1,000 sequential MACs (as a bridge with 1,000 ports has) hit
        // nearly 1,000 distinct bits; sequential IPv4 addresses spread over
        // the address table.
        let mut macs = [0u64; (MAC_FILTER_WORDS) as usize];
        let mut addrs = [0u64; (ADDR_TABLE_SLOTS / 64) as usize];
        for i in 0..1000u32 {
            let b = mac_filter_bit(3, &[2, 0, 0, 0x0a, (i >> 8) as u8, i as u8]);
            macs[(b / 64) as usize] |= 1 << (b % 64);
            let b = addr_slot(AddrSlot::v4(&[10, 0, (i >> 8) as u8, i as u8]).hi);
            addrs[(b / 64) as usize] |= 1 << (b % 64);
        }
        let set = |w: &[u64]| w.iter().map(|w| w.count_ones()).sum::<u32>();
        assert!(set(&macs) >= 995, "{}", set(&macs));
        // 1,000 keys in 8,192 slots: ~6% collide even when spread at random.
        assert!(set(&addrs) >= 900, "{}", set(&addrs));
    }
}
