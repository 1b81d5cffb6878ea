//! `openvswitch_not_linux_bridge` (info, from `status`): an Open vSwitch
//! device (the datapath `ovs-system` or a bridge's internal port, kind
//! "openvswitch") or a port of one. OVS forwards by its flow tables, not
//! by a Linux bridge's FDB, so macdrop's FDB checks do not apply, and
//! frames for other MACs on its ports are OVS switching, not drops: the
//! window's foreign-unicast and wrong-MAC rules stay silent on these
//! interfaces (`is_ovs`), and this finding says why.

use serde_json::json;

use super::json_object;
use crate::{
    diagnose::finding::{Finding, FindingId},
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

/// Whether `status` of the interface says it belongs to Open vSwitch.
pub fn is_ovs(i: Option<&IfaceStatus>) -> bool {
    i.is_some_and(|i| i.path.ovs.is_some())
}

pub fn finding(netns: u32, facts: &Facts) -> Finding {
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
    f.facts = json_object(json!({
        "role": facts.role.as_str(),
        "master": facts.master,
    }));
    f
}
