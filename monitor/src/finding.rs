//! The one finding model, for `status` and `diagnose` alike: which finding
//! ([`FindingId`]), where, and what the rule that found it wrote (message,
//! evidence, facts for programs, remedy). Renderers read only this.

use serde_json::{Map, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
    Info,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }
}

/// Every finding there is. A new one is a variant here (the compiler then
/// asks for its name and severity), a module of `rules/` called from
/// `rules::analyse`, and its section in docs/diagnose.md (docs/design.md,
/// "Files a new finding touches").
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum FindingId {
    /// A bridge's own MAC is not a local FDB entry (from `status`).
    BridgeMacNotInFdb,
    /// Frames to a MAC an interface had before a change in the window.
    StaleMacAfterMacChange,
    /// Frames for this host's IP and MAC tagged with a VLAN nothing takes.
    HostIpWrongVlan,
    /// Frames for this host's IP to another bridge port's MAC.
    HostIpToPortMac,
    /// Frames for this host's IP to a MAC no local interface owns.
    HostIpWrongMacUnexplained,
    /// A bridge or standalone interface is promiscuous (from `status`).
    InterfacePromiscuous,
    /// A bridge's MAC follows its ports (from `status`).
    BridgeMacNotPinned,
    /// A standalone interface received unicast for other hosts.
    ForeignUnicastDropped,
    // MAC identity (issue 18).
    /// A NIC's MAC is not its permanent one, on a hypervisor whose switch
    /// can reject that (from `status`).
    MacChangedUnderHypervisor,
    /// A bridge re-learned one MAC on different ports in the window.
    MacMovingBetweenPorts,
    /// A bridge's MAC is the one systemd derives from this host's machine
    /// ID and its name: the same on every clone (from `status`).
    BridgeMacFromMachineId,
    /// A bond changed its MAC in the window (a failover).
    BondFailoverMacChange,
    // The frame's path beyond the MAC (issue 18): netfilter, VLAN
    // filtering, macvlan, Open vSwitch.
    /// Bridged frames dropped by an iptables/nft forward chain through
    /// br_netfilter.
    BrNetfilterForwardDrop,
    /// A VLAN-filtering bridge drops untagged frames or keeps the host out
    /// of its ports' VLANs (from `status`).
    BridgeVlanFilteringGap,
    /// The host cannot reach its macvlan children through their parent
    /// (from `status`).
    MacvlanHostIsolation,
    /// Open vSwitch: the Linux FDB checks do not apply (from `status`).
    OpenvswitchNotLinuxBridge,
    /// An uplink sent frames from its children's MACs and received no
    /// unicast for them: a switch rejecting forged transmits.
    ForgedTransmitsRejected,
}

impl FindingId {
    /// The stable name, in JSON and docs/diagnose.md: never change one.
    pub fn as_str(self) -> &'static str {
        match self {
            FindingId::BridgeMacNotInFdb => "bridge_mac_not_in_fdb",
            FindingId::StaleMacAfterMacChange => "stale_mac_after_mac_change",
            FindingId::HostIpWrongVlan => "host_ip_wrong_vlan",
            FindingId::HostIpToPortMac => "host_ip_to_port_mac",
            FindingId::HostIpWrongMacUnexplained => "host_ip_wrong_mac_unexplained",
            FindingId::InterfacePromiscuous => "interface_promiscuous",
            FindingId::BridgeMacNotPinned => "bridge_mac_not_pinned",
            FindingId::ForeignUnicastDropped => "foreign_unicast_dropped",
            FindingId::MacChangedUnderHypervisor => "mac_changed_under_hypervisor",
            FindingId::MacMovingBetweenPorts => "mac_moving_between_ports",
            FindingId::BridgeMacFromMachineId => "bridge_mac_from_machine_id",
            FindingId::BondFailoverMacChange => "bond_failover_mac_change",
            FindingId::BrNetfilterForwardDrop => "br_netfilter_forward_drop",
            FindingId::BridgeVlanFilteringGap => "bridge_vlan_filtering_gap",
            FindingId::MacvlanHostIsolation => "macvlan_host_isolation",
            FindingId::OpenvswitchNotLinuxBridge => "openvswitch_not_linux_bridge",
            FindingId::ForgedTransmitsRejected => "forged_transmits_rejected",
        }
    }

    pub fn severity(self) -> Severity {
        match self {
            FindingId::BridgeMacNotInFdb
            | FindingId::StaleMacAfterMacChange
            | FindingId::HostIpWrongVlan
            | FindingId::HostIpToPortMac
            | FindingId::HostIpWrongMacUnexplained => Severity::Error,
            FindingId::InterfacePromiscuous | FindingId::BridgeMacNotPinned => Severity::Warning,
            FindingId::ForeignUnicastDropped => Severity::Info,
            FindingId::MacChangedUnderHypervisor
            | FindingId::MacMovingBetweenPorts
            | FindingId::BridgeMacFromMachineId
            | FindingId::BondFailoverMacChange => Severity::Warning,
            FindingId::BrNetfilterForwardDrop | FindingId::ForgedTransmitsRejected => {
                Severity::Error
            }
            FindingId::BridgeVlanFilteringGap => Severity::Warning,
            FindingId::MacvlanHostIsolation | FindingId::OpenvswitchNotLinuxBridge => {
                Severity::Info
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Finding {
    pub id: FindingId,
    /// Where it is reported: a bridge, a standalone interface, or a port
    /// watched without its bridge.
    pub interface: String,
    pub netns: u32,
    /// None from `status`, which looks at one namespace.
    pub netns_name: Option<String>,
    pub message: String,
    pub evidence: Vec<String>,
    /// The evidence's numbers, MACs and times, for programs.
    pub facts: Map<String, Value>,
    /// The command first. `status` gives exactly one.
    pub remedy: Vec<String>,
    /// Ranks findings of the same severity: frames involved, mostly.
    pub weight: u64,
}

impl Finding {
    /// A finding with its message and nothing else yet.
    pub fn new(id: FindingId, netns: u32, interface: &str, message: String) -> Self {
        Finding {
            id,
            interface: interface.to_owned(),
            netns,
            netns_name: None,
            message,
            evidence: Vec::new(),
            facts: Map::new(),
            remedy: Vec::new(),
            weight: 0,
        }
    }

    pub fn severity(&self) -> Severity {
        self.id.severity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names are an interface (JSON, docs/diagnose.md, scripts that
    /// match on them): pinned here, byte for byte.
    #[test]
    fn names_are_stable() {
        let all = [
            FindingId::BridgeMacNotInFdb,
            FindingId::StaleMacAfterMacChange,
            FindingId::HostIpWrongVlan,
            FindingId::HostIpToPortMac,
            FindingId::HostIpWrongMacUnexplained,
            FindingId::InterfacePromiscuous,
            FindingId::BridgeMacNotPinned,
            FindingId::ForeignUnicastDropped,
            FindingId::MacChangedUnderHypervisor,
            FindingId::MacMovingBetweenPorts,
            FindingId::BridgeMacFromMachineId,
            FindingId::BondFailoverMacChange,
            FindingId::BrNetfilterForwardDrop,
            FindingId::BridgeVlanFilteringGap,
            FindingId::MacvlanHostIsolation,
            FindingId::OpenvswitchNotLinuxBridge,
            FindingId::ForgedTransmitsRejected,
        ];
        let names: Vec<(&str, &str)> = all
            .iter()
            .map(|id| (id.as_str(), id.severity().as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("bridge_mac_not_in_fdb", "error"),
                ("stale_mac_after_mac_change", "error"),
                ("host_ip_wrong_vlan", "error"),
                ("host_ip_to_port_mac", "error"),
                ("host_ip_wrong_mac_unexplained", "error"),
                ("interface_promiscuous", "warning"),
                ("bridge_mac_not_pinned", "warning"),
                ("foreign_unicast_dropped", "info"),
                ("mac_changed_under_hypervisor", "warning"),
                ("mac_moving_between_ports", "warning"),
                ("bridge_mac_from_machine_id", "warning"),
                ("bond_failover_mac_change", "warning"),
                ("br_netfilter_forward_drop", "error"),
                ("bridge_vlan_filtering_gap", "warning"),
                ("macvlan_host_isolation", "info"),
                ("openvswitch_not_linux_bridge", "info"),
                ("forged_transmits_rejected", "error"),
            ]
        );
    }
}
