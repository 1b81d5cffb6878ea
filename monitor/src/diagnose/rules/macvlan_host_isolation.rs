//! `macvlan_host_isolation` (info, from `status`): a topology, not a drop.
//! A macvlan device never passes frames between its parent and its
//! children: the host, using the parent's address, cannot reach the
//! macvlan children in other namespaces (containers), and they cannot
//! reach it, however the switch behaves. Found when the parent's unicast
//! filter holds MACs of devices not in this namespace (macvlan children
//! add theirs when they come up), the parent carries the host's address,
//! and no macvlan of the host's own (a "shim") sits on the parent.

use serde_json::json;

use super::json_object;
use crate::{
    diagnose::{
        finding::{Finding, FindingId},
        text::list,
    },
    status::IfaceStatus,
};

pub struct Facts {
    pub parent: String,
    pub children: Vec<crate::mac::Mac>,
    pub addrs: Vec<std::net::IpAddr>,
}

pub fn detect(i: &IfaceStatus) -> Option<Facts> {
    let p = i.path.macvlan_parent.as_ref()?;
    (!p.addrs.is_empty() && p.local_macvlans.is_empty()).then(|| Facts {
        parent: i.link.name.clone(),
        children: p.foreign_children.clone(),
        addrs: p.addrs.clone(),
    })
}

pub fn finding(netns: u32, facts: &Facts) -> Finding {
    let Facts {
        parent,
        children,
        addrs,
    } = facts;
    let mut f = Finding::new(
        FindingId::MacvlanHostIsolation,
        netns,
        parent,
        format!(
            "{parent} carries this host's address and has {} macvlan child(ren) in other \
             namespaces: macvlan never passes frames between a parent and its children, \
             so the host cannot reach them through {parent} (nor they the host), while \
             other hosts can; this is how macvlan works, not a drop",
            children.len()
        ),
    );
    f.evidence.push(format!(
        "{parent}'s unicast filter holds MAC(s) of devices not in this namespace: {}",
        list(children)
    ));
    f.evidence.push(format!(
        "{parent} has {}; no macvlan device of this namespace sits on {parent}",
        list(addrs)
    ));
    f.remedy.push(format!(
        "give the host its own macvlan on {parent} and route the children's addresses \
         through it: ip link add {parent}-shim link {parent} type macvlan mode bridge; \
         ip link set {parent}-shim up; ip route add <child IP>/32 dev {parent}-shim"
    ));
    f.remedy
        .push("or use a bridge instead of macvlan where the host must reach its containers".into());
    f.weight = children.len() as u64;
    f.facts = json_object(json!({
        "parent": parent,
        "children": children.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "parent_addrs": addrs.iter().map(ToString::to_string).collect::<Vec<_>>(),
    }));
    f
}
