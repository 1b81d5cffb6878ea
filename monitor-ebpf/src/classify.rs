//! The classifier: one pass over the Ethernet header, optional VLAN tags and
//! the network header's destination address. O(1) map lookups per frame and
//! only on the paths that need them:
//!
//! - every frame: the interface's config and counters (1 hash + 1 array);
//! - unicast not equal to the interface's verified fast MAC: 1 hash lookup
//!   in the MAC domain's known MACs (local and previous), when the
//!   interface has a domain (bridge members; standalone interfaces with
//!   extra or previous MACs);
//! - foreign unicast: 1 hash lookup of the destination IP.
//!
//! The plain-Rust reference model in `monitor/src/classify.rs` defines the
//! same classes; the `test_run` tests hold the two in agreement.

use monitor_common::{
    AddrKey, FrameCounters, IF_FAST_MAC_VALID, IfConfig, IfKey, MAC_LOCAL, MAC_PREVIOUS,
    MAX_VLAN_TAGS, MacKey,
};

use crate::maps::{COUNTERS, IFACES, LOCAL_ADDRS, LOCAL_MACS, netns_ino};

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_ARP: u16 = 0x0806;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const VLAN_HLEN: usize = 4;

/// Returns a pointer to `LEN` bytes at `off`, or None if they are not all
/// inside the frame. The explicit check is what the verifier needs.
#[inline(always)]
fn bytes_at<const LEN: usize>(
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

#[inline(always)]
fn be16_at(data: usize, data_end: usize, off: usize) -> Option<u16> {
    let p = bytes_at::<2>(data, data_end, off)?;
    Some(u16::from_be_bytes(unsafe { *p }))
}

/// Counts one frame received on `ifindex`. Never touches the frame.
/// `tags_removed`: VLAN tags the kernel already took out of the frame data
/// (at tc, the outermost tag sits in `skb->vlan_tci`), so the walk to the
/// network header still covers `MAX_VLAN_TAGS` tags of the frame on the
/// wire, as XDP and the reference model do.
///
/// Returns the interface's counters (this CPU's copy), so that a hook which
/// knows more than the frame bytes (tc: the kernel's `pkt_type`) can count
/// that into the same slot; None if the interface is not watched.
#[inline(always)]
pub fn count_frame(
    data: usize,
    data_end: usize,
    ifindex: u32,
    tags_removed: usize,
) -> Option<&'static mut FrameCounters> {
    let netns = netns_ino();
    let key = IfKey { netns, ifindex };
    let cfg = unsafe { IFACES.get(key) }?;
    let counters = COUNTERS.get_ptr_mut(cfg.slot)?;
    // SAFETY: a per-CPU array slot, valid for the whole program run and
    // touched by nothing else on this CPU meanwhile.
    let counters: &'static mut FrameCounters = unsafe { &mut *counters };
    classify_into(counters, netns, cfg, data, data_end, tags_removed);
    Some(counters)
}

/// The classification proper, into the counters of one interface.
#[inline(always)]
fn classify_into(
    counters: &mut FrameCounters,
    netns: u32,
    cfg: &IfConfig,
    data: usize,
    data_end: usize,
    tags_removed: usize,
) {
    counters.total += 1;

    // A frame too short for an Ethernet header has no class of its own.
    let Some(eth) = bytes_at::<ETH_HLEN>(data, data_end, 0) else {
        counters.runt += 1;
        return;
    };
    let dst: [u8; 6] = unsafe { *(eth as *const [u8; 6]) };

    if dst == [0xff; 6] {
        counters.broadcast += 1;
    } else if dst[0] & 1 != 0 {
        counters.multicast += 1;
    } else {
        match known_mac(netns, cfg, &dst) {
            Some(MAC_LOCAL) => counters.own += 1,
            known => {
                counters.foreign_unicast += 1;
                if known == Some(MAC_PREVIOUS) {
                    counters.stale_mac += 1;
                }
                if dst_ip_is_local(netns, data, data_end, tags_removed) {
                    counters.host_ip_wrong_mac += 1;
                }
            }
        }
    }
}

/// What the interface's MAC domain knows about unicast `dst`: `MAC_LOCAL`
/// (the kernel delivers it to the host), `MAC_PREVIOUS` (a MAC the bridge or
/// interface used to have), or None (someone else's).
#[inline(always)]
fn known_mac(netns: u32, cfg: &IfConfig, dst: &[u8; 6]) -> Option<u8> {
    if cfg.flags & IF_FAST_MAC_VALID != 0 && *dst == cfg.fast_mac {
        return Some(MAC_LOCAL);
    }
    if cfg.mac_domain == 0 {
        return None;
    }
    let key = MacKey::new(netns, cfg.mac_domain, *dst);
    unsafe { LOCAL_MACS.get(key) }.copied()
}

/// Is the frame's destination IPv4/IPv6 address (or ARP target address) an
/// address of this namespace? Walks up to `MAX_VLAN_TAGS` tags, counting
/// those already removed from the data.
#[inline(always)]
fn dst_ip_is_local(netns: u32, data: usize, data_end: usize, tags_removed: usize) -> bool {
    let mut off = 12;
    let Some(mut proto) = be16_at(data, data_end, off) else {
        return false;
    };
    let mut tags = tags_removed;
    while tags < MAX_VLAN_TAGS && (proto == ETH_P_8021Q || proto == ETH_P_8021AD) {
        off += VLAN_HLEN;
        match be16_at(data, data_end, off) {
            Some(p) => proto = p,
            None => return false,
        }
        tags += 1;
    }
    let l3 = off + 2;
    let key = match proto {
        ETH_P_IP => {
            // Destination address at byte 16 of the IPv4 header.
            let Some(a) = bytes_at::<4>(data, data_end, l3 + 16) else {
                return false;
            };
            AddrKey::v4(netns, unsafe { *a })
        }
        ETH_P_IPV6 => {
            let Some(a) = bytes_at::<16>(data, data_end, l3 + 24) else {
                return false;
            };
            AddrKey::v6(netns, unsafe { *a })
        }
        ETH_P_ARP => {
            // Only Ethernet/IPv4 ARP: htype 1, ptype 0x0800, hlen 6, plen 4;
            // the target protocol address is at byte 24.
            let Some(h) = bytes_at::<6>(data, data_end, l3) else {
                return false;
            };
            let h = unsafe { *h };
            if h != [0, 1, 0x08, 0x00, 6, 4] {
                return false;
            }
            let Some(a) = bytes_at::<4>(data, data_end, l3 + 24) else {
                return false;
            };
            AddrKey::v4(netns, unsafe { *a })
        }
        _ => return false,
    };
    unsafe { LOCAL_ADDRS.get(key) }.is_some()
}
