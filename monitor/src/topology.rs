//! Decides which interfaces to watch, and what "own" means on each, from
//! the user's selection and the namespace's state. Pure functions over
//! `NetState`, so they are unit-tested without a kernel.

use std::collections::BTreeSet;

use crate::{
    error::Failure,
    mac::Mac,
    netlink::{Link, NetState},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// A bridge device: sees what the bridge passes up to the host.
    Bridge,
    /// A port of a bridge: sees every frame entering the bridge there.
    Port,
    /// Any other interface: the kernel judges by the device's own MAC.
    Standalone,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Bridge => "bridge",
            Role::Port => "port",
            Role::Standalone => "standalone",
        }
    }
}

/// The user's choice of interfaces.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    pub bridges: Vec<String>,
    pub ifaces: Vec<String>,
}

/// One interface to watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Watched {
    pub ifindex: u32,
    pub name: String,
    pub role: Role,
    /// The bridge whose FDB decides `own` (the bridge itself for a bridge,
    /// the master for a port), by ifindex and name.
    pub bridge: Option<(u32, String)>,
}

impl Watched {
    /// Master device name, for ports.
    pub fn master(&self) -> Option<&str> {
        match self.role {
            Role::Port => self.bridge.as_ref().map(|(_, n)| n.as_str()),
            _ => None,
        }
    }
}

/// Resolves the selection to a list of interfaces, ports before their
/// bridges: the order to attach in, because a bridge's program takes the
/// verdict its port's program left for the frame (docs/design.md, "The
/// bridge device takes the port's verdict").
pub fn select(state: &NetState, sel: &Selection) -> Result<Vec<Watched>, Failure> {
    let mut chosen: BTreeSet<u32> = BTreeSet::new();
    let bridges: Vec<&Link> =
        if sel.bridges.is_empty() && sel.ifaces.is_empty() {
            let all: Vec<&Link> = state.links.iter().filter(|l| l.is_bridge()).collect();
            if all.is_empty() {
                return Err(Failure::nothing_to_watch(
                    "no bridges in this network namespace; name an interface with --iface NAME \
                 (or run inside the right namespace: ip netns exec NS macdrop ...)",
                ));
            }
            all
        } else {
            sel.bridges
            .iter()
            .map(|name| {
                let link = find(state, name)?;
                if !link.is_bridge() {
                    let kind = link.kind.as_deref().unwrap_or("a device");
                    return Err(Failure::usage(format!(
                        "{name} is not a bridge (it is {}); use --iface {name} to watch it alone",
                        if kind == "a device" { kind.to_owned() } else { format!("a {kind}") }
                    )));
                }
                Ok(link)
            })
            .collect::<Result<_, _>>()?
        };
    for bridge in &bridges {
        chosen.insert(bridge.ifindex);
        chosen.extend(ports_of(state, bridge.ifindex).map(|p| p.ifindex));
    }
    for name in &sel.ifaces {
        let link = find(state, name)?;
        if !link.ethernet {
            return Err(Failure::usage(format!(
                "{name} carries no Ethernet header (a {} device), so it has no destination MAC \
                 to check; macdrop watches Ethernet interfaces only",
                link.kind.as_deref().unwrap_or("layer-3")
            )));
        }
        chosen.insert(link.ifindex);
    }

    let mut out: Vec<Watched> = chosen
        .into_iter()
        .filter_map(|ifindex| state.link(ifindex))
        .map(|link| describe(state, link))
        .collect();
    // Ports (and standalone) first, bridges last.
    out.sort_by_key(|w| (w.role == Role::Bridge, w.ifindex));
    Ok(out)
}

/// What the selection covers now, for following changes after start:
/// like `select`, but names that vanished (or stopped being bridges) and
/// an empty namespace are not errors — their interfaces are simply absent.
pub fn select_present(state: &NetState, sel: &Selection) -> Vec<Watched> {
    let all_bridges = sel.bridges.is_empty() && sel.ifaces.is_empty();
    let mut chosen: BTreeSet<u32> = BTreeSet::new();
    for bridge in state.links.iter().filter(|l| l.is_bridge()) {
        if all_bridges || sel.bridges.contains(&bridge.name) {
            chosen.insert(bridge.ifindex);
            chosen.extend(ports_of(state, bridge.ifindex).map(|p| p.ifindex));
        }
    }
    for name in &sel.ifaces {
        if let Some(link) = state.link_by_name(name).filter(|l| l.ethernet) {
            chosen.insert(link.ifindex);
        }
    }
    let mut out: Vec<Watched> = chosen
        .into_iter()
        .filter_map(|ifindex| state.link(ifindex))
        .map(|link| describe(state, link))
        .collect();
    out.sort_by_key(|w| (w.role == Role::Bridge, w.ifindex));
    out
}

/// Role and FDB domain of one interface.
pub fn describe(state: &NetState, link: &Link) -> Watched {
    let master_bridge = link
        .master
        .and_then(|m| state.link(m))
        .filter(|m| m.is_bridge());
    let (role, bridge) = if link.is_bridge() {
        (Role::Bridge, Some((link.ifindex, link.name.clone())))
    } else if let Some(m) = master_bridge {
        (Role::Port, Some((m.ifindex, m.name.clone())))
    } else {
        (Role::Standalone, None)
    };
    Watched {
        ifindex: link.ifindex,
        name: link.name.clone(),
        role,
        bridge,
    }
}

/// An uplink whose egress is counted per source-MAC class (the
/// forged-transmits rule, `kernel::egress`): its own MAC, and the MACs of
/// its local children.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Uplink {
    pub own: Option<Mac>,
    pub children: BTreeSet<Mac>,
}

/// Device kinds that stand for a physical link when they are a bridge's
/// port: a NIC (no `IFLA_INFO_KIND`), or a bond, team or VLAN on NICs.
/// A veth port leads to a container, not to a switch.
const PHYSICAL_PORT_KINDS: &[&str] = &["bond", "team", "vlan"];

/// The uplinks among `watched` (ifindexes): interfaces that transmit
/// frames for others onto a physical switch, where a hypervisor that
/// rejects forged transmits drops them.
/// - a macvlan or macvtap parent: children are the macvlans' MACs, of
///   those here and of those in other namespaces (its unicast filter
///   list, `NetState::secondary_macs`);
/// - a bridge port that is a physical NIC (`PHYSICAL_PORT_KINDS`):
///   children are the bridge's local FDB MACs (the bridge's own, the other
///   ports') other than the port's own. Stations behind the other ports
///   (containers) are learned entries, not listed: their frames count as
///   "other" source MACs, which are not the uplink's own either.
///
/// Only watched interfaces: the rule weighs the egress against what the
/// uplink's ingress counters saw, so an unwatched one is not counted.
pub fn uplinks(
    state: &NetState,
    watched: impl Fn(u32) -> bool,
) -> std::collections::BTreeMap<u32, Uplink> {
    let mut out: std::collections::BTreeMap<u32, Uplink> = Default::default();
    for child in &state.links {
        let is_macvlan = matches!(child.kind.as_deref(), Some("macvlan" | "macvtap"));
        let (true, Some(parent), Some(mac)) = (is_macvlan, child.lower, child.mac) else {
            continue;
        };
        if watched(parent)
            && let Some(p) = state.link(parent)
        {
            let u = out.entry(parent).or_default();
            u.own = p.mac;
            u.children.insert(mac);
        }
    }
    // Children moved into other namespaces (containers) are not links
    // here; a macvlan adds its MAC to its parent's unicast filter list,
    // which is.
    for (&parent, macs) in &state.secondary_macs {
        let Some(p) = state
            .link(parent)
            .filter(|p| !p.is_bridge() && watched(parent))
        else {
            continue;
        };
        let unicast: Vec<Mac> = macs.iter().filter(|m| !m.is_multicast()).copied().collect();
        if !unicast.is_empty() {
            let u = out.entry(parent).or_default();
            u.own = p.mac;
            u.children.extend(unicast);
        }
    }
    for port in &state.links {
        let physical = port
            .kind
            .as_deref()
            .is_none_or(|k| PHYSICAL_PORT_KINDS.contains(&k));
        let bridge = port
            .master
            .and_then(|m| state.link(m))
            .filter(|b| b.is_bridge());
        let (true, Some(bridge)) = (physical && watched(port.ifindex), bridge) else {
            continue;
        };
        let u = out.entry(port.ifindex).or_default();
        u.own = port.mac;
        let local = state.local_fdb.get(&bridge.ifindex).into_iter().flatten();
        u.children.extend(
            local
                .chain(bridge.mac.as_ref())
                .filter(|m| Some(**m) != port.mac && !m.is_multicast()),
        );
    }
    out
}

pub fn ports_of(state: &NetState, bridge: u32) -> impl Iterator<Item = &Link> {
    state
        .links
        .iter()
        .filter(move |l| l.master == Some(bridge) && !l.is_bridge())
}

fn find<'a>(state: &'a NetState, name: &str) -> Result<&'a Link, Failure> {
    state.link_by_name(name).ok_or_else(|| {
        let names: Vec<&str> = state.links.iter().map(|l| l.name.as_str()).collect();
        Failure::nothing_to_watch(format!(
            "no interface named {name} in this network namespace; candidates: {}",
            names.join(", ")
        ))
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::{error::ExitKind, mac::Mac};

    fn link(ifindex: u32, name: &str, kind: Option<&str>, master: Option<u32>) -> Link {
        let mut link = Link::fake(
            ifindex,
            name,
            "",
            master,
            Mac([2, 0, 0, 0, 0, ifindex as u8]),
        );
        link.kind = kind.map(Into::into);
        link
    }

    fn lab() -> NetState {
        NetState {
            links: vec![
                link(1, "lo", None, None),
                link(2, "br0", Some("bridge"), None),
                link(3, "p1", Some("veth"), Some(2)),
                link(4, "p2", Some("veth"), Some(2)),
                link(5, "v0", Some("veth"), None),
                link(6, "br1", Some("bridge"), None),
            ],
            addrs: vec![],
            local_fdb: BTreeMap::from([(2, vec![Mac([2, 0, 0, 0, 0, 3])]), (6, vec![])]),
            secondary_macs: BTreeMap::from([(5, vec![Mac([2, 0, 0, 0, 0xcc, 1])])]),
            vlans: Default::default(),
            if_addrs: BTreeMap::new(),
        }
    }

    fn names(w: &[Watched]) -> Vec<&str> {
        w.iter().map(|w| w.name.as_str()).collect()
    }

    #[test]
    fn default_is_every_bridge_with_ports_first() {
        let w = select(&lab(), &Selection::default()).unwrap();
        assert_eq!(names(&w), ["p1", "p2", "br0", "br1"]);
        assert_eq!(w[0].role, Role::Port);
        assert_eq!(w[0].master(), Some("br0"));
        assert_eq!(w[2].role, Role::Bridge);
        assert_eq!(w[2].master(), None);
    }

    #[test]
    fn bridge_and_iface_selection() {
        let sel = Selection {
            bridges: vec!["br0".into()],
            ifaces: vec!["v0".into(), "p1".into()],
        };
        let w = select(&lab(), &sel).unwrap();
        assert_eq!(names(&w), ["p1", "p2", "v0", "br0"]);
        assert_eq!(w[2].role, Role::Standalone);
        assert_eq!(w[2].bridge, None);
    }

    #[test]
    fn errors_name_problem_and_fix() {
        let sel = Selection {
            bridges: vec!["p1".into()],
            ..Default::default()
        };
        let err = select(&lab(), &sel).unwrap_err();
        assert_eq!(err.kind, ExitKind::Usage);
        assert!(err.message.contains("--iface p1"), "{}", err.message);

        let sel = Selection {
            ifaces: vec!["nosuch0".into()],
            ..Default::default()
        };
        let err = select(&lab(), &sel).unwrap_err();
        assert_eq!(err.kind, ExitKind::Environment);
        assert!(err.message.contains("nosuch0") && err.message.contains("br0, p1"));

        let mut tun = lab();
        tun.links[4].ethernet = false;
        let sel = Selection {
            ifaces: vec!["v0".into()],
            ..Default::default()
        };
        let err = select(&tun, &sel).unwrap_err();
        assert_eq!(err.kind, ExitKind::Usage);
        assert!(
            err.message.contains("no Ethernet header"),
            "{}",
            err.message
        );

        let mut no_bridges = lab();
        no_bridges.links.retain(|l| !l.is_bridge());
        let err = select(&no_bridges, &Selection::default()).unwrap_err();
        assert_eq!(err.kind, ExitKind::Environment);
        assert!(err.message.contains("no bridges"));
    }

    #[test]
    fn following_changes_never_fails() {
        let mut state = lab();
        let sel = Selection {
            bridges: vec!["br0".into()],
            ifaces: vec!["v0".into()],
        };
        assert_eq!(
            names(&select_present(&state, &sel)),
            ["p1", "p2", "v0", "br0"]
        );
        // A new port of br0 is picked up; v0 and br1 vanish quietly.
        state.links.retain(|l| l.name != "v0" && l.name != "br1");
        state.links.push(link(7, "p3", Some("veth"), Some(2)));
        assert_eq!(
            names(&select_present(&state, &sel)),
            ["p1", "p2", "p3", "br0"]
        );
        // Watching all bridges picks up a new bridge.
        state.links.push(link(8, "br2", Some("bridge"), None));
        let all = select_present(&state, &Selection::default());
        assert_eq!(names(&all), ["p1", "p2", "p3", "br0", "br2"]);
        state.links.retain(|l| !l.is_bridge());
        assert!(select_present(&state, &Selection::default()).is_empty());
    }

    #[test]
    fn uplinks_are_macvlan_parents_and_physical_bridge_ports_that_are_watched() {
        let mac = |i: u8| Mac([2, 0, 0, 0, 0, i]);
        let mut state = lab();
        // eth0: a NIC port of br0 (no kind); bond0: a bond port of br1.
        state.links.push(link(7, "eth0", None, Some(2)));
        state.links.push(link(8, "bond0", Some("bond"), Some(6)));
        // v0 carries a macvlan and a macvtap; a VLAN on it is no child.
        for (i, kind) in [(9, "macvlan"), (10, "macvtap"), (11, "vlan")] {
            let mut l = link(i, "c", Some(kind), None);
            l.lower = Some(5);
            state.links.push(l);
        }
        let all = uplinks(&state, |_| true);
        assert_eq!(all.keys().copied().collect::<Vec<_>>(), [5, 7, 8]);
        assert_eq!(all[&5].own, Some(mac(5)));
        // v0's unicast filter list (lab()) holds a child elsewhere.
        assert_eq!(
            all[&5].children,
            BTreeSet::from([mac(9), mac(10), Mac([2, 0, 0, 0, 0xcc, 1])])
        );
        // br0's own MAC and its local FDB (p1's MAC); veth ports p1, p2
        // are not uplinks.
        assert_eq!(all[&7].own, Some(mac(7)));
        assert_eq!(all[&7].children, BTreeSet::from([mac(2), mac(3)]));
        assert_eq!(all[&8].children, BTreeSet::from([mac(6)]));
        // Only watched ones.
        let some = uplinks(&state, |i| i == 7);
        assert_eq!(some.keys().copied().collect::<Vec<_>>(), [7]);
        // A port whose MAC the bridge took lists it as its own only.
        state.links[1].mac = Some(mac(7));
        assert_eq!(
            uplinks(&state, |_| true)[&7].children,
            BTreeSet::from([mac(3)])
        );
    }
}
