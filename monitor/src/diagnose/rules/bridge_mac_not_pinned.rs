//! `bridge_mac_not_pinned` (warning, from `status`): a bridge whose MAC was
//! not set takes the lowest MAC of its ports and changes it when ports
//! come and go. The window adds the MAC changes it saw.

use serde_json::json;

use super::json_object;
use crate::{
    diagnose::{
        finding::{Finding, FindingId},
        scope::{MacChange, Scope},
        text::{clock, secs},
    },
    mac::Mac,
    status::IfaceStatus,
};

/// What `status` sees.
pub struct Facts {
    pub bridge: String,
    pub mac: Option<Mac>,
}

/// What the window adds.
pub struct Window {
    pub changes: Vec<MacChange>,
    pub seconds: f64,
}

pub fn detect(i: &IfaceStatus) -> Option<Facts> {
    let pinned = i.bridge.as_ref()?.mac_pinned;
    (pinned == Some(false)).then(|| Facts {
        bridge: i.link.name.clone(),
        mac: i.link.mac,
    })
}

pub fn window(scope: &Scope, facts: &Facts) -> Window {
    Window {
        changes: scope.mac_changes(&facts.bridge),
        seconds: scope.input.seconds,
    }
}

pub fn finding(netns: u32, facts: &Facts, window: Option<&Window>) -> Finding {
    let name = &facts.bridge;
    let mut f = Finding::new(
        FindingId::BridgeMacNotPinned,
        netns,
        name,
        format!(
            "{name}'s MAC is not pinned: a bridge takes the lowest MAC of its ports and \
             changes it when ports come and go, leaving peers with stale neighbour entries"
        ),
    );
    f.remedy.push(format!(
        "pin it: ip link set {name} address {} (or set it in the bridge's network \
         configuration)",
        facts
            .mac
            .map(|m| m.to_string())
            .unwrap_or_else(|| "<MAC>".into())
    ));
    let Some(w) = window else {
        return f;
    };
    for c in &w.changes {
        f.evidence.push(format!(
            "it changed during the window: from {} to {} at {}",
            c.old,
            c.new,
            clock(c.ts)
        ));
    }
    if w.changes.is_empty() {
        f.evidence.push(format!(
            "no change during the {} s window; it changes when a port with a lower MAC \
             comes or the port whose MAC it has goes",
            secs(w.seconds)
        ));
    }
    f.weight = w.changes.len() as u64;
    f.facts = json_object(json!({
        "mac": facts.mac.map(|m| m.to_string()),
        "mac_changes": w.changes.len(),
    }));
    f
}
