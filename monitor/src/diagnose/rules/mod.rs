//! The rules: from what the window saw and what `status` knows, the
//! findings. Each rule is a module that first computes its facts (a typed
//! struct, from plain data) and then, separately, turns them into a
//! [`Finding`]: message, evidence, facts for programs, remedy. Pure
//! functions, so every rule is unit-tested without a kernel.
//!
//! Most severe first: `bridge_mac_not_in_fdb`, `stale_mac_after_mac_change`,
//! `host_ip_wrong_vlan` and `host_ip_to_port_mac`,
//! `host_ip_wrong_mac_unexplained`, `interface_promiscuous`,
//! `bridge_mac_not_pinned`, `foreign_unicast_dropped` (docs/diagnose.md);
//! of a MAC's identity: `mac_changed_under_hypervisor`,
//! `bridge_mac_from_machine_id`, `mac_moving_between_ports`,
//! `bond_failover_mac_change`;
//! of the frame's path beyond the MAC: `br_netfilter_forward_drop`,
//! `bridge_vlan_filtering_gap`, `macvlan_host_isolation`,
//! `openvswitch_not_linux_bridge`, `forged_transmits_rejected` (from the
//! egress source-MAC counts of uplinks). Eight of them `status` finds from one
//! interface alone; `diagnose` adds what its window saw to those.

pub mod bridge_mac_not_in_fdb;
pub mod bridge_mac_not_pinned;
pub mod foreign_unicast_dropped;
pub mod host_ip_wrong_mac_unexplained;
pub mod interface_promiscuous;
// MAC identity (issue 18).
pub mod bond_failover_mac_change;
pub mod bridge_mac_from_machine_id;
pub mod mac_changed_under_hypervisor;
pub mod mac_moving_between_ports;
pub mod own_mac_not_delivered;
pub mod stale_mac;
// The frame's path beyond the MAC (issue 18).
pub mod br_netfilter_forward_drop;
pub mod bridge_vlan_filtering_gap;
pub mod forged_transmits_rejected;
pub mod macvlan_host_isolation;
pub mod openvswitch_not_linux_bridge;
#[cfg(test)]
mod path_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_identity;
#[cfg(test)]
mod tests_machine_id;

use serde_json::{Map, Value};

use super::{finding::Finding, input::Input, scope::Scope};
use crate::status::{HostFacts, IfaceStatus, Status};

/// `status`: the facts of its interfaces and the findings its rules see
/// in them, most severe first.
pub fn status(interfaces: Vec<IfaceStatus>, host: HostFacts) -> Status {
    let mut findings: Vec<Finding> = interfaces
        .iter()
        .flat_map(|i| status_findings(i.netns, i, &host))
        .collect();
    findings.sort_by(|a, b| (a.severity(), &a.interface).cmp(&(b.severity(), &b.interface)));
    Status {
        interfaces,
        findings,
        host,
    }
}

/// What `status` finds on one interface, without a window.
pub fn status_findings(netns: u32, i: &IfaceStatus, host: &HostFacts) -> Vec<Finding> {
    let mut out = Vec::new();
    if let Some(facts) = bridge_mac_not_in_fdb::detect(i) {
        out.push(bridge_mac_not_in_fdb::finding(netns, &facts, None));
    }
    if let Some(facts) = bridge_mac_not_pinned::detect(i) {
        out.push(bridge_mac_not_pinned::finding(netns, &facts, None));
    }
    if let Some(facts) = interface_promiscuous::detect(i) {
        out.push(interface_promiscuous::finding(netns, &facts, None));
    }
    // MAC identity (issue 18).
    if let Some(facts) = mac_changed_under_hypervisor::detect(i, &host.dmi) {
        out.push(mac_changed_under_hypervisor::finding(netns, &facts, None));
    }
    if let Some(facts) = bridge_mac_from_machine_id::detect(i, host) {
        out.push(bridge_mac_from_machine_id::finding(netns, &facts));
    }
    out.extend(path_status_findings(netns, i, None));
    out
}

/// The path rules `status` runs on one interface (issue 18); `scope`
/// adds the window's frames where a rule has any.
fn path_status_findings(netns: u32, i: &IfaceStatus, scope: Option<&Scope>) -> Vec<Finding> {
    let mut out = Vec::new();
    if let Some(facts) = bridge_vlan_filtering_gap::detect(i) {
        let window = scope.map(|s| bridge_vlan_filtering_gap::window(s, &facts));
        out.push(bridge_vlan_filtering_gap::finding(
            netns,
            &facts,
            window.as_ref(),
        ));
    }
    if let Some(facts) = macvlan_host_isolation::detect(i) {
        out.push(macvlan_host_isolation::finding(netns, &facts));
    }
    if let Some(facts) = openvswitch_not_linux_bridge::detect(i) {
        let window = scope.map(|s| openvswitch_not_linux_bridge::window(s, &facts));
        out.push(openvswitch_not_linux_bridge::finding(
            netns,
            &facts,
            window.as_ref(),
        ));
    }
    out
}

/// Every finding, most severe first, then by weight.
pub fn analyse(input: &Input) -> Vec<Finding> {
    let mut out = Vec::new();
    for ns in input.namespaces {
        let scope = Scope { input, ns };
        let netns = ns.inode;
        let mut found = Vec::new();
        // `status`'s rules, with what the window saw.
        for i in &ns.status.interfaces {
            if let Some(facts) = bridge_mac_not_in_fdb::detect(i) {
                let window = bridge_mac_not_in_fdb::window(&scope, &facts);
                found.push(bridge_mac_not_in_fdb::finding(netns, &facts, Some(&window)));
            }
            if let Some(facts) = bridge_mac_not_pinned::detect(i) {
                let window = bridge_mac_not_pinned::window(&scope, &facts);
                found.push(bridge_mac_not_pinned::finding(netns, &facts, Some(&window)));
            }
            if let Some(facts) = interface_promiscuous::detect(i) {
                let window = interface_promiscuous::window(&scope, &facts);
                found.push(interface_promiscuous::finding(netns, &facts, Some(&window)));
            }
            // MAC identity (issue 18).
            if let Some(facts) = mac_changed_under_hypervisor::detect(i, &ns.status.host.dmi) {
                let window = mac_changed_under_hypervisor::window(&scope, &facts);
                found.push(mac_changed_under_hypervisor::finding(
                    netns,
                    &facts,
                    window.as_ref(),
                ));
            }
            if let Some(facts) = bridge_mac_from_machine_id::detect(i, &ns.status.host) {
                found.push(bridge_mac_from_machine_id::finding(netns, &facts));
            }
            found.extend(path_status_findings(netns, i, Some(&scope)));
        }
        // The window's own.
        for facts in stale_mac::detect(&scope) {
            found.push(stale_mac::finding(netns, &facts));
        }
        for facts in own_mac_not_delivered::detect(&scope) {
            found.push(own_mac_not_delivered::finding(netns, &facts));
        }
        for facts in host_ip_wrong_mac_unexplained::detect(&scope) {
            found.push(host_ip_wrong_mac_unexplained::finding(netns, &facts));
        }
        for facts in foreign_unicast_dropped::detect(&scope) {
            found.push(foreign_unicast_dropped::finding(netns, &facts));
        }
        // MAC identity (issue 18).
        for facts in mac_moving_between_ports::detect(&scope) {
            found.push(mac_moving_between_ports::finding(netns, &facts));
        }
        for facts in bond_failover_mac_change::detect(&scope) {
            found.push(bond_failover_mac_change::finding(netns, &facts));
        }
        for facts in br_netfilter_forward_drop::detect(&scope) {
            found.push(br_netfilter_forward_drop::finding(netns, &facts));
        }
        for facts in forged_transmits_rejected::detect(&scope) {
            found.push(forged_transmits_rejected::finding(netns, &facts));
        }
        out.extend(found.into_iter().map(|f| Finding {
            netns_name: ns.name.clone(),
            ..f
        }));
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

/// The `facts` of a finding, from a `json!` object.
fn json_object(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}
