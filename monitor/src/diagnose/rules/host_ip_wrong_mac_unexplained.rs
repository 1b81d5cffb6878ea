//! `host_ip_wrong_mac_unexplained` (error): frames for this host's IP with
//! a MAC no local interface owns, beyond what a missing FDB entry or stale
//! peers explain: a MAC rewritten or chosen wrongly upstream. With per-flow
//! records it names the destination MACs and their vendor; without them it
//! points at tcpdump.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
    net::IpAddr,
};

use serde_json::{Value, json};

use super::{json_object, openvswitch_not_linux_bridge};
use crate::{
    diagnose::{
        finding::{Finding, FindingId},
        input::Flow,
        scope::{EntryCount, Scope, bridge_of},
        text::{list, span, with_drops},
    },
    mac::{Mac, mac_vendor},
    topology::Role,
};

/// The unexplained frames to one destination MAC, from the flow records.
pub struct Destination {
    pub mac: Mac,
    pub vendor: Option<&'static str>,
    pub frames: u64,
    pub src_macs: BTreeSet<String>,
    pub dst_ips: BTreeSet<String>,
    pub vlans: BTreeSet<u16>,
    pub interfaces: BTreeSet<String>,
}

pub struct Facts {
    pub interface: String,
    pub is_bridge: bool,
    /// Only the entries with unexplained frames.
    pub per_entry: Vec<EntryCount>,
    pub host_ips: Vec<IpAddr>,
    pub own_macs: Vec<Mac>,
    /// Most frames first; None without flow records.
    pub destinations: Option<Vec<Destination>>,
}

pub fn detect(scope: &Scope) -> Vec<Facts> {
    let mut out = Vec::new();
    for owner in scope.owners() {
        let (name, bridge) = (owner.iface.name.as_str(), bridge_of(owner));
        // Open vSwitch forwards by flows, not by a MAC this host owns
        // (`openvswitch_not_linux_bridge`).
        if openvswitch_not_linux_bridge::is_ovs(scope.ns.iface(name)) {
            continue;
        }
        let fdb_missing = scope.fdb_missing(bridge);
        let own = scope.own_macs(name);
        // Flows the findings above explain: to the missing FDB entry,
        // or to one of this host's own MACs.
        let explained = |fl: &Flow| Some(fl.dst_mac) == fdb_missing || own.contains(&fl.dst_mac);
        let mut per_entry = Vec::new();
        for o in scope.entries(name) {
            let n = match (scope.input.flows, fdb_missing) {
                // What the missing entry and stale peers do not
                // explain: subtracted rather than summed from the
                // flows, which hold only the top offenders.
                (Some(flows), _) => o
                    .iface
                    .frames
                    .host_ip_wrong_mac
                    .saturating_sub(o.iface.frames.stale_mac)
                    .saturating_sub(
                        flows
                            .iter()
                            .filter(|fl| {
                                fl.netns == scope.ns.inode
                                    && fl.interface == o.iface.name
                                    && explained(fl)
                            })
                            .map(|fl| fl.frames)
                            .sum::<u64>(),
                    ),
                // Without flows the frames cannot be told apart from
                // those for the missing entry: that finding has them.
                (None, Some(_)) => 0,
                (None, None) => o
                    .iface
                    .frames
                    .host_ip_wrong_mac
                    .saturating_sub(o.iface.frames.stale_mac),
            };
            if n > 0 {
                per_entry.push(EntryCount::new(o, n, o.first_wrong, o.last_wrong));
            }
        }
        if per_entry.is_empty() {
            continue;
        }
        let destinations = scope.input.flows.map(|flows| {
            let mut by_dst: BTreeMap<Mac, Vec<&Flow>> = BTreeMap::new();
            for fl in flows.iter().filter(|fl| {
                fl.netns == scope.ns.inode
                    && per_entry.iter().any(|e| e.interface == fl.interface)
                    && !explained(fl)
            }) {
                by_dst.entry(fl.dst_mac).or_default().push(fl);
            }
            let mut ranked: Vec<Destination> = by_dst
                .into_iter()
                .map(|(mac, fls)| Destination {
                    mac,
                    vendor: mac_vendor(mac),
                    frames: fls.iter().map(|fl| fl.frames).sum(),
                    src_macs: fls.iter().map(|fl| fl.src_mac.to_string()).collect(),
                    dst_ips: fls
                        .iter()
                        .filter_map(|fl| fl.dst_ip.map(|ip| ip.to_string()))
                        .collect(),
                    vlans: fls.iter().filter_map(|fl| fl.vlan).collect(),
                    interfaces: fls.iter().map(|fl| fl.interface.clone()).collect(),
                })
                .collect();
            ranked.sort_by_key(|d| std::cmp::Reverse(d.frames));
            ranked
        });
        out.push(Facts {
            interface: name.to_owned(),
            is_bridge: owner.iface.role == Role::Bridge,
            per_entry,
            host_ips: scope.ns.host_ips(name),
            own_macs: own,
            destinations,
        });
    }
    out
}

/// What to check for MACs of that vendor.
pub fn vendor_remedy(vendor: &str) -> &'static str {
    match vendor {
        "VMware" => {
            "VMware: the vSwitch or port group between the sender and this VM rewrites or \
             filters MACs; on the port group's security policy allow \"MAC address changes\" and \
             \"Forged transmits\" (and \"Promiscuous mode\" only if nested bridging needs it), \
             or make the guest use the MAC vSphere assigned"
        }
        "Hyper-V" => {
            "Hyper-V: enable MAC address spoofing on the VM's network adapter \
             (`Set-VMNetworkAdapter -VMName <vm> -MacAddressSpoofing On`), or make the guest use \
             the assigned MAC"
        }
        "QEMU/KVM" => {
            "QEMU/KVM: a peer sends to a libvirt/QEMU NIC's MAC; check which guest owns it \
             (`virsh domiflist <vm>`) and the sender's neighbour entry for this host's IP"
        }
        "Xen" => "Xen: a peer sends to a Xen guest NIC's MAC; check the sender's neighbour entry",
        "VirtualBox" => {
            "VirtualBox: the VM's adapter MAC differs from the guest's; set the adapter's MAC to \
             the guest's or allow promiscuous mode on the adapter"
        }
        "Docker" => {
            "Docker: the MAC is a container's (02:42:...); a peer's neighbour entry for this \
             host's IP points at a container that had it: flush it on the sender"
        }
        _ => "",
    }
}

fn joined<'a>(items: impl IntoIterator<Item = &'a String>) -> String {
    items.into_iter().cloned().collect::<Vec<_>>().join(", ")
}

pub fn finding(netns: u32, facts: &Facts) -> Finding {
    let name = facts.interface.as_str();
    let ips = &facts.host_ips;
    let own = &facts.own_macs;
    let total: u64 = facts.per_entry.iter().map(|e| e.frames).sum();
    let place = if facts.is_bridge {
        format!("the ports of {name}")
    } else {
        name.to_owned()
    };
    let mut f = Finding::new(
        FindingId::HostIpWrongMacUnexplained,
        netns,
        name,
        format!(
            "{total} frame(s) for this host's IP ({}) arrived on {place} with a destination MAC \
             that no local interface owns, and were not delivered: something between the \
             sender and this host rewrites the destination MAC, or the sender resolved this \
             host's IP to a wrong MAC",
            list(ips)
        ),
    );
    for e in &facts.per_entry {
        f.evidence.push(with_drops(
            format!(
                "{}: {} frame(s), {}",
                e.who(),
                e.frames,
                span(e.first, e.last)
            ),
            &e.kernel_drops,
        ));
    }
    let mut vendors = BTreeSet::new();
    let dst_json = match &facts.destinations {
        Some(destinations) => {
            let mut arr = Vec::new();
            for d in destinations {
                if let Some(v) = d.vendor {
                    vendors.insert(v);
                }
                f.evidence.push(format!(
                    "destination MAC {}{}: {} frame(s) to {} from {}{} on {}",
                    d.mac,
                    d.vendor.map(|v| format!(" ({v})")).unwrap_or_default(),
                    d.frames,
                    if d.dst_ips.is_empty() {
                        "-".to_owned()
                    } else {
                        joined(&d.dst_ips)
                    },
                    joined(&d.src_macs),
                    if d.vlans.is_empty() {
                        String::new()
                    } else {
                        format!(
                            ", VLAN {}",
                            d.vlans
                                .iter()
                                .map(u16::to_string)
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    },
                    joined(&d.interfaces),
                ));
                arr.push(json!({
                    "mac": d.mac.to_string(),
                    "vendor": d.vendor,
                    "frames": d.frames,
                    "src_macs": d.src_macs,
                    "dst_ips": d.dst_ips,
                    "vlans": d.vlans,
                }));
            }
            Value::Array(arr)
        }
        None => {
            let mut filter = "not ether multicast".to_owned();
            for m in own {
                let _ = write!(filter, " and not ether dst {m}");
            }
            f.evidence.push(format!(
                "flows were not recorded (--top-flows 0), so the destination MACs of \
                 these frames are unknown; to \
                 see them without changing anything (-p: no promiscuous mode), run \
                 `tcpdump -p -e -n -c 20 -i {} '{filter}'`, and look up the MAC's vendor \
                 (00:50:56/00:0c:29/00:05:69 VMware, 52:54:00 QEMU/KVM, 00:16:3e Xen, \
                 00:15:5d Hyper-V, 08:00:27 VirtualBox, 02:42 Docker)",
                facts.per_entry[0].interface
            ));
            Value::Null
        }
    };
    for v in &vendors {
        f.remedy.push(vendor_remedy(v).to_owned());
    }
    let ip = ips
        .iter()
        .find(|ip| ip.is_ipv4())
        .map(ToString::to_string)
        .unwrap_or_else(|| "<IP>".into());
    f.remedy.push(format!(
        "on the sender, `ip neigh show {ip}` must show one of this host's MACs ({}); if \
         it does, the MAC is rewritten on the way: check any hypervisor vSwitch in between \
         (VMware: \"MAC address changes\"/\"Forged transmits\"; Hyper-V: MAC address \
         spoofing) and MAC-rewriting network devices",
        if own.is_empty() {
            "-".into()
        } else {
            list(own)
        }
    ));
    f.weight = total;
    f.facts = json_object(json!({
        "host_ip_wrong_mac": total,
        "per_interface": facts.per_entry.iter().map(|e| (e.interface.clone(), json!(e.frames))).collect::<serde_json::Map<_, _>>(),
        "host_ips": ips.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "own_macs": own.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "destination_macs": dst_json,
    }));
    f
}
