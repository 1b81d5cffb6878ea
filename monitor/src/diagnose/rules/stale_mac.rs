//! `stale_mac_after_mac_change` (error): frames to a MAC the bridge (or
//! interface) had before a change seen in the window, per bridge (over its
//! ports) or standalone interface.

use std::net::IpAddr;

use serde_json::json;

use super::json_object;
use crate::{
    diagnose::{
        finding::{Finding, FindingId},
        scope::{EntryCount, MacChange, Scope},
        text::{clock, list, rfc3339, span, with_drops},
    },
    mac::Mac,
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
            Some(Facts {
                interface: name.to_owned(),
                is_bridge: owner.iface.role == Role::Bridge,
                per_entry,
                changes: scope.mac_changes(name),
                current: status.and_then(|s| s.link.mac).or(owner.iface.mac),
                pinned: status
                    .and_then(|s| s.bridge.as_ref())
                    .and_then(|b| b.mac_pinned),
                host_ips: scope.ns.host_ips(name),
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
        f.evidence.push(format!(
            "{name} changed its MAC from {} to {} at {}",
            c.old,
            c.new,
            clock(c.ts)
        ));
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
        "host_ips": ips.iter().map(ToString::to_string).collect::<Vec<_>>(),
    }));
    f
}
