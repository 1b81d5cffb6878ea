//! What the kernel itself does with the test frames, measured with its own
//! counters (no macdrop involved). These pin the facts macdrop's expected
//! values rest on: if a kernel changes them, these fail first and say so.

mod common;

use common::{INCIDENT_FRAMES, SETTLE, mix, send_foreign, send_mix, send_to_bridge_mac};
use macdrop_tests::{
    frames::mac_to_string,
    kernel::{LinkStats, fdb_has_bridge_entry, link_stats},
    lab::{
        BRIDGE, BRIDGE_MAC, BridgeLab, BridgeLabOptions, PEER_IFACE, STANDALONE_IFACE,
        StandaloneLab,
    },
    netns::NetNs,
    sender::RawSender,
    wait::poll_until,
};

/// rx counters of interest, read together.
#[derive(Debug, PartialEq, Eq)]
struct Rx {
    packets: u64,
    otherhost: u64,
}

fn rx(ns: &NetNs, ifname: &str) -> anyhow::Result<Rx> {
    let LinkStats {
        rx_packets,
        rx_otherhost_dropped,
        ..
    } = link_stats(ns, ifname)?;
    Ok(Rx {
        packets: rx_packets,
        otherhost: rx_otherhost_dropped,
    })
}

/// Reads (p1, br0, p2) until they equal `expected` or [`SETTLE`] passes.
fn bridge_rx(lab: &BridgeLab, expected: &[Rx; 3]) -> [Rx; 3] {
    poll_until(
        SETTLE,
        || {
            Ok([
                rx(lab.host(), "p1")?,
                rx(lab.host(), BRIDGE)?,
                rx(lab.host(), "p2")?,
            ])
        },
        |seen| seen == expected,
    )
    .unwrap()
}

fn bridge_lab_with_ipv6() -> BridgeLab {
    BridgeLab::with_options(BridgeLabOptions {
        ports: 2,
        bridge_ipv6: true,
        ..BridgeLabOptions::default()
    })
    .unwrap()
}

#[test]
fn a_fresh_lab_is_silent() {
    let lab = bridge_lab_with_ipv6();
    // Nothing may arrive on a watched interface unless a test sends it. The
    // host side does transmit (IGMP/MLD reports from br0), but only out.
    let zero = || Rx {
        packets: 0,
        otherhost: 0,
    };
    let expected = [zero(), zero(), zero()];
    assert_eq!(bridge_rx(&lab, &expected), expected);
}

#[test]
fn bridge_delivers_local_fdb_destinations_broadcast_and_multicast() {
    let lab = bridge_lab_with_ipv6();
    send_mix(&lab).unwrap();
    let expected = [
        // p1 receives everything peer 1 sent.
        Rx {
            packets: mix::ALL,
            otherhost: 0,
        },
        // br0 receives what the bridge passes up. Frames to p2's MAC are
        // passed up (a local FDB entry) but keep pkt_type OTHERHOST, because
        // the bridge only resets it for the bridge's own MAC; frames to
        // br0's MAC tagged VID 10 find no VLAN device on br0 and are made
        // OTHERHOST: the IP layer drops both as OTHERHOST on br0.
        Rx {
            packets: mix::PASSED_UP,
            otherhost: mix::PASSED_UP_DROPPED,
        },
        // Flooded frames leave through p2; nothing comes in on it.
        Rx {
            packets: 0,
            otherhost: 0,
        },
    ];
    assert_eq!(bridge_rx(&lab, &expected), expected);
}

#[test]
fn without_its_fdb_entry_the_bridge_delivers_its_own_mac_only_when_promiscuous() {
    let lab = BridgeLab::new(2).unwrap();
    let br_mac = mac_to_string(&BRIDGE_MAC);
    assert!(fdb_has_bridge_entry(lab.host(), BRIDGE, &br_mac).unwrap());
    lab.remove_bridge_mac_from_fdb().unwrap();

    // Not promiscuous: flooded out of p2, never passed up, no drop counted.
    send_to_bridge_mac(&lab, INCIDENT_FRAMES).unwrap();
    let mut expected = [
        Rx {
            packets: INCIDENT_FRAMES,
            otherhost: 0,
        },
        Rx {
            packets: 0,
            otherhost: 0,
        },
        Rx {
            packets: 0,
            otherhost: 0,
        },
    ];
    assert_eq!(bridge_rx(&lab, &expected), expected);

    // Promiscuous: passed up, and accepted by IP (pkt_type HOST: the
    // destination is br0's device address), so still no drop counted.
    lab.set_promisc(true).unwrap();
    send_to_bridge_mac(&lab, INCIDENT_FRAMES).unwrap();
    expected[0].packets += INCIDENT_FRAMES;
    expected[1].packets += INCIDENT_FRAMES;
    assert_eq!(bridge_rx(&lab, &expected), expected);

    // Promiscuous, truly foreign MAC: passed up too, and now IP drops them.
    send_foreign(&lab, 4).unwrap();
    expected[0].packets += 4;
    expected[1].packets += 4;
    expected[1].otherhost += 4;
    assert_eq!(bridge_rx(&lab, &expected), expected);

    // Back off: the frames stop reaching br0 again.
    lab.set_promisc(false).unwrap();
    send_to_bridge_mac(&lab, INCIDENT_FRAMES).unwrap();
    expected[0].packets += INCIDENT_FRAMES;
    assert_eq!(bridge_rx(&lab, &expected), expected);
}

#[test]
fn standalone_veth_drops_foreign_unicast_as_otherhost() {
    let lab = StandaloneLab::new().unwrap();
    common::send_standalone_mix(&lab).unwrap();
    use common::standalone_mix as m;
    let expected = Rx {
        packets: m::TOTAL,
        otherhost: m::FOREIGN_NOT_LOCAL + m::HOST_IP_WRONG_MAC,
    };
    let seen = poll_until(
        SETTLE,
        || rx(lab.host(), STANDALONE_IFACE),
        |seen| *seen == expected,
    )
    .unwrap();
    assert_eq!(seen, expected);
}

/// Why no integration test sends a runt: AF_PACKET refuses frames shorter
/// than the Ethernet header (`dev_validate_header`: EINVAL, even for root),
/// and veth could not carry one anyway. `runt` is therefore always 0 here;
/// the classifier's runt path is tested with BPF_PROG_TEST_RUN in `monitor`.
#[test]
fn af_packet_refuses_frames_shorter_than_an_ethernet_header() {
    let lab = StandaloneLab::new().unwrap();
    let tx = RawSender::new(lab.peer(), PEER_IFACE).unwrap();
    let err = tx.send(&[0x02; 13], 1).unwrap_err();
    let io = err.downcast_ref::<std::io::Error>().expect("an OS error");
    assert_eq!(io.raw_os_error(), Some(libc::EINVAL), "{err:#}");
    tx.send(&[0x02; 14], 1).unwrap();
}
