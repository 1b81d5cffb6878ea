//! Flows for this host's IP addressed to one of its own MACs (not the one
//! missing from the FDB), which the kernel still did not deliver. Two
//! findings, named by what is wrong, each with its remedy; both need
//! per-flow records.
//!
//! - `host_ip_wrong_vlan` (error): tagged with a VLAN that nothing on the
//!   receiving side takes (no VLAN device, or the bridge not a member):
//!   the kernel drops them as OTHERHOST.
//! - `host_ip_to_port_mac` (error): untagged, to the MAC of another port
//!   of the bridge (a local FDB entry): passed up, then dropped as
//!   OTHERHOST, since only the bridge's own MAC and the receiving port's
//!   are delivered.

use std::{collections::BTreeSet, net::IpAddr};

use serde_json::json;

use super::json_object;
use crate::{
    diagnose::{
        finding::{Finding, FindingId},
        input::Flow,
        scope::{Scope, bridge_of},
        text::list,
    },
    mac::Mac,
};

/// Where the frames arrived and what they were for.
pub struct Place {
    pub interface: String,
    pub bridge: String,
    pub host_ips: Vec<IpAddr>,
}

/// Tagged frames to this host's MAC that no VLAN device takes.
pub struct WrongVlan {
    pub place: Place,
    pub flows: Vec<Flow>,
    pub vlans: Vec<u16>,
    pub on_bridge: bool,
}

/// Untagged frames to another port's MAC.
pub struct ToPortMac {
    pub place: Place,
    pub flows: Vec<Flow>,
    /// Each MAC, with the interface that owns it when one does.
    pub port_macs: Vec<(Mac, Option<String>)>,
    pub bridge_mac: Option<Mac>,
}

pub enum Facts {
    WrongVlan(WrongVlan),
    ToPortMac(ToPortMac),
}

pub fn detect(scope: &Scope) -> Vec<Facts> {
    let Some(flows) = scope.input.flows else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for owner in scope.owners() {
        let (name, bridge) = (owner.iface.name.as_str(), bridge_of(owner));
        let fdb_missing = scope.fdb_missing(bridge);
        let own = scope.own_macs(name);
        let ips = scope.ns.host_ips(name);
        let entries: Vec<&str> = scope
            .entries(name)
            .iter()
            .map(|o| o.iface.name.as_str())
            .collect();
        let (tagged, untagged): (Vec<Flow>, Vec<Flow>) = flows
            .iter()
            .filter(|fl| {
                fl.netns == scope.ns.inode
                    && entries.contains(&fl.interface.as_str())
                    && own.contains(&fl.dst_mac)
                    && Some(fl.dst_mac) != fdb_missing
                    && fl.dst_ip.is_some_and(|ip| ips.contains(&ip))
            })
            .cloned()
            .partition(|fl| fl.vlan.is_some());
        let place = || Place {
            interface: name.to_owned(),
            bridge: bridge.to_owned(),
            host_ips: ips.clone(),
        };
        if !tagged.is_empty() {
            let vlans: BTreeSet<u16> = tagged.iter().filter_map(|fl| fl.vlan).collect();
            out.push(Facts::WrongVlan(WrongVlan {
                place: place(),
                vlans: vlans.into_iter().collect(),
                on_bridge: scope.ns.iface(bridge).is_some_and(|s| s.link.is_bridge()),
                flows: tagged,
            }));
        }
        if !untagged.is_empty() {
            let macs: BTreeSet<Mac> = untagged.iter().map(|fl| fl.dst_mac).collect();
            let owner_of = |m: Mac| {
                scope
                    .ns
                    .status
                    .interfaces
                    .iter()
                    .find(|i| i.link.mac == Some(m))
                    .map(|i| i.link.name.clone())
            };
            out.push(Facts::ToPortMac(ToPortMac {
                place: place(),
                port_macs: macs.into_iter().map(|m| (m, owner_of(m))).collect(),
                bridge_mac: scope.ns.iface(bridge).and_then(|s| s.link.mac),
                flows: untagged,
            }));
        }
    }
    out
}

pub fn finding(netns: u32, facts: &Facts) -> Finding {
    match facts {
        Facts::WrongVlan(v) => wrong_vlan(netns, v),
        Facts::ToPortMac(p) => to_port_mac(netns, p),
    }
}

/// One evidence line per flow.
fn flow_lines(flows: &[Flow]) -> Vec<String> {
    flows
        .iter()
        .map(|fl| {
            format!(
                "{}: {} frame(s) to {} ({}) from {}{}",
                fl.interface,
                fl.frames,
                fl.dst_mac,
                fl.dst_ip.map(|ip| ip.to_string()).unwrap_or_default(),
                fl.src_mac,
                fl.vlan.map(|v| format!(", VLAN {v}")).unwrap_or_default(),
            )
        })
        .collect()
}

fn frames(flows: &[Flow]) -> u64 {
    flows.iter().map(|fl| fl.frames).sum()
}

fn wrong_vlan(netns: u32, facts: &WrongVlan) -> Finding {
    let Place {
        interface: name,
        bridge,
        host_ips: ips,
    } = &facts.place;
    let vlans = &facts.vlans;
    let total = frames(&facts.flows);
    let mut f = Finding::new(
        FindingId::HostIpWrongVlan,
        netns,
        name,
        format!(
            "{total} frame(s) for this host's IP ({}) arrived on {name} addressed to this \
             host's MAC but tagged with VLAN {}, which no VLAN device (or bridge VLAN) takes \
             there: the kernel dropped them as not for this host",
            list(ips),
            list(vlans)
        ),
    );
    f.evidence = flow_lines(&facts.flows);
    let vid = vlans[0];
    f.remedy.push(format!(
        "if VLAN {vid} is meant to reach this host, give it a VLAN device with this host's \
         address: `ip link add link {bridge} name {bridge}.{vid} type vlan id {vid}`{}; \
         otherwise the sender tags frames this host does not expect: fix the sender's (or \
         its switch port's) VLAN",
        if facts.on_bridge {
            format!(
                "; if {bridge} filters VLANs (vlan_filtering 1), the bridge must be a \
                 member (`bridge vlan add vid {vid} dev {bridge} self`) and so must the \
                 ports (`bridge vlan show`)"
            )
        } else {
            String::new()
        }
    ));
    f.weight = total;
    f.facts = json_object(json!({
        "frames": total,
        "vlans": vlans,
        "host_ips": ips.iter().map(ToString::to_string).collect::<Vec<_>>(),
    }));
    f
}

fn to_port_mac(netns: u32, facts: &ToPortMac) -> Finding {
    let Place {
        interface: name,
        bridge,
        host_ips: ips,
    } = &facts.place;
    let total = frames(&facts.flows);
    let named: Vec<String> = facts
        .port_macs
        .iter()
        .map(|(m, owner)| match owner {
            Some(o) => format!("{m} ({o})"),
            None => m.to_string(),
        })
        .collect();
    let bridge_mac = facts
        .bridge_mac
        .map(|m| m.to_string())
        .unwrap_or_else(|| "-".into());
    let mut f = Finding::new(
        FindingId::HostIpToPortMac,
        netns,
        name,
        format!(
            "{total} frame(s) for this host's IP ({}) arrived on the ports of {bridge} \
             addressed to {}, another port's MAC: {bridge} passes them up but delivers only \
             frames to its own MAC ({bridge_mac}) or to the receiving port's, so the kernel \
             dropped them as not for this host",
            list(ips),
            named.join(", ")
        ),
    );
    f.evidence = flow_lines(&facts.flows);
    let ip = ips
        .iter()
        .find(|ip| ip.is_ipv4())
        .map(ToString::to_string)
        .unwrap_or_else(|| "<IP>".into());
    f.remedy.push(format!(
        "the senders' neighbour entry for {ip} points at a port's MAC, usually {bridge}'s \
         MAC from before it changed (a bridge takes the lowest port MAC unless its MAC is \
         set): announce the current one (`arping -U -c 3 -I {bridge} {ip}`) or run `ip neigh \
         del {ip} dev <if>` on the senders, and pin {bridge}'s MAC (`ip link set {bridge} \
         address {bridge_mac}`)"
    ));
    f.weight = total;
    f.facts = json_object(json!({
        "frames": total,
        "port_macs": facts.port_macs.iter().map(|(m, _)| m.to_string()).collect::<Vec<_>>(),
        "bridge_mac": bridge_mac,
        "host_ips": ips.iter().map(ToString::to_string).collect::<Vec<_>>(),
    }));
    f
}
