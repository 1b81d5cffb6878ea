//! Top offenders end to end: known numbers of mismatched frames in several
//! flows (different source MACs, a VLAN, IPv6) through a bridge port, and
//! the real `macdrop watch --format json` reporting exactly those flows,
//! most frames first, each count said to be exact (a few flows never fill
//! a bucket of the kernel's table), `--top-flows N` respected, none with
//! `--top-flows 0`; through tc and XDP.

mod common;

use common::SETTLE;
use macdrop_tests::{
    frames::{Mac, TPID_8021Q, ipv4_udp, ipv6_udp, mac_to_string, with_vlan_tags},
    lab::{
        BRIDGE, BRIDGE_IPV4, BRIDGE_IPV6, BridgeLab, BridgeLabOptions, FOREIGN_IPV4, FOREIGN_MAC,
        PEER_IFACE, peer_ipv4, peer_ipv6, peer_mac,
    },
    macdrop::Macdrop,
    sender::RawSender,
};
use serde_json::{Value, json};

/// A VMware vNIC's MAC: nobody in the lab has it.
const VMWARE: Mac = [0x00, 0x50, 0x56, 0xaa, 0xbb, 0xcc];
/// A second sender behind port 1 (as if behind a switch).
const OTHER_SRC: Mac = [0x02, 0, 0, 0, 0x0c, 0x51];

/// One flow the test sends: its frame and how many times.
struct Sent {
    frame: Vec<u8>,
    count: usize,
    /// The `top_flows` entry macdrop must report (None: not mismatched).
    want: Option<Value>,
}

fn flow(src: &Mac, vlan: Option<u16>, dst_ip: &str, frames: usize, bytes: usize) -> Value {
    json!({
        "src_mac": mac_to_string(src), "dst_mac": mac_to_string(&VMWARE), "vlan": vlan,
        "dst_ip": dst_ip, "frames": frames, "bytes": bytes, "exact": true,
        "sampled": false, "reasons": ["host_ip_wrong_mac"],
    })
}

/// Frames for this host's IPs with a MAC nobody has, from port 1's peer:
/// four flows of 7, 5, 4 and 3 frames, plus foreign unicast for another
/// host, which on a port is forwarding, not a mismatch.
fn traffic() -> Vec<Sent> {
    let v4 = ipv4_udp(VMWARE, peer_mac(1), peer_ipv4(1), BRIDGE_IPV4);
    let other = ipv4_udp(VMWARE, OTHER_SRC, peer_ipv4(1), BRIDGE_IPV4);
    let tagged = with_vlan_tags(&v4, &[(TPID_8021Q, 10)]);
    let v6 = ipv6_udp(VMWARE, peer_mac(1), peer_ipv6(1), BRIDGE_IPV6);
    let foreign = ipv4_udp(FOREIGN_MAC, peer_mac(1), peer_ipv4(1), FOREIGN_IPV4);
    let sent = |frame: Vec<u8>, count: usize, want: Option<fn(usize, usize) -> Value>| Sent {
        want: want.map(|w| w(count, count * frame.len())),
        frame,
        count,
    };
    vec![
        sent(
            v4,
            7,
            Some(|n, b| flow(&peer_mac(1), None, "192.0.2.1", n, b)),
        ),
        sent(
            other,
            5,
            Some(|n, b| flow(&OTHER_SRC, None, "192.0.2.1", n, b)),
        ),
        sent(
            tagged,
            4,
            Some(|n, b| flow(&peer_mac(1), Some(10), "192.0.2.1", n, b)),
        ),
        sent(
            v6,
            3,
            Some(|n, b| flow(&peer_mac(1), None, "2001:db8::1", n, b)),
        ),
        sent(foreign, 6, None),
    ]
}

/// Runs `macdrop watch` with `args` while the traffic is sent; returns the
/// JSON report in which p1 has counted all of it.
fn observe(args: &[&str]) -> (Value, Vec<Sent>) {
    let lab = BridgeLab::with_options(BridgeLabOptions {
        ports: 2,
        bridge_ipv6: true,
        ..BridgeLabOptions::default()
    })
    .unwrap();
    let mut argv = vec!["--bridge", BRIDGE];
    argv.extend(args);
    let mut macdrop = Macdrop::spawn(lab.host(), &argv).unwrap();
    macdrop.wait_for(|_| true, SETTLE).unwrap();
    let traffic = traffic();
    let tx = RawSender::new(lab.peer(1), PEER_IFACE).unwrap();
    for s in &traffic {
        tx.send(&s.frame, s.count).unwrap();
    }
    let wrong: u64 = traffic
        .iter()
        .filter(|s| s.want.is_some())
        .map(|s| s.count as u64)
        .sum();
    let foreign: u64 = traffic.iter().map(|s| s.count as u64).sum();
    let counted = |r: &macdrop_tests::macdrop::Report| {
        r.frames("p1")
            .is_some_and(|f| f.host_ip_wrong_mac == wrong && f.foreign_unicast == foreign)
    };
    macdrop
        .wait_for(counted, SETTLE)
        .unwrap_or_else(|e| panic!("{e:#}\n{}", macdrop.stderr()));
    let report = macdrop.latest_json().unwrap().unwrap();
    macdrop.stop().unwrap();
    (report, traffic)
}

fn iface<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {report:#}"))
}

/// The flows as compared: without their times (checked for form only).
fn without_times(flows: &Value) -> Vec<Value> {
    flows
        .as_array()
        .unwrap_or_else(|| panic!("top_flows is not a list: {flows}"))
        .iter()
        .map(|f| {
            for t in ["first_seen", "last_seen"] {
                assert!(
                    f[t].as_str().is_some_and(|s| s.ends_with('Z')),
                    "{t} in {f}"
                );
            }
            let mut f = f.clone();
            let o = f.as_object_mut().unwrap();
            o.remove("first_seen");
            o.remove("last_seen");
            f
        })
        .collect()
}

fn exact_top_flows(attach: &str) {
    let (report, traffic) = observe(&["--attach", attach, "--top-flows", "3"]);
    let want: Vec<Value> = traffic
        .iter()
        .filter_map(|s| s.want.clone())
        .take(3)
        .collect();
    assert_eq!(
        without_times(&iface(&report, "p1")["top_flows"]),
        want,
        "{attach}: p1's top 3, most frames first, in {report:#}"
    );
    for quiet in [BRIDGE, "p2"] {
        assert_eq!(
            iface(&report, quiet)["top_flows"],
            json!([]),
            "{attach}: {quiet}"
        );
    }
}

#[test]
fn top_flows_are_exact_ordered_and_bounded_with_tc() {
    exact_top_flows("tc");
}

/// XDP sees the VLAN tag in the frame, tc in `skb->vlan_tci`: the same
/// flow either way.
#[test]
fn top_flows_are_exact_ordered_and_bounded_with_xdp() {
    exact_top_flows("xdp");
}

#[test]
fn every_flow_by_default_and_none_with_top_flows_0() {
    let (report, traffic) = observe(&[]);
    let want: Vec<Value> = traffic.iter().filter_map(|s| s.want.clone()).collect();
    assert_eq!(want.len(), 4);
    assert_eq!(
        without_times(&iface(&report, "p1")["top_flows"]),
        want,
        "{report:#}"
    );

    let (report, _) = observe(&["--top-flows", "0"]);
    for name in ["p1", "p2", BRIDGE] {
        assert!(
            iface(&report, name)["top_flows"].is_null(),
            "{name}: no flows recorded in {report:#}"
        );
    }
}

/// A flood of mismatched frames (more than `flow_sampling::EXACT_RATE`, 16,384
/// a second) into port 1: the next report sets the port's flow sampling
/// above 1; the frames sent after that are counted exactly by class and
/// recorded one in N per CPU, so the flow is `sampled`, not `exact`, and
/// its count an estimate, off by less than N per CPU and change of the
/// sampling (an unfinished group rounds down; a group the sampling rose
/// in the middle of is counted at the new N, one more way); once the
/// flood stops the sampling falls back to 1.
#[test]
fn a_flood_is_sampled_and_says_so() {
    const BURST: usize = 60_000;
    let lab = BridgeLab::with_options(BridgeLabOptions {
        ports: 2,
        ..BridgeLabOptions::default()
    })
    .unwrap();
    let mut macdrop = Macdrop::spawn(lab.host(), &["--bridge", BRIDGE]).unwrap();
    let sampling =
        |r: &macdrop_tests::macdrop::Report| r.interface("p1").and_then(|i| i.flow_sampling);
    macdrop
        .wait_for(|r| sampling(r) == Some(1), SETTLE)
        .unwrap_or_else(|e| panic!("{e:#}\n{}", macdrop.stderr()));
    let frame = ipv4_udp(VMWARE, peer_mac(1), peer_ipv4(1), BRIDGE_IPV4);
    let tx = RawSender::new(lab.peer(1), PEER_IFACE).unwrap();
    tx.send(&frame, BURST).unwrap();
    let flooded = macdrop
        .wait_for(|r| sampling(r).is_some_and(|n| n > 1), SETTLE)
        .unwrap_or_else(|e| panic!("{e:#}\n{}", macdrop.stderr()));
    let n = u64::from(sampling(&flooded).unwrap());
    // The second burst, recorded under sampling.
    tx.send(&frame, BURST).unwrap();
    let sent = 2 * BURST as u64;
    let report = macdrop
        .wait_for(
            |r| r.frames("p1").is_some_and(|f| f.host_ip_wrong_mac == sent),
            SETTLE,
        )
        .unwrap_or_else(|e| panic!("{e:#}\n{}", macdrop.stderr()));
    let f = report.frames("p1").unwrap();
    assert_eq!(
        (f.host_ip_wrong_mac, f.foreign_unicast),
        (sent, sent),
        "the counters stay exact"
    );
    let json = macdrop.latest_json().unwrap().unwrap();
    let flows = &iface(&json, "p1")["top_flows"];
    assert_eq!(flows.as_array().map(Vec::len), Some(1), "{json:#}");
    let flow = &flows[0];
    assert_eq!(
        (&flow["sampled"], &flow["exact"]),
        (&json!(true), &json!(false)),
        "an estimate says so: {flow}"
    );
    // Each CPU's sampler records the last frame of every N it counts; the
    // sampling may have changed once more during the second burst (up to
    // 4 N), and each change can be off by up to the larger N either way.
    let cpus = std::thread::available_parallelism().unwrap().get() as u64;
    let frames = flow["frames"].as_u64().unwrap();
    let slack = 2 * 4 * n * cpus;
    assert!(
        frames.abs_diff(sent) <= slack,
        "{frames} estimated for {sent} sent at 1 in {n}: {json:#}"
    );
    assert_eq!(flow["bytes"].as_u64(), Some(frames * frame.len() as u64));
    // The flood is over: exact again.
    macdrop
        .wait_for(|r| sampling(r) == Some(1), SETTLE)
        .unwrap_or_else(|e| panic!("{e:#}\n{}", macdrop.stderr()));
    macdrop.stop().unwrap();
}
