//! The path rules (issue 18) end to end from recorded facts: the
//! topologies this kernel cannot build (VLAN filtering, Open vSwitch) and
//! the window's netfilter drops.

use monitor_common::FrameCounters;
use serde_json::json;

use super::{analyse, status};
use crate::{
    diagnose::{
        finding::Finding,
        input::{Input, NsFacts},
        timeline::Observed,
    },
    model::Interface,
    netfilter::{self, DropChain},
    netlink::NetState,
    path::fixtures,
    status::{HostFacts, PromiscFacts, gather},
    sysfs,
    topology::Role,
};

const NS: u32 = 7;

fn ns(state: &NetState, netfilter: Option<netfilter::Facts>) -> NsFacts {
    NsFacts {
        inode: NS,
        name: None,
        status: status(
            gather(
                NS,
                state,
                &[],
                &|_| Some(sysfs::NET_ADDR_SET),
                &PromiscFacts::default(),
            )
            .unwrap(),
            HostFacts::default(),
        ),
        addrs: state.if_addrs.clone(),
        netfilter,
    }
}

fn observed(
    name: &str,
    role: Role,
    master: Option<&str>,
    frames: FrameCounters,
    drops: &[(&str, u64)],
) -> Observed {
    let mut iface = Interface::new(name.into(), 0, NS, role, master.map(str::to_owned));
    iface.frames = frames;
    iface.drops = Some(drops.iter().map(|(r, n)| ((*r).to_owned(), *n)).collect());
    Observed::new(iface)
}

fn run(ns: &NsFacts, obs: &[Observed]) -> Vec<Finding> {
    analyse(&Input {
        seconds: 2.0,
        observed: obs,
        events: &[],
        namespaces: std::slice::from_ref(ns),
        flows: None,
    })
}

fn ids(findings: &[Finding]) -> Vec<&str> {
    findings.iter().map(|f| f.id.as_str()).collect()
}

#[test]
fn vlan_filtering_gaps_from_status_and_diagnose() {
    let state = fixtures::vlan_filtering_gaps();
    let facts = ns(&state, None);
    assert_eq!(ids(&facts.status.findings), ["bridge_vlan_filtering_gap"]);
    let f = &facts.status.findings[0];
    assert_eq!(f.interface, "br0");
    assert_eq!(
        f.remedy,
        [
            "bridge vlan add vid <VID> dev p2 pvid untagged",
            "bridge vlan add vid 10 dev br0 self pvid untagged",
            "check: bridge vlan show; then `macdrop status br0` no longer reports this",
        ]
    );
    let wrong = FrameCounters {
        total: 4,
        foreign_unicast: 4,
        host_ip_wrong_mac: 4,
        ..Default::default()
    };
    let obs = [
        observed("br0", Role::Bridge, None, FrameCounters::default(), &[]),
        observed("p1", Role::Port, Some("br0"), wrong, &[]),
        observed("p2", Role::Port, Some("br0"), FrameCounters::default(), &[]),
    ];
    let found = run(&facts, &obs);
    let f = found
        .iter()
        .find(|f| f.id.as_str() == "bridge_vlan_filtering_gap")
        .unwrap();
    assert_eq!(
        f.evidence,
        [
            "p2 has no PVID: every untagged frame entering it is dropped",
            "br0 itself (self) has no PVID: the host's untagged frames into br0 are dropped; its VLANs: none",
            "p1 has PVID 10, of which br0 (self) is not a member: their untagged frames never reach this host",
            "p1 in the window: 0 frame(s) delivered to this host, 4 for this host's IP not delivered",
            "p2 in the window: 0 frame(s) delivered to this host, 0 for this host's IP not delivered",
        ]
    );
    assert_eq!(f.weight, 4);
    assert_eq!(
        serde_json::Value::Object(f.facts.clone()),
        json!({
            "ports_without_pvid": ["p2"],
            "bridge_pvid": null,
            "bridge_vids": [],
            "pvids_not_on_bridge": [{"vid": 10, "ports": ["p1"]}],
            "bridge_has_addrs": true,
        })
    );
    // Configured right: quiet.
    assert_eq!(
        ids(&ns(&fixtures::vlan_filtering_healthy(), None)
            .status
            .findings),
        Vec::<&str>::new()
    );
}

/// On Open vSwitch, foreign unicast on a port is switching: the info
/// finding says the FDB checks do not apply, and the window's rules that
/// would call it dropped stay silent.
#[test]
fn open_vswitch_is_said_instead_of_false_fdb_findings() {
    let facts = ns(&fixtures::openvswitch(), None);
    assert_eq!(
        facts
            .status
            .findings
            .iter()
            .map(|f| (f.id.as_str(), f.interface.as_str()))
            .collect::<Vec<_>>(),
        [
            ("openvswitch_not_linux_bridge", "br-int"),
            ("openvswitch_not_linux_bridge", "eth1"),
            ("openvswitch_not_linux_bridge", "ovs-system"),
        ]
    );
    let foreign = FrameCounters {
        total: 9,
        foreign_unicast: 9,
        host_ip_wrong_mac: 3,
        ..Default::default()
    };
    let found = run(
        &facts,
        &[observed(
            "eth1",
            Role::Standalone,
            None,
            foreign,
            // OVS's own reason, as `kernel::drop_subsys` names it.
            &[("OTHERHOST", 9), ("OVS_DROP_EXPLICIT", 4)],
        )],
    );
    assert!(
        found
            .iter()
            .all(|f| f.id.as_str() == "openvswitch_not_linux_bridge"),
        "{:?}",
        ids(&found)
    );
    let eth1 = found.iter().find(|f| f.interface == "eth1").unwrap();
    assert!(
        eth1.message
            .starts_with("eth1 is a port of the Open vSwitch datapath ovs-system:"),
        "{}",
        eth1.message
    );
    // The window's drops there are its evidence, OVS's reasons among them.
    assert!(
        eth1.evidence.contains(
            &"the kernel dropped on it during the window: OTHERHOST 9, OVS_DROP_EXPLICIT 4"
                .to_owned()
        ),
        "{:?}",
        eth1.evidence
    );
    assert_eq!(
        eth1.facts["kernel_drops"],
        serde_json::json!({"OTHERHOST": 9, "OVS_DROP_EXPLICIT": 4})
    );
    let br_int = found.iter().find(|f| f.interface == "br-int").unwrap();
    assert!(
        br_int
            .evidence
            .contains(&"the kernel dropped nothing on it during the window".to_owned()),
        "{:?}",
        br_int.evidence
    );
}

fn nf(drop_chains: Result<Vec<DropChain>, String>) -> netfilter::Facts {
    netfilter::Facts {
        call_iptables: Some(true),
        call_ip6tables: Some(false),
        drop_chains,
    }
}

fn bridged_lab(p2_drops: u64) -> Vec<Observed> {
    vec![
        observed("br0", Role::Bridge, None, FrameCounters::default(), &[]),
        observed("p1", Role::Port, Some("br0"), FrameCounters::default(), &[]),
        observed(
            "p2",
            Role::Port,
            Some("br0"),
            FrameCounters::default(),
            &[("NETFILTER_DROP", p2_drops)],
        ),
    ]
}

#[test]
fn br_netfilter_forward_drop_from_the_windows_drops() {
    let state = crate::status::tests::state(vec![crate::status::tests::BR]);
    let chain = DropChain {
        family: "ip".into(),
        table: "filter".into(),
        chain: "FORWARD".into(),
    };
    let facts = ns(&state, Some(nf(Ok(vec![chain]))));
    let found = run(&facts, &bridged_lab(6));
    assert_eq!(ids(&found), ["br_netfilter_forward_drop"]);
    let f = &found[0];
    assert_eq!(f.weight, 6);
    assert_eq!(
        f.evidence,
        [
            "net.bridge.bridge-nf-call-iptables = 1, net.bridge.bridge-nf-call-ip6tables = 0 in this namespace",
            "p2: kernel confirmed drops: 6 NETFILTER_DROP (frames bridged towards it)",
            "forward chain(s) with policy drop: ip filter FORWARD",
        ]
    );
    assert!(
        f.remedy[0]
            .contains("nft insert rule ip filter FORWARD iifname \"br0\" oifname \"br0\" accept"),
        "{}",
        f.remedy[0]
    );
    // nft unreadable: the drops and switches still name it, with why.
    let found = run(
        &ns(&state, Some(nf(Err("nft is not installed".into())))),
        &bridged_lab(2),
    );
    assert_eq!(ids(&found), ["br_netfilter_forward_drop"]);
    assert!(found[0].evidence[2].ends_with("nft is not installed"));
    assert!(found[0].remedy[0].contains("iptables -I FORWARD -i br0 -o br0 -j ACCEPT"));
    // br_netfilter off, or no drops: not this.
    let off = netfilter::Facts {
        call_iptables: Some(false),
        call_ip6tables: None,
        drop_chains: Ok(vec![]),
    };
    assert_eq!(
        ids(&run(&ns(&state, Some(off)), &bridged_lab(6))),
        Vec::<&str>::new()
    );
    assert_eq!(ids(&run(&facts, &bridged_lab(0))), Vec::<&str>::new());
}
