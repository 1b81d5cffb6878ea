//! The kernel's delivery rule: which destination MACs the kernel delivers
//! to the host's stack when a frame with given VLAN tags arrives on a
//! watched interface. This is what `own` means, everywhere in macdrop:
//! delivered *without* promiscuous mode (promiscuity is reported on its
//! own; judging without it is what makes "works only while tcpdump runs"
//! visible). Read from the receive path of Linux 5.10 to 6.18:
//!
//! - `eth_type_trans` marks a unicast frame PACKET_HOST only when its
//!   destination is the receiving device's own address, PACKET_OTHERHOST
//!   otherwise; IPv4 and IPv6 drop OTHERHOST (`ip_rcv_core`,
//!   `ip6_rcv_core`: reason OTHERHOST, `rx_otherhost_dropped`), ARP ignores
//!   it. Promiscuous mode changes no `pkt_type`.
//! - `__netif_receive_skb_core` takes an 802.1Q/802.1ad tag out of the data
//!   (`skb_vlan_untag`), then, after tc ingress, hands a tagged frame to
//!   the VLAN device for (TPID, VID) on the receiving device if there is
//!   one (`vlan_do_receive`, which also makes OTHERHOST a HOST when the
//!   destination is the VLAN device's own address), before any bridge
//!   (`rx_handler`). A tag nobody takes makes the frame OTHERHOST unless
//!   its VID is 0: a lone priority tag counts as no tag; before another
//!   tag the kernel takes it off and looks at the next (`check_vlan_id`),
//!   except on a VLAN-filtering bridge, which takes it for the PVID and
//!   leaves the next tag on the frame for the bridge device.
//! - On a bridge port, `br_handle_frame` makes a frame HOST when its
//!   destination is the bridge device's address; `br_handle_frame_finish`
//!   passes it up to the bridge device only when the FDB has a *local*
//!   entry for (destination, VID), and floods or forwards it otherwise.
//!   So a port delivers the bridge's MAC and its own MAC, each only with a
//!   local FDB entry; a frame for another port's MAC is passed up and
//!   dropped as OTHERHOST on the bridge.
//! - Without VLAN filtering the bridge looks up VID 0 and keeps a tag as it
//!   came; on the bridge device a tag then needs a VLAN device there. With
//!   VLAN filtering (`br_allowed_ingress`, `br_handle_vlan`), an untagged
//!   frame (or one tagged with another TPID than the bridge's, which stays
//!   in the data) gets the port's PVID (none: dropped), a tagged one needs
//!   the port's membership of its VID, the lookup is per VID, and the
//!   bridge itself must be a member of the VID: as an untagged member it
//!   passes the frame up without the tag, else with it (then a VLAN device
//!   on the bridge must take it).
//!
//! A bridge device sees only frames a port passed up; their fate is the
//! port's (the kernel program hands the port's verdict over, see
//! `monitor-ebpf/src/classify.rs`). `for_bridge_device` is the rule used
//! only when no port left a verdict.

use std::collections::{BTreeMap, BTreeSet};

use monitor_common::{TPID_8021AD, TPID_8021Q, vlan_tag_code};

use crate::{
    mac::Mac,
    netlink::NetState,
    topology::{Role, Watched},
};

/// One VLAN tag as on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tag {
    pub tpid: u16,
    pub vid: u16,
}

impl Tag {
    pub const fn q(vid: u16) -> Self {
        Self {
            tpid: TPID_8021Q,
            vid,
        }
    }
    pub const fn ad(vid: u16) -> Self {
        Self {
            tpid: TPID_8021AD,
            vid,
        }
    }
}

/// The kernel's key for a path of tags (`monitor_common::MacKey::vlans`).
pub fn vlan_key(path: &[Tag]) -> u32 {
    path.iter().take(2).enumerate().fold(0, |key, (i, t)| {
        key | vlan_tag_code(t.tpid, t.vid) << (16 * i)
    })
}

/// What the kernel delivers to the host from one interface.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Delivery {
    /// Per path of VLAN tags (outer first, a lone priority tag already
    /// dropped; empty: untagged) with anything delivered: the destination
    /// MACs delivered. A path not here delivers nothing.
    pub paths: BTreeMap<Vec<Tag>, BTreeSet<Mac>>,
    /// MACs the interface or its bridge had before a change and does not
    /// deliver untagged now: frames to them are `stale_mac`, when untagged
    /// or on a path that delivers something (on any other the VLAN, not
    /// the MAC, is what is wrong).
    pub previous: BTreeSet<Mac>,
}

impl Delivery {
    pub fn delivers(&self, path: &[Tag], dst: Mac) -> bool {
        self.paths.get(path).is_some_and(|macs| macs.contains(&dst))
    }
    /// Whether a frame to `dst` with tags `path` is to a previous MAC.
    pub fn stale(&self, path: &[Tag], dst: Mac) -> bool {
        (path.is_empty() || self.paths.contains_key(path))
            && self.previous.contains(&dst)
            && !self.delivers(path, dst)
    }
    pub fn untagged(&self) -> impl Iterator<Item = &Mac> {
        self.paths.get(&[][..]).into_iter().flatten()
    }
}

/// The delivery of `w` in `state`; `previous` holds each interface's
/// earlier MACs (see `tracker`).
pub fn delivery(state: &NetState, w: &Watched, previous: &BTreeMap<u32, Vec<Mac>>) -> Delivery {
    let mut out = Delivery::default();
    for path in candidate_paths(state, w) {
        let macs = match w.role {
            Role::Standalone => for_standalone(state, w.ifindex, &path),
            Role::Port => match &w.bridge {
                Some((bridge, _)) => for_port(state, *bridge, w.ifindex, &path),
                None => BTreeSet::new(),
            },
            Role::Bridge => for_bridge_device(state, w.ifindex, &path),
        };
        if !macs.is_empty() {
            out.paths.insert(path, macs);
        }
    }
    let old = |ifindex: u32| previous.get(&ifindex).into_iter().flatten().copied();
    let mut stale: BTreeSet<Mac> = old(w.ifindex).collect();
    if let Some((bridge, _)) = &w.bridge {
        stale.extend(old(*bridge));
    }
    let untagged: BTreeSet<Mac> = out.untagged().copied().collect();
    out.previous = stale.difference(&untagged).copied().collect();
    out
}

/// The tag paths that can deliver anything on `w`: none, the tags of the
/// VLAN devices on the interface, its bridge and those devices (one and
/// two deep), and on a VLAN-filtering bridge the VLANs of the port.
fn candidate_paths(state: &NetState, w: &Watched) -> BTreeSet<Vec<Tag>> {
    let vlans = &state.vlans;
    let tag = |d: &crate::netlink::VlanDevice| Tag {
        tpid: d.tpid,
        vid: d.vid,
    };
    let mut roots = vec![w.ifindex];
    let bridge = w.bridge.as_ref().map(|(b, _)| *b);
    roots.extend(bridge.filter(|b| *b != w.ifindex));
    let mut paths = BTreeSet::from([vec![]]);
    // Tags the bridge itself consumes (filtering): the port's VLANs.
    let mut bridge_tags = Vec::new();
    if let Some(b) = bridge
        && let Some(tpid) = vlans.filtering(b)
    {
        bridge_tags.extend(
            vlans
                .members_of(w.ifindex)
                .iter()
                .map(|m| Tag { tpid, vid: m.vid }),
        );
    }
    for t in &bridge_tags {
        paths.insert(vec![*t]);
    }
    for root in roots {
        for d in vlans.devices_on(root) {
            paths.insert(vec![tag(d)]);
            for t in &bridge_tags {
                paths.insert(vec![*t, tag(d)]);
            }
            for d2 in vlans.devices_on(d.ifindex) {
                paths.insert(vec![tag(d), tag(d2)]);
            }
        }
    }
    // A priority tag before any of those tags: a path of its own (see
    // `vlan_chain` and `for_port`).
    let singles: Vec<Tag> = paths
        .iter()
        .filter(|p| p.len() == 1)
        .map(|p| p[0])
        .collect();
    for t in singles {
        for tpid in [TPID_8021Q, TPID_8021AD] {
            paths.insert(vec![Tag { tpid, vid: 0 }, t]);
        }
    }
    paths
}

/// The MACs of the chain of VLAN devices on `dev` that takes `tags`, one
/// device per tag; None if a tag has no device. A priority tag (VID 0)
/// with no device of its own is taken out and the next tag looked at
/// (`__netif_receive_skb_core`'s `check_vlan_id`).
fn vlan_chain(state: &NetState, dev: u32, tags: &[Tag]) -> Option<Vec<Mac>> {
    let mut lower = dev;
    let mut macs = Vec::new();
    for (i, t) in tags.iter().enumerate() {
        if t.vid == 0 && state.vlans.device(lower, t.tpid, 0).is_none() && i + 1 < tags.len() {
            continue;
        }
        let d = state.vlans.device(lower, t.tpid, t.vid)?;
        // A down VLAN device still takes its tag, and frees the frame.
        if !d.up {
            return None;
        }
        macs.extend(d.mac);
        lower = d.ifindex;
    }
    Some(macs)
}

fn mac_of(state: &NetState, ifindex: u32) -> Option<Mac> {
    state.link(ifindex).and_then(|l| l.mac)
}

/// Not bridged: the device's MAC (and a macvlan's on it, which its
/// rx_handler takes), or through the VLAN devices the tags need.
fn for_standalone(state: &NetState, dev: u32, path: &[Tag]) -> BTreeSet<Mac> {
    let mut macs: BTreeSet<Mac> = mac_of(state, dev).into_iter().collect();
    if path.is_empty() {
        macs.extend(state.secondary_macs.get(&dev).into_iter().flatten());
        return macs;
    }
    match vlan_chain(state, dev, path) {
        Some(chain) => {
            macs.extend(chain);
            macs
        }
        None => BTreeSet::new(),
    }
}

/// A port: a VLAN device on the port takes its tag before the bridge does;
/// otherwise the bridge's rule.
fn for_port(state: &NetState, bridge: u32, port: u32, path: &[Tag]) -> BTreeSet<Mac> {
    if let Some(outer) = path.first()
        && state.vlans.device(port, outer.tpid, outer.vid).is_some()
    {
        return for_standalone(state, port, path);
    }
    let vlans = &state.vlans;
    let (vid, on_bridge) = match vlans.filtering(bridge) {
        None => (0, path.to_vec()),
        Some(tpid) => {
            let (vid, rest) = match path.first() {
                Some(t) if t.tpid == tpid && t.vid != 0 => (t.vid, path[1..].to_vec()),
                // A priority tag of the bridge's protocol gets the PVID,
                // and the bridge takes it off the frame as it would the
                // PVID's own tag.
                Some(t) if t.tpid == tpid => match vlans.pvid(port) {
                    Some(pvid) => (pvid, path[1..].to_vec()),
                    None => return BTreeSet::new(),
                },
                _ => match vlans.pvid(port) {
                    Some(pvid) => (pvid, path.to_vec()),
                    None => return BTreeSet::new(),
                },
            };
            if vlans.membership(port, vid).is_none() {
                return BTreeSet::new();
            }
            let Some(own) = vlans.membership(bridge, vid) else {
                return BTreeSet::new();
            };
            let mut seen = rest;
            if !own.untagged {
                seen.insert(0, Tag { tpid, vid });
            }
            (vid, seen)
        }
    };
    let mut candidates: BTreeSet<Mac> = [mac_of(state, bridge), mac_of(state, port)]
        .into_iter()
        .flatten()
        .collect();
    if !on_bridge.is_empty() {
        match vlan_chain(state, bridge, &on_bridge) {
            Some(chain) => candidates.extend(chain),
            None => return BTreeSet::new(),
        }
    }
    candidates
        .into_iter()
        .filter(|m| state.fdb_local(bridge, *m, vid))
        .collect()
}

/// The bridge device alone, for frames no port left a verdict on: its own
/// MAC when the FDB has it (for some VLAN), through the VLAN devices on it
/// for tagged frames. The port a frame came in by is unknown here, so a
/// port's MAC is never delivered by this rule.
fn for_bridge_device(state: &NetState, bridge: u32, path: &[Tag]) -> BTreeSet<Mac> {
    let Some(mac) = mac_of(state, bridge) else {
        return BTreeSet::new();
    };
    let local = match state.vlans.local_fdb.get(&bridge) {
        Some(entries) => entries.iter().any(|(m, _)| *m == mac),
        None => state.fdb_local(bridge, mac, 0),
    };
    if !local {
        return BTreeSet::new();
    }
    match vlan_chain(state, bridge, path) {
        Some(chain) => std::iter::once(mac).chain(chain).collect(),
        None => BTreeSet::new(),
    }
}

#[cfg(test)]
mod tests;
