//! `macdrop diagnose`: each fault it must recognise is built in a lab, the
//! traffic that shows it is sent during the window, and the finding must
//! name it with the exact numbers; a healthy lab yields no finding, and
//! the remedy for the README's incident is applied and shown to work.

mod common;

use std::{process::Stdio, time::Duration};

use common::{
    SETTLE, TempPcap,
    diagnosis::{Diagnosis, finding, ids, interface},
};
use macdrop_tests::{
    btf::KernelBtf,
    frames::{BROADCAST, ipv4_udp, mac_to_string},
    lab::{
        BRIDGE, BRIDGE_IPV4, BRIDGE_MAC, BridgeLab, BridgeLabOptions, PEER_IFACE, peer_ipv4,
        peer_mac, port_mac, port_name,
    },
    netns::NetNs,
    pcap::read,
    promisc::PromiscSocket,
    sender::RawSender,
    wait::poll_until,
};
use serde_json::Value;

/// `count` UDP frames from peer `i` for br0's IP, addressed to `dst`.
fn send_to_host(lab: &BridgeLab, i: usize, dst: [u8; 6], count: usize) {
    let tx = RawSender::new(lab.peer(i), PEER_IFACE).unwrap();
    tx.send(
        &ipv4_udp(dst, peer_mac(i), peer_ipv4(i), BRIDGE_IPV4),
        count,
    )
    .unwrap();
}

/// Whether macdrop's report has the kernel's confirmed drops.
fn drops_reported(report: &Value) -> bool {
    !report["summary"]["drop_source"].is_null()
}

/// Healthy: frames to the bridge's MAC and broadcasts only, a pinned MAC
/// in the FDB: no finding, in JSON and in words.
#[test]
fn a_healthy_lab_yields_no_finding() {
    let lab = BridgeLab::new(2).unwrap();
    let run = Diagnosis::start(
        lab.host(),
        &["--duration", "2", "--format", "json", "--bridge", BRIDGE],
    );
    send_to_host(&lab, 1, BRIDGE_MAC, 5);
    let tx = RawSender::new(lab.peer(1), PEER_IFACE).unwrap();
    tx.send(
        &ipv4_udp(BROADCAST, peer_mac(1), peer_ipv4(1), BRIDGE_IPV4),
        2,
    )
    .unwrap();
    let done = run.finish();
    assert!(done.status.success(), "{}", done.stderr);
    let report = done.json();
    assert_eq!(report["healthy"], true, "{report:#}");
    assert_eq!(ids(&report), Vec::<&str>::new());
    // The line gives the window as it really was: at least the two
    // seconds asked, longer on a loaded machine.
    let secs = report["window"]["seconds"]
        .as_f64()
        .expect("window.seconds");
    assert!((2.0..5.0).contains(&secs), "{secs}");
    assert_eq!(
        report["summary"]["text"],
        format!(
            "no MAC-mismatch drops in {} s on 3 interfaces",
            secs.round() as u64
        )
    );
    let p1 = &interface(&report, "p1")["frames"];
    assert_eq!(
        (p1["own"].as_u64(), p1["broadcast"].as_u64()),
        (Some(5), Some(2))
    );

    // The same in words.
    let run = Diagnosis::start(lab.host(), &["--duration", "1"]);
    let done = run.finish();
    assert!(done.status.success());
    // "no MAC-mismatch drops in N s on 3 interfaces", N the real window:
    // the one second asked, more on a loaded machine.
    let last = done.stdout.trim_end().lines().last().unwrap_or_default();
    let secs = last
        .strip_prefix("no MAC-mismatch drops in ")
        .and_then(|rest| rest.strip_suffix(" s on 3 interfaces"))
        .and_then(|n| n.parse::<u64>().ok());
    assert!(
        secs.is_some_and(|n| (1..=3).contains(&n)),
        "{}",
        done.stdout
    );
}

/// The README's incident: br0's own MAC removed from its FDB. diagnose
/// names it with the frames that came for this host, the kernel's confirmed
/// drops and the fix; applying the fix makes pings work and the next
/// diagnosis healthy.
#[test]
fn missing_fdb_entry_is_named_with_its_numbers_and_the_remedy_works() {
    let lab = BridgeLab::new(1).unwrap();
    lab.remove_bridge_mac_from_fdb().unwrap();
    let run = Diagnosis::start(lab.host(), &["--duration", "2", "--format", "json"]);
    send_to_host(&lab, 1, BRIDGE_MAC, 7);
    let done = run.finish();
    assert!(
        done.status.success(),
        "exit 0 with findings: {}",
        done.stderr
    );
    let report = done.json();
    assert_eq!(ids(&report), ["bridge_mac_not_in_fdb"], "{report:#}");
    let f = finding(&report, "bridge_mac_not_in_fdb");
    assert_eq!(f["severity"], "error");
    assert_eq!(f["rank"], 1);
    assert_eq!(f["interface"], BRIDGE);
    let mac = mac_to_string(&BRIDGE_MAC);
    assert_eq!(f["facts"]["mac"], mac.as_str());
    assert_eq!(f["facts"]["host_ip_wrong_mac"], 7);
    assert_eq!(f["facts"]["per_interface"]["p1"], 7);
    assert_eq!(
        f["facts"]["local_fdb"],
        serde_json::json!([mac_to_string(&port_mac(1))])
    );
    assert_eq!(f["facts"]["host_ips"], serde_json::json!(["192.0.2.1"]));
    assert_eq!(f["facts"]["bridge_promiscuous"], false);
    let evidence = f["evidence"].to_string();
    assert!(
        evidence.contains(
            "p1: 7 frame(s) for this host's IP (192.0.2.1) with a MAC br0 does not deliver"
        ),
        "{evidence}"
    );
    // Whether the kernel confirms, from its own BTF, not from macdrop.
    let kernel = KernelBtf::read().unwrap();
    assert_eq!(
        drops_reported(&report),
        kernel.drop_reasons,
        "confirmed drops in the report, against enum skb_drop_reason in the kernel's BTF"
    );
    if kernel.reason_no_tx_target {
        // One port: the flood has nowhere to go.
        assert_eq!(f["facts"]["mac_mismatch_drops"], 7);
        assert!(
            evidence.contains("kernel confirmed drops: 7 NO_TX_TARGET"),
            "{evidence}"
        );
    } else {
        macdrop_tests::skip::part(
            "diagnose: the kernel's confirmed drops in the incident's evidence",
            "this kernel's BTF has no SKB_DROP_REASON_NO_TX_TARGET",
        );
    }
    let remedy = f["remedy"][0].as_str().unwrap();
    assert_eq!(
        remedy,
        format!("bridge fdb add {mac} dev {BRIDGE} self local")
    );

    // The symptom, independently: a real ping from the peer fails...
    lab.set_peer_address(1, "192.0.2.11/24").unwrap();
    let ping = |ns: &NetNs| {
        ns.command(&["ping", "-c", "1", "-W", "1", "192.0.2.1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success()
    };
    let forget = |ns: &NetNs| {
        // No ARP probes of the peer may land in the next window.
        ns.exec(&["ip", "neigh", "flush", "dev", PEER_IFACE])
            .unwrap();
    };
    assert!(!ping(lab.peer(1)), "the incident lab must break pings");
    forget(lab.peer(1));
    // ...the remedy, exactly as printed...
    let argv: Vec<&str> = remedy.split_whitespace().collect();
    lab.host().exec(&argv).unwrap();
    // ...and it works.
    assert!(ping(lab.peer(1)), "ping still fails after `{remedy}`");
    forget(lab.peer(1));
    let run = Diagnosis::start(lab.host(), &["--duration", "2", "--format", "json"]);
    send_to_host(&lab, 1, BRIDGE_MAC, 7);
    let after = run.finish().json();
    assert_eq!(ids(&after), Vec::<&str>::new(), "{after:#}");
    let p1 = &interface(&after, "p1")["frames"];
    assert_eq!(
        (p1["own"].as_u64(), p1["host_ip_wrong_mac"].as_u64()),
        (Some(7), Some(0))
    );
}

/// `diagnose --pcap FILE` in the README's incident: the window's
/// mismatched frames (those for br0's IP to br0's MAC, which its FDB no
/// longer delivers) reach the file and nothing else (broadcasts, frames
/// bridged between the ports), the report's `pcap` object counts them, and
/// `--pcap-count` bounds them; with tc and with XDP.
#[test]
fn the_incident_with_pcap_evidence() {
    let lab = BridgeLab::new(2).unwrap();
    lab.remove_bridge_mac_from_fdb().unwrap();
    let (src, sip) = (peer_mac(1), peer_ipv4(1));
    let tx = RawSender::new(lab.peer(1), PEER_IFACE).unwrap();
    // (hook, --pcap-count, frames expected in the file)
    for (hook, count, written) in [("tc", "100", 7u64), ("xdp", "5", 5)] {
        let pcap = TempPcap::new(&format!("diagnose-{hook}"));
        let file = pcap.arg();
        let run = Diagnosis::start(
            lab.host(),
            &[
                "--duration",
                "2",
                "--format",
                "json",
                "--bridge",
                BRIDGE,
                "--attach",
                hook,
                "--pcap",
                &file,
                "--pcap-count",
                count,
            ],
        );
        send_to_host(&lab, 1, BRIDGE_MAC, 7);
        // Not evidence: bridged to peer 2, and a broadcast.
        tx.send(&ipv4_udp(peer_mac(2), src, sip, peer_ipv4(2)), 3)
            .unwrap();
        tx.send(&ipv4_udp(BROADCAST, src, sip, BRIDGE_IPV4), 2)
            .unwrap();
        let done = run.finish();
        assert!(done.status.success(), "{hook}: {}", done.stderr);
        let report = done.json();
        assert_eq!(
            ids(&report),
            ["bridge_mac_not_in_fdb"],
            "{hook}: {report:#}"
        );
        assert_eq!(
            report["pcap"],
            serde_json::json!({
                "file": file,
                "frames_written": written,
                "frames_limit": count.parse::<u64>().unwrap(),
                "not_captured_rate_limit": 0,
                "not_captured_ring_full": 0,
            }),
            "{hook}: {report:#}"
        );
        let got = read(&pcap.path()).unwrap();
        assert_eq!(got.len() as u64, written, "{hook}: {got:#?}");
        for f in &got {
            let at = format!("{hook}: {f:?}");
            assert_eq!(f.interface, "p1", "{at}");
            assert_eq!(f.comment, "host_ip_wrong_mac on p1 (port of br0)", "{at}");
            assert_eq!(
                (f.eth_src.clone(), f.eth_dst.clone()),
                (mac_to_string(&src), mac_to_string(&BRIDGE_MAC)),
                "{at}"
            );
            assert_eq!(
                (f.ip_src.clone(), f.ip_dst.clone()),
                (sip.to_string(), BRIDGE_IPV4.to_string()),
                "{at}"
            );
            assert_eq!((f.len, f.cap_len), (60, 60), "{at}");
        }
    }
}

/// In words, with `--fail-on error`: the ranked text and exit code 4.
#[test]
fn the_text_report_and_fail_on() {
    let lab = BridgeLab::new(1).unwrap();
    lab.remove_bridge_mac_from_fdb().unwrap();
    let run = Diagnosis::start(lab.host(), &["--duration", "2", "--fail-on", "error"]);
    send_to_host(&lab, 1, BRIDGE_MAC, 3);
    let done = run.finish();
    assert_eq!(
        done.status.code(),
        Some(4),
        "{}{}",
        done.stdout,
        done.stderr
    );
    let text = &done.stdout;
    assert!(
        text.starts_with("macdrop diagnose: 2 interface(s) in netns "),
        "{text}"
    );
    assert!(
        text.contains("\n1 finding(s), most severe first:\n"),
        "{text}"
    );
    assert!(
        text.contains("\n1. ERROR bridge_mac_not_in_fdb on br0\n"),
        "{text}"
    );
    assert!(
        text.contains(
            "   - p1: 3 frame(s) for this host's IP (192.0.2.1) with a MAC br0 does not deliver"
        ),
        "{text}"
    );
    assert!(
        text.contains("   remedy:\n   - bridge fdb add 02:00:00:00:0b:01 dev br0 self local\n"),
        "{text}"
    );
    // A lower threshold than what was found still fails; no finding passes.
    lab.host()
        .exec(&[
            "bridge",
            "fdb",
            "add",
            &mac_to_string(&BRIDGE_MAC),
            "dev",
            BRIDGE,
            "self",
            "local",
        ])
        .unwrap();
    let done = Diagnosis::start(lab.host(), &["--duration", "1", "--fail-on", "info"]).finish();
    assert_eq!(done.status.code(), Some(0), "{}", done.stdout);
}

/// An unpinned bridge changes its MAC when the port whose MAC it had goes;
/// a peer still sending to the old MAC is named, with the change, and the
/// unpinned MAC is the warning under it.
#[test]
fn stale_peers_after_a_mac_change() {
    let lab = BridgeLab::with_options(BridgeLabOptions {
        ports: 2,
        pin_bridge_mac: false,
        ..BridgeLabOptions::default()
    })
    .unwrap();
    let (old, new) = (port_mac(1), port_mac(2));
    let run = Diagnosis::start(lab.host(), &["--duration", "4", "--format", "json"]);
    lab.remove_port(1).unwrap();
    let mac_now = poll_until(
        SETTLE,
        || {
            let out = lab.host().exec(&["cat", "/sys/class/net/br0/address"])?;
            Ok(String::from_utf8_lossy(&out).trim().to_owned())
        },
        |mac| *mac == mac_to_string(&new),
    )
    .unwrap();
    assert_eq!(mac_now, mac_to_string(&new));
    // macdrop hears of the change by notification at once; a margin for
    // it to reach the kernel's previous-MAC map before the frames.
    std::thread::sleep(Duration::from_millis(800));
    send_to_host(&lab, 2, old, 5);
    send_to_host(&lab, 2, new, 3);
    let report = run.finish().json();
    assert_eq!(
        ids(&report),
        ["stale_mac_after_mac_change", "bridge_mac_not_pinned"],
        "{report:#}"
    );
    let f = finding(&report, "stale_mac_after_mac_change");
    assert_eq!(f["severity"], "error");
    assert_eq!(f["facts"]["stale_mac"], 5);
    assert_eq!(f["facts"]["per_interface"]["p2"], 5);
    assert_eq!(f["facts"]["mac"], mac_to_string(&new).as_str());
    assert_eq!(
        f["facts"]["mac_changes"][0]["old_mac"],
        mac_to_string(&old).as_str()
    );
    assert_eq!(
        f["facts"]["mac_changes"][0]["new_mac"],
        mac_to_string(&new).as_str()
    );
    assert_eq!(f["facts"]["mac_pinned"], false);
    // What changed it: the unpinned bridge took p2's MAC when p1 left.
    assert_eq!(f["facts"]["cause"], "bridge_took_port_mac");
    assert_eq!(f["facts"]["cause_interface"], "p2");
    assert_eq!(f["facts"]["addr_assign_type"], "random");
    let remedy = f["remedy"].to_string();
    assert!(
        remedy.contains("arping -U -c 3 -I br0 192.0.2.1"),
        "{remedy}"
    );
    assert!(
        remedy.contains(&format!("ip link set br0 address {}", mac_to_string(&new))),
        "{remedy}"
    );
    let pin = finding(&report, "bridge_mac_not_pinned");
    assert_eq!(pin["facts"]["mac_changes"], 1);
    let p2 = &interface(&report, &port_name(2))["frames"];
    assert_eq!(
        (p2["own"].as_u64(), p2["stale_mac"].as_u64()),
        (Some(3), Some(5))
    );
}

/// Frames for this host's IP with a MAC nobody here has (a VMware vNIC's):
/// not explained by the FDB or a MAC change, so something upstream picks
/// or rewrites the MAC. Without per-flow records (`--top-flows 0`) the
/// finding names the interface and the count, and says how to see the MACs.
#[test]
fn a_mac_no_local_interface_owns_is_unexplained() {
    let f = unexplained_vmware_mac(&["--top-flows", "0"]);
    assert_eq!(f["severity"], "error");
    assert_eq!(f["interface"], BRIDGE);
    assert_eq!(f["facts"]["host_ip_wrong_mac"], 6);
    assert_eq!(f["facts"]["per_interface"], serde_json::json!({"p1": 6}));
    assert_eq!(f["facts"]["destination_macs"], Value::Null);
    assert!(
        f["message"]
            .as_str()
            .unwrap()
            .starts_with("6 frame(s) for this host's IP (192.0.2.1) arrived on the ports of br0"),
        "{f:#}"
    );
    let evidence = f["evidence"].to_string();
    assert!(
        evidence.contains("tcpdump -p -e -n -c 20 -i p1"),
        "{evidence}"
    );
}

/// The same fault with per-flow records (the default): the finding names
/// the destination MAC and its vendor (VMware, from the OUI 00:50:56), the
/// sender's MAC and the destination IP, and puts the vendor's remedy first.
#[test]
fn the_unexplained_mac_is_named_with_its_vendor() {
    let f = unexplained_vmware_mac(&[]);
    assert_eq!(f["facts"]["host_ip_wrong_mac"], 6);
    assert_eq!(
        f["facts"]["destination_macs"],
        serde_json::json!([{
            "mac": "00:50:56:aa:bb:cc", "vendor": "VMware", "frames": 6,
            "src_macs": [mac_to_string(&peer_mac(1))], "dst_ips": ["192.0.2.1"], "vlans": [],
        }]),
        "{f:#}"
    );
    let evidence = f["evidence"].to_string();
    assert!(
        evidence.contains(&format!(
            "destination MAC 00:50:56:aa:bb:cc (VMware): 6 frame(s) to 192.0.2.1 from {} on p1",
            mac_to_string(&peer_mac(1))
        )),
        "{evidence}"
    );
    assert!(
        f["remedy"][0].as_str().unwrap().starts_with("VMware: "),
        "{f:#}"
    );
}

/// Diagnoses (with `args`) 6 frames for the host's IP to a VMware MAC and
/// 2 to the bridge's own; returns the one finding, which must be
/// `host_ip_wrong_mac_unexplained`.
fn unexplained_vmware_mac(args: &[&str]) -> Value {
    let lab = BridgeLab::new(2).unwrap();
    let vmware = [0x00, 0x50, 0x56, 0xaa, 0xbb, 0xcc];
    let mut argv = vec!["--duration", "2", "--format", "json"];
    argv.extend(args);
    let run = Diagnosis::start(lab.host(), &argv);
    send_to_host(&lab, 1, vmware, 6);
    send_to_host(&lab, 1, BRIDGE_MAC, 2);
    let report = run.finish().json();
    assert_eq!(
        ids(&report),
        ["host_ip_wrong_mac_unexplained"],
        "{report:#}"
    );
    finding(&report, "host_ip_wrong_mac_unexplained").clone()
}

/// The incident while something holds br0 promiscuous (a packet socket, as
/// tcpdump does): pings "work", and diagnose says they do only because of
/// it, who holds it and since when.
#[test]
fn a_promiscuous_bridge_hiding_the_incident() {
    let lab = BridgeLab::new(2).unwrap();
    lab.remove_bridge_mac_from_fdb().unwrap();
    let run = Diagnosis::start(lab.host(), &["--duration", "3", "--format", "json"]);
    let holder = PromiscSocket::join(lab.host(), BRIDGE).unwrap();
    send_to_host(&lab, 1, BRIDGE_MAC, 4);
    let report = run.finish().json();
    drop(holder);
    assert_eq!(
        ids(&report),
        ["bridge_mac_not_in_fdb", "interface_promiscuous"],
        "{report:#}"
    );
    let p = finding(&report, "interface_promiscuous");
    assert_eq!(p["severity"], "warning");
    assert_eq!(p["facts"]["delivered_while_promiscuous"], 4);
    assert_eq!(p["facts"]["promiscuity"], 1);
    let holders = p["facts"]["holders"].as_str().unwrap();
    assert!(
        holders.contains(&format!("(pid {})", std::process::id())),
        "the test process holds it: {holders}"
    );
    assert!(p["facts"]["since"].is_string(), "{p:#}");
    let evidence = p["evidence"].to_string();
    assert!(
        evidence.contains("while promiscuous, br0 passed 4 frame(s) for this host's IP with a MAC it does not own up to the host"),
        "{evidence}"
    );
    assert!(
        p["remedy"][0]
            .as_str()
            .unwrap()
            .starts_with("fix the cause first")
    );
    let f = finding(&report, "bridge_mac_not_in_fdb");
    assert_eq!(f["facts"]["host_ip_wrong_mac"], 4);
    assert_eq!(f["facts"]["bridge_promiscuous"], true);
    assert_eq!(f["facts"]["passed_up_while_promiscuous"], 4);
    let br0 = &interface(&report, BRIDGE)["frames"];
    assert_eq!(br0["host_ip_wrong_mac"], 4, "passed up: counted on br0 too");
}

// MAC identity (issue 18).

/// `ip link set br0 address`: a MAC set by userspace. Peers still send to
/// the old one; the finding names userspace (addr_assign_type set) as what
/// changed it, and nothing else fires.
#[test]
fn a_mac_set_by_userspace_is_named_as_the_cause() {
    let lab = BridgeLab::new(2).unwrap();
    let new = [0x02, 0, 0, 0, 0x0b, 0x02];
    let run = Diagnosis::start(
        lab.host(),
        &["--duration", "4", "--format", "json", "--bridge", BRIDGE],
    );
    lab.host()
        .exec(&["ip", "link", "set", BRIDGE, "address", &mac_to_string(&new)])
        .unwrap();
    // macdrop hears of the change by notification at once; a margin for
    // it to reach the kernel's previous-MAC map before the frames.
    std::thread::sleep(Duration::from_millis(800));
    send_to_host(&lab, 1, BRIDGE_MAC, 4);
    let report = run.finish().json();
    assert_eq!(ids(&report), ["stale_mac_after_mac_change"], "{report:#}");
    let f = finding(&report, "stale_mac_after_mac_change");
    assert_eq!(f["facts"]["stale_mac"], 4);
    assert_eq!(f["facts"]["cause"], "set_by_userspace");
    assert_eq!(f["facts"]["addr_assign_type"], "set");
    assert_eq!(f["facts"]["cause_interface"], Value::Null);
    assert!(
        f["evidence"][1]
            .as_str()
            .unwrap()
            .starts_with("the cause: userspace set br0's MAC (addr_assign_type set)"),
        "{f:#}"
    );
    assert!(
        f["remedy"][1].as_str().unwrap().contains(&format!(
            "ip link set br0 address {}",
            mac_to_string(&BRIDGE_MAC)
        )),
        "{f:#}"
    );
}

/// Two peers sending with one source MAC (duplicate container MACs): the
/// bridge re-learns it on the other port each time (`BridgeLab::flap_mac`:
/// every send after the first is exactly one move).
#[test]
fn a_mac_moving_between_ports_is_counted_exactly() {
    const DUP: [u8; 6] = [0x02, 0, 0, 0, 0xdd, 0x01];
    const SENDS: usize = 6;
    let lab = BridgeLab::new(2).unwrap();
    let run = Diagnosis::start(
        lab.host(),
        &["--duration", "4", "--format", "json", "--bridge", BRIDGE],
    );
    lab.flap_mac(DUP, SENDS).unwrap();
    let report = run.finish().json();
    assert_eq!(ids(&report), ["mac_moving_between_ports"], "{report:#}");
    let f = finding(&report, "mac_moving_between_ports");
    assert_eq!(f["severity"], "warning");
    assert_eq!(f["interface"], BRIDGE);
    assert_eq!(f["facts"]["mac"], mac_to_string(&DUP).as_str());
    assert_eq!(f["facts"]["moves"], (SENDS - 1) as u64);
    assert_eq!(f["facts"]["ports"], serde_json::json!(["p1", "p2"]));
}
