//! `bridge_mac_from_machine_id` (warning, from `status`): a bridge whose
//! MAC was set by userspace, is no port's, and is exactly the one
//! systemd-udevd (`MACAddressPolicy=persistent`, Debian's default) or
//! systemd-networkd (a `.netdev` without `MACAddress=`) derives from this
//! host's machine ID and the bridge's name (`crate::machine_id`). Every
//! host cloned with the same /etc/machine-id gives its bridge of that name
//! the same MAC; the fleet alert `MacdropBridgeMacOnSeveralNodes` sees it
//! across nodes, this rule on one.
//!
//! It and `bridge_mac_not_pinned` never meet: a MAC systemd set has
//! `addr_assign_type` set, which is what "pinned" means there; this rule
//! says the pin is the same on every clone.

use serde_json::json;

use super::json_object;
use crate::{
    diagnose::finding::{Finding, FindingId},
    mac::Mac,
    machine_id::{Deriver, derived_by},
    status::{HostFacts, IfaceStatus},
    sysfs::{NET_ADDR_SET, addr_assign_name},
};

/// What `status` sees.
pub struct Facts {
    pub bridge: String,
    pub mac: Mac,
    pub deriver: Deriver,
    /// The file the machine ID came from.
    pub source: String,
    pub ports: usize,
}

pub fn detect(i: &IfaceStatus, host: &HostFacts) -> Option<Facts> {
    let ports = &i.bridge.as_ref()?.port_macs;
    let mac = i.link.mac?;
    if i.addr_assign_type != Some(NET_ADDR_SET) || ports.contains(&mac) {
        return None;
    }
    let machine = host.machine_id.as_ref()?;
    Some(Facts {
        bridge: i.link.name.clone(),
        mac,
        deriver: derived_by(&machine.id, &i.link.name, mac)?,
        source: machine.source.display().to_string(),
        ports: ports.len(),
    })
}

pub fn finding(netns: u32, facts: &Facts) -> Finding {
    let Facts {
        bridge: name,
        mac,
        deriver,
        source,
        ports,
    } = facts;
    let program = deriver.as_str();
    let mut f = Finding::new(
        FindingId::BridgeMacFromMachineId,
        netns,
        name,
        format!(
            "{name}'s MAC {mac} is the one {program} derives from this host's machine ID and \
             the name {name}: every host cloned with the same /etc/machine-id gives its bridge \
             {name} the same MAC, and their neighbours see it move between hosts (the fleet \
             alert MacdropBridgeMacOnSeveralNodes confirms it across nodes)"
        ),
    );
    f.evidence.push(format!(
        "{name}: MAC {mac}, addr_assign_type {} (set by userspace), and none of its {} port(s) \
         has it",
        addr_assign_name(NET_ADDR_SET),
        ports,
    ));
    f.evidence.push(format!(
        "{program} derives {mac} for the name {name} from the machine ID in {source} \
         (SipHash-2-4 of the ID and the name, {})",
        match deriver {
            Deriver::Udevd => "MACAddressPolicy=persistent in a .link file: 99-default.link",
            Deriver::Networkd => "a .netdev without MACAddress=",
        }
    ));
    f.remedy.push(match deriver {
        Deriver::Udevd => format!(
            "give {name} a MAC of its own, unique in the fleet: a .link file that sorts before \
             99-default.link, e.g. /etc/systemd/network/10-{name}.link with [Match] \
             OriginalName={name} and [Link] MACAddress=<MAC> (or MACAddressPolicy=none to keep \
             the kernel's random one), then recreate {name}"
        ),
        Deriver::Networkd => format!(
            "give {name} a MAC of its own, unique in the fleet: MACAddress=<MAC> in the [NetDev] \
             section of its .netdev, then recreate {name}"
        ),
    });
    f.remedy.push(
        "on hosts cloned from one image, give each its own machine ID: `rm /etc/machine-id && \
         systemd-machine-id-setup` (and empty /etc/machine-id in the image), then reboot"
            .into(),
    );
    f.facts = json_object(json!({
        "mac": mac.to_string(),
        "addr_assign_type": addr_assign_name(NET_ADDR_SET),
        "derived_by": program,
        "machine_id_source": source,
    }));
    f
}
