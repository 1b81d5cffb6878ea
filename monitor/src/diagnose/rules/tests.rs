//! The rules end to end: a lab of a bridge and two ports, its `status`,
//! the window's counters, events and flows, and the findings.

use std::{
    collections::BTreeMap,
    time::{Duration, SystemTime},
};

use monitor_common::{FrameCounters, egress::EgressCounters};

use serde_json::{Value, json};

use super::{analyse, host_ip_wrong_mac_unexplained::vendor_remedy};
use crate::{
    diagnose::{
        finding::{Finding, Severity},
        input::{Flow, Input, NsFacts},
        timeline::Observed,
    },
    mac::{Mac, mac_vendor},
    model::Interface,
    netlink::{Link, NetState},
    promisc::History,
    status::{HostFacts, PromiscFacts, gather},
    sysfs::{NET_ADDR_RANDOM, NET_ADDR_SET},
    topology::Role,
    tracker::{Event, EventKind},
};

pub(super) const BR: Mac = Mac([2, 0, 0, 0, 0x0b, 1]);
pub(super) const P1: Mac = Mac([2, 0, 0, 0, 0x0a, 1]);
pub(super) const P2: Mac = Mac([2, 0, 0, 0, 0x0a, 2]);
pub(super) const NS: u32 = 7;

pub(super) fn t(s: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + s)
}

pub(super) fn netstate(fdb: Vec<Mac>, br_promiscuity: u32) -> NetState {
    let mut br = Link::fake(2, "br0", "bridge", None, BR);
    br.promiscuity = br_promiscuity;
    br.promisc = br_promiscuity > 0;
    let mut p1 = Link::fake(3, "p1", "veth", Some(2), P1);
    p1.promiscuity = 1;
    p1.promisc = true;
    NetState {
        links: vec![br, p1, Link::fake(4, "p2", "veth", Some(2), P2)],
        local_fdb: BTreeMap::from([(2, fdb)]),
        ..Default::default()
    }
}

pub(super) fn ns(state: &NetState, pinned: bool, facts: &PromiscFacts) -> NsFacts {
    let assign = if pinned {
        NET_ADDR_SET
    } else {
        NET_ADDR_RANDOM
    };
    ns_on(state, &|_| Some(assign), facts, HostFacts::default())
}

/// The namespace of `state` on `host`, `assign` its addr_assign_type,
/// 192.0.2.1 on ifindex 2.
pub(super) fn ns_on(
    state: &NetState,
    assign: &dyn Fn(&Link) -> Option<u8>,
    facts: &PromiscFacts,
    host: HostFacts,
) -> NsFacts {
    NsFacts {
        inode: NS,
        name: None,
        status: super::status(gather(NS, state, &[], assign, facts).unwrap(), host),
        addrs: BTreeMap::from([(2, vec!["192.0.2.1".parse().unwrap()])]),
        netfilter: None,
    }
}

pub(super) fn observed(name: &str, role: Role, frames: FrameCounters) -> Observed {
    let master = (role == Role::Port).then(|| "br0".to_owned());
    let mut iface = Interface::new(name.into(), 0, NS, role, master);
    iface.frames = frames;
    iface.drops = Some(BTreeMap::from([(
        "NO_TX_TARGET".to_owned(),
        frames.host_ip_wrong_mac,
    )]));
    Observed {
        iface,
        first_wrong: (frames.host_ip_wrong_mac > 0).then(|| t(1)),
        last_wrong: (frames.host_ip_wrong_mac > 0).then(|| t(2)),
        first_stale: (frames.stale_mac > 0).then(|| t(1)),
        last_stale: (frames.stale_mac > 0).then(|| t(1)),
        while_promisc: FrameCounters::default(),
        promisc_seen: false,
    }
}

pub(super) fn wrong(n: u64) -> FrameCounters {
    FrameCounters {
        total: n,
        foreign_unicast: n,
        host_ip_wrong_mac: n,
        ..Default::default()
    }
}

pub(super) fn lab(p1: FrameCounters) -> Vec<Observed> {
    vec![
        observed("br0", Role::Bridge, FrameCounters::default()),
        observed("p1", Role::Port, p1),
        observed("p2", Role::Port, FrameCounters::default()),
    ]
}

pub(super) fn run(
    ns: &NsFacts,
    obs: &[Observed],
    events: &[Event],
    flows: Option<&[Flow]>,
) -> Vec<Finding> {
    analyse(&Input {
        seconds: 2.0,
        observed: obs,
        events,
        namespaces: std::slice::from_ref(ns),
        flows,
    })
}

pub(super) fn ids(findings: &[Finding]) -> Vec<&str> {
    findings.iter().map(|f| f.id.as_str()).collect()
}

#[test]
fn a_healthy_lab_has_no_finding() {
    let facts = ns(
        &netstate(vec![BR, P1, P2], 0),
        true,
        &PromiscFacts::default(),
    );
    let own = FrameCounters {
        total: 5,
        own: 5,
        ..Default::default()
    };
    assert!(run(&facts, &lab(own), &[], None).is_empty());
}

#[test]
fn the_incident_with_its_numbers_and_the_remedy() {
    let facts = ns(&netstate(vec![P1, P2], 0), true, &PromiscFacts::default());
    let found = run(&facts, &lab(wrong(9)), &[], None);
    assert_eq!(ids(&found), ["bridge_mac_not_in_fdb"], "{found:#?}");
    let f = &found[0];
    assert_eq!(f.severity(), Severity::Error);
    assert_eq!(
        f.remedy[0],
        "bridge fdb add 02:00:00:00:0b:01 dev br0 self local"
    );
    assert_eq!(f.facts["host_ip_wrong_mac"], 9);
    assert_eq!(f.facts["per_interface"]["p1"], 9);
    assert_eq!(f.facts["mac_mismatch_drops"], 9);
    assert!(f.evidence[0].contains("2 local entries (02:00:00:00:0a:01, 02:00:00:00:0a:02)"));
    assert!(
        f.evidence[1].starts_with("p1: 9 frame(s) for this host's IP (192.0.2.1)"),
        "{:?}",
        f.evidence
    );
    assert!(f.evidence[1].ends_with("kernel confirmed drops: 9 NO_TX_TARGET"));
}

/// The port's evidence names what sends through it: the container behind
/// its peer (`workload`), so nobody maps veths to containers by hand.
#[test]
fn the_evidence_names_the_container_behind_a_port() {
    let facts = ns(&netstate(vec![P1, P2], 0), true, &PromiscFacts::default());
    let mut obs = lab(wrong(9));
    obs[1].iface.workload = Some(crate::workload::Workload {
        kind: crate::workload::Kind::Docker,
        id: Some("3f2a1b9c0d4e5f60718293a4b5c6d7e8f9".into()),
        name: Some("web1".into()),
        namespace: None,
        pod: None,
        pid: Some(4242),
        compose_project: None,
        compose_service: None,
    });
    let found = run(&facts, &obs, &[], None);
    assert_eq!(ids(&found), ["bridge_mac_not_in_fdb"], "{found:#?}");
    assert!(
        found[0].evidence[1].starts_with(
            "p1 (behind it: web1 (docker, 3f2a1b9c0d4e…)): 9 frame(s) for this host's IP"
        ),
        "{:?}",
        found[0].evidence
    );
}

#[test]
fn flows_split_the_bridge_mac_from_a_rewritten_one() {
    let facts = ns(&netstate(vec![P1, P2], 0), true, &PromiscFacts::default());
    let vmware = Mac([0x00, 0x50, 0x56, 0xaa, 0xbb, 0xcc]);
    let flow = |dst, frames| Flow {
        netns: NS,
        interface: "p1".into(),
        src_mac: Mac([2, 0, 0, 0, 0x0c, 1]),
        dst_mac: dst,
        vlan: Some(10),
        dst_ip: Some("192.0.2.1".parse().unwrap()),
        frames,
    };
    let flows = [flow(BR, 6), flow(vmware, 3)];
    let found = run(&facts, &lab(wrong(9)), &[], Some(&flows));
    assert_eq!(
        ids(&found),
        ["bridge_mac_not_in_fdb", "host_ip_wrong_mac_unexplained"]
    );
    assert_eq!(found[0].facts["host_ip_wrong_mac"], 6);
    let up = &found[1];
    assert_eq!(up.facts["host_ip_wrong_mac"], 3);
    assert_eq!(up.facts["destination_macs"][0]["vendor"], "VMware");
    assert!(
        up.evidence.iter().any(|e| e
            == "destination MAC 00:50:56:aa:bb:cc (VMware): 3 frame(s) to 192.0.2.1 from \
                02:00:00:00:0c:01, VLAN 10 on p1"),
        "{:#?}",
        up.evidence
    );
    assert!(up.remedy[0].starts_with("VMware: "));
}

#[test]
fn own_macs_not_delivered_are_named_by_what_is_wrong() {
    let facts = ns(
        &netstate(vec![BR, P1, P2], 0),
        true,
        &PromiscFacts::default(),
    );
    let flow = |dst, vlan, frames| Flow {
        netns: NS,
        interface: "p1".into(),
        src_mac: Mac([2, 0, 0, 0, 0x0c, 1]),
        dst_mac: dst,
        vlan,
        dst_ip: Some("192.0.2.1".parse().unwrap()),
        frames,
    };
    let vmware = Mac([0x00, 0x50, 0x56, 0xaa, 0xbb, 0xcc]);
    let flows = [
        flow(BR, Some(10), 4),
        flow(P2, None, 3),
        flow(vmware, None, 2),
    ];
    let found = run(&facts, &lab(wrong(9)), &[], Some(&flows));
    assert_eq!(
        ids(&found),
        [
            "host_ip_wrong_vlan",
            "host_ip_to_port_mac",
            "host_ip_wrong_mac_unexplained"
        ],
        "{found:#?}"
    );
    let vlan = &found[0];
    assert_eq!(
        (vlan.facts["frames"].clone(), vlan.facts["vlans"].clone()),
        (json!(4), json!([10]))
    );
    assert!(
        vlan.message.contains("tagged with VLAN 10"),
        "{}",
        vlan.message
    );
    assert!(
        vlan.remedy[0].contains("ip link add link br0 name br0.10 type vlan id 10"),
        "{}",
        vlan.remedy[0]
    );
    let port = &found[1];
    assert_eq!(port.facts["frames"], 3);
    assert!(
        port.message
            .contains("addressed to 02:00:00:00:0a:02 (p2), another port's MAC"),
        "{}",
        port.message
    );
    assert!(port.remedy[0].contains("arping -U -c 3 -I br0 192.0.2.1"));
    // Only the VMware MAC is left unexplained.
    assert_eq!(found[2].facts["host_ip_wrong_mac"], 2);
}

#[test]
fn unexplained_without_flows_names_the_interface_and_count() {
    let facts = ns(
        &netstate(vec![BR, P1, P2], 0),
        true,
        &PromiscFacts::default(),
    );
    let found = run(&facts, &lab(wrong(6)), &[], None);
    assert_eq!(ids(&found), ["host_ip_wrong_mac_unexplained"]);
    let f = &found[0];
    assert!(
        f.message
            .starts_with("6 frame(s) for this host's IP (192.0.2.1) arrived on the ports of br0")
    );
    assert_eq!(f.facts["per_interface"]["p1"], 6);
    assert_eq!(f.facts["destination_macs"], Value::Null);
    assert!(f.evidence[1].contains(
        "tcpdump -p -e -n -c 20 -i p1 'not ether multicast and not ether dst \
         02:00:00:00:0b:01 and not ether dst 02:00:00:00:0a:01 and not ether dst \
         02:00:00:00:0a:02'"
    ));
}

#[test]
fn stale_frames_after_a_change_are_not_unexplained() {
    let facts = ns(
        &netstate(vec![BR, P1, P2], 0),
        false,
        &PromiscFacts::default(),
    );
    let stale = FrameCounters {
        stale_mac: 5,
        ..wrong(5)
    };
    let events = [Event {
        ts: t(1),
        ifname: "br0".into(),
        ifindex: 2,
        kind: EventKind::MacChanged { old: P1, new: BR },
    }];
    let found = run(&facts, &lab(stale), &events, None);
    assert_eq!(
        ids(&found),
        ["stale_mac_after_mac_change", "bridge_mac_not_pinned"]
    );
    let f = &found[0];
    assert_eq!(f.facts["stale_mac"], 5);
    assert_eq!(f.facts["mac_changes"][0]["old_mac"], "02:00:00:00:0a:01");
    assert!(
        f.evidence[0]
            .starts_with("br0 changed its MAC from 02:00:00:00:0a:01 to 02:00:00:00:0b:01 at ")
    );
    assert!(f.remedy[0].contains("arping -U -c 3 -I br0 192.0.2.1"));
    assert!(f.remedy[1].contains("ip link set br0 address 02:00:00:00:0b:01"));
    assert_eq!(found[1].facts["mac_changes"], 1);
}

#[test]
fn promiscuous_bridge_delivering_only_because_of_it() {
    let mut history = History::new(SystemTime::UNIX_EPOCH);
    history.push("6,0,1000000,-;br0: entered promiscuous mode");
    let promisc = PromiscFacts {
        sockets: None,
        history: Some(history),
    };
    let facts = ns(&netstate(vec![P1, P2], 1), true, &promisc);
    let mut obs = lab(wrong(9));
    obs[0].while_promisc = wrong(9);
    obs[0].iface.frames = wrong(9);
    let found = run(&facts, &obs, &[], None);
    assert_eq!(
        ids(&found),
        ["bridge_mac_not_in_fdb", "interface_promiscuous"]
    );
    let p = &found[1];
    assert_eq!(p.facts["delivered_while_promiscuous"], 9);
    assert_eq!(p.facts["since"], "1970-01-01T00:00:01.000Z");
    assert!(p.evidence.iter().any(|e| e.starts_with(
        "while promiscuous, br0 passed 9 frame(s) for this host's IP with a MAC it does not \
         own up to the host"
    )));
    assert!(p.remedy[0].starts_with("fix the cause first"));
    assert!(
        found[0]
            .evidence
            .iter()
            .any(|e| e.starts_with("br0 is promiscuous now"))
    );
    // The bridge's own count is what it passed up, not more frames.
    assert_eq!(found[0].facts["host_ip_wrong_mac"], 9);
}

#[test]
fn a_port_watched_alone_still_has_its_bridge_judged() {
    let facts = ns(&netstate(vec![P1, P2], 0), true, &PromiscFacts::default());
    let p1 = observed("p1", Role::Port, wrong(4));
    let found = run(&facts, &[p1], &[], None);
    assert_eq!(ids(&found), ["bridge_mac_not_in_fdb"], "{found:#?}");
    assert_eq!(found[0].facts["per_interface"]["p1"], 4);
}

#[test]
fn vendors_by_oui() {
    for (mac, vendor) in [
        ("00:50:56:01:02:03", "VMware"),
        ("00:0c:29:01:02:03", "VMware"),
        ("00:05:69:01:02:03", "VMware"),
        ("52:54:00:01:02:03", "QEMU/KVM"),
        ("00:16:3e:01:02:03", "Xen"),
        ("00:15:5d:01:02:03", "Hyper-V"),
        ("08:00:27:01:02:03", "VirtualBox"),
        ("02:42:ac:11:00:02", "Docker"),
    ] {
        assert_eq!(mac_vendor(mac.parse().unwrap()), Some(vendor), "{mac}");
        assert!(!vendor_remedy(vendor).is_empty());
    }
    assert_eq!(mac_vendor(BR), None);
}

#[test]
fn standalone_foreign_is_information() {
    let state = NetState {
        links: vec![Link::fake(2, "v0", "veth", None, P1)],
        ..Default::default()
    };
    let facts = ns(&state, true, &PromiscFacts::default());
    let mut v0 = observed("v0", Role::Standalone, FrameCounters::default());
    v0.iface.master = None;
    v0.iface.frames = FrameCounters {
        total: 7,
        foreign_unicast: 7,
        host_ip_wrong_mac: 2,
        ..Default::default()
    };
    let found = run(&facts, &[v0], &[], None);
    assert_eq!(
        ids(&found),
        ["host_ip_wrong_mac_unexplained", "foreign_unicast_dropped"]
    );
    assert_eq!(found[1].facts["foreign_unicast"], 5);
    assert!(found[0].message.contains("arrived on v0 with"));
}

/// A macvlan parent `up0` watched at `hook` that sent `egress` and
/// received `frames`, with its child `mv0` in the namespace.
fn uplink_lab(
    hook: crate::kernel::attach::Hook,
    egress: EgressCounters,
    frames: FrameCounters,
) -> Vec<Finding> {
    let child = Mac([2, 0, 0, 0, 0x0c, 1]);
    let mut mv0 = Link::fake(3, "mv0", "macvlan", None, child);
    mv0.lower = Some(2);
    let state = NetState {
        links: vec![Link::fake(2, "up0", "veth", None, P1), mv0],
        ..Default::default()
    };
    let facts = ns(&state, true, &PromiscFacts::default());
    let mut up0 = observed("up0", Role::Standalone, frames);
    up0.iface.master = None;
    up0.iface.mac = Some(P1);
    up0.iface.hook = Some(hook);
    up0.iface.egress = Some(egress);
    run(&facts, &[up0], &[], None)
}

/// Frames that left, per source class; `broadcast` of child and other.
fn sent(own: u64, child: u64, other: u64, broadcast: u64) -> EgressCounters {
    EgressCounters {
        own,
        child,
        other,
        broadcast,
    }
}

#[test]
fn forged_transmits_child_frames_and_no_unicast_back() {
    use crate::kernel::attach::Hook;
    // Broadcasts and unicast for up0's own MAC still arrive.
    let frames = FrameCounters {
        total: 5,
        own: 3,
        broadcast: 2,
        pkt_host: 3,
        pkt_broadcast: 2,
        ..Default::default()
    };
    let found = uplink_lab(Hook::Tcx, sent(4, 9, 0, 3), frames);
    assert_eq!(ids(&found)[0], "forged_transmits_rejected");
    let f = &found[0];
    assert_eq!(f.severity(), Severity::Error);
    assert!(
        f.message
            .starts_with("up0 sent 9 frame(s) with source MACs"),
        "{}",
        f.message
    );
    assert!(
        f.evidence[0].contains(&format!("4 from its own MAC {P1}, 9 from its children's")),
        "{:?}",
        f.evidence
    );
    assert!(
        f.evidence[1].contains("other than its own: 0"),
        "{:?}",
        f.evidence
    );
    assert!(f.remedy[0].contains("-MacAddressSpoofing On"));
    assert!(f.remedy[1].contains("ipvlan"));
    assert_eq!(f.facts["egress_child"], 9);
    assert_eq!(f.facts["egress_broadcast"], 3);
    assert!(
        f.evidence[0].ends_with("3 of those not from its own MAC were broadcast (ARP requests, which a healthy network answers with unicast)"),
        "{:?}",
        f.evidence
    );
    assert_eq!(f.facts["received_for_others"], 0);
    assert_eq!(f.facts["received_from"], "pkt_type_otherhost");
    assert_eq!(f.weight, 9);
}

#[test]
fn forged_transmits_quiet_when_replies_come_back_or_nothing_was_forged() {
    use crate::kernel::attach::Hook;
    let replies = FrameCounters {
        total: 1,
        own: 1,
        pkt_otherhost: 1,
        ..Default::default()
    };
    let quiet = |found: Vec<Finding>| {
        assert!(
            !ids(&found).contains(&"forged_transmits_rejected"),
            "{:?}",
            ids(&found)
        );
    };
    // One unicast for a child came back: the switch accepts.
    quiet(uplink_lab(Hook::Tcx, sent(0, 9, 0, 3), replies));
    // Only one-way unicast from a child, no broadcast (its neighbours
    // resolved): nothing answers a datagram to a collector anywhere.
    quiet(uplink_lab(
        Hook::Tcx,
        sent(0, 9, 0, 0),
        FrameCounters::default(),
    ));
    // Only its own MAC left.
    quiet(uplink_lab(
        Hook::Tcx,
        sent(9, 0, 0, 0),
        FrameCounters::default(),
    ));
    // At XDP every unicast counts as received: own MAC traffic hides it.
    let own_only = FrameCounters {
        total: 1,
        own: 1,
        ..Default::default()
    };
    quiet(uplink_lab(Hook::XdpDriver, sent(0, 9, 0, 3), own_only));
    // ... and nothing at all received is reported, from "any unicast".
    let found = uplink_lab(Hook::XdpDriver, sent(0, 0, 3, 1), FrameCounters::default());
    assert_eq!(ids(&found)[0], "forged_transmits_rejected");
    assert_eq!(found[0].facts["received_from"], "any_unicast");
    assert_eq!(found[0].facts["egress_other"], 3);
}

/// `status`'s findings (moved from `status.rs`, which only gathers facts).
mod status_findings {
    use super::super::status;
    use crate::{
        finding::Severity,
        status::{
            PromiscFacts, gather,
            tests::{BR, P1, state},
        },
    };

    #[test]
    fn healthy_pinned_bridge_has_no_findings() {
        let s = status(
            gather(
                7,
                &state(vec![BR, P1]),
                &[],
                &|_| Some(crate::sysfs::NET_ADDR_SET),
                &PromiscFacts::default(),
            )
            .unwrap(),
            Default::default(),
        );
        assert!(s.findings.is_empty(), "{:?}", s.findings);
        assert_eq!(s.interfaces.len(), 2);
    }

    #[test]
    fn missing_local_entry_is_an_error_with_the_fix() {
        let s = status(
            gather(
                7,
                &state(vec![P1]),
                &[],
                &|_| Some(crate::sysfs::NET_ADDR_RANDOM),
                &PromiscFacts::default(),
            )
            .unwrap(),
            Default::default(),
        );
        assert_eq!(s.findings.len(), 2);
        let e = &s.findings[0];
        assert_eq!(
            (e.severity(), e.id.as_str()),
            (Severity::Error, "bridge_mac_not_in_fdb")
        );
        assert_eq!(
            e.remedy,
            ["bridge fdb add 02:00:00:00:0b:01 dev br0 self local"]
        );
        assert_eq!(s.findings[1].id.as_str(), "bridge_mac_not_pinned");
    }
}
