//! `br_netfilter_forward_drop` (error, from the window): frames bridged
//! between two ports of a bridge were dropped by netfilter (the kernel's
//! NETFILTER_DROP on the port they were leaving through) while
//! br_netfilter hands bridged IP frames to iptables/nft
//! (`bridge-nf-call-iptables`/`-ip6tables` = 1): a FORWARD chain whose
//! policy is drop (Docker's, a host firewall's) applies to traffic that
//! never leaves the bridge.

use std::collections::BTreeMap;

use serde_json::json;

use super::json_object;
use crate::{
    diagnose::{
        finding::{Finding, FindingId},
        scope::Scope,
        text::secs,
    },
    netfilter::DropChain,
    topology::Role,
};

/// The kernel's drop reason for a netfilter verdict of drop.
pub const NETFILTER_DROP: &str = "NETFILTER_DROP";

pub struct Facts {
    pub bridge: String,
    /// NETFILTER_DROP per port, those with drops only.
    pub per_port: Vec<(String, u64)>,
    pub call_iptables: Option<bool>,
    pub call_ip6tables: Option<bool>,
    pub drop_chains: Result<Vec<DropChain>, String>,
    pub seconds: f64,
}

impl Facts {
    fn total(&self) -> u64 {
        self.per_port.iter().map(|(_, n)| n).sum()
    }
}

/// NETFILTER_DROP on `o` in the window.
pub fn netfilter_drops(o: &crate::diagnose::timeline::Observed) -> u64 {
    o.iface
        .drops
        .as_ref()
        .and_then(|d| d.get(NETFILTER_DROP))
        .copied()
        .unwrap_or(0)
}

pub fn detect(scope: &Scope) -> Vec<Facts> {
    let Some(nf) = scope
        .ns
        .netfilter
        .as_ref()
        .filter(|n| n.bridged_ip_filtered())
    else {
        return Vec::new();
    };
    let mut per_bridge: BTreeMap<&str, Vec<(String, u64)>> = BTreeMap::new();
    for o in scope.observed() {
        let (Role::Port, Some(bridge)) = (o.iface.role, o.iface.master.as_deref()) else {
            continue;
        };
        let n = netfilter_drops(o);
        if n > 0 {
            per_bridge
                .entry(bridge)
                .or_default()
                .push((o.iface.name.clone(), n));
        }
    }
    per_bridge
        .into_iter()
        .map(|(bridge, per_port)| Facts {
            bridge: bridge.to_owned(),
            per_port,
            call_iptables: nf.call_iptables,
            call_ip6tables: nf.call_ip6tables,
            drop_chains: nf.drop_chains.clone(),
            seconds: scope.input.seconds,
        })
        .collect()
}

fn switch(v: Option<bool>) -> &'static str {
    match v {
        Some(true) => "1",
        Some(false) => "0",
        None => "absent",
    }
}

pub fn finding(netns: u32, facts: &Facts) -> Finding {
    let bridge = facts.bridge.as_str();
    let total = facts.total();
    let chains: &[DropChain] = facts.drop_chains.as_deref().unwrap_or(&[]);
    let mut f = Finding::new(
        FindingId::BrNetfilterForwardDrop,
        netns,
        bridge,
        format!(
            "netfilter dropped {total} frame(s) bridged through {bridge} in {} s: \
             br_netfilter hands bridged IP frames to iptables/nft, whose forward \
             chain{} drop{} them; traffic between {bridge}'s ports fails although the \
             bridge forwards it",
            secs(facts.seconds),
            if chains.len() == 1 { "" } else { "s" },
            if chains.len() == 1 { "s" } else { "" },
        ),
    );
    f.evidence.push(format!(
        "net.bridge.bridge-nf-call-iptables = {}, net.bridge.bridge-nf-call-ip6tables \
         = {} in this namespace",
        switch(facts.call_iptables),
        switch(facts.call_ip6tables)
    ));
    for (port, n) in &facts.per_port {
        f.evidence.push(format!(
            "{port}: kernel confirmed drops: {n} {NETFILTER_DROP} (frames bridged \
             towards it)"
        ));
    }
    match &facts.drop_chains {
        Ok(c) if c.is_empty() => f.evidence.push(
            "no ip/ip6/inet forward chain has policy drop: a rule in one drops them \
             (`nft list ruleset`, `iptables-legacy -S FORWARD`)"
                .into(),
        ),
        Ok(c) => f.evidence.push(format!(
            "forward chain(s) with policy drop: {}",
            c.iter()
                .map(DropChain::describe)
                .collect::<Vec<_>>()
                .join(", ")
        )),
        Err(e) => f
            .evidence
            .push(format!("the forward chains could not be read: {e}")),
    }
    let accept = match chains.first() {
        Some(c) => format!(
            "nft insert rule {} iifname \"{bridge}\" oifname \"{bridge}\" accept",
            c.describe()
        ),
        None => format!("iptables -I FORWARD -i {bridge} -o {bridge} -j ACCEPT"),
    };
    f.remedy.push(format!(
        "accept the bridge's own traffic in FORWARD: {accept} (with br_netfilter the \
         in and out interfaces of bridged frames are the bridge)"
    ));
    f.remedy.push(format!(
        "or, if nothing here should filter bridged frames: sysctl -w \
         net.bridge.bridge-nf-call-iptables=0 net.bridge.bridge-nf-call-ip6tables=0; \
         then `macdrop diagnose --bridge {bridge}` shows no {NETFILTER_DROP}"
    ));
    f.weight = total;
    f.facts = json_object(json!({
        "bridge": bridge,
        "netfilter_drops": total,
        "per_interface": facts.per_port.iter().map(|(p, n)| (p.clone(), json!(n))).collect::<serde_json::Map<_, _>>(),
        "bridge_nf_call_iptables": facts.call_iptables,
        "bridge_nf_call_ip6tables": facts.call_ip6tables,
        "forward_drop_chains": facts.drop_chains.as_ref().ok().map(|c| c.iter().map(|c| json!({
            "family": c.family, "table": c.table, "chain": c.chain,
        })).collect::<Vec<_>>()),
    }));
    f
}

/// Whether `facts` is worth reading for a namespace: only when its ports
/// saw netfilter drops (it runs nft).
pub fn needed(observed: &[crate::diagnose::timeline::Observed], netns: u32) -> bool {
    observed
        .iter()
        .any(|o| o.iface.netns == netns && o.iface.role == Role::Port && netfilter_drops(o) > 0)
}
