//! `openvswitch_not_linux_bridge` (info, from `status`): an Open vSwitch
//! device (the datapath `ovs-system` or a bridge's internal port, kind
//! "openvswitch") or a port of one. OVS forwards by its flow tables, not
//! by a Linux bridge's FDB, so macdrop's FDB checks do not apply, and
//! frames for other MACs on its ports are OVS switching, not drops: the
//! window's foreign-unicast and wrong-MAC rules stay silent on these
//! interfaces (`is_ovs`), and this finding says why. In `diagnose` it
//! adds what the kernel dropped there in the window, by reason: OVS's own
//! drop reasons (`OVS_DROP_*`, Linux >= 6.4, named from the openvswitch
//! module's BTF by `kernel::drop_subsys`) are the evidence on these
//! interfaces, where the FDB's is not.

use serde_json::json;

use super::json_object;
use crate::{
    diagnose::{
        finding::{Finding, FindingId},
        scope::Scope,
    },
    path::OvsRole,
    status::IfaceStatus,
};

pub struct Facts {
    pub interface: String,
    pub role: OvsRole,
    pub master: Option<String>,
}

pub fn detect(i: &IfaceStatus) -> Option<Facts> {
    Some(Facts {
        interface: i.link.name.clone(),
        role: i.path.ovs?,
        master: i.master.clone(),
    })
}

/// What the window adds: the kernel's drops on the interface, by reason,
/// most first.
pub struct Window {
    pub drops: Vec<(String, u64)>,
}

pub fn window(scope: &Scope, facts: &Facts) -> Window {
    let mut drops: Vec<(String, u64)> = scope
        .named(&facts.interface)
        .and_then(|o| o.iface.drops.as_ref())
        .map(|d| {
            d.iter()
                .filter(|(_, n)| **n > 0)
                .map(|(r, n)| (r.clone(), *n))
                .collect()
        })
        .unwrap_or_default();
    drops.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    Window { drops }
}

/// Whether `status` of the interface says it belongs to Open vSwitch.
pub fn is_ovs(i: Option<&IfaceStatus>) -> bool {
    i.is_some_and(|i| i.path.ovs.is_some())
}

pub fn finding(netns: u32, facts: &Facts, window: Option<&Window>) -> Finding {
    let name = facts.interface.as_str();
    let what = match (facts.role, &facts.master) {
        (OvsRole::Port, Some(m)) => format!("{name} is a port of the Open vSwitch datapath {m}"),
        _ => format!("{name} is an Open vSwitch device"),
    };
    let mut f = Finding::new(
        FindingId::OpenvswitchNotLinuxBridge,
        netns,
        name,
        format!(
            "{what}: Open vSwitch forwards by its flow tables, not a Linux bridge's \
             forwarding database, so macdrop's FDB checks do not apply here and frames \
             for other MACs on it are switching, not drops"
        ),
    );
    f.evidence
        .push("IFLA_INFO_KIND \"openvswitch\" (on it or on its master)".into());
    f.remedy.push(
        "check OVS's own view: ovs-appctl fdb/show <bridge>, ovs-ofctl dump-flows \
         <bridge>, ovs-appctl dpctl/show -s (its drop counters)"
            .into(),
    );
    if let Some(w) = window {
        if w.drops.is_empty() {
            f.evidence
                .push("the kernel dropped nothing on it during the window".into());
        } else {
            let list: Vec<String> = w.drops.iter().map(|(r, n)| format!("{r} {n}")).collect();
            f.evidence.push(format!(
                "the kernel dropped on it during the window: {}",
                list.join(", ")
            ));
        }
    }
    f.facts = json_object(json!({
        "role": facts.role.as_str(),
        "master": facts.master,
        "kernel_drops": window.map(|w| w.drops.iter().cloned().collect::<std::collections::BTreeMap<_, _>>()),
    }));
    f
}
