//! `stale_mac_after_mac_change` (error): frames to a MAC the bridge (or
//! interface) had before a change seen in the window, per bridge (over its
//! ports) or standalone interface, and what changed the MAC: a bridge
//! taking a port's MAC, userspace setting it, a bond taking a slave's.

use std::net::IpAddr;

use serde_json::json;

use super::json_object;
use crate::{
    diagnose::{
        finding::{Finding, FindingId},
        scope::{EntryCount, MacChange, Scope},
        text::{list, rfc3339, span, with_drops},
    },
    mac::Mac,
    status::IfaceStatus,
    sysfs,
    topology::Role,
};

pub struct Facts {
    pub interface: String,
    pub is_bridge: bool,
    /// Only the entries with frames to a previous MAC.
    pub per_entry: Vec<EntryCount>,
    pub changes: Vec<MacChange>,
    pub current: Option<Mac>,
    pub pinned: Option<bool>,
    pub host_ips: Vec<IpAddr>,
    /// sysfs `addr_assign_type` now (`sysfs::NET_ADDR_*`).
    pub addr_assign_type: Option<u8>,
    pub cause: Cause,
}

/// What made the interface change its MAC, from the last change, how the
/// device holds its address now, and its ports' (or slaves') MACs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cause {
    /// A bridge whose MAC is not pinned took the lowest MAC of its ports
    /// (a port came or went: a container started or stopped).
    BridgeTookPortMac { port: String },
    /// A bond took a slave's MAC: a failover with `fail_over_mac`.
    BondTookSlaveMac { slave: String },
    /// Userspace set it (`addr_assign_type` set): `ip link set address`,
    /// a network manager, udev's MACAddressPolicy, a CNI plugin.
    SetByUserspace,
    /// Nothing here tells.
    Unknown,
}

impl Cause {
    /// The stable name, in the JSON facts.
    pub fn as_str(&self) -> &'static str {
        match self {
            Cause::BridgeTookPortMac { .. } => "bridge_took_port_mac",
            Cause::BondTookSlaveMac { .. } => "bond_took_slave_mac",
            Cause::SetByUserspace => "set_by_userspace",
            Cause::Unknown => "unknown",
        }
    }

    /// What changed the MAC from the facts: `new` the MAC after the last
    /// change, `enslaved` the ports or slaves.
    pub fn of(
        kind: Option<&str>,
        addr_assign_type: Option<u8>,
        new: Mac,
        enslaved: &[&IfaceStatus],
    ) -> Self {
        // A slave's permanent MAC names it even when every slave now has
        // the bond's MAC (fail_over_mac=none).
        let owner = enslaved
            .iter()
            .find(|i| i.link.perm_mac == Some(new))
            .or_else(|| enslaved.iter().find(|i| i.link.mac == Some(new)))
            .map(|i| i.link.name.clone());
        match (kind, addr_assign_type, owner) {
            (_, Some(sysfs::NET_ADDR_SET), _) => Cause::SetByUserspace,
            (Some("bridge"), _, Some(port)) => Cause::BridgeTookPortMac { port },
            (Some("bond"), _, Some(slave)) => Cause::BondTookSlaveMac { slave },
            _ => Cause::Unknown,
        }
    }

    fn sentence(&self, name: &str, assign: &str) -> String {
        match self {
            Cause::BridgeTookPortMac { port } => format!(
                "the cause: {name}'s MAC is not pinned (addr_assign_type {assign}), so it took \
                 the lowest MAC of its ports, {port}'s, when a port came or went (a container, \
                 VM or LXC/Vagrant/CNI interface started or stopped)"
            ),
            Cause::BondTookSlaveMac { slave } => format!(
                "the cause: bond {name} took the MAC of its slave {slave} (a failover with \
                 fail_over_mac; addr_assign_type {assign})"
            ),
            Cause::SetByUserspace => format!(
                "the cause: userspace set {name}'s MAC (addr_assign_type {assign}): `ip link set \
                 address`, a network manager, udev's MACAddressPolicy or a CNI plugin"
            ),
            Cause::Unknown => format!(
                "the cause is not known from here (addr_assign_type {assign}, the new MAC is \
                 none of its ports')"
            ),
        }
    }
}

pub fn detect(scope: &Scope) -> Vec<Facts> {
    scope
        .observed()
        .filter(|o| o.iface.role != Role::Port)
        .filter_map(|owner| {
            let name = owner.iface.name.as_str();
            let per_entry: Vec<EntryCount> = scope
                .entries(name)
                .into_iter()
                .filter(|o| o.iface.frames.stale_mac > 0)
                .map(|o| EntryCount::new(o, o.iface.frames.stale_mac, o.first_stale, o.last_stale))
                .collect();
            if per_entry.is_empty() {
                return None;
            }
            let status = scope.ns.iface(name);
            let changes = scope.mac_changes(name);
            let addr_assign_type = status.and_then(|s| s.addr_assign_type);
            let cause = changes.last().map_or(Cause::Unknown, |c| {
                Cause::of(
                    status.and_then(|s| s.link.kind.as_deref()),
                    addr_assign_type,
                    c.new,
                    &scope.ns.enslaved(name),
                )
            });
            Some(Facts {
                interface: name.to_owned(),
                is_bridge: owner.iface.role == Role::Bridge,
                per_entry,
                changes,
                current: status.and_then(|s| s.link.mac).or(owner.iface.mac),
                pinned: status
                    .and_then(|s| s.bridge.as_ref())
                    .and_then(|b| b.mac_pinned),
                host_ips: scope.ns.host_ips(name),
                addr_assign_type,
                cause,
            })
        })
        .collect()
}

pub fn finding(netns: u32, facts: &Facts) -> Finding {
    let name = facts.interface.as_str();
    let total: u64 = facts.per_entry.iter().map(|e| e.frames).sum();
    let ips = &facts.host_ips;
    let mut f = Finding::new(
        FindingId::StaleMacAfterMacChange,
        netns,
        name,
        format!(
            "{total} frame(s) were sent to a MAC {name} had before it changed: peers still \
             hold the old MAC in their neighbour (ARP/NDP) entries for this host, and those \
             frames are not delivered"
        ),
    );
    for c in &facts.changes {
        f.evidence.push(c.sentence(name));
    }
    let assign = facts
        .addr_assign_type
        .map_or("unknown", sysfs::addr_assign_name);
    if !facts.changes.is_empty() {
        f.evidence.push(facts.cause.sentence(name, assign));
    }
    for e in &facts.per_entry {
        f.evidence.push(with_drops(
            format!(
                "{}: {} frame(s) to a previous MAC of {name}, {}",
                e.who(),
                e.frames,
                span(e.first, e.last)
            ),
            &e.kernel_drops,
        ));
    }
    let ip_list = if ips.is_empty() {
        "<this host's IP>".to_owned()
    } else {
        list(ips)
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
    let current_text = facts
        .current
        .map(|m| m.to_string())
        .unwrap_or_else(|| "-".into());
    match (facts.pinned, facts.changes.first()) {
        (Some(false), _) | (None, _) if facts.is_bridge => {
            f.remedy.push(format!(
                "pin {name}'s MAC so it stops following its ports: `ip link set {name} \
                 address {current_text}` (or in its network configuration)"
            ));
        }
        (_, Some(c)) => f.remedy.push(format!(
            "if the peers cannot be updated, set the old MAC back: `ip link set {name} \
             address {}`",
            c.old
        )),
        _ => {}
    }
    f.weight = total;
    f.facts = json_object(json!({
        "stale_mac": total,
        "per_interface": facts.per_entry.iter().map(|e| (e.interface.clone(), json!(e.frames))).collect::<serde_json::Map<_, _>>(),
        "mac": facts.current.map(|m| m.to_string()),
        "mac_changes": facts.changes.iter().map(|c| json!({
            "ts": rfc3339(c.ts), "old_mac": c.old.to_string(), "new_mac": c.new.to_string(),
        })).collect::<Vec<_>>(),
        "mac_pinned": facts.pinned,
        "cause": facts.cause.as_str(),
        "cause_interface": match &facts.cause {
            Cause::BridgeTookPortMac { port: n } | Cause::BondTookSlaveMac { slave: n } => Some(n),
            _ => None,
        },
        "addr_assign_type": facts.addr_assign_type.map(sysfs::addr_assign_name),
        "host_ips": ips.iter().map(ToString::to_string).collect::<Vec<_>>(),
    }));
    f
}
