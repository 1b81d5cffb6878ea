//! `bridge_mac_not_in_fdb` (error, from `status`): the README's incident.
//! A bridge's own MAC is not a local entry of its FDB, so the bridge
//! floods frames addressed to it instead of delivering them. The window
//! adds the bridge's local FDB entries, the frames for this host's IP
//! counted on its ports, the kernel's confirmed drops, and whether the
//! bridge is promiscuous (which is what makes traffic work).

use std::net::IpAddr;

use serde_json::json;

use super::json_object;
use crate::{
    diagnose::{
        finding::{Finding, FindingId},
        scope::{EntryCount, Scope, drops_total},
        text::{list, secs, span, with_drops},
    },
    mac::Mac,
    status::IfaceStatus,
};

/// What `status` sees.
pub struct Facts {
    pub bridge: String,
    pub mac: Mac,
}

/// What the window adds.
pub struct Window {
    pub local_fdb: Vec<Mac>,
    pub host_ips: Vec<IpAddr>,
    /// The ports (or the watched interface) frames for the bridge's MAC
    /// arrived on; only those with frames.
    pub per_entry: Vec<EntryCount>,
    pub kernel_drops: u64,
    pub seconds: f64,
    /// Who holds promiscuous mode, when the bridge is promiscuous now.
    pub promiscuous_now: Option<String>,
    /// Frames for this host's IP with a MAC the bridge does not own that it
    /// passed up while promiscuous.
    pub passed_up: u64,
}

impl Window {
    fn frames(&self) -> u64 {
        self.per_entry.iter().map(|e| e.frames).sum()
    }
}

pub fn detect(i: &IfaceStatus) -> Option<Facts> {
    let bridge = i.bridge.as_ref()?;
    let mac = i.link.mac?;
    (!bridge.own_mac_in_fdb).then(|| Facts {
        bridge: i.link.name.clone(),
        mac,
    })
}

pub fn window(scope: &Scope, facts: &Facts) -> Window {
    let bridge = facts.bridge.as_str();
    let st = scope.ns.iface(bridge);
    let mut per_entry = Vec::new();
    let mut kernel_drops = 0;
    for p in scope.entries(bridge) {
        // With per-flow records, only the frames for the bridge's MAC.
        let n = match scope.input.flows {
            Some(flows) => flows
                .iter()
                .filter(|fl| {
                    fl.netns == scope.ns.inode
                        && fl.interface == p.iface.name
                        && fl.dst_mac == facts.mac
                })
                .map(|fl| fl.frames)
                .sum(),
            None => p.iface.frames.host_ip_wrong_mac,
        };
        kernel_drops += drops_total(p);
        if n > 0 {
            per_entry.push(EntryCount::new(p, n, p.first_wrong, p.last_wrong));
        }
    }
    Window {
        local_fdb: st
            .and_then(|s| s.bridge.as_ref())
            .map(|b| b.local_fdb.clone())
            .unwrap_or_default(),
        host_ips: scope.ns.host_ips(bridge),
        per_entry,
        kernel_drops,
        seconds: scope.input.seconds,
        promiscuous_now: st.filter(|s| s.link.promiscuity > 0).map(|s| {
            s.promisc_holders
                .clone()
                .unwrap_or_else(|| "promiscuity > 0".into())
        }),
        passed_up: scope
            .named(bridge)
            .map_or(0, |b| b.while_promisc.host_ip_wrong_mac),
    }
}

pub fn finding(netns: u32, facts: &Facts, window: Option<&Window>) -> Finding {
    let Facts { bridge, mac } = facts;
    let mut f = Finding::new(
        FindingId::BridgeMacNotInFdb,
        netns,
        bridge,
        format!(
            "{bridge}'s own MAC {mac} is not a local entry in its forwarding database: the \
             bridge floods frames addressed to it instead of delivering them, so traffic to \
             this host through {bridge} works only while {bridge} is promiscuous (e.g. while \
             tcpdump runs)"
        ),
    );
    f.remedy
        .push(format!("bridge fdb add {mac} dev {bridge} self local"));
    let Some(w) = window else {
        return f;
    };
    let fdb = &w.local_fdb;
    f.evidence.push(format!(
        "{bridge}'s forwarding database has {} local entr{} ({}); its own MAC {mac} is \
         not one of them",
        fdb.len(),
        if fdb.len() == 1 { "y" } else { "ies" },
        if fdb.is_empty() {
            "none".into()
        } else {
            list(fdb)
        },
    ));
    for e in &w.per_entry {
        f.evidence.push(with_drops(
            format!(
                "{}: {} frame(s) for this host's IP ({}) with a MAC {bridge} does not deliver, {}",
                e.who(),
                e.frames,
                list(&w.host_ips),
                span(e.first, e.last)
            ),
            &e.kernel_drops,
        ));
    }
    let total = w.frames();
    if total == 0 {
        f.evidence.push(format!(
            "no frame for this host's IP arrived through {bridge} in the {} s window; traffic \
             to this host through {bridge} fails as soon as it is tried",
            secs(w.seconds)
        ));
    }
    if let Some(who) = &w.promiscuous_now {
        f.evidence.push(format!(
            "{bridge} is promiscuous now ({who}): frames for {mac} reach this host only \
             because of that, and are flooded to the ports again when it ends"
        ));
    }
    if w.passed_up > 0 {
        f.evidence.push(format!(
            "while promiscuous, {bridge} passed {} frame(s) for this host's IP with a \
             MAC it does not own up to the host",
            w.passed_up
        ));
    }
    f.remedy.push(format!(
        "check: `bridge fdb show dev {bridge} | grep {mac}` lists it as permanent, and \
         `macdrop diagnose --bridge {bridge}` no longer reports this; then find what deleted \
         the entry (a script or network manager running `bridge fdb del`) so it does not \
         happen again"
    ));
    f.weight = total;
    f.facts = json_object(json!({
        "bridge": bridge,
        "mac": mac.to_string(),
        "local_fdb": fdb.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "host_ips": w.host_ips.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "host_ip_wrong_mac": total,
        "per_interface": w.per_entry.iter().map(|e| (e.interface.clone(), json!(e.frames))).collect::<serde_json::Map<_, _>>(),
        "mac_mismatch_drops": w.kernel_drops,
        "bridge_promiscuous": w.promiscuous_now.is_some(),
        "passed_up_while_promiscuous": w.passed_up,
    }));
    f
}
