//! From what the window saw and what `status` knows, the findings: each a
//! stable id, a severity, a message, the evidence (numbers, MACs, IPs,
//! times) and a concrete remedy. Pure functions over plain data, so every
//! rule is unit-tested without a kernel.
//!
//! Rules, most severe first:
//!
//! - `bridge_mac_not_in_fdb` (error, from `status`): the README's
//!   incident. Evidence: the bridge's local FDB entries, the frames for this
//!   host's IP counted on its ports, the kernel's confirmed drops, and
//!   whether the bridge is promiscuous (which is what makes traffic work).
//! - `stale_mac_after_mac_change` (error): frames to a MAC the bridge (or
//!   interface) had before a change seen in the window.
//! - `host_ip_wrong_vlan` (error): frames for this host's IP to one of its
//!   own MACs, tagged with a VLAN that nothing on the receiving side takes
//!   (no VLAN device, or the bridge not a member): the kernel drops them as
//!   OTHERHOST. Needs per-flow records.
//! - `host_ip_to_port_mac` (error): frames for this host's IP to the MAC of
//!   another port of the bridge (a local FDB entry): passed up, then
//!   dropped as OTHERHOST, since only the bridge's own MAC and the
//!   receiving port's are delivered. Needs per-flow records.
//! - `host_ip_wrong_mac_unexplained` (error): frames for this host's IP
//!   with a MAC no local interface owns, not explained by the above:
//!   a MAC rewritten or chosen wrongly upstream. With per-flow records
//!   ([`Flow`]) it names the destination MACs and their vendor.
//! - `interface_promiscuous` (warning, from `status`): who holds it, since
//!   when (kernel log), and whether frames for this host with a wrong MAC
//!   reached it only because of it.
//! - `bridge_mac_not_pinned` (warning, from `status`), with the MAC changes
//!   of the window.
//! - `foreign_unicast_dropped` (info): a standalone interface received
//!   unicast for other hosts, which the kernel drops.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
    net::IpAddr,
    time::SystemTime,
};

use serde_json::{Value, json};

pub use super::finding::{Finding, FindingId, Severity};
use super::timeline::Observed;
pub use crate::mac::mac_vendor;
use crate::{
    mac::Mac,
    promisc::{TransitionKind, Uncertainty, Verdict},
    status::{IfaceStatus, Status},
    topology::Role,
    tracker::{Event, EventKind},
    verdict::MAC_MISMATCH_REASONS,
};

/// One "top offender": frames that arrived on `interface` for this host's
/// IP with a MAC it will not deliver, per (source MAC, destination MAC,
/// VLAN, destination IP), from the kernel's flow records. With them
/// [`analyse`] names the MACs and their vendors; without them (`--top-flows
/// 0`) it points at tcpdump.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Flow {
    pub netns: u32,
    pub interface: String,
    pub src_mac: Mac,
    pub dst_mac: Mac,
    pub vlan: Option<u16>,
    pub dst_ip: Option<IpAddr>,
    pub frames: u64,
}

/// What to check for MACs of that vendor.
fn vendor_remedy(vendor: &str) -> &'static str {
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

/// What `status` knows about one namespace, and its addresses.
#[derive(Clone, Debug)]
pub struct NsFacts {
    pub inode: u32,
    pub name: Option<String>,
    pub status: Status,
    /// Unicast addresses per ifindex.
    pub addrs: BTreeMap<u32, Vec<IpAddr>>,
}

impl NsFacts {
    fn iface(&self, name: &str) -> Option<&IfaceStatus> {
        self.status.interfaces.iter().find(|i| i.link.name == name)
    }

    /// The addresses frames for this host through `name` are meant for:
    /// its own, else every non-loopback address of the namespace.
    fn host_ips(&self, name: &str) -> Vec<IpAddr> {
        let own = self
            .iface(name)
            .and_then(|i| self.addrs.get(&i.link.ifindex))
            .cloned()
            .unwrap_or_default();
        let mut ips = if own.is_empty() {
            self.addrs
                .values()
                .flatten()
                .copied()
                .filter(|ip| !ip.is_loopback())
                .collect()
        } else {
            own
        };
        ips.sort_by_key(|ip| (ip.is_ipv6(), *ip));
        ips.dedup();
        ips
    }
}

/// Everything the rules look at.
pub struct Input<'a> {
    pub seconds: f64,
    pub observed: &'a [Observed],
    pub events: &'a [Event],
    pub namespaces: &'a [NsFacts],
    pub flows: Option<&'a [Flow]>,
}

/// Every finding, most severe first, then by weight.
pub fn analyse(input: &Input) -> Vec<Finding> {
    let mut out = Vec::new();
    for ns in input.namespaces {
        let scope = Scope { input, ns };
        for f in &ns.status.findings {
            let finding = match f.id {
                FindingId::BridgeMacNotInFdb => scope.bridge_mac_not_in_fdb(f),
                FindingId::InterfacePromiscuous => scope.interface_promiscuous(f),
                FindingId::BridgeMacNotPinned => scope.bridge_mac_not_pinned(f),
                // Found only over a window: `status` does not report them.
                FindingId::StaleMacAfterMacChange
                | FindingId::HostIpWrongVlan
                | FindingId::HostIpToPortMac
                | FindingId::HostIpWrongMacUnexplained
                | FindingId::ForeignUnicastDropped => scope.status_finding(f),
            };
            out.push(finding);
        }
        out.extend(scope.stale_macs());
        out.extend(scope.own_mac_not_delivered());
        out.extend(scope.unexplained_wrong_mac());
        out.extend(scope.foreign_on_standalone());
    }
    out.sort_by(|a, b| {
        (a.severity(), std::cmp::Reverse(a.weight), &a.interface).cmp(&(
            b.severity(),
            std::cmp::Reverse(b.weight),
            &b.interface,
        ))
    });
    out
}

/// "10:14:03.512Z"
pub fn clock(ts: SystemTime) -> String {
    let s = humantime::format_rfc3339_millis(ts).to_string();
    s.get(11..).unwrap_or(&s).to_owned()
}

fn rfc3339(ts: SystemTime) -> String {
    humantime::format_rfc3339_millis(ts).to_string()
}

fn list<T: ToString>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// "9 NO_TX_TARGET, 2 OTHERHOST" (non-zero MAC-mismatch reasons only).
fn drops_text(o: &Observed) -> Option<String> {
    let drops = o.iface.drops.as_ref()?;
    let parts: Vec<String> = MAC_MISMATCH_REASONS
        .iter()
        .filter_map(|r| {
            drops
                .get(*r)
                .filter(|n| **n > 0)
                .map(|n| format!("{n} {r}"))
        })
        .collect();
    (!parts.is_empty()).then(|| parts.join(", "))
}

fn drops_total(o: &Observed) -> u64 {
    o.iface.drops.as_ref().map_or(0, |d| {
        MAC_MISMATCH_REASONS
            .iter()
            .map(|r| d.get(*r).copied().unwrap_or(0))
            .sum()
    })
}

fn span(first: Option<SystemTime>, last: Option<SystemTime>) -> String {
    match (first, last) {
        (Some(a), Some(b)) if a == b => format!("counted at {}", clock(a)),
        (Some(a), Some(b)) => format!("first counted {}, last {}", clock(a), clock(b)),
        _ => String::new(),
    }
}

/// The bridge whose FDB decides what `owner` delivers: its master for a
/// port watched without its bridge, else the interface itself.
fn bridge_of(owner: &Observed) -> &str {
    match (owner.iface.role, &owner.iface.master) {
        (Role::Port, Some(master)) => master.as_str(),
        _ => owner.iface.name.as_str(),
    }
}

struct Scope<'a> {
    input: &'a Input<'a>,
    ns: &'a NsFacts,
}

impl Scope<'_> {
    fn finding(&self, id: FindingId, interface: &str) -> Finding {
        Finding {
            netns_name: self.ns.name.clone(),
            ..Finding::new(id, self.ns.inode, interface, String::new())
        }
    }

    fn observed(&self) -> impl Iterator<Item = &Observed> {
        self.input
            .observed
            .iter()
            .filter(|o| o.iface.netns == self.ns.inode)
    }

    fn named(&self, name: &str) -> Option<&Observed> {
        self.observed().find(|o| o.iface.name == name)
    }

    fn ports_of<'b>(&'b self, bridge: &'b str) -> impl Iterator<Item = &'b Observed> + 'b {
        self.observed().filter(move |o| {
            o.iface.role == Role::Port && o.iface.master.as_deref() == Some(bridge)
        })
    }

    /// The interfaces a frame for `name` enters through: a bridge's ports,
    /// or the interface itself.
    fn entries<'b>(&'b self, name: &'b str) -> Vec<&'b Observed> {
        let ports: Vec<&Observed> = self.ports_of(name).collect();
        if ports.is_empty() {
            self.named(name).into_iter().collect()
        } else {
            ports
        }
    }

    fn events_of<'b>(&'b self, name: &'b str) -> impl Iterator<Item = &'b Event> + 'b {
        self.input.events.iter().filter(move |e| e.ifname == name)
    }

    fn mac_changes(&self, name: &str) -> Vec<(SystemTime, Mac, Mac)> {
        self.events_of(name)
            .filter_map(|e| match e.kind {
                EventKind::MacChanged { old, new } => Some((e.ts, old, new)),
                _ => None,
            })
            .collect()
    }

    /// Whether `status` found the bridge's own MAC missing from its FDB.
    fn fdb_missing(&self, bridge: &str) -> Option<Mac> {
        self.ns
            .status
            .findings
            .iter()
            .any(|f| f.id == FindingId::BridgeMacNotInFdb && f.interface == bridge)
            .then(|| self.ns.iface(bridge).and_then(|i| i.link.mac))
            .flatten()
    }

    fn status_finding(&self, f: &Finding) -> Finding {
        Finding {
            netns_name: self.ns.name.clone(),
            ..f.clone()
        }
    }

    fn bridge_mac_not_in_fdb(&self, f: &Finding) -> Finding {
        let bridge = f.interface.as_str();
        let mut out = self.status_finding(f);
        let st = self.ns.iface(bridge);
        let mac = st.and_then(|s| s.link.mac);
        let fdb = st
            .and_then(|s| s.bridge.as_ref())
            .map(|b| b.local_fdb.clone())
            .unwrap_or_default();
        let ips = self.ns.host_ips(bridge);
        let mac_text = mac.map(|m| m.to_string()).unwrap_or_else(|| "-".into());
        out.evidence.push(format!(
            "{bridge}'s forwarding database has {} local entr{} ({}); its own MAC {mac_text} is \
             not one of them",
            fdb.len(),
            if fdb.len() == 1 { "y" } else { "ies" },
            if fdb.is_empty() {
                "none".into()
            } else {
                list(&fdb)
            },
        ));
        let mut per_port = serde_json::Map::new();
        let mut total = 0;
        let mut drops = 0;
        for p in self.entries(bridge) {
            // With per-flow records, only the frames for the bridge's MAC.
            let n = match (self.input.flows, mac) {
                (Some(flows), Some(mac)) => flows
                    .iter()
                    .filter(|fl| {
                        fl.netns == self.ns.inode
                            && fl.interface == p.iface.name
                            && fl.dst_mac == mac
                    })
                    .map(|fl| fl.frames)
                    .sum(),
                _ => p.iface.frames.host_ip_wrong_mac,
            };
            drops += drops_total(p);
            if n == 0 {
                continue;
            }
            total += n;
            per_port.insert(p.iface.name.clone(), json!(n));
            let mut line = format!(
                "{}: {n} frame(s) for this host's IP ({}) with a MAC {bridge} does not deliver, {}",
                p.iface.name,
                list(&ips),
                span(p.first_wrong, p.last_wrong)
            );
            if let Some(d) = drops_text(p) {
                let _ = write!(line, "; kernel confirmed drops: {d}");
            }
            out.evidence.push(line);
        }
        if total == 0 {
            out.evidence.push(format!(
                "no frame for this host's IP arrived through {bridge} in the {} s window; traffic \
                 to this host through {bridge} fails as soon as it is tried",
                secs(self.input.seconds)
            ));
        }
        let promisc_now = st.is_some_and(|s| s.link.promiscuity > 0);
        let passed_up = self
            .named(bridge)
            .map_or(0, |b| b.while_promisc.host_ip_wrong_mac);
        if promisc_now {
            let who = st
                .and_then(|s| s.promisc_holders.clone())
                .unwrap_or_else(|| "promiscuity > 0".into());
            out.evidence.push(format!(
                "{bridge} is promiscuous now ({who}): frames for {mac_text} reach this host only \
                 because of that, and are flooded to the ports again when it ends"
            ));
        }
        if passed_up > 0 {
            out.evidence.push(format!(
                "while promiscuous, {bridge} passed {passed_up} frame(s) for this host's IP with a \
                 MAC it does not own up to the host"
            ));
        }
        out.remedy.push(format!(
            "check: `bridge fdb show dev {bridge} | grep {mac_text}` lists it as permanent, and \
             `macdrop diagnose --bridge {bridge}` no longer reports this; then find what deleted \
             the entry (a script or network manager running `bridge fdb del`) so it does not \
             happen again"
        ));
        out.weight = total;
        out.facts = obj(json!({
            "bridge": bridge,
            "mac": mac.map(|m| m.to_string()),
            "local_fdb": fdb.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "host_ips": ips.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "host_ip_wrong_mac": total,
            "per_interface": per_port,
            "kernel_drops": drops,
            "bridge_promiscuous": promisc_now,
            "passed_up_while_promiscuous": passed_up,
        }));
        out
    }

    /// Frames to a previous MAC, per bridge (over its ports) or standalone
    /// interface.
    fn stale_macs(&self) -> Vec<Finding> {
        let mut out = Vec::new();
        let owners: Vec<&Observed> = self
            .observed()
            .filter(|o| o.iface.role != Role::Port)
            .collect();
        for owner in owners {
            let name = owner.iface.name.as_str();
            let entries = self.entries(name);
            let total: u64 = entries.iter().map(|o| o.iface.frames.stale_mac).sum();
            if total == 0 {
                continue;
            }
            let changes = self.mac_changes(name);
            let current = self
                .ns
                .iface(name)
                .and_then(|s| s.link.mac)
                .or(owner.iface.mac);
            let current_text = current.map(|m| m.to_string()).unwrap_or_else(|| "-".into());
            let pinned = self
                .ns
                .iface(name)
                .and_then(|s| s.bridge.as_ref())
                .and_then(|b| b.mac_pinned);
            let ips = self.ns.host_ips(name);
            let mut f = self.finding(FindingId::StaleMacAfterMacChange, name);
            f.message = format!(
                "{total} frame(s) were sent to a MAC {name} had before it changed: peers still \
                 hold the old MAC in their neighbour (ARP/NDP) entries for this host, and those \
                 frames are not delivered"
            );
            for (ts, old, new) in &changes {
                f.evidence.push(format!(
                    "{name} changed its MAC from {old} to {new} at {}",
                    clock(*ts)
                ));
            }
            let mut per = serde_json::Map::new();
            for o in &entries {
                let n = o.iface.frames.stale_mac;
                if n == 0 {
                    continue;
                }
                per.insert(o.iface.name.clone(), json!(n));
                let mut line = format!(
                    "{}: {n} frame(s) to a previous MAC of {name}, {}",
                    o.iface.name,
                    span(o.first_stale, o.last_stale)
                );
                if let Some(d) = drops_text(o) {
                    let _ = write!(line, "; kernel confirmed drops: {d}");
                }
                f.evidence.push(line);
            }
            let ip_list = if ips.is_empty() {
                "<this host's IP>".to_owned()
            } else {
                list(&ips)
            };
            let first_ip = ips
                .iter()
                .find(|ip| ip.is_ipv4())
                .map(ToString::to_string)
                .unwrap_or_else(|| "<IP>".into());
            f.remedy.push(format!(
                "make the peers forget the old MAC: from this host announce the current one with \
                 a gratuitous ARP, `arping -U -c 3 -I {name} {first_ip}` (iputils-arping; for each \
                 of {ip_list}), or on each peer `ip neigh del {first_ip} dev <its interface>`"
            ));
            match (pinned, changes.first()) {
                (Some(false), _) | (None, _) if owner.iface.role == Role::Bridge => {
                    f.remedy.push(format!(
                        "pin {name}'s MAC so it stops following its ports: `ip link set {name} \
                         address {current_text}` (or in its network configuration)"
                    ));
                }
                (_, Some((_, old, _))) => f.remedy.push(format!(
                    "if the peers cannot be updated, set the old MAC back: `ip link set {name} \
                     address {old}`"
                )),
                _ => {}
            }
            f.weight = total;
            f.facts = obj(json!({
                "stale_mac": total,
                "per_interface": per,
                "mac": current.map(|m| m.to_string()),
                "mac_changes": changes.iter().map(|(ts, old, new)| json!({
                    "ts": rfc3339(*ts), "old_mac": old.to_string(), "new_mac": new.to_string(),
                })).collect::<Vec<_>>(),
                "mac_pinned": pinned,
                "host_ips": ips.iter().map(ToString::to_string).collect::<Vec<_>>(),
            }));
            out.push(f);
        }
        out
    }

    /// Frames for this host's IP with a MAC nobody here owns, beyond what
    /// a missing FDB entry or stale peers explain.
    /// The interfaces findings are reported on: bridges, standalone
    /// interfaces, and ports watched without their bridge.
    fn owners(&self) -> Vec<&Observed> {
        self.observed()
            .filter(|o| {
                o.iface.role != Role::Port
                    || o.iface
                        .master
                        .as_deref()
                        .is_none_or(|m| self.named(m).is_none())
            })
            .collect()
    }

    /// MACs of this host frames through `name` may be addressed to: its
    /// bridge's local FDB entries, or the device's own MAC.
    fn own_macs(&self, name: &str) -> Vec<Mac> {
        self.ns
            .iface(name)
            .and_then(|s| s.bridge.as_ref().map(|b| b.local_fdb.clone()))
            .or_else(|| {
                self.ns
                    .iface(name)
                    .and_then(|s| s.link.mac)
                    .map(|m| vec![m])
            })
            .unwrap_or_default()
    }

    /// Flows for this host's IP through `name` addressed to one of its own
    /// MACs (not the one missing from the FDB), which the kernel still did
    /// not deliver: tagged with a VLAN nothing takes, or to another port's
    /// MAC. Two findings, named by what is wrong, each with its remedy.
    fn own_mac_not_delivered(&self) -> Vec<Finding> {
        let Some(flows) = self.input.flows else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for owner in self.owners() {
            let (name, bridge) = (owner.iface.name.as_str(), bridge_of(owner));
            let fdb_missing = self.fdb_missing(bridge);
            let own = self.own_macs(name);
            let ips = self.ns.host_ips(name);
            let entries: Vec<&str> = self
                .entries(name)
                .iter()
                .map(|o| o.iface.name.as_str())
                .collect();
            let mine: Vec<&Flow> = flows
                .iter()
                .filter(|fl| {
                    fl.netns == self.ns.inode
                        && entries.contains(&fl.interface.as_str())
                        && own.contains(&fl.dst_mac)
                        && Some(fl.dst_mac) != fdb_missing
                        && fl.dst_ip.is_some_and(|ip| ips.contains(&ip))
                })
                .collect();
            let (tagged, untagged): (Vec<&Flow>, Vec<&Flow>) =
                mine.into_iter().partition(|fl| fl.vlan.is_some());
            if !tagged.is_empty() {
                out.push(self.wrong_vlan(name, bridge, &ips, &tagged));
            }
            if !untagged.is_empty() {
                out.push(self.to_port_mac(name, bridge, &ips, &untagged));
            }
        }
        out
    }

    fn flow_lines(&self, f: &mut Finding, flows: &[&Flow]) -> u64 {
        for fl in flows {
            f.evidence.push(format!(
                "{}: {} frame(s) to {} ({}) from {}{}",
                fl.interface,
                fl.frames,
                fl.dst_mac,
                fl.dst_ip.map(|ip| ip.to_string()).unwrap_or_default(),
                fl.src_mac,
                fl.vlan.map(|v| format!(", VLAN {v}")).unwrap_or_default(),
            ));
        }
        flows.iter().map(|fl| fl.frames).sum()
    }

    fn wrong_vlan(&self, name: &str, bridge: &str, ips: &[IpAddr], flows: &[&Flow]) -> Finding {
        let mut f = self.finding(FindingId::HostIpWrongVlan, name);
        let total = self.flow_lines(&mut f, flows);
        let vlans: BTreeSet<u16> = flows.iter().filter_map(|fl| fl.vlan).collect();
        let vlans: Vec<u16> = vlans.into_iter().collect();
        let on_bridge = self.ns.iface(bridge).is_some_and(|s| s.link.is_bridge());
        f.message = format!(
            "{total} frame(s) for this host's IP ({}) arrived on {name} addressed to this host's \
             MAC but tagged with VLAN {}, which no VLAN device (or bridge VLAN) takes there: the \
             kernel dropped them as not for this host",
            list(ips),
            list(&vlans)
        );
        let vid = vlans[0];
        f.remedy.push(format!(
            "if VLAN {vid} is meant to reach this host, give it a VLAN device with this host's \
             address: `ip link add link {bridge} name {bridge}.{vid} type vlan id {vid}`{}; \
             otherwise the sender tags frames this host does not expect: fix the sender's (or \
             its switch port's) VLAN",
            if on_bridge {
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
        f.facts = obj(json!({
            "frames": total,
            "vlans": vlans,
            "host_ips": ips.iter().map(ToString::to_string).collect::<Vec<_>>(),
        }));
        f
    }

    fn to_port_mac(&self, name: &str, bridge: &str, ips: &[IpAddr], flows: &[&Flow]) -> Finding {
        let mut f = self.finding(FindingId::HostIpToPortMac, name);
        let total = self.flow_lines(&mut f, flows);
        let macs: BTreeSet<Mac> = flows.iter().map(|fl| fl.dst_mac).collect();
        let owner_of = |m: &Mac| {
            self.ns
                .status
                .interfaces
                .iter()
                .find(|i| i.link.mac == Some(*m))
                .map(|i| format!("{m} ({})", i.link.name))
                .unwrap_or_else(|| m.to_string())
        };
        let named: Vec<String> = macs.iter().map(owner_of).collect();
        let bridge_mac = self
            .ns
            .iface(bridge)
            .and_then(|s| s.link.mac)
            .map(|m| m.to_string())
            .unwrap_or_else(|| "-".into());
        f.message = format!(
            "{total} frame(s) for this host's IP ({}) arrived on the ports of {bridge} addressed \
             to {}, another port's MAC: {bridge} passes them up but delivers only frames to its \
             own MAC ({bridge_mac}) or to the receiving port's, so the kernel dropped them as \
             not for this host",
            list(ips),
            named.join(", ")
        );
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
        f.facts = obj(json!({
            "frames": total,
            "port_macs": macs.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "bridge_mac": bridge_mac,
            "host_ips": ips.iter().map(ToString::to_string).collect::<Vec<_>>(),
        }));
        f
    }

    fn unexplained_wrong_mac(&self) -> Vec<Finding> {
        let mut out = Vec::new();
        for owner in self.owners() {
            let (name, bridge) = (owner.iface.name.as_str(), bridge_of(owner));
            let fdb_missing = self.fdb_missing(bridge);
            let own = self.own_macs(name);
            // Flows the findings above explain: to the missing FDB entry,
            // or to one of this host's own MACs.
            let explained =
                |fl: &Flow| Some(fl.dst_mac) == fdb_missing || own.contains(&fl.dst_mac);
            let mut per: Vec<(&Observed, u64)> = Vec::new();
            for o in self.entries(name) {
                let n = match (self.input.flows, fdb_missing) {
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
                                    fl.netns == self.ns.inode
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
                    per.push((o, n));
                }
            }
            let total: u64 = per.iter().map(|(_, n)| n).sum();
            if total == 0 {
                continue;
            }
            let ips = self.ns.host_ips(name);
            let mut f = self.finding(FindingId::HostIpWrongMacUnexplained, name);
            let place = if owner.iface.role == Role::Bridge {
                format!("the ports of {name}")
            } else {
                name.to_owned()
            };
            f.message = format!(
                "{total} frame(s) for this host's IP ({}) arrived on {place} with a destination MAC \
                 that no local interface owns, and were not delivered: something between the \
                 sender and this host rewrites the destination MAC, or the sender resolved this \
                 host's IP to a wrong MAC",
                list(&ips)
            );
            let mut per_json = serde_json::Map::new();
            for (o, n) in &per {
                per_json.insert(o.iface.name.clone(), json!(n));
                let mut line = format!(
                    "{}: {n} frame(s), {}",
                    o.iface.name,
                    span(o.first_wrong, o.last_wrong)
                );
                if let Some(d) = drops_text(o) {
                    let _ = write!(line, "; kernel confirmed drops: {d}");
                }
                f.evidence.push(line);
            }
            let mut vendors = BTreeSet::new();
            let dst_json = match self.input.flows {
                Some(flows) => {
                    let mut by_dst: BTreeMap<Mac, Vec<&Flow>> = BTreeMap::new();
                    for fl in flows.iter().filter(|fl| {
                        fl.netns == self.ns.inode
                            && per.iter().any(|(o, _)| o.iface.name == fl.interface)
                            && !explained(fl)
                    }) {
                        by_dst.entry(fl.dst_mac).or_default().push(fl);
                    }
                    let mut ranked: Vec<(Mac, Vec<&Flow>)> = by_dst.into_iter().collect();
                    ranked.sort_by_key(|(_, fls)| {
                        std::cmp::Reverse(fls.iter().map(|fl| fl.frames).sum::<u64>())
                    });
                    let mut arr = Vec::new();
                    for (dst, fls) in &ranked {
                        let vendor = mac_vendor(*dst);
                        if let Some(v) = vendor {
                            vendors.insert(v);
                        }
                        let frames: u64 = fls.iter().map(|fl| fl.frames).sum();
                        let srcs: BTreeSet<String> =
                            fls.iter().map(|fl| fl.src_mac.to_string()).collect();
                        let dsts: BTreeSet<String> = fls
                            .iter()
                            .filter_map(|fl| fl.dst_ip.map(|ip| ip.to_string()))
                            .collect();
                        let vlans: BTreeSet<u16> = fls.iter().filter_map(|fl| fl.vlan).collect();
                        let ifaces: BTreeSet<&str> =
                            fls.iter().map(|fl| fl.interface.as_str()).collect();
                        f.evidence.push(format!(
                            "destination MAC {dst}{}: {frames} frame(s) to {} from {}{} on {}",
                            vendor.map(|v| format!(" ({v})")).unwrap_or_default(),
                            if dsts.is_empty() {
                                "-".to_owned()
                            } else {
                                dsts.iter().cloned().collect::<Vec<_>>().join(", ")
                            },
                            srcs.iter().cloned().collect::<Vec<_>>().join(", "),
                            if vlans.is_empty() {
                                String::new()
                            } else {
                                format!(
                                    ", VLAN {}",
                                    vlans
                                        .iter()
                                        .map(u16::to_string)
                                        .collect::<Vec<_>>()
                                        .join(", ")
                                )
                            },
                            ifaces.into_iter().collect::<Vec<_>>().join(", "),
                        ));
                        arr.push(json!({
                            "mac": dst.to_string(),
                            "vendor": vendor,
                            "frames": frames,
                            "src_macs": srcs,
                            "dst_ips": dsts,
                            "vlans": vlans,
                        }));
                    }
                    Value::Array(arr)
                }
                None => {
                    let (o, _) = per[0];
                    let mut filter = "not ether multicast".to_owned();
                    for m in &own {
                        let _ = write!(filter, " and not ether dst {m}");
                    }
                    f.evidence.push(format!(
                        "flows were not recorded (--top-flows 0), so the destination MACs of \
                         these frames are unknown; to \
                         see them without changing anything (-p: no promiscuous mode), run \
                         `tcpdump -p -e -n -c 20 -i {} '{filter}'`, and look up the MAC's vendor \
                         (00:50:56/00:0c:29/00:05:69 VMware, 52:54:00 QEMU/KVM, 00:16:3e Xen, \
                         00:15:5d Hyper-V, 08:00:27 VirtualBox, 02:42 Docker)",
                        o.iface.name
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
                    list(&own)
                }
            ));
            f.weight = total;
            f.facts = obj(json!({
                "host_ip_wrong_mac": total,
                "per_interface": per_json,
                "host_ips": ips.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "own_macs": own.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "destination_macs": dst_json,
            }));
            out.push(f);
        }
        out
    }

    fn interface_promiscuous(&self, f: &Finding) -> Finding {
        let name = f.interface.as_str();
        let mut out = self.status_finding(f);
        let st = self.ns.iface(name);
        let who = st
            .and_then(|s| s.promisc_holders.clone())
            .unwrap_or_else(|| format!("promiscuity {}", st.map_or(0, |s| s.link.promiscuity)));
        out.evidence.push(format!("held by: {who}"));
        let mut since = None;
        if let Some(e) = self
            .events_of(name)
            .filter(|e| matches!(e.kind, EventKind::PromiscEntered { .. }))
            .last()
        {
            out.evidence.push(format!(
                "entered promiscuous mode during the window, at {}",
                clock(e.ts)
            ));
            since = Some(e.ts);
        }
        let mut log_counts = Value::Null;
        match st.and_then(|s| s.promisc_log.as_ref()) {
            None => out.evidence.push(
                "the kernel log could not be read (needs CAP_SYSLOG): since when is unknown".into(),
            ),
            Some(h) => {
                log_counts = json!({"entered": h.entered, "left": h.left});
                // The log is read before the window: an entry during it is
                // an event, not yet in the log.
                match (since.is_some(), h.verdict(true), &h.last) {
                    (true, _, _) => {}
                    (false, Verdict::Agrees, Some(t)) if t.kind == TransitionKind::Entered => {
                        since = Some(t.wall);
                        out.evidence.push(format!(
                            "promiscuous since {} by the kernel log (entered {} time(s), left {} \
                             time(s) since boot)",
                            rfc3339(t.wall),
                            h.entered,
                            h.left
                        ));
                    }
                    (false, Verdict::Uncertain(Uncertainty::HistoryIncomplete), _) => {
                        out.evidence.push(
                            "the kernel log no longer holds when it entered promiscuous mode \
                             (the ring buffer wrapped)"
                                .into(),
                        );
                    }
                    _ => out.evidence.push(format!(
                        "the kernel log cannot tell since when: its {} \"entered\" and {} \"left\" \
                         records for {name} do not fit one device (the name is used in several \
                         namespaces, or a device of that name was deleted while promiscuous)",
                        h.entered, h.left
                    )),
                }
            }
        }
        let o = self.named(name);
        let masked = o.map_or(0, |o| o.while_promisc.host_ip_wrong_mac);
        let foreign = o.map_or(0, |o| o.while_promisc.foreign_unicast);
        let is_bridge = st.is_some_and(|s| s.link.is_bridge());
        if is_bridge && masked > 0 {
            out.evidence.push(format!(
                "while promiscuous, {name} passed {masked} frame(s) for this host's IP with a MAC \
                 it does not own up to the host ({foreign} foreign unicast frame(s) in all): \
                 without promiscuous mode the bridge would not deliver them, so traffic that works \
                 now stops when the holder lets go"
            ));
            out.remedy.insert(
                0,
                "fix the cause first (the findings above): turning promiscuous mode off now breaks \
                 that traffic"
                    .into(),
            );
        } else if foreign > 0 {
            out.evidence.push(format!(
                "while promiscuous, {name} received {foreign} unicast frame(s) for other MACs"
            ));
        }
        let mut release = Vec::new();
        if st.is_some_and(|s| s.link.promisc_flag) {
            release.push(format!("`ip link set {name} promisc off`"));
        }
        if who.contains("(pid ") {
            release.push("stop the process(es) named above (tcpdump without -p, ...)".into());
        }
        if !release.is_empty() {
            out.remedy.push(format!(
                "when nothing needs it any more: {}",
                release.join(" and ")
            ));
        }
        out.weight = masked + 1;
        out.facts = obj(json!({
            "promiscuity": st.map(|s| s.link.promiscuity),
            "holders": who,
            "since": since.map(rfc3339),
            "kernel_log": log_counts,
            "delivered_while_promiscuous": if is_bridge { masked } else { 0 },
            "foreign_while_promiscuous": foreign,
        }));
        out
    }

    fn bridge_mac_not_pinned(&self, f: &Finding) -> Finding {
        let name = f.interface.as_str();
        let mut out = self.status_finding(f);
        let changes = self.mac_changes(name);
        for (ts, old, new) in &changes {
            out.evidence.push(format!(
                "it changed during the window: from {old} to {new} at {}",
                clock(*ts)
            ));
        }
        if changes.is_empty() {
            out.evidence.push(format!(
                "no change during the {} s window; it changes when a port with a lower MAC \
                 comes or the port whose MAC it has goes",
                secs(self.input.seconds)
            ));
        }
        out.weight = changes.len() as u64;
        out.facts = obj(json!({
            "mac": self.ns.iface(name).and_then(|s| s.link.mac).map(|m| m.to_string()),
            "mac_changes": changes.len(),
        }));
        out
    }

    /// Unicast for other hosts on a standalone interface: dropped, and
    /// usually harmless (flooding), hence only informational.
    fn foreign_on_standalone(&self) -> Vec<Finding> {
        self.observed()
            .filter(|o| o.iface.role == Role::Standalone)
            .filter_map(|o| {
                let fr = &o.iface.frames;
                let other = fr
                    .foreign_unicast
                    .saturating_sub(fr.host_ip_wrong_mac.max(fr.stale_mac));
                if other == 0 {
                    return None;
                }
                let name = o.iface.name.as_str();
                let mut f = self.finding(FindingId::ForeignUnicastDropped, name);
                f.message = format!(
                    "{name} received {other} unicast frame(s) for other MACs and other hosts' IPs \
                     in {} s; the kernel drops them (OTHERHOST)",
                    secs(self.input.seconds)
                );
                if let Some(d) = drops_text(o) {
                    f.evidence.push(format!("kernel confirmed drops: {d}"));
                }
                f.evidence.push(
                    "usually a switch flooding unknown unicast, harmless unless they were meant \
                     for this host"
                        .into(),
                );
                f.remedy.push(
                    "nothing to do unless a service here misses traffic; a steady flood means the \
                     switch does not know where the destination MAC lives"
                        .into(),
                );
                f.weight = other;
                f.facts = obj(json!({ "foreign_unicast": other, "kernel_drops": drops_total(o) }));
                Some(f)
            })
            .collect()
    }
}

fn obj(v: Value) -> serde_json::Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => serde_json::Map::new(),
    }
}

/// "10", "2.5"
pub fn secs(x: f64) -> String {
    let s = format!("{x:.1}");
    s.strip_suffix(".0").map(str::to_owned).unwrap_or(s)
}

#[cfg(test)]
mod tests {
    use std::{collections::BTreeMap, time::Duration};

    use monitor_common::FrameCounters;

    use super::*;
    use crate::{
        model::Interface,
        netlink::{Link, NetState},
        promisc::History,
        status::{PromiscFacts, gather},
    };

    const BR: Mac = Mac([2, 0, 0, 0, 0x0b, 1]);
    const P1: Mac = Mac([2, 0, 0, 0, 0x0a, 1]);
    const P2: Mac = Mac([2, 0, 0, 0, 0x0a, 2]);
    const NS: u32 = 7;

    fn t(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + s)
    }

    fn netstate(fdb: Vec<Mac>, br_promiscuity: u32) -> NetState {
        let mut br = Link::fake(2, "br0", "bridge", None, BR);
        br.promiscuity = br_promiscuity;
        br.promisc = br_promiscuity > 0;
        let mut p1 = Link::fake(3, "p1", "veth", Some(2), P1);
        p1.promiscuity = 1;
        p1.promisc = true;
        NetState {
            links: vec![br, p1, Link::fake(4, "p2", "veth", Some(2), P2)],
            local_fdb: BTreeMap::from([(2, fdb)]),
            ..Default::default()
        }
    }

    fn ns(state: &NetState, pinned: bool, facts: &PromiscFacts) -> NsFacts {
        NsFacts {
            inode: NS,
            name: None,
            status: gather(NS, state, &[], &|_| Some(pinned), facts).unwrap(),
            addrs: BTreeMap::from([(2, vec!["192.0.2.1".parse().unwrap()])]),
        }
    }

    fn observed(name: &str, role: Role, frames: FrameCounters) -> Observed {
        let master = (role == Role::Port).then(|| "br0".to_owned());
        let mut iface = Interface::new(name.into(), 0, NS, role, master);
        iface.frames = frames;
        iface.drops = Some(BTreeMap::from([(
            "NO_TX_TARGET".to_owned(),
            frames.host_ip_wrong_mac,
        )]));
        Observed {
            iface,
            first_wrong: (frames.host_ip_wrong_mac > 0).then(|| t(1)),
            last_wrong: (frames.host_ip_wrong_mac > 0).then(|| t(2)),
            first_stale: (frames.stale_mac > 0).then(|| t(1)),
            last_stale: (frames.stale_mac > 0).then(|| t(1)),
            while_promisc: FrameCounters::default(),
            promisc_seen: false,
        }
    }

    fn wrong(n: u64) -> FrameCounters {
        FrameCounters {
            total: n,
            foreign_unicast: n,
            host_ip_wrong_mac: n,
            ..Default::default()
        }
    }

    fn lab(p1: FrameCounters) -> Vec<Observed> {
        vec![
            observed("br0", Role::Bridge, FrameCounters::default()),
            observed("p1", Role::Port, p1),
            observed("p2", Role::Port, FrameCounters::default()),
        ]
    }

    fn run(
        ns: &NsFacts,
        obs: &[Observed],
        events: &[Event],
        flows: Option<&[Flow]>,
    ) -> Vec<Finding> {
        analyse(&Input {
            seconds: 2.0,
            observed: obs,
            events,
            namespaces: std::slice::from_ref(ns),
            flows,
        })
    }

    fn ids(findings: &[Finding]) -> Vec<&str> {
        findings.iter().map(|f| f.id.as_str()).collect()
    }

    #[test]
    fn a_healthy_lab_has_no_finding() {
        let facts = ns(
            &netstate(vec![BR, P1, P2], 0),
            true,
            &PromiscFacts::default(),
        );
        let own = FrameCounters {
            total: 5,
            own: 5,
            ..Default::default()
        };
        assert!(run(&facts, &lab(own), &[], None).is_empty());
    }

    #[test]
    fn the_incident_with_its_numbers_and_the_remedy() {
        let facts = ns(&netstate(vec![P1, P2], 0), true, &PromiscFacts::default());
        let found = run(&facts, &lab(wrong(9)), &[], None);
        assert_eq!(ids(&found), ["bridge_mac_not_in_fdb"], "{found:#?}");
        let f = &found[0];
        assert_eq!(f.severity(), Severity::Error);
        assert_eq!(
            f.remedy[0],
            "bridge fdb add 02:00:00:00:0b:01 dev br0 self local"
        );
        assert_eq!(f.facts["host_ip_wrong_mac"], 9);
        assert_eq!(f.facts["per_interface"]["p1"], 9);
        assert_eq!(f.facts["kernel_drops"], 9);
        assert!(f.evidence[0].contains("2 local entries (02:00:00:00:0a:01, 02:00:00:00:0a:02)"));
        assert!(
            f.evidence[1].starts_with("p1: 9 frame(s) for this host's IP (192.0.2.1)"),
            "{:?}",
            f.evidence
        );
        assert!(f.evidence[1].ends_with("kernel confirmed drops: 9 NO_TX_TARGET"));
    }

    #[test]
    fn flows_split_the_bridge_mac_from_a_rewritten_one() {
        let facts = ns(&netstate(vec![P1, P2], 0), true, &PromiscFacts::default());
        let vmware = Mac([0x00, 0x50, 0x56, 0xaa, 0xbb, 0xcc]);
        let flow = |dst, frames| Flow {
            netns: NS,
            interface: "p1".into(),
            src_mac: Mac([2, 0, 0, 0, 0x0c, 1]),
            dst_mac: dst,
            vlan: Some(10),
            dst_ip: Some("192.0.2.1".parse().unwrap()),
            frames,
        };
        let flows = [flow(BR, 6), flow(vmware, 3)];
        let found = run(&facts, &lab(wrong(9)), &[], Some(&flows));
        assert_eq!(
            ids(&found),
            ["bridge_mac_not_in_fdb", "host_ip_wrong_mac_unexplained"]
        );
        assert_eq!(found[0].facts["host_ip_wrong_mac"], 6);
        let up = &found[1];
        assert_eq!(up.facts["host_ip_wrong_mac"], 3);
        assert_eq!(up.facts["destination_macs"][0]["vendor"], "VMware");
        assert!(
            up.evidence.iter().any(|e| e
                == "destination MAC 00:50:56:aa:bb:cc (VMware): 3 frame(s) to 192.0.2.1 from \
                    02:00:00:00:0c:01, VLAN 10 on p1"),
            "{:#?}",
            up.evidence
        );
        assert!(up.remedy[0].starts_with("VMware: "));
    }

    #[test]
    fn own_macs_not_delivered_are_named_by_what_is_wrong() {
        let facts = ns(
            &netstate(vec![BR, P1, P2], 0),
            true,
            &PromiscFacts::default(),
        );
        let flow = |dst, vlan, frames| Flow {
            netns: NS,
            interface: "p1".into(),
            src_mac: Mac([2, 0, 0, 0, 0x0c, 1]),
            dst_mac: dst,
            vlan,
            dst_ip: Some("192.0.2.1".parse().unwrap()),
            frames,
        };
        let vmware = Mac([0x00, 0x50, 0x56, 0xaa, 0xbb, 0xcc]);
        let flows = [
            flow(BR, Some(10), 4),
            flow(P2, None, 3),
            flow(vmware, None, 2),
        ];
        let found = run(&facts, &lab(wrong(9)), &[], Some(&flows));
        assert_eq!(
            ids(&found),
            [
                "host_ip_wrong_vlan",
                "host_ip_to_port_mac",
                "host_ip_wrong_mac_unexplained"
            ],
            "{found:#?}"
        );
        let vlan = &found[0];
        assert_eq!(
            (vlan.facts["frames"].clone(), vlan.facts["vlans"].clone()),
            (json!(4), json!([10]))
        );
        assert!(
            vlan.message.contains("tagged with VLAN 10"),
            "{}",
            vlan.message
        );
        assert!(
            vlan.remedy[0].contains("ip link add link br0 name br0.10 type vlan id 10"),
            "{}",
            vlan.remedy[0]
        );
        let port = &found[1];
        assert_eq!(port.facts["frames"], 3);
        assert!(
            port.message
                .contains("addressed to 02:00:00:00:0a:02 (p2), another port's MAC"),
            "{}",
            port.message
        );
        assert!(port.remedy[0].contains("arping -U -c 3 -I br0 192.0.2.1"));
        // Only the VMware MAC is left unexplained.
        assert_eq!(found[2].facts["host_ip_wrong_mac"], 2);
    }

    #[test]
    fn unexplained_without_flows_names_the_interface_and_count() {
        let facts = ns(
            &netstate(vec![BR, P1, P2], 0),
            true,
            &PromiscFacts::default(),
        );
        let found = run(&facts, &lab(wrong(6)), &[], None);
        assert_eq!(ids(&found), ["host_ip_wrong_mac_unexplained"]);
        let f = &found[0];
        assert!(
            f.message.starts_with(
                "6 frame(s) for this host's IP (192.0.2.1) arrived on the ports of br0"
            )
        );
        assert_eq!(f.facts["per_interface"]["p1"], 6);
        assert_eq!(f.facts["destination_macs"], Value::Null);
        assert!(f.evidence[1].contains(
            "tcpdump -p -e -n -c 20 -i p1 'not ether multicast and not ether dst \
             02:00:00:00:0b:01 and not ether dst 02:00:00:00:0a:01 and not ether dst \
             02:00:00:00:0a:02'"
        ));
    }

    #[test]
    fn stale_frames_after_a_change_are_not_unexplained() {
        let facts = ns(
            &netstate(vec![BR, P1, P2], 0),
            false,
            &PromiscFacts::default(),
        );
        let stale = FrameCounters {
            stale_mac: 5,
            ..wrong(5)
        };
        let events = [Event {
            ts: t(1),
            ifname: "br0".into(),
            ifindex: 2,
            kind: EventKind::MacChanged { old: P1, new: BR },
        }];
        let found = run(&facts, &lab(stale), &events, None);
        assert_eq!(
            ids(&found),
            ["stale_mac_after_mac_change", "bridge_mac_not_pinned"]
        );
        let f = &found[0];
        assert_eq!(f.facts["stale_mac"], 5);
        assert_eq!(f.facts["mac_changes"][0]["old_mac"], "02:00:00:00:0a:01");
        assert!(
            f.evidence[0]
                .starts_with("br0 changed its MAC from 02:00:00:00:0a:01 to 02:00:00:00:0b:01 at ")
        );
        assert!(f.remedy[0].contains("arping -U -c 3 -I br0 192.0.2.1"));
        assert!(f.remedy[1].contains("ip link set br0 address 02:00:00:00:0b:01"));
        assert_eq!(found[1].facts["mac_changes"], 1);
    }

    #[test]
    fn promiscuous_bridge_delivering_only_because_of_it() {
        let mut history = History::new(SystemTime::UNIX_EPOCH);
        history.push("6,0,1000000,-;br0: entered promiscuous mode");
        let promisc = PromiscFacts {
            sockets: None,
            history: Some(history),
        };
        let facts = ns(&netstate(vec![P1, P2], 1), true, &promisc);
        let mut obs = lab(wrong(9));
        obs[0].while_promisc = wrong(9);
        obs[0].iface.frames = wrong(9);
        let found = run(&facts, &obs, &[], None);
        assert_eq!(
            ids(&found),
            ["bridge_mac_not_in_fdb", "interface_promiscuous"]
        );
        let p = &found[1];
        assert_eq!(p.facts["delivered_while_promiscuous"], 9);
        assert_eq!(p.facts["since"], "1970-01-01T00:00:01.000Z");
        assert!(p.evidence.iter().any(|e| e.starts_with(
            "while promiscuous, br0 passed 9 frame(s) for this host's IP with a MAC it does not \
             own up to the host"
        )));
        assert!(p.remedy[0].starts_with("fix the cause first"));
        assert!(
            found[0]
                .evidence
                .iter()
                .any(|e| e.starts_with("br0 is promiscuous now"))
        );
        // The bridge's own count is what it passed up, not more frames.
        assert_eq!(found[0].facts["host_ip_wrong_mac"], 9);
    }

    #[test]
    fn a_port_watched_alone_still_has_its_bridge_judged() {
        let facts = ns(&netstate(vec![P1, P2], 0), true, &PromiscFacts::default());
        let p1 = observed("p1", Role::Port, wrong(4));
        let found = run(&facts, &[p1], &[], None);
        assert_eq!(ids(&found), ["bridge_mac_not_in_fdb"], "{found:#?}");
        assert_eq!(found[0].facts["per_interface"]["p1"], 4);
    }

    #[test]
    fn vendors_by_oui() {
        for (mac, vendor) in [
            ("00:50:56:01:02:03", "VMware"),
            ("00:0c:29:01:02:03", "VMware"),
            ("00:05:69:01:02:03", "VMware"),
            ("52:54:00:01:02:03", "QEMU/KVM"),
            ("00:16:3e:01:02:03", "Xen"),
            ("00:15:5d:01:02:03", "Hyper-V"),
            ("08:00:27:01:02:03", "VirtualBox"),
            ("02:42:ac:11:00:02", "Docker"),
        ] {
            assert_eq!(mac_vendor(mac.parse().unwrap()), Some(vendor), "{mac}");
            assert!(!vendor_remedy(vendor).is_empty());
        }
        assert_eq!(mac_vendor(BR), None);
    }

    #[test]
    fn standalone_foreign_is_information() {
        let state = NetState {
            links: vec![Link::fake(2, "v0", "veth", None, P1)],
            ..Default::default()
        };
        let facts = ns(&state, true, &PromiscFacts::default());
        let mut v0 = observed("v0", Role::Standalone, FrameCounters::default());
        v0.iface.master = None;
        v0.iface.frames = FrameCounters {
            total: 7,
            foreign_unicast: 7,
            host_ip_wrong_mac: 2,
            ..Default::default()
        };
        let found = run(&facts, &[v0], &[], None);
        assert_eq!(
            ids(&found),
            ["host_ip_wrong_mac_unexplained", "foreign_unicast_dropped"]
        );
        assert_eq!(found[1].facts["foreign_unicast"], 5);
        assert!(found[0].message.contains("arrived on v0 with"));
    }
}
