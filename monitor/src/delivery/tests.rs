//! The delivery rule on namespaces built by hand, one branch per test. The
//! kernel itself judges the rule in the fate oracle (`tests/tests/fate.rs`);
//! these pin each branch so a change to one shows which.

use std::collections::{BTreeMap, BTreeSet};

use super::*;
use crate::{
    netlink::{Link, VlanDevice, VlanMembership, VlanState},
    topology,
};

const BR: u32 = 2;
const P1: u32 = 3;
const P2: u32 = 4;
const V0: u32 = 9;
const BR_MAC: Mac = Mac([2, 0, 0, 0, 0x0b, 1]);
const P1_MAC: Mac = Mac([2, 0, 0, 0, 0x0a, 1]);
const P2_MAC: Mac = Mac([2, 0, 0, 0, 0x0a, 2]);
const V0_MAC: Mac = Mac([2, 0, 0, 0, 0x0d, 1]);
const VLAN_MAC: Mac = Mac([2, 0, 0, 0, 0x0e, 1]);

fn state() -> NetState {
    let link = Link::fake;
    NetState {
        links: vec![
            link(BR, "br0", "bridge", None, BR_MAC),
            link(P1, "p1", "veth", Some(BR), P1_MAC),
            link(P2, "p2", "veth", Some(BR), P2_MAC),
            link(V0, "v0", "veth", None, V0_MAC),
        ],
        addrs: vec![],
        local_fdb: BTreeMap::from([(BR, vec![BR_MAC, P1_MAC, P2_MAC])]),
        secondary_macs: BTreeMap::new(),
        vlans: VlanState::default(),
        if_addrs: BTreeMap::new(),
    }
}

fn of(s: &NetState, ifindex: u32) -> Delivery {
    let w = topology::describe(s, s.link(ifindex).unwrap());
    delivery(s, &w, &BTreeMap::new())
}

fn macs(m: &[Mac]) -> BTreeSet<Mac> {
    m.iter().copied().collect()
}

fn vlan_dev(ifindex: u32, lower: u32, tag: Tag, mac: Mac) -> VlanDevice {
    VlanDevice {
        ifindex,
        lower,
        tpid: tag.tpid,
        vid: tag.vid,
        mac: Some(mac),
        up: true,
    }
}

fn member(vid: u16, pvid: bool, untagged: bool) -> VlanMembership {
    VlanMembership {
        vid,
        pvid,
        untagged,
    }
}

#[test]
fn a_port_delivers_the_bridge_mac_and_its_own_not_another_ports() {
    let s = state();
    let d = of(&s, P1);
    assert_eq!(d.paths, BTreeMap::from([(vec![], macs(&[BR_MAC, P1_MAC]))]));
    assert!(!d.delivers(&[], P2_MAC));
}

#[test]
fn only_local_fdb_entries_are_passed_up() {
    let mut s = state();
    s.local_fdb.insert(BR, vec![P1_MAC, P2_MAC]);
    assert_eq!(of(&s, P1).paths[&vec![]], macs(&[P1_MAC]));
    // The bridge device alone delivers nothing without its FDB entry.
    assert!(of(&s, BR).paths.is_empty());
}

#[test]
fn tagged_frames_need_a_vlan_device() {
    let mut s = state();
    // No VLAN device anywhere: only untagged frames are delivered.
    assert_eq!(of(&s, P1).paths.len(), 1);
    assert_eq!(of(&s, V0).paths.len(), 1);
    // A VLAN device on the bridge takes VID 10 passed up from a port
    // (no filtering: the tag stays on the frame).
    s.vlans.devices.push(vlan_dev(20, BR, Tag::q(10), VLAN_MAC));
    s.local_fdb.get_mut(&BR).unwrap().push(VLAN_MAC);
    assert_eq!(
        of(&s, P1).paths[&vec![Tag::q(10)]],
        macs(&[BR_MAC, P1_MAC, VLAN_MAC])
    );
    assert!(!of(&s, P1).paths.contains_key(&vec![Tag::ad(10)]));
    // A priority tag before it is taken out on the bridge device.
    assert_eq!(
        of(&s, P1).paths[&vec![Tag::q(0), Tag::q(10)]],
        macs(&[BR_MAC, P1_MAC, VLAN_MAC])
    );
    assert_eq!(
        of(&s, BR).paths[&vec![Tag::q(10)]],
        macs(&[BR_MAC, VLAN_MAC])
    );
    // On a standalone interface the same, with its own MAC.
    s.vlans
        .devices
        .push(vlan_dev(21, V0, Tag::ad(20), VLAN_MAC));
    s.vlans
        .devices
        .push(vlan_dev(22, 21, Tag::q(30), Mac([2, 0, 0, 0, 0x0e, 2])));
    let d = of(&s, V0);
    assert_eq!(d.paths[&vec![Tag::ad(20)]], macs(&[V0_MAC, VLAN_MAC]));
    assert_eq!(
        d.paths[&vec![Tag::ad(20), Tag::q(30)]],
        macs(&[V0_MAC, VLAN_MAC, Mac([2, 0, 0, 0, 0x0e, 2])])
    );
    assert!(!d.paths.contains_key(&vec![Tag::q(30)]));
    // A down VLAN device takes its tag and delivers nothing.
    s.vlans.devices[1].up = false;
    assert!(!of(&s, V0).paths.contains_key(&vec![Tag::ad(20)]));
}

#[test]
fn a_vlan_device_on_the_port_takes_the_frame_before_the_bridge() {
    let mut s = state();
    s.vlans.devices.push(vlan_dev(20, P1, Tag::q(10), VLAN_MAC));
    // Not bridged: the port's MAC or the VLAN device's; not the bridge's.
    assert_eq!(
        of(&s, P1).paths[&vec![Tag::q(10)]],
        macs(&[P1_MAC, VLAN_MAC])
    );
}

#[test]
fn vlan_filtering_follows_pvid_membership_and_the_bridges_own_vlans() {
    let mut s = state();
    s.vlans.filtering.insert(BR, TPID_8021Q);
    s.vlans
        .members
        .insert(P1, vec![member(1, true, true), member(10, false, false)]);
    s.vlans.members.insert(P2, vec![member(10, false, false)]);
    s.vlans.members.insert(BR, vec![member(1, true, true)]);
    s.vlans.local_fdb.insert(
        BR,
        vec![
            (BR_MAC, 0),
            (BR_MAC, 1),
            (BR_MAC, 10),
            (P1_MAC, 1),
            (P1_MAC, 10),
        ],
    );
    // Untagged on p1: VLAN 1 (its PVID), the bridge an untagged member.
    let d = of(&s, P1);
    assert_eq!(d.paths[&vec![]], macs(&[BR_MAC, P1_MAC]));
    // VLAN 10: p1 is a member, the bridge is not: dropped by the bridge.
    assert!(!d.paths.contains_key(&vec![Tag::q(10)]));
    // p2 has no PVID: its untagged frames are dropped.
    assert!(of(&s, P2).paths.is_empty());
    // The bridge a tagged member of 10: it sees the tag, and without a
    // VLAN device on it the frame is dropped as OTHERHOST.
    s.vlans
        .members
        .get_mut(&BR)
        .unwrap()
        .push(member(10, false, false));
    assert!(!of(&s, P1).paths.contains_key(&vec![Tag::q(10)]));
    // An untagged member of 10: delivered, for the MACs local in VLAN 10.
    s.vlans.members.get_mut(&BR).unwrap()[1].untagged = true;
    assert_eq!(of(&s, P1).paths[&vec![Tag::q(10)]], macs(&[BR_MAC, P1_MAC]));
    // A tag of another protocol is no VLAN to an 802.1Q bridge: PVID, and
    // the tag reaches the bridge device, which has no VLAN device for it.
    assert!(!of(&s, P1).paths.contains_key(&vec![Tag::ad(10)]));
    // A priority tag is the PVID's; the 802.1Q tag after it stays on the
    // frame and no VLAN device takes it (measured on Debian's 5.10 and
    // 6.1 by the fate oracle).
    assert!(!of(&s, P1).paths.contains_key(&vec![Tag::q(0), Tag::q(10)]));
}

#[test]
fn previous_macs_are_stale_unless_delivered_untagged() {
    let s = state();
    let old = Mac([2, 0, 0, 0, 0x0b, 0x99]);
    let previous = BTreeMap::from([(BR, vec![old, BR_MAC])]);
    let w = topology::describe(&s, s.link(P1).unwrap());
    assert_eq!(delivery(&s, &w, &previous).previous, macs(&[old]));
}

#[test]
fn macvlan_children_are_delivered_on_their_lower_device() {
    let mut s = state();
    let child = Mac([2, 0, 0, 0, 0xcc, 1]);
    s.secondary_macs.insert(V0, vec![child]);
    assert_eq!(of(&s, V0).paths[&vec![]], macs(&[V0_MAC, child]));
}

#[test]
fn vlan_keys_put_the_outer_tag_low() {
    assert_eq!(vlan_key(&[]), 0);
    assert_eq!(vlan_key(&[Tag::q(10)]), 0x800a);
    assert_eq!(vlan_key(&[Tag::ad(20), Tag::q(30)]), 0x9014 | 0x801e << 16);
}
