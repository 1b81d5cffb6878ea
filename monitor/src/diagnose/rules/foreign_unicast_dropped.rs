//! `foreign_unicast_dropped` (info): a standalone interface received
//! unicast for other hosts, which the kernel drops. Usually harmless
//! (flooding), hence only informational.

use serde_json::json;

use super::{json_object, openvswitch_not_linux_bridge};
use crate::{
    diagnose::{
        finding::{Finding, FindingId},
        scope::{Scope, kernel_drops},
        text::{drops_text, secs},
    },
    topology::Role,
};

pub struct Facts {
    pub interface: String,
    /// Foreign unicast beyond the frames for this host's IP or a previous
    /// MAC (other findings have those).
    pub frames: u64,
    pub kernel_drops: Vec<(&'static str, u64)>,
    pub seconds: f64,
}

pub fn detect(scope: &Scope) -> Vec<Facts> {
    scope
        .observed()
        .filter(|o| o.iface.role == Role::Standalone)
        // Open vSwitch switches them (`openvswitch_not_linux_bridge`).
        .filter(|o| !openvswitch_not_linux_bridge::is_ovs(scope.ns.iface(&o.iface.name)))
        .filter_map(|o| {
            let fr = &o.iface.frames;
            let other = fr
                .foreign_unicast
                .saturating_sub(fr.host_ip_wrong_mac.max(fr.stale_mac));
            (other > 0).then(|| Facts {
                interface: o.iface.name.clone(),
                frames: other,
                kernel_drops: kernel_drops(o),
                seconds: scope.input.seconds,
            })
        })
        .collect()
}

pub fn finding(netns: u32, facts: &Facts) -> Finding {
    let name = facts.interface.as_str();
    let mut f = Finding::new(
        FindingId::ForeignUnicastDropped,
        netns,
        name,
        format!(
            "{name} received {} unicast frame(s) for other MACs and other hosts' IPs \
             in {} s; the kernel drops them (OTHERHOST)",
            facts.frames,
            secs(facts.seconds)
        ),
    );
    if let Some(d) = drops_text(&facts.kernel_drops) {
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
    f.weight = facts.frames;
    f.facts = json_object(json!({
        "foreign_unicast": facts.frames,
        "mac_mismatch_drops": facts.kernel_drops.iter().map(|(_, n)| n).sum::<u64>(),
    }));
    f
}
