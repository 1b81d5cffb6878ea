//! `bridge_vlan_filtering_gap` (warning, from `status`): a bridge with
//! `vlan_filtering 1` whose VLAN table drops frames a flat bridge would
//! pass: a port without a PVID drops every untagged frame entering it; a
//! bridge (self) without a PVID drops the host's own untagged frames; a
//! port's PVID the bridge is not a member of keeps that port's untagged
//! traffic from the host. The window adds the frames for this host's IP
//! counted on the ports concerned (their fate classes: `host_ip_wrong_vlan`
//! names tagged ones with flow records).

use serde_json::json;

use super::json_object;
use crate::{
    diagnose::{
        finding::{Finding, FindingId},
        scope::Scope,
        text::list,
    },
    path::VlanFiltering,
    status::IfaceStatus,
};

pub struct Facts {
    pub bridge: String,
    pub vlan: VlanFiltering,
}

/// What the window adds: per port concerned, frames for this host's IP
/// it delivered and those it did not.
pub struct Window {
    pub per_port: Vec<(String, u64, u64)>,
}

pub fn detect(i: &IfaceStatus) -> Option<Facts> {
    let v = i.bridge.as_ref().and(i.path.vlan_filtering.as_ref())?;
    v.has_gap().then(|| Facts {
        bridge: i.link.name.clone(),
        vlan: v.clone(),
    })
}

/// The ports the gaps concern.
fn ports(v: &VlanFiltering) -> Vec<&str> {
    let mut out: Vec<&str> = v.ports_without_pvid.iter().map(String::as_str).collect();
    if v.bridge_has_addrs {
        out.extend(
            v.pvids_not_on_bridge
                .iter()
                .flat_map(|(_, ports)| ports.iter().map(String::as_str)),
        );
    }
    out.sort_unstable();
    out.dedup();
    out
}

pub fn window(scope: &Scope, facts: &Facts) -> Window {
    Window {
        per_port: ports(&facts.vlan)
            .into_iter()
            .filter_map(|p| {
                let o = scope.named(p)?;
                Some((
                    p.to_owned(),
                    o.iface.frames.own,
                    o.iface.frames.host_ip_wrong_mac,
                ))
            })
            .collect(),
    }
}

pub fn finding(netns: u32, facts: &Facts, window: Option<&Window>) -> Finding {
    let bridge = facts.bridge.as_str();
    let v = &facts.vlan;
    let mut f = Finding::new(
        FindingId::BridgeVlanFilteringGap,
        netns,
        bridge,
        format!(
            "{bridge} filters VLANs (vlan_filtering 1) and its VLAN table drops frames a \
             bridge without filtering would pass"
        ),
    );
    for p in &v.ports_without_pvid {
        f.evidence.push(format!(
            "{p} has no PVID: every untagged frame entering it is dropped"
        ));
        f.remedy
            .push(format!("bridge vlan add vid <VID> dev {p} pvid untagged"));
    }
    if v.bridge_has_addrs {
        if v.bridge_pvid.is_none() {
            f.evidence.push(format!(
                "{bridge} itself (self) has no PVID: the host's untagged frames into {bridge} \
                 are dropped; its VLANs: {}",
                if v.bridge_vids.is_empty() {
                    "none".into()
                } else {
                    list(&v.bridge_vids)
                }
            ));
        }
        for (vid, ports) in &v.pvids_not_on_bridge {
            f.evidence.push(format!(
                "{} PVID {vid}, of which {bridge} (self) is not a member: their untagged \
                 frames never reach this host",
                if ports.len() == 1 {
                    format!("{} has", ports[0])
                } else {
                    format!("{} have", list(ports))
                }
            ));
            f.remedy.push(format!(
                "bridge vlan add vid {vid} dev {bridge} self{}",
                if v.bridge_pvid.is_none() {
                    " pvid untagged"
                } else {
                    ""
                }
            ));
        }
        if v.bridge_pvid.is_none() && v.pvids_not_on_bridge.is_empty() {
            f.remedy.push(format!(
                "bridge vlan add vid <VID> dev {bridge} self pvid untagged"
            ));
        }
    }
    f.remedy.push(format!(
        "check: bridge vlan show; then `macdrop status {bridge}` no longer reports this"
    ));
    if let Some(w) = window {
        for (p, own, wrong) in &w.per_port {
            f.evidence.push(format!(
                "{p} in the window: {own} frame(s) delivered to this host, {wrong} for this \
                 host's IP not delivered"
            ));
        }
        f.weight = w.per_port.iter().map(|(_, _, n)| n).sum();
    }
    f.facts = json_object(json!({
        "ports_without_pvid": v.ports_without_pvid,
        "bridge_pvid": v.bridge_pvid,
        "bridge_vids": v.bridge_vids,
        "pvids_not_on_bridge": v.pvids_not_on_bridge.iter().map(|(vid, ports)| json!({"vid": vid, "ports": ports})).collect::<Vec<_>>(),
        "bridge_has_addrs": v.bridge_has_addrs,
    }));
    f
}
