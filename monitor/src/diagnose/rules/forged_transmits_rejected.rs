//! `forged_transmits_rejected` (error): an uplink (a macvlan parent, a
//! bridge's physical port) transmitted frames whose source MAC is not its
//! own and received no unicast for any MAC but its own. A hypervisor
//! switch set to reject forged transmits (VMware "Forged transmits:
//! Reject", Hyper-V with MAC address spoofing off) drops every frame an
//! uplink sends from another MAC, so the children's requests never reach
//! anyone and no reply comes back; nothing in this kernel counts a drop.
//! The rule asks for at least one broadcast among those frames: an ARP
//! request always gets a unicast answer on a healthy network, one-way
//! unicast (a datagram to a collector) gets none anywhere.
//! The egress counts come from `macdrop_tc_egress` (`kernel::egress`),
//! attached only on uplinks.

use monitor_common::egress::EgressCounters;
use serde_json::json;

use super::json_object;
use crate::{
    diagnose::{
        finding::{Finding, FindingId},
        scope::Scope,
        text::secs,
    },
    kernel::attach::Hook,
    mac::Mac,
    model::Interface,
};

pub struct Facts {
    pub interface: String,
    pub mac: Option<Mac>,
    pub egress: EgressCounters,
    /// Unicast the uplink received for MACs other than its own
    /// (`received_for_others`), zero here.
    pub received: Received,
    pub seconds: f64,
}

/// How "received no unicast for them" was told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Received {
    /// At tc: the kernel's `pkt_type` OTHERHOST count, every unicast
    /// frame whose destination is not the uplink's own MAC.
    OtherHost(u64),
    /// At XDP (no `pkt_type`): every unicast frame, own MAC included.
    AnyUnicast(u64),
}

impl Received {
    fn frames(self) -> u64 {
        match self {
            Received::OtherHost(n) | Received::AnyUnicast(n) => n,
        }
    }
}

/// What the uplink received for MACs that are not its own, from its
/// ingress classification.
///
/// A frame for a child (a macvlan's MAC, a container behind the bridge)
/// reaches the uplink's tc hook before the macvlan or the bridge claims
/// it, with the kernel's `pkt_type` PACKET_OTHERHOST, since
/// `eth_type_trans` compares the destination with the uplink's own MAC
/// only. So at tc, OTHERHOST counts exactly the unicast for any MAC but
/// the uplink's: zero when the switch neither delivers the children's
/// replies nor floods unknown unicast (which a rejecting vSwitch does
/// not). macdrop's own classes cannot tell the two apart (`own` counts a
/// macvlan child's MAC on its parent as delivered too). XDP runs before
/// there is a `pkt_type`; there every unicast frame (`own` +
/// `foreign_unicast`) counts as received, which only errs towards saying
/// nothing: unicast for the uplink's own MAC still arrives under the
/// policy.
pub fn received_for_others(i: &Interface) -> Received {
    let f = &i.frames;
    match i.hook {
        Some(Hook::Tcx | Hook::TcClsact) => Received::OtherHost(f.pkt_otherhost),
        _ => Received::AnyUnicast(f.own + f.foreign_unicast),
    }
}

pub fn detect(scope: &Scope) -> Vec<Facts> {
    scope
        .observed()
        .filter_map(|o| {
            let egress = o.iface.egress?;
            let received = received_for_others(&o.iface);
            // Unanswered broadcasts (ARP requests) from the children, not
            // just unanswered frames: one-way unicast gets no answer on a
            // healthy network too (`EgressCounters::broadcast`).
            (egress.child + egress.other > 0 && egress.broadcast > 0 && received.frames() == 0)
                .then(|| Facts {
                    interface: o.iface.name.clone(),
                    mac: o.iface.mac,
                    egress,
                    received,
                    seconds: scope.input.seconds,
                })
        })
        .collect()
}

pub fn finding(netns: u32, facts: &Facts) -> Finding {
    let name = facts.interface.as_str();
    let e = &facts.egress;
    let foreign = e.child + e.other;
    let own = facts
        .mac
        .map_or_else(|| "its own MAC".to_owned(), |m| format!("its own MAC {m}"));
    let mut f = Finding::new(
        FindingId::ForgedTransmitsRejected,
        netns,
        name,
        format!(
            "{name} sent {foreign} frame(s) with source MACs that are not its own in {} s and \
             received no unicast for them: a switch that rejects forged transmits (VMware \
             \"Forged transmits: Reject\", Hyper-V MAC address spoofing off) drops them, and \
             this kernel counts no drop",
            secs(facts.seconds)
        ),
    );
    f.evidence.push(format!(
        "frames that left {name}: {} from {own}, {} from its children's MACs (macvlan \
         children, its bridge's and the other ports' own MACs), {} from other MACs (stations \
         behind its bridge); {} of those not from its own MAC were broadcast (ARP \
         requests, which a healthy network answers with unicast)",
        e.own, e.child, e.other, e.broadcast
    ));
    f.evidence.push(match facts.received {
        Received::OtherHost(n) => format!(
            "unicast {name} received for MACs other than its own: {n} (the kernel's \
             pkt_type OTHERHOST at tc)"
        ),
        Received::AnyUnicast(n) => {
            format!(
                "unicast {name} received at all: {n} (XDP sees no pkt_type; own MAC included; \
                 `--attach tc` tells the children's apart)"
            )
        }
    });
    f.remedy.push(
        "allow forged transmits on the hypervisor's port: VMware, the port group's Security \
         policy: Forged transmits: Accept (with MAC address changes: Accept, and Promiscuous \
         mode: Accept for a bridged uplink); Hyper-V: `Set-VMNetworkAdapter -VMName VM \
         -MacAddressSpoofing On`"
            .into(),
    );
    f.remedy.push(format!(
        "or use ipvlan instead of macvlan on {name}: its children share {name}'s MAC, which \
         the switch accepts"
    ));
    f.weight = foreign;
    f.facts = json_object(json!({
        "egress_own": e.own,
        "egress_child": e.child,
        "egress_other": e.other,
        "egress_broadcast": e.broadcast,
        "received_for_others": facts.received.frames(),
        "received_from": match facts.received {
            Received::OtherHost(_) => "pkt_type_otherhost",
            Received::AnyUnicast(_) => "any_unicast",
        },
    }));
    f
}
