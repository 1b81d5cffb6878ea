//! `mac_changed_under_hypervisor` (warning, from `status`): a NIC whose
//! MAC is not the one its (virtual) hardware came with, on a hypervisor
//! whose virtual switch can reject MAC changes (VMware's "MAC address
//! changes: reject", Hyper-V with MAC spoofing off). Such a switch stops
//! delivering unicast for the new MAC and nothing in this kernel counts
//! it. The hypervisor comes from DMI, or from the permanent MAC's OUI.
//! The window adds what the NIC received meanwhile.

use serde_json::json;

use super::json_object;
use crate::{
    diagnose::{
        finding::{Finding, FindingId},
        scope::{Scope, drops_total},
        text::secs,
    },
    hypervisor::{Dmi, rejects_mac_changes},
    mac::{Mac, mac_vendor},
    status::IfaceStatus,
};

/// What `status` sees.
pub struct Facts {
    pub interface: String,
    pub mac: Mac,
    pub perm_mac: Mac,
    pub hypervisor: &'static str,
    /// Where the hypervisor was told from: DMI's strings, or the OUI.
    pub from_dmi: Option<String>,
}

/// What the window adds: frames the NIC received.
pub struct Window {
    pub own_unicast: u64,
    pub broadcast: u64,
    pub kernel_drops: u64,
    pub seconds: f64,
}

pub fn detect(i: &IfaceStatus, dmi: &Dmi) -> Option<Facts> {
    let (mac, perm_mac) = (i.link.mac?, i.link.perm_mac?);
    if mac == perm_mac {
        return None;
    }
    let (hypervisor, from_dmi) = match dmi.hypervisor() {
        Some(h) => (h, Some(dmi.describe())),
        None => (mac_vendor(perm_mac)?, None),
    };
    rejects_mac_changes(hypervisor).then(|| Facts {
        interface: i.link.name.clone(),
        mac,
        perm_mac,
        hypervisor,
        from_dmi,
    })
}

pub fn window(scope: &Scope, facts: &Facts) -> Option<Window> {
    let o = scope.named(&facts.interface)?;
    Some(Window {
        own_unicast: o.iface.frames.own,
        broadcast: o.iface.frames.broadcast,
        kernel_drops: drops_total(o),
        seconds: scope.input.seconds,
    })
}

pub fn finding(netns: u32, facts: &Facts, window: Option<&Window>) -> Finding {
    let Facts {
        interface: name,
        mac,
        perm_mac,
        hypervisor,
        ..
    } = facts;
    let mut f = Finding::new(
        FindingId::MacChangedUnderHypervisor,
        netns,
        name,
        format!(
            "{name}'s MAC {mac} is not its permanent MAC {perm_mac}, on {hypervisor}: if the \
             virtual switch rejects MAC address changes it delivers no unicast for {mac}, \
             and this kernel counts no drop"
        ),
    );
    f.evidence.push(format!(
        "{name}: current MAC {mac}, permanent MAC {perm_mac} (IFLA_PERM_ADDRESS)"
    ));
    f.evidence.push(match &facts.from_dmi {
        Some(dmi) => format!("the host runs on {hypervisor} ({dmi})"),
        None => format!("the permanent MAC's OUI is {hypervisor}'s"),
    });
    f.remedy.push(format!(
        "give {name} its permanent MAC back: `ip link set {name} address {perm_mac}` (and \
         remove what set it: a bond's fail_over_mac=none, a MACAddress= in the network \
         configuration); or allow MAC changes on the hypervisor ({})",
        match *hypervisor {
            "Hyper-V" =>
                "Hyper-V: the VM's network adapter, Advanced Features, Enable MAC \
                          address spoofing",
            _ => "VMware: the port group's Security policy, MAC address changes: Accept",
        }
    ));
    let mut fact_map = json!({
        "mac": mac.to_string(),
        "perm_mac": perm_mac.to_string(),
        "hypervisor": hypervisor,
        "hypervisor_from": if facts.from_dmi.is_some() { "dmi" } else { "oui" },
    });
    if let Some(w) = window {
        f.evidence.push(format!(
            "in the {} s window {name} received {} unicast frame(s) for its own MAC and {} \
             broadcast(s); the kernel dropped {} for a MAC mismatch{}",
            secs(w.seconds),
            w.own_unicast,
            w.broadcast,
            w.kernel_drops,
            if w.own_unicast == 0 && w.broadcast > 0 {
                ": broadcasts arrive and unicast does not, what a rejecting switch does"
            } else {
                ""
            }
        ));
        fact_map["own_unicast"] = json!(w.own_unicast);
        fact_map["broadcast"] = json!(w.broadcast);
        fact_map["mac_mismatch_drops"] = json!(w.kernel_drops);
        f.weight = w.broadcast.saturating_sub(w.own_unicast);
    }
    f.facts = json_object(fact_map);
    f
}
