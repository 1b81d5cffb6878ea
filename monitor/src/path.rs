//! Facts about the path a frame takes through one interface that `status`
//! reads from the namespace's netlink state alone: a macvlan parent whose
//! children live in other namespaces, a VLAN-filtering bridge's gaps, and
//! Open vSwitch membership. One job: derive them from [`NetState`]; the
//! rules in `diagnose::rules` judge them.

use std::net::IpAddr;

use crate::{
    mac::Mac,
    netlink::{Link, NetState},
};

/// The kernel's IFLA_INFO_KIND of Open vSwitch devices: the datapath
/// (`ovs-system`) and the bridges' internal ports.
pub const OVS_KIND: &str = "openvswitch";

/// Everything this module knows about one interface.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PathFacts {
    pub macvlan_parent: Option<MacvlanParent>,
    pub vlan_filtering: Option<VlanFiltering>,
    pub ovs: Option<OvsRole>,
}

/// A device whose unicast filter holds MACs of devices stacked on it
/// elsewhere: macvlan children moved into other namespaces (a macvlan
/// adds its MAC to its lower device's list when it comes up).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MacvlanParent {
    /// The MACs no device of this namespace explains.
    pub foreign_children: Vec<Mac>,
    /// The parent's own addresses: the host's, reached through it.
    pub addrs: Vec<IpAddr>,
    /// macvlan devices on it in this namespace (a host-side shim).
    pub local_macvlans: Vec<String>,
}

/// A VLAN-filtering bridge's configuration gaps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VlanFiltering {
    /// Ports with no PVID: untagged frames entering them are dropped.
    pub ports_without_pvid: Vec<String>,
    /// The bridge's own PVID (`bridge vlan show dev BR` "self"); None:
    /// the host's untagged frames into the bridge are dropped.
    pub bridge_pvid: Option<u16>,
    /// The VLANs the bridge (self) is a member of.
    pub bridge_vids: Vec<u16>,
    /// Ports' PVIDs the bridge is not a member of, with the ports:
    /// untagged frames from those ports never reach the host.
    pub pvids_not_on_bridge: Vec<(u16, Vec<String>)>,
    /// The bridge has addresses (the host is reached through it).
    pub bridge_has_addrs: bool,
}

impl VlanFiltering {
    /// Whether any gap is one: the host's own membership matters only
    /// when the host is reached through the bridge.
    pub fn has_gap(&self) -> bool {
        !self.ports_without_pvid.is_empty()
            || (self.bridge_has_addrs
                && (self.bridge_pvid.is_none() || !self.pvids_not_on_bridge.is_empty()))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OvsRole {
    /// The datapath or a bridge's internal port.
    Device,
    /// A port of an OVS datapath.
    Port,
}

impl OvsRole {
    pub fn as_str(self) -> &'static str {
        match self {
            OvsRole::Device => "device",
            OvsRole::Port => "port",
        }
    }
}

/// The facts of `link` in `state`.
pub fn facts(state: &NetState, link: &Link) -> PathFacts {
    PathFacts {
        macvlan_parent: macvlan_parent(state, link),
        vlan_filtering: vlan_filtering(state, link),
        ovs: ovs(state, link),
    }
}

fn macvlan_parent(state: &NetState, link: &Link) -> Option<MacvlanParent> {
    if link.is_bridge() || link.kind.as_deref() == Some("macvlan") {
        return None;
    }
    let uppers: Vec<&Link> = state
        .links
        .iter()
        .filter(|l| l.lower == Some(link.ifindex))
        .collect();
    let foreign_children: Vec<Mac> = state
        .secondary_macs
        .get(&link.ifindex)?
        .iter()
        .copied()
        .filter(|m| !m.is_multicast() && !uppers.iter().any(|u| u.mac == Some(*m)))
        .collect();
    if foreign_children.is_empty() {
        return None;
    }
    Some(MacvlanParent {
        foreign_children,
        addrs: state
            .if_addrs
            .get(&link.ifindex)
            .cloned()
            .unwrap_or_default(),
        local_macvlans: uppers
            .iter()
            .filter(|u| u.kind.as_deref() == Some("macvlan"))
            .map(|u| u.name.clone())
            .collect(),
    })
}

fn vlan_filtering(state: &NetState, link: &Link) -> Option<VlanFiltering> {
    state.vlans.filtering(link.ifindex)?;
    let ports: Vec<&Link> = state
        .links
        .iter()
        .filter(|l| l.master == Some(link.ifindex))
        .collect();
    let bridge_vids: Vec<u16> = state
        .vlans
        .members_of(link.ifindex)
        .iter()
        .map(|m| m.vid)
        .collect();
    let mut pvids_not_on_bridge: Vec<(u16, Vec<String>)> = Vec::new();
    for p in &ports {
        let Some(pvid) = state.vlans.pvid(p.ifindex) else {
            continue;
        };
        if bridge_vids.contains(&pvid) {
            continue;
        }
        match pvids_not_on_bridge.iter_mut().find(|(v, _)| *v == pvid) {
            Some((_, names)) => names.push(p.name.clone()),
            None => pvids_not_on_bridge.push((pvid, vec![p.name.clone()])),
        }
    }
    pvids_not_on_bridge.sort();
    Some(VlanFiltering {
        ports_without_pvid: ports
            .iter()
            .filter(|p| state.vlans.pvid(p.ifindex).is_none())
            .map(|p| p.name.clone())
            .collect(),
        bridge_pvid: state.vlans.pvid(link.ifindex),
        bridge_vids,
        pvids_not_on_bridge,
        bridge_has_addrs: state
            .if_addrs
            .get(&link.ifindex)
            .is_some_and(|a| !a.is_empty()),
    })
}

fn ovs(state: &NetState, link: &Link) -> Option<OvsRole> {
    if link.kind.as_deref() == Some(OVS_KIND) {
        return Some(OvsRole::Device);
    }
    let master = state.link(link.master?)?;
    (master.kind.as_deref() == Some(OVS_KIND)).then_some(OvsRole::Port)
}

/// Recorded facts of the topologies this kernel cannot build, for the
/// rules' tests: no VLAN filtering, no Open vSwitch here.
#[cfg(test)]
pub(crate) mod fixtures {
    use std::collections::BTreeMap;

    use super::*;
    use crate::netlink::{VlanMembership, VlanState};

    pub(crate) const BR: Mac = Mac([2, 0, 0, 0, 0x0b, 1]);

    fn member(vid: u16, pvid: bool) -> VlanMembership {
        VlanMembership {
            vid,
            pvid,
            untagged: pvid,
        }
    }

    /// `ip link add br0 type bridge vlan_filtering 1`, ports p1 (PVID 10
    /// untagged) and p2 (`bridge vlan del vid 1 dev p2`: no PVID), br0
    /// 192.0.2.1/24 and `bridge vlan del vid 1 dev br0 self` (member of
    /// no VLAN), as `bridge vlan show` read it back.
    pub(crate) fn vlan_filtering_gaps() -> NetState {
        NetState {
            links: vec![
                Link::fake(2, "br0", "bridge", None, BR),
                Link::fake(3, "p1", "veth", Some(2), Mac([2, 0, 0, 0, 0x0a, 1])),
                Link::fake(4, "p2", "veth", Some(2), Mac([2, 0, 0, 0, 0x0a, 2])),
            ],
            if_addrs: BTreeMap::from([(2, vec!["192.0.2.1".parse().unwrap()])]),
            local_fdb: BTreeMap::from([(2, vec![BR])]),
            vlans: VlanState {
                filtering: BTreeMap::from([(2, 0x8100)]),
                members: BTreeMap::from([
                    (3, vec![member(10, true)]),
                    (4, vec![member(20, false)]),
                ]),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    /// The same bridge configured right: every port and br0 PVID 1.
    pub(crate) fn vlan_filtering_healthy() -> NetState {
        let mut s = vlan_filtering_gaps();
        s.vlans.members = BTreeMap::from([
            (2, vec![member(1, true)]),
            (3, vec![member(1, true)]),
            (4, vec![member(1, true), member(20, false)]),
        ]);
        s
    }

    /// An Open vSwitch host (`ovs-vsctl add-br br-int; add-port br-int
    /// eth1`): the datapath ovs-system, the bridge's internal port br-int
    /// (both kind openvswitch) and eth1, whose master is ovs-system.
    pub(crate) fn openvswitch() -> NetState {
        let mut eth1 = Link::fake(4, "eth1", "veth", Some(2), Mac([2, 0, 0, 0, 0x0c, 1]));
        eth1.kind = None;
        // The datapath holds its ports promiscuous.
        eth1.promiscuity = 1;
        eth1.promisc = true;
        NetState {
            links: vec![
                Link::fake(2, "ovs-system", OVS_KIND, None, Mac([2, 0, 0, 0, 0x0c, 2])),
                Link::fake(3, "br-int", OVS_KIND, None, Mac([2, 0, 0, 0, 0x0c, 3])),
                eth1,
            ],
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::{fixtures::*, *};

    #[test]
    fn vlan_filtering_gaps_are_read_from_bridge_vlan_state() {
        let s = vlan_filtering_gaps();
        let v = facts(&s, s.link(2).unwrap()).vlan_filtering.unwrap();
        assert_eq!(v.ports_without_pvid, ["p2"]);
        assert_eq!(v.bridge_pvid, None);
        assert_eq!(v.pvids_not_on_bridge, [(10, vec!["p1".to_owned()])]);
        assert!(v.has_gap());
        let s = vlan_filtering_healthy();
        let v = facts(&s, s.link(2).unwrap()).vlan_filtering.unwrap();
        assert!(!v.has_gap(), "{v:?}");
        // Ports carry no bridge facts.
        assert_eq!(facts(&s, s.link(3).unwrap()).vlan_filtering, None);
    }

    #[test]
    fn open_vswitch_devices_and_ports() {
        let s = openvswitch();
        let roles: Vec<_> = s.links.iter().map(|l| facts(&s, l).ovs).collect();
        assert_eq!(
            roles,
            [
                Some(OvsRole::Device),
                Some(OvsRole::Device),
                Some(OvsRole::Port)
            ]
        );
    }

    #[test]
    fn macvlan_children_elsewhere_are_the_unexplained_unicast_filter_entries() {
        let child = Mac([2, 0, 0, 0, 0x0d, 1]);
        let shim = Mac([2, 0, 0, 0, 0x0d, 2]);
        let mut s = NetState {
            links: vec![Link::fake(
                2,
                "up0",
                "veth",
                None,
                Mac([2, 0, 0, 0, 0x0d, 0]),
            )],
            secondary_macs: BTreeMap::from([(2, vec![child])]),
            if_addrs: BTreeMap::from([(2, vec!["192.0.2.1".parse().unwrap()])]),
            ..Default::default()
        };
        let p = facts(&s, &s.links[0]).macvlan_parent.unwrap();
        assert_eq!(p.foreign_children, [child]);
        assert!(p.local_macvlans.is_empty());
        // A shim on the host explains its own MAC and is named.
        let mut m = Link::fake(3, "shim", "macvlan", None, shim);
        m.lower = Some(2);
        s.links.push(m);
        s.secondary_macs.insert(2, vec![child, shim]);
        let p = facts(&s, &s.links[0]).macvlan_parent.unwrap();
        assert_eq!(
            (p.foreign_children, p.local_macvlans),
            (vec![child], vec!["shim".to_owned()])
        );
        // Without foreign entries: nothing.
        s.secondary_macs.insert(2, vec![shim]);
        assert_eq!(facts(&s, &s.links[0]).macvlan_parent, None);
    }
}
