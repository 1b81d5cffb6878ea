//! The frame's path beyond the MAC (issue 18), each built in a lab with
//! real frames: br_netfilter handing bridged frames to a FORWARD chain
//! whose policy drops, the host cut off from its macvlan children, and a
//! switch that rejects the children's forged transmits.
//! The finding must come first, with exact numbers and a remedy that
//! works. A VLAN-filtering bridge's gaps are the `vlan_gap` scenario
//! (`tests/src/scenarios/vlan_gap.rs`), which the kernel matrix runs on
//! kernels that can filter VLANs.

mod common;

use common::diagnosis::{Diagnosis, finding, ids, status_ids, status_json};
use macdrop_tests::{
    btf::Btf,
    frames::{arp_request, ipv4_udp, mac_to_string},
    lab::{BRIDGE, BRIDGE_IPV4, BridgeLab, PEER_IFACE, links, peer_ipv4, peer_mac},
    netns::NetNs,
    sender::RawSender,
};
use serde_json::json;
use std::time::Duration;

use aya::programs::{SchedClassifier, TcAttachType};
use macdrop_tests::{
    macdrop::{Macdrop, Report},
    wait::poll_until,
};

/// The table and chain the lab's FORWARD policy drop lives in.
const NFT_TABLE: &str = "macdrop_t";
const NFT_CHAIN: &str = "lab_forward";

/// `count` UDP frames from peer 1 to peer 2, bridged from p1 to p2.
fn send_between_ports(lab: &BridgeLab, count: usize) {
    let tx = RawSender::new(lab.peer(1), PEER_IFACE).unwrap();
    tx.send(
        &ipv4_udp(peer_mac(2), peer_mac(1), peer_ipv4(1), peer_ipv4(2)),
        count,
    )
    .unwrap();
}

/// A bridge with two ports, br_netfilter's `bridge-nf-call-iptables` on
/// and an nft forward chain with policy drop in the lab's namespace:
/// frames between the ports are dropped (NETFILTER_DROP on p2, where they
/// leave), diagnose names it first with the count, the switches and the
/// chain, and its remedy (accept the bridge's own traffic) makes the next
/// diagnosis quiet.
#[test]
fn br_netfilter_forward_drop_is_named_first_and_the_remedy_works() {
    let btf = Btf::kernel().unwrap();
    let netfilter_drop = btf
        .as_ref()
        .is_some_and(|b| b.has_enum_member("skb_drop_reason", "SKB_DROP_REASON_NETFILTER_DROP"));
    if !netfilter_drop {
        macdrop_tests::skip::record(
            "br_netfilter_forward_drop from the kernel's NETFILTER_DROP",
            "this kernel's BTF has no SKB_DROP_REASON_NETFILTER_DROP",
        );
        return;
    }
    let lab = BridgeLab::new(2).unwrap();
    let host = lab.host();
    if host
        .exec(&["sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1"])
        .is_err()
    {
        macdrop_tests::skip::record(
            "br_netfilter_forward_drop",
            "no br_netfilter here (/proc/sys/net/bridge is missing)",
        );
        return;
    }
    host.exec(&["nft", "add", "table", "ip", NFT_TABLE])
        .unwrap();
    host.exec(&[
        "nft",
        "add",
        "chain",
        "ip",
        NFT_TABLE,
        NFT_CHAIN,
        "{ type filter hook forward priority 0; policy drop; }",
    ])
    .unwrap();

    let args = ["--duration", "2", "--format", "json", "--bridge", BRIDGE];
    let run = Diagnosis::start(host, &args);
    send_between_ports(&lab, 6);
    let done = run.finish();
    assert!(done.status.success(), "{}", done.stderr);
    let report = done.json();
    assert_eq!(ids(&report), ["br_netfilter_forward_drop"], "{report:#}");
    let f = finding(&report, "br_netfilter_forward_drop");
    assert_eq!(
        (f["severity"].as_str(), f["rank"].as_u64()),
        (Some("error"), Some(1))
    );
    assert_eq!(f["interface"], BRIDGE);
    assert_eq!(
        f["facts"],
        json!({
            "bridge": BRIDGE,
            "netfilter_drops": 6,
            "per_interface": {"p2": 6},
            "bridge_nf_call_iptables": true,
            "bridge_nf_call_ip6tables": true,
            "forward_drop_chains": [{"family": "ip", "table": NFT_TABLE, "chain": NFT_CHAIN}],
        }),
        "{report:#}"
    );
    let evidence = f["evidence"].to_string();
    assert!(
        evidence.contains("p2: kernel confirmed drops: 6 NETFILTER_DROP"),
        "{evidence}"
    );
    let remedy = f["remedy"][0].as_str().unwrap();
    let accept = format!(
        "nft insert rule ip {NFT_TABLE} {NFT_CHAIN} iifname \"{BRIDGE}\" oifname \"{BRIDGE}\" accept"
    );
    assert!(remedy.contains(&accept), "{remedy}");

    // The remedy, as written, then the same frames: no drop, no finding.
    host.exec(&["sh", "-c", &accept]).unwrap();
    let run = Diagnosis::start(host, &args);
    send_between_ports(&lab, 6);
    let done = run.finish();
    let report = done.json();
    assert_eq!(ids(&report), Vec::<&str>::new(), "{report:#}");
}

/// A macvlan child (bridge mode) in a container namespace on the host's
/// veth uplink: the host cannot ping it, and `status` says why (info),
/// naming the child's MAC; a host-side macvlan shim, the remedy, makes
/// the ping work and the finding go away. Without children elsewhere the
/// uplink has no finding.
#[test]
fn macvlan_host_isolation_is_explained_by_status() {
    const UPLINK: &str = "up0";
    const CHILD_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x0d, 0x01];
    let host = NetNs::new().unwrap();
    let wire = NetNs::new().unwrap();
    let container = NetNs::new().unwrap();
    links::add_veth(
        links::End {
            ns: &host,
            name: UPLINK,
            mac: Some([0x02, 0, 0, 0, 0x0d, 0]),
        },
        links::End {
            ns: &wire,
            name: "sw0",
            mac: None,
        },
    )
    .unwrap();
    links::add_ipv4(&host, UPLINK, BRIDGE_IPV4).unwrap();
    links::up(&host, UPLINK).unwrap();
    links::up(&wire, "sw0").unwrap();
    // Healthy so far: no child anywhere.
    assert_eq!(
        status_ids(&status_json(&host)),
        Vec::<(String, String)>::new()
    );

    let child_ip = "192.0.2.20";
    links::add_macvlan(&host, "mv0", UPLINK, CHILD_MAC).unwrap();
    host.exec(&["ip", "link", "set", "mv0", "netns", container.name()])
        .unwrap();
    links::add_ipv4(&container, "mv0", child_ip.parse().unwrap()).unwrap();
    links::up(&container, "mv0").unwrap();
    let ping = || host.exec(&["ping", "-c", "1", "-W", "1", child_ip]).is_ok();
    assert!(
        !ping(),
        "the host reached its macvlan child through {UPLINK}"
    );

    // A veth has no unicast filter: the children's MACs make it
    // promiscuous (the kernel's own hold, the "other" holder), which
    // interface_promiscuous reports too.
    let status = status_json(&host);
    assert_eq!(
        status_ids(&status),
        [
            ("interface_promiscuous".to_owned(), UPLINK.to_owned()),
            ("macvlan_host_isolation".to_owned(), UPLINK.to_owned())
        ],
        "{status:#}"
    );
    let f = &status["findings"][1];
    assert_eq!(f["severity"], "info");
    assert!(
        f["message"]
            .as_str()
            .unwrap()
            .contains("has 1 macvlan child(ren) in other namespaces"),
        "{f}"
    );
    // diagnose names the child's MAC and the uplink's address.
    let run = Diagnosis::start(
        &host,
        &["--duration", "1", "--format", "json", "--iface", UPLINK],
    );
    let report = run.finish().json();
    assert_eq!(
        ids(&report),
        ["interface_promiscuous", "macvlan_host_isolation"],
        "{report:#}"
    );
    assert_eq!(
        finding(&report, "macvlan_host_isolation")["facts"],
        json!({
            "parent": UPLINK,
            "children": [mac_to_string(&CHILD_MAC)],
            "parent_addrs": [BRIDGE_IPV4.to_string()],
        })
    );

    // The remedy: a shim on the host and a route through it.
    let shim = format!("{UPLINK}-shim");
    host.exec(&[
        "ip", "link", "add", &shim, "link", UPLINK, "type", "macvlan", "mode", "bridge",
    ])
    .unwrap();
    links::up(&host, &shim).unwrap();
    host.exec(&[
        "ip",
        "route",
        "add",
        &format!("{child_ip}/32"),
        "dev",
        &shim,
    ])
    .unwrap();
    assert!(ping(), "the host reaches its child through {shim}");
    assert_eq!(
        status_ids(&status_json(&host)),
        [("interface_promiscuous".to_owned(), UPLINK.to_owned())]
    );
}

/// A macvlan child (in a container namespace) on the host's veth uplink
/// behind a "switch" namespace. With the switch rejecting forged
/// transmits (an nft netdev ingress rule on its end drops every frame
/// whose source MAC is not the uplink's, as VMware's "Forged transmits:
/// Reject" does), the child's N frames leave the uplink and nothing for
/// the child comes back: diagnose names `forged_transmits_rejected` first
/// with exactly N. With the switch accepting, its replies to the child
/// arrive (unicast for the child's MAC): no such finding. (The uplink
/// holds no address, so `macvlan_host_isolation` has nothing to say; a
/// veth has no unicast filter, so the children make it promiscuous.)
#[test]
fn forged_transmits_rejected_is_named_first_with_exact_counts() {
    const UPLINK: &str = "up0";
    const SWITCH_END: &str = "sw0";
    const UPLINK_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x0e, 0];
    const SWITCH_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x0e, 0xfe];
    const CHILD_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x0e, 0x01];
    const SENT: usize = 7;
    // Of SENT: ARP requests, broadcast (what a healthy network answers
    // with unicast); the rest one-way unicast.
    const ARPS: usize = 2;
    const REPLIES: usize = 3;
    let host = NetNs::new().unwrap();
    let switch = NetNs::new().unwrap();
    let container = NetNs::new().unwrap();
    links::add_veth(
        links::End {
            ns: &host,
            name: UPLINK,
            mac: Some(UPLINK_MAC),
        },
        links::End {
            ns: &switch,
            name: SWITCH_END,
            mac: Some(SWITCH_MAC),
        },
    )
    .unwrap();
    links::up(&host, UPLINK).unwrap();
    links::up(&switch, SWITCH_END).unwrap();
    links::add_macvlan(&host, "mv0", UPLINK, CHILD_MAC).unwrap();
    host.exec(&["ip", "link", "set", "mv0", "netns", container.name()])
        .unwrap();
    links::up(&container, "mv0").unwrap();
    // The switch rejects forged transmits: only the uplink's own MAC
    // gets through its port.
    let nft = |argv: &[&str]| switch.exec(&[&["nft"], argv].concat()).unwrap();
    nft(&["add", "table", "netdev", "vswitch"]);
    nft(&[
        "add",
        "chain",
        "netdev",
        "vswitch",
        "port",
        &format!("{{ type filter hook ingress device {SWITCH_END} priority 0; policy accept; }}"),
    ]);
    nft(&[
        "add",
        "rule",
        "netdev",
        "vswitch",
        "port",
        "ether",
        "saddr",
        "!=",
        &mac_to_string(&UPLINK_MAC),
        "drop",
    ]);
    // The child's frames to the switch's MAC, for an address nobody has:
    // neither side answers them itself (forwarding is off), so the only
    // unicast for the child is what the switch sends as its replies.
    let unicast_sends = |n: usize| {
        let tx = RawSender::new(&container, "mv0").unwrap();
        let frame = ipv4_udp(
            SWITCH_MAC,
            CHILD_MAC,
            "192.0.2.20".parse().unwrap(),
            "198.51.100.1".parse().unwrap(),
        );
        tx.send(&frame, n).unwrap();
    };
    let child_sends = || {
        unicast_sends(SENT - ARPS);
        let tx = RawSender::new(&container, "mv0").unwrap();
        let arp = arp_request(
            [0xff; 6],
            CHILD_MAC,
            "192.0.2.20".parse().unwrap(),
            "192.0.2.1".parse().unwrap(),
        );
        tx.send(&arp, ARPS).unwrap();
    };
    let args = ["--duration", "1", "--format", "json", "--iface", UPLINK];

    // One-way unicast alone is no evidence: nothing answers a datagram to
    // a collector on a healthy network either.
    let run = Diagnosis::start(&host, &args);
    unicast_sends(SENT);
    let report = run.finish().json();
    assert_eq!(ids(&report), ["interface_promiscuous"], "{report:#}");

    let run = Diagnosis::start(&host, &args);
    child_sends();
    // Counted through one TCX egress link, which goes with macdrop.
    assert_eq!(egress_programs(&host, UPLINK), ["macdrop_tc_egre"]);
    let report = run.finish().json();
    assert_eq!(egress_programs(&host, UPLINK), Vec::<String>::new());
    assert_eq!(
        ids(&report),
        ["forged_transmits_rejected", "interface_promiscuous"],
        "{report:#}"
    );
    let f = finding(&report, "forged_transmits_rejected");
    assert_eq!(
        (
            f["severity"].as_str(),
            f["rank"].as_u64(),
            f["interface"].as_str()
        ),
        (Some("error"), Some(1), Some(UPLINK))
    );
    assert_eq!(
        f["facts"],
        json!({
            "egress_own": 0,
            "egress_child": SENT,
            "egress_other": 0,
            "egress_broadcast": ARPS,
            "received_for_others": 0,
            "received_from": "pkt_type_otherhost",
        }),
        "{report:#}"
    );
    assert!(
        f["message"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{UPLINK} sent {SENT} frame(s) with source MACs")),
        "{f}"
    );

    // The switch accepts: its replies to the child come back.
    nft(&["delete", "table", "netdev", "vswitch"]);
    let run = Diagnosis::start(&host, &args);
    child_sends();
    let tx = RawSender::new(&switch, SWITCH_END).unwrap();
    let reply = ipv4_udp(
        CHILD_MAC,
        SWITCH_MAC,
        "198.51.100.1".parse().unwrap(),
        "203.0.113.20".parse().unwrap(),
    );
    tx.send(&reply, REPLIES).unwrap();
    let report = run.finish().json();
    assert_eq!(ids(&report), ["interface_promiscuous"], "{report:#}");

    // `watch` shows the uplink's counts per source class, exactly.
    let mut m = Macdrop::spawn(&host, &["--iface", UPLINK]).unwrap();
    child_sends();
    let counted = |r: &Report| {
        r.interface(UPLINK)
            .and_then(|i| i.egress.as_ref())
            .is_some_and(|e| e["child"] == SENT)
    };
    let report = m.settle(counted, Duration::from_secs(10));
    assert_eq!(
        report.interface(UPLINK).and_then(|i| i.egress.clone()),
        Some(json!({"own": 0, "child": SENT, "other": 0, "broadcast": ARPS})),
        "{:?}",
        m.latest_json()
    );
    // A child added while macdrop runs is classified as one once the
    // session re-read the namespace (its notification): probe frames
    // until one lands in `child`, then a batch counts there exactly.
    const LATE_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x0e, 0x02];
    const BATCH: usize = 4;
    links::add_macvlan(&host, "mv1", UPLINK, LATE_MAC).unwrap();
    links::up(&host, "mv1").unwrap();
    let late = RawSender::new(&host, "mv1").unwrap();
    let late_frame = ipv4_udp(
        SWITCH_MAC,
        LATE_MAC,
        "192.0.2.21".parse().unwrap(),
        "198.51.100.1".parse().unwrap(),
    );
    let egress = |r: &Report, class: &str| {
        r.interface(UPLINK)
            .and_then(|i| i.egress.as_ref())
            .and_then(|e| e[class].as_u64())
            .unwrap_or(0) as usize
    };
    let mut probes = 0;
    let seen = poll_until(
        Duration::from_secs(10),
        || {
            late.send(&late_frame, 1)?;
            probes += 1;
            m.wait_for(
                |r| egress(r, "child") + egress(r, "other") == SENT + probes,
                Duration::from_secs(5),
            )
        },
        |r| egress(r, "child") > SENT,
    )
    .unwrap();
    let (child, other) = (egress(&seen, "child"), egress(&seen, "other"));
    assert_eq!(child + other, SENT + probes);
    late.send(&late_frame, BATCH).unwrap();
    let report = m.settle(
        |r| egress(r, "child") == child + BATCH,
        Duration::from_secs(10),
    );
    assert_eq!(
        report.interface(UPLINK).and_then(|i| i.egress.clone()),
        Some(json!({"own": 0, "child": child + BATCH, "other": other, "broadcast": ARPS})),
    );
    host.exec(&["ip", "link", "del", "mv1"]).unwrap();
    drop(m);
    let gone = || {
        poll_until(
            Duration::from_secs(10),
            || Ok(egress_programs(&host, UPLINK)),
            |p| p.is_empty(),
        )
        .unwrap()
    };
    gone();

    // Killed (SIGKILL, when the Diagnosis drops), macdrop leaves nothing
    // on the uplink's egress either.
    let run = Diagnosis::start(&host, &["--duration", "60", "--iface", UPLINK]);
    assert_eq!(egress_programs(&host, UPLINK), ["macdrop_tc_egre"]);
    drop(run);
    gone();
}

/// The names (as the kernel keeps them: 15 characters, so
/// `macdrop_tc_egress` is `macdrop_tc_egre`) of the programs on
/// `ifname`'s TCX egress in `ns`.
fn egress_programs(ns: &NetNs, ifname: &str) -> Vec<String> {
    ns.enter_thread(|| {
        let (_, progs) = SchedClassifier::query_tcx(ifname, TcAttachType::Egress).unwrap();
        progs
            .iter()
            .map(|p| p.name_as_str().unwrap_or_default().to_owned())
            .collect()
    })
    .unwrap()
}
