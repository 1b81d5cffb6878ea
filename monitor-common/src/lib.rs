//! Types shared by the kernel side (`monitor-ebpf`) and userspace (`monitor`).
//!
//! This is the only place where the layout of a map key or value is defined.
//! Every type is `#[repr(C)]`, has no implicit padding (explicit `_pad`
//! fields instead, zeroed by the constructors), and is plain old data, so the
//! bytes the kernel hashes are exactly the bytes userspace wrote.
#![no_std]

pub mod drops;

/// Capacity of the per-interface maps. One slot per watched interface.
pub const MAX_INTERFACES: u32 = 4096;
/// Capacity of the map of local (delivered-to-host) MAC addresses: every
/// local FDB entry of every watched bridge, plus standalone interface MACs.
pub const MAX_LOCAL_MACS: u32 = 16384;
/// Capacity of the map of the host's IP addresses (all families).
pub const MAX_LOCAL_ADDRS: u32 = 8192;
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
    pub const COUNTERS: &str = "MACDROP_COUNTERS";
    pub const LOCAL_MACS: &str = "MACDROP_LOCAL_MACS";
    pub const LOCAL_ADDRS: &str = "MACDROP_LOCAL_ADDRS";
    /// Global (read-only after load) holding the inode number of the network
    /// namespace this object instance serves.
    pub const NETNS_INO: &str = "MACDROP_NETNS_INO";
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

/// What the classifier needs to know about one watched interface.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct IfConfig {
    /// Index into the per-CPU counter array; assigned by userspace, stable
    /// for the life of the monitor.
    pub slot: u32,
    /// Which set of local MACs decides `own`: 0 means "only `fast_mac`"
    /// (a standalone interface); otherwise the ifindex of the bridge whose
    /// local FDB entries are looked up in `LOCAL_MACS`.
    pub mac_domain: u32,
    /// `IF_FAST_MAC_*` bits.
    pub flags: u32,
    /// The most common `own` destination (the device's or bridge's MAC).
    pub fast_mac: [u8; 6],
    pub _pad: [u8; 2],
}

/// Key of `LOCAL_MACS`: a MAC address that matters to one MAC domain (a
/// bridge's FDB, or one standalone interface); the value says why
/// (`MAC_LOCAL` or `MAC_PREVIOUS`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct MacKey {
    pub netns: u32,
    pub mac_domain: u32,
    pub mac: [u8; 6],
    pub _pad: [u8; 2],
}

/// `LOCAL_MACS` value: the domain delivers this destination to the host.
pub const MAC_LOCAL: u8 = 1;
/// `LOCAL_MACS` value: a MAC the domain's bridge or interface had before a
/// change; frames still sent to it are counted as `stale_mac`.
pub const MAC_PREVIOUS: u8 = 2;
/// How many previous MACs are remembered per MAC domain.
pub const MAX_PREVIOUS_MACS: usize = 8;

impl MacKey {
    pub const fn new(netns: u32, mac_domain: u32, mac: [u8; 6]) -> Self {
        Self {
            netns,
            mac_domain,
            mac,
            _pad: [0; 2],
        }
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

/// Per-interface frame counters (one copy per CPU in the kernel).
///
/// `total` = `own + broadcast + multicast + foreign_unicast + runt`;
/// `host_ip_wrong_mac` and `stale_mac` are subsets of `foreign_unicast`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FrameCounters {
    pub total: u64,
    pub own: u64,
    pub broadcast: u64,
    pub multicast: u64,
    pub foreign_unicast: u64,
    pub host_ip_wrong_mac: u64,
    pub runt: u64,
    /// Foreign unicast addressed to a previous MAC of the bridge (or of the
    /// standalone interface): peers with a stale neighbour entry.
    pub stale_mac: u64,
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
}

impl FrameCounters {
    /// `self - earlier`, field by field (counters only grow; saturating in
    /// case a slot was cleared in between).
    pub fn since(&self, earlier: &Self) -> Self {
        Self {
            total: self.total.saturating_sub(earlier.total),
            own: self.own.saturating_sub(earlier.own),
            broadcast: self.broadcast.saturating_sub(earlier.broadcast),
            multicast: self.multicast.saturating_sub(earlier.multicast),
            foreign_unicast: self.foreign_unicast.saturating_sub(earlier.foreign_unicast),
            host_ip_wrong_mac: self
                .host_ip_wrong_mac
                .saturating_sub(earlier.host_ip_wrong_mac),
            runt: self.runt.saturating_sub(earlier.runt),
            stale_mac: self.stale_mac.saturating_sub(earlier.stale_mac),
            pkt_host: self.pkt_host.saturating_sub(earlier.pkt_host),
            pkt_broadcast: self.pkt_broadcast.saturating_sub(earlier.pkt_broadcast),
            pkt_multicast: self.pkt_multicast.saturating_sub(earlier.pkt_multicast),
            pkt_otherhost: self.pkt_otherhost.saturating_sub(earlier.pkt_otherhost),
            pkt_other: self.pkt_other.saturating_sub(earlier.pkt_other),
        }
    }

    /// Adds `other` into `self` (summing per-CPU copies, or deltas).
    pub fn add(&mut self, other: &Self) {
        self.total += other.total;
        self.own += other.own;
        self.broadcast += other.broadcast;
        self.multicast += other.multicast;
        self.foreign_unicast += other.foreign_unicast;
        self.host_ip_wrong_mac += other.host_ip_wrong_mac;
        self.runt += other.runt;
        self.stale_mac += other.stale_mac;
        self.pkt_host += other.pkt_host;
        self.pkt_broadcast += other.pkt_broadcast;
        self.pkt_multicast += other.pkt_multicast;
        self.pkt_otherhost += other.pkt_otherhost;
        self.pkt_other += other.pkt_other;
    }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all of these are #[repr(C)], Copy, contain only integers and
    // byte arrays, and have no implicit padding.
    unsafe impl aya::Pod for super::IfKey {}
    unsafe impl aya::Pod for super::IfConfig {}
    unsafe impl aya::Pod for super::MacKey {}
    unsafe impl aya::Pod for super::AddrKey {}
    unsafe impl aya::Pod for super::FrameCounters {}
}

// The layouts are part of the kernel/user contract: pin them.
const _: () = assert!(core::mem::size_of::<IfKey>() == 8);
const _: () = assert!(core::mem::size_of::<IfConfig>() == 20);
const _: () = assert!(core::mem::size_of::<MacKey>() == 16);
const _: () = assert!(core::mem::size_of::<AddrKey>() == 20);
const _: () = assert!(core::mem::size_of::<FrameCounters>() == 104);
