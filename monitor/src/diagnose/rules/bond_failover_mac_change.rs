//! `bond_failover_mac_change` (warning): a bond changed its MAC during the
//! window. With `fail_over_mac=active` a bond takes the MAC of whichever
//! slave is active, so every failover gives this host another MAC: peers
//! and switches keep sending to the old one, to the slave that is now
//! the backup, where no protocol takes the frames (its `rx_nohandler`).

use serde_json::json;

use super::{json_object, stale_mac::Cause};
use crate::{
    diagnose::{
        finding::{Finding, FindingId},
        scope::{MacChange, Scope},
    },
    mac::Mac,
};

/// One slave as the rule reports it.
pub struct Slave {
    pub name: String,
    pub mac: Option<Mac>,
    pub perm_mac: Option<Mac>,
    /// `rx_nohandler` since boot (the kernel keeps no other).
    pub rx_nohandler: Option<u64>,
}

pub struct Facts {
    pub bond: String,
    pub changes: Vec<MacChange>,
    pub slaves: Vec<Slave>,
    /// The slave whose MAC the bond took last, if one has it.
    pub took_from: Option<String>,
}

pub fn detect(scope: &Scope) -> Vec<Facts> {
    scope
        .ns
        .status
        .interfaces
        .iter()
        .filter(|i| i.link.kind.as_deref() == Some("bond"))
        .filter_map(|bond| {
            let name = bond.link.name.as_str();
            let changes = scope.mac_changes(name);
            let last = changes.last()?;
            let enslaved = scope.ns.enslaved(name);
            let slaves: Vec<Slave> = enslaved
                .iter()
                .map(|i| Slave {
                    name: i.link.name.clone(),
                    mac: i.link.mac,
                    perm_mac: i.link.perm_mac,
                    rx_nohandler: i.link.rx_nohandler,
                })
                .collect();
            let took_from = match Cause::of(Some("bond"), None, last.new, &enslaved) {
                Cause::BondTookSlaveMac { slave } => Some(slave),
                _ => None,
            };
            Some(Facts {
                bond: name.to_owned(),
                changes,
                slaves,
                took_from,
            })
        })
        .collect()
}

pub fn finding(netns: u32, facts: &Facts) -> Finding {
    let bond = facts.bond.as_str();
    let mut f = Finding::new(
        FindingId::BondFailoverMacChange,
        netns,
        bond,
        format!(
            "bond {bond} changed its MAC during the window{}: peers and switches keep sending \
             to the old MAC, towards the slave that is now the backup, until they relearn",
            match &facts.took_from {
                Some(s) => format!(" (it took {s}'s: a failover with fail_over_mac=active)"),
                None => String::new(),
            }
        ),
    );
    for c in &facts.changes {
        f.evidence.push(c.sentence(bond));
    }
    let text = |m: Option<Mac>| m.map_or_else(|| "-".to_owned(), |m| m.to_string());
    for s in &facts.slaves {
        f.evidence.push(format!(
            "slave {}: MAC {}, permanent MAC {}, rx_nohandler {} since boot{}",
            s.name,
            text(s.mac),
            text(s.perm_mac),
            s.rx_nohandler
                .map_or_else(|| "-".to_owned(), |n| n.to_string()),
            if s.rx_nohandler.unwrap_or(0) > 0 && facts.took_from.as_ref() != Some(&s.name) {
                " (frames no protocol took: what a backup slave receives when traffic still \
                 comes its way)"
            } else {
                ""
            }
        ));
    }
    f.remedy.push(format!(
        "announce the new MAC at once: `arping -U -c 3 -I {bond} <IP>` (the bonding driver \
         does so on failover with num_grat_arp/num_unsol_na > 0: `ip -d link show {bond}`)"
    ));
    f.remedy.push(format!(
        "keep one MAC across failovers: `fail_over_mac=none` (the default: every slave takes \
         the bond's MAC), unless the hypervisor rejects MAC changes \
         (mac_changed_under_hypervisor); then pin {bond}'s MAC in its configuration"
    ));
    f.weight = facts.changes.len() as u64;
    f.facts = json_object(json!({
        "mac_changes": facts.changes.len(),
        "took_from": facts.took_from,
        "slaves": facts.slaves.iter().map(|s| json!({
            "name": s.name,
            "mac": s.mac.map(|m| m.to_string()),
            "perm_mac": s.perm_mac.map(|m| m.to_string()),
            "rx_nohandler": s.rx_nohandler,
        })).collect::<Vec<_>>(),
    }));
    f
}
