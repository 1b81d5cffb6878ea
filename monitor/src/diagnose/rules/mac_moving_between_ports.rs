//! `mac_moving_between_ports` (warning): a bridge re-learned one MAC on
//! one port and then another during the window. Two stations behind
//! different ports send with the same source MAC (containers given one
//! fixed MAC, a cloned VM) or a loop brings frames back: frames for that
//! MAC go to whichever port it was seen on last.

use std::time::SystemTime;

use serde_json::json;

use super::json_object;
use crate::{
    diagnose::{
        finding::{Finding, FindingId},
        scope::Scope,
        text::{secs, span},
    },
    mac::Mac,
    topology::Role,
    tracker::EventKind,
};

/// One MAC that moved between a bridge's ports.
pub struct Facts {
    pub bridge: String,
    pub mac: Mac,
    pub vid: u16,
    pub moves: u64,
    /// The ports it was learned on, in the order first seen.
    pub ports: Vec<String>,
    pub first: Option<SystemTime>,
    pub last: Option<SystemTime>,
    pub seconds: f64,
}

pub fn detect(scope: &Scope) -> Vec<Facts> {
    let mut out: Vec<Facts> = Vec::new();
    for bridge in scope.observed().filter(|o| o.iface.role == Role::Bridge) {
        let name = bridge.iface.name.as_str();
        for e in scope.events_of(name) {
            let EventKind::FdbMoved {
                mac,
                vid,
                moves,
                ports,
            } = &e.kind
            else {
                continue;
            };
            let at = out
                .iter()
                .position(|f| f.bridge == name && f.mac == *mac && f.vid == *vid);
            let f = match at {
                Some(i) => &mut out[i],
                None => {
                    out.push(Facts {
                        bridge: name.to_owned(),
                        mac: *mac,
                        vid: *vid,
                        moves: 0,
                        ports: Vec::new(),
                        first: Some(e.ts),
                        last: None,
                        seconds: scope.input.seconds,
                    });
                    out.last_mut().expect("just pushed")
                }
            };
            f.moves += moves;
            f.last = Some(e.ts);
            for p in ports {
                if !f.ports.contains(p) {
                    f.ports.push(p.clone());
                }
            }
        }
    }
    out
}

pub fn finding(netns: u32, facts: &Facts) -> Finding {
    let Facts {
        bridge, mac, vid, ..
    } = facts;
    let ports = facts.ports.join(", ");
    let on_vlan = if *vid == 0 {
        String::new()
    } else {
        format!(" on VLAN {vid}")
    };
    let mut f = Finding::new(
        FindingId::MacMovingBetweenPorts,
        netns,
        bridge,
        format!(
            "{bridge} keeps re-learning {mac}{on_vlan} on another port ({ports}): two stations \
             use the same MAC (containers given one fixed MAC, a cloned VM) or a loop brings \
             frames back, and frames for {mac} go to whichever port it was seen on last"
        ),
    );
    f.evidence.push(format!(
        "{bridge} moved its forwarding entry for {mac}{on_vlan} between ports {} time(s) in \
         the {} s window, {}",
        facts.moves,
        secs(facts.seconds),
        span(facts.first, facts.last)
    ));
    f.evidence.push(format!(
        "ports it was learned on, in the order seen: {ports}"
    ));
    f.remedy.push(format!(
        "find the stations sending as {mac}: on each of {ports}, `tcpdump -c 5 -eni <port> \
         ether src {mac}`, and what owns each port (`macdrop status` names containers)"
    ));
    f.remedy.push(format!(
        "give each its own MAC (drop a fixed `--mac-address`/`mac_address`, regenerate a \
         cloned VM's MAC); if the same station shows up on two ports, a loop: enable STP \
         (`ip link set {bridge} type bridge stp_state 1`) or remove the extra link"
    ));
    f.weight = facts.moves;
    f.facts = json_object(json!({
        "mac": mac.to_string(),
        "vlan": vid,
        "moves": facts.moves,
        "ports": facts.ports,
    }));
    f
}
