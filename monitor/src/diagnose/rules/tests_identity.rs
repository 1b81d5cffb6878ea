//! The MAC-identity rules (issue 18) end to end, from recorded facts:
//! what changed a MAC, a MAC moving between ports, a NIC's MAC changed
//! under a hypervisor.

use monitor_common::FrameCounters;

use super::tests::{BR, NS, P1, P2, ids, lab, netstate, ns, observed, run, t};
use crate::{
    diagnose::{finding::Severity, input::NsFacts},
    hypervisor::Dmi,
    mac::Mac,
    netlink::{Link, NetState},
    status::{HostFacts, PromiscFacts, gather},
    sysfs::{NET_ADDR_PERM, NET_ADDR_RANDOM, NET_ADDR_SET},
    topology::Role,
    tracker::{Event, EventKind},
};

/// The namespace of `state`, `assign` its addr_assign_type, 192.0.2.1 on
/// ifindex 2.
fn facts_of(state: &NetState, assign: &dyn Fn(&Link) -> Option<u8>, host: HostFacts) -> NsFacts {
    NsFacts {
        inode: NS,
        name: None,
        status: super::status(
            gather(NS, state, &[], assign, &PromiscFacts::default()).unwrap(),
            host,
        ),
        addrs: [(2, vec!["192.0.2.1".parse().unwrap()])].into(),
        netfilter: None,
    }
}

fn changed(ifname: &str, ifindex: u32, old: Mac, new: Mac) -> Event {
    Event {
        ts: t(1),
        ifname: ifname.into(),
        ifindex,
        kind: EventKind::MacChanged { old, new },
    }
}

fn stale(n: u64) -> FrameCounters {
    FrameCounters {
        total: n,
        foreign_unicast: n,
        host_ip_wrong_mac: n,
        stale_mac: n,
        ..Default::default()
    }
}

#[test]
fn an_unpinned_bridge_that_took_a_ports_mac_is_named_as_the_cause() {
    // br0 had P1 and now has P2 (p1 left, p2 is the lowest left).
    let mut state = netstate(vec![P2], 0);
    state.links[0].mac = Some(P2);
    let facts = ns(&state, false, &PromiscFacts::default());
    let found = run(&facts, &lab(stale(4)), &[changed("br0", 2, P1, P2)], None);
    assert_eq!(
        ids(&found),
        ["stale_mac_after_mac_change", "bridge_mac_not_pinned"]
    );
    let f = &found[0];
    assert_eq!(f.facts["cause"], "bridge_took_port_mac");
    assert_eq!(f.facts["cause_interface"], "p2");
    assert_eq!(f.facts["addr_assign_type"], "random");
    assert_eq!(
        f.evidence[1],
        "the cause: br0's MAC is not pinned (addr_assign_type random), so it took the \
         lowest MAC of its ports, p2's, when a port came or went (a container, VM or \
         LXC/Vagrant/CNI interface started or stopped)"
    );
}

#[test]
fn a_mac_set_by_userspace_is_named_as_the_cause() {
    let facts = ns(
        &netstate(vec![BR, P1, P2], 0),
        true,
        &PromiscFacts::default(),
    );
    let old = Mac([2, 0, 0, 0, 0x0b, 9]);
    let found = run(&facts, &lab(stale(3)), &[changed("br0", 2, old, BR)], None);
    assert_eq!(ids(&found), ["stale_mac_after_mac_change"]);
    let f = &found[0];
    assert_eq!(
        (
            f.facts["cause"].as_str(),
            f.facts["addr_assign_type"].as_str()
        ),
        (Some("set_by_userspace"), Some("set"))
    );
    assert_eq!(f.facts["cause_interface"], serde_json::Value::Null);
    assert!(f.evidence[1].starts_with("the cause: userspace set br0's MAC"));
    assert!(f.remedy[1].contains("ip link set br0 address 02:00:00:00:0b:09"));
}

/// A bond whose failover gave it the MAC of its other slave (recorded
/// facts: this kernel has no bonding).
#[test]
fn a_bond_that_took_a_slaves_mac_is_named_as_the_cause() {
    let e0 = Mac([0x00, 0x50, 0x56, 0, 0, 1]);
    let e1 = Mac([0x00, 0x50, 0x56, 0, 0, 2]);
    let mut bond = Link::fake(2, "bond0", "bond", None, e1);
    bond.perm_mac = None;
    // fail_over_mac=active: each slave keeps its own MAC.
    let mut eth0 = Link::fake(3, "eth0", "", Some(2), e0);
    eth0.kind = None;
    eth0.perm_mac = Some(e0);
    // The backup now: the switch still sends some frames its way.
    eth0.rx_nohandler = Some(17);
    let mut eth1 = Link::fake(4, "eth1", "", Some(2), e1);
    eth1.kind = None;
    eth1.perm_mac = Some(e1);
    let state = NetState {
        links: vec![bond, eth0, eth1],
        ..Default::default()
    };
    let facts = facts_of(
        &state,
        &|l| Some(if l.kind.is_some() { 2 } else { NET_ADDR_PERM }),
        HostFacts::default(),
    );
    let obs = [observed("bond0", Role::Standalone, stale(6))];
    let found = run(&facts, &obs, &[changed("bond0", 2, e0, e1)], None);
    assert_eq!(ids(&found)[0], "stale_mac_after_mac_change", "{found:#?}");
    let f = &found[0];
    assert_eq!(f.facts["cause"], "bond_took_slave_mac");
    assert_eq!(f.facts["cause_interface"], "eth1");
    assert_eq!(f.facts["addr_assign_type"], "stolen");
    assert!(
        f.evidence[1].starts_with("the cause: bond bond0 took the MAC of its slave eth1"),
        "{:?}",
        f.evidence
    );
    // The failover itself, with the backup slave's rx_nohandler.
    assert_eq!(
        ids(&found),
        ["stale_mac_after_mac_change", "bond_failover_mac_change"]
    );
    let b = &found[1];
    assert_eq!(b.severity(), Severity::Warning);
    assert_eq!(b.facts["took_from"], "eth1");
    assert_eq!(b.facts["mac_changes"], 1);
    assert_eq!(b.facts["slaves"][0]["rx_nohandler"], 17);
    assert_eq!(b.facts["slaves"][1]["perm_mac"], "00:50:56:00:00:02");
    assert_eq!(
        b.evidence[1],
        "slave eth0: MAC 00:50:56:00:00:01, permanent MAC 00:50:56:00:00:01, rx_nohandler 17 \
         since boot (frames no protocol took: what a backup slave receives when traffic \
         still comes its way)"
    );
    assert_eq!(
        b.evidence[2],
        "slave eth1: MAC 00:50:56:00:00:02, permanent MAC 00:50:56:00:00:02, rx_nohandler 0 \
         since boot"
    );
    assert!(
        b.message
            .contains("(it took eth1's: a failover with fail_over_mac=active)")
    );
}

/// A bond whose MAC did not change in the window: no failover finding.
#[test]
fn a_bond_without_a_mac_change_is_quiet() {
    let mut bond = Link::fake(2, "bond0", "bond", None, VMW_PERM);
    bond.perm_mac = None;
    let state = NetState {
        links: vec![bond],
        ..Default::default()
    };
    let facts = facts_of(&state, &|_| Some(2), HostFacts::default());
    let obs = [observed(
        "bond0",
        Role::Standalone,
        FrameCounters::default(),
    )];
    assert!(run(&facts, &obs, &[], None).is_empty());
}

fn moved(moves: u64, ports: &[&str], at: u64) -> Event {
    Event {
        ts: t(at),
        ifname: "br0".into(),
        ifindex: 2,
        kind: EventKind::FdbMoved {
            mac: Mac([2, 0, 0, 0, 0, 0xd]),
            vid: 0,
            moves,
            ports: ports.iter().map(|p| (*p).to_owned()).collect(),
        },
    }
}

#[test]
fn a_mac_moving_between_ports_is_counted_over_the_window() {
    let facts = ns(
        &netstate(vec![BR, P1, P2], 0),
        true,
        &PromiscFacts::default(),
    );
    let events = [moved(3, &["p1", "p2"], 1), moved(2, &["p2", "p1"], 2)];
    let found = run(&facts, &lab(FrameCounters::default()), &events, None);
    assert_eq!(ids(&found), ["mac_moving_between_ports"]);
    let f = &found[0];
    assert_eq!(f.severity(), Severity::Warning);
    assert_eq!(f.interface, "br0");
    assert_eq!(f.weight, 5);
    assert_eq!(
        f.facts,
        serde_json::json!({"mac": "02:00:00:00:00:0d", "vlan": 0, "moves": 5, "ports": ["p1", "p2"]})
            .as_object()
            .unwrap()
            .clone()
    );
    assert!(
        f.evidence[0].starts_with(
            "br0 moved its forwarding entry for 02:00:00:00:00:0d between ports 5 time(s) in \
             the 2 s window"
        ),
        "{:?}",
        f.evidence
    );
    assert!(f.remedy[0].contains("tcpdump -c 5 -eni <port> ether src 02:00:00:00:00:0d"));
}

const VMW_PERM: Mac = Mac([0x00, 0x50, 0x56, 0xaa, 0xbb, 0xcc]);
const SET: Mac = Mac([0x02, 0, 0, 0, 0, 0x77]);

/// A physical NIC (no kind) `eth0` with MAC `mac` and permanent `perm`.
fn nic(mac: Mac, perm: Option<Mac>) -> NsFacts {
    nic_on(mac, perm, Dmi::default())
}

fn nic_on(mac: Mac, perm: Option<Mac>, dmi: Dmi) -> NsFacts {
    let mut eth0 = Link::fake(2, "eth0", "", None, mac);
    eth0.kind = None;
    eth0.perm_mac = perm;
    let state = NetState {
        links: vec![eth0],
        ..Default::default()
    };
    facts_of(
        &state,
        &|_| Some(NET_ADDR_SET),
        HostFacts {
            dmi,
            machine_id: None,
        },
    )
}

fn vmware() -> Dmi {
    Dmi {
        vendor: Some("VMware, Inc.".into()),
        product: Some("VMware Virtual Platform".into()),
    }
}

#[test]
fn a_vmware_nic_with_a_changed_mac_is_found_by_status() {
    // By the permanent MAC's OUI, without DMI.
    let facts = nic(SET, Some(VMW_PERM));
    let f = &facts.status.findings;
    assert_eq!(ids(f), ["mac_changed_under_hypervisor"]);
    assert_eq!(f[0].facts["hypervisor"], "VMware");
    assert_eq!(f[0].facts["hypervisor_from"], "oui");
    assert_eq!(f[0].facts["perm_mac"], "00:50:56:aa:bb:cc");
    assert_eq!(
        f[0].evidence,
        [
            "eth0: current MAC 02:00:00:00:00:77, permanent MAC 00:50:56:aa:bb:cc (IFLA_PERM_ADDRESS)",
            "the permanent MAC's OUI is VMware's"
        ]
    );
    assert!(f[0].remedy[0].starts_with(
        "give eth0 its permanent MAC back: `ip link set eth0 address 00:50:56:aa:bb:cc`"
    ));
    assert!(f[0].remedy[0].contains("MAC address changes: Accept"));
    // By DMI, whatever the OUI.
    let other = Mac([0x00, 0x11, 0x22, 0, 0, 1]);
    let facts = nic_on(SET, Some(other), vmware());
    let f = &facts.status.findings;
    assert_eq!(f[0].facts["hypervisor_from"], "dmi");
    assert_eq!(
        f[0].evidence[1],
        "the host runs on VMware (DMI: sys_vendor \"VMware, Inc.\", product_name \"VMware \
         Virtual Platform\")"
    );
    // Hyper-V by OUI, with its own remedy.
    let facts = nic(SET, Some(Mac([0x00, 0x15, 0x5d, 1, 2, 3])));
    assert!(facts.status.findings[0].remedy[0].contains("Enable MAC address spoofing"));
}

#[test]
fn no_hypervisor_finding_without_the_evidence() {
    // Its own MAC; no permanent MAC (veth, bridge); a KVM NIC (no such
    // switch policy); bare metal with a changed MAC.
    for facts in [
        nic(VMW_PERM, Some(VMW_PERM)),
        nic(SET, None),
        nic(SET, Some(Mac([0x52, 0x54, 0x00, 1, 2, 3]))),
        nic(SET, Some(Mac([0x00, 0x11, 0x22, 0, 0, 1]))),
        nic_on(VMW_PERM, Some(VMW_PERM), vmware()),
    ] {
        assert!(
            facts.status.findings.is_empty(),
            "{:?}",
            facts.status.findings
        );
    }
}

/// Under diagnose, the window says what the NIC received: broadcasts and
/// no unicast is what a rejecting switch looks like.
#[test]
fn the_window_shows_unicast_collapsing() {
    let facts = nic(SET, Some(VMW_PERM));
    let frames = FrameCounters {
        total: 4,
        broadcast: 4,
        ..Default::default()
    };
    let mut eth0 = observed("eth0", Role::Standalone, frames);
    eth0.iface.drops = Some(Default::default());
    let found = run(&facts, &[eth0], &[], None);
    assert_eq!(ids(&found), ["mac_changed_under_hypervisor"]);
    let f = &found[0];
    assert_eq!(
        f.evidence[2],
        "in the 2 s window eth0 received 0 unicast frame(s) for its own MAC and 4 \
         broadcast(s); the kernel dropped 0 for a MAC mismatch: broadcasts arrive and unicast \
         does not, what a rejecting switch does"
    );
    assert_eq!(
        (
            f.facts["own_unicast"].as_u64(),
            f.facts["broadcast"].as_u64()
        ),
        (Some(0), Some(4))
    );
}

/// Veths (addr_assign_type random) and a pinned bridge in a healthy lab:
/// none of these rules fires.
#[test]
fn a_healthy_lab_stays_quiet() {
    let facts = ns(
        &netstate(vec![BR, P1, P2], 0),
        true,
        &PromiscFacts::default(),
    );
    assert!(facts.status.findings.is_empty());
    let own = FrameCounters {
        total: 5,
        own: 5,
        ..Default::default()
    };
    assert!(run(&facts, &lab(own), &[], None).is_empty());
    let _ = NET_ADDR_RANDOM;
}
