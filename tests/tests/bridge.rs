//! macdrop on a bridge and its ports: exact counts per class, per interface,
//! for the frames measured in `kernel_behaviour.rs`.

mod common;

use std::{collections::BTreeSet, time::Duration};

use common::{
    INCIDENT_FRAMES, SETTLE, mix_on_bridge, mix_on_port, send_foreign, send_mix, send_to_bridge_mac,
};
use macdrop_tests::{
    frames::mac_to_string,
    kernel::ifindex,
    lab::{BRIDGE, BRIDGE_MAC, BridgeLab, BridgeLabOptions, port_mac},
    macdrop::{FrameCounts, Macdrop, Report, Role},
};

/// The counters of (p1, br0, p2), in that order.
fn counts(report: &Report) -> [Option<FrameCounts>; 3] {
    [
        report.frames("p1"),
        report.frames(BRIDGE),
        report.frames("p2"),
    ]
}

/// Waits until macdrop reports `expected` for (p1, br0, p2), then asserts
/// it, so a timeout shows the exact difference.
fn assert_counts(macdrop: &mut Macdrop, expected: [FrameCounts; 3]) -> Report {
    let expected = expected.map(Some);
    let report = macdrop
        .wait_for(|report| counts(report) == expected, SETTLE)
        .unwrap_or_else(|_| {
            macdrop
                .latest()
                .cloned()
                .expect("macdrop printed no report")
        });
    assert_eq!(counts(&report), expected, "(p1, br0, p2) in {report:?}");
    report
}

#[test]
fn counts_every_class_on_the_port_and_what_the_bridge_passes_up() {
    let lab = BridgeLab::with_options(BridgeLabOptions {
        ports: 2,
        bridge_ipv6: true,
        ..BridgeLabOptions::default()
    })
    .unwrap();
    let mut macdrop = Macdrop::spawn(lab.host(), &["--bridge", BRIDGE]).unwrap();

    // Nothing before the test sends: the lab is silent.
    let zero = FrameCounts::default();
    assert_counts(&mut macdrop, [zero; 3]);

    send_mix(&lab).unwrap();
    let expected = [mix_on_port(), mix_on_bridge(), zero];
    assert_counts(&mut macdrop, expected);

    // Counts are cumulative and final: the last report says the same.
    let last = macdrop.stop().unwrap();
    assert_eq!(counts(&last), expected.map(Some));
}

#[test]
fn reports_the_bridge_and_each_port_with_its_role() {
    let lab = BridgeLab::new(2).unwrap();
    let mut macdrop = Macdrop::spawn(lab.host(), &["--bridge", BRIDGE]).unwrap();
    let report = macdrop.wait_for(|_| true, SETTLE).unwrap();

    let names: BTreeSet<&str> = report.interfaces.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, BTreeSet::from([BRIDGE, "p1", "p2"]));

    let netns = lab.host().inode().to_string();
    let br0 = report.interface(BRIDGE).unwrap();
    assert_eq!(br0.role, Role::Bridge);
    assert_eq!(br0.master, None);
    assert_eq!(br0.mac, mac_to_string(&BRIDGE_MAC));
    assert_eq!(br0.netns, netns);
    assert_eq!(br0.ifindex, ifindex(lab.host(), BRIDGE).unwrap());
    assert!(!br0.promisc);
    assert_eq!(br0.promiscuity, 0);
    for i in 1..=2 {
        let name = format!("p{i}");
        let port = report.interface(&name).unwrap();
        assert_eq!(port.role, Role::Port, "{name}");
        assert_eq!(port.master.as_deref(), Some(BRIDGE), "{name}");
        assert_eq!(port.mac, mac_to_string(&port_mac(i)), "{name}");
        assert_eq!(port.netns, netns, "{name}");
        assert_eq!(port.ifindex, ifindex(lab.host(), &name).unwrap(), "{name}");
        // A bridge holds each of its ports promiscuous.
        assert!(port.promisc, "{name}");
        assert_eq!(port.promiscuity, 1, "{name}");
    }
    macdrop.stop().unwrap();
}

/// The README's incident: the bridge's own MAC is no longer a local FDB
/// entry, so frames to it carrying the host's IP are flooded, not delivered.
#[test]
fn frames_to_a_bridge_mac_missing_from_the_fdb_are_host_ip_wrong_mac() {
    let lab = BridgeLab::new(2).unwrap();
    lab.remove_bridge_mac_from_fdb().unwrap();
    let mut macdrop = Macdrop::spawn(lab.host(), &["--bridge", BRIDGE]).unwrap();
    let zero = FrameCounts::default();

    send_to_bridge_mac(&lab, INCIDENT_FRAMES).unwrap();
    let wrong_mac = |n| {
        FrameCounts {
            foreign_unicast: n,
            host_ip_wrong_mac: n,
            ..zero
        }
        .with_total()
    };
    // br0 sees nothing: the kernel measurably never passes these up.
    assert_counts(&mut macdrop, [wrong_mac(INCIDENT_FRAMES), zero, zero]);

    // Promiscuous (what tcpdump does): the bridge now passes them up, and
    // br0's MAC is still not a local FDB entry, so br0 counts them as wrong
    // MAC too, though the IP layer accepts them (see kernel_behaviour.rs).
    lab.set_promisc(true).unwrap();
    macdrop
        .wait_for(|r| r.interface(BRIDGE).is_some_and(|i| i.promisc), SETTLE)
        .unwrap();
    send_to_bridge_mac(&lab, INCIDENT_FRAMES).unwrap();
    assert_counts(
        &mut macdrop,
        [
            wrong_mac(2 * INCIDENT_FRAMES),
            wrong_mac(INCIDENT_FRAMES),
            zero,
        ],
    );

    // A truly foreign destination is foreign everywhere, but not the host's IP.
    send_foreign(&lab, 4).unwrap();
    let plus_foreign = |mut counts: FrameCounts| {
        counts.foreign_unicast += 4;
        counts.with_total()
    };
    assert_counts(
        &mut macdrop,
        [
            plus_foreign(wrong_mac(2 * INCIDENT_FRAMES)),
            plus_foreign(wrong_mac(INCIDENT_FRAMES)),
            zero,
        ],
    );

    // Promiscuous off: back to the silent failure, visible only on p1.
    lab.set_promisc(false).unwrap();
    macdrop
        .wait_for(|r| r.interface(BRIDGE).is_some_and(|i| !i.promisc), SETTLE)
        .unwrap();
    send_to_bridge_mac(&lab, INCIDENT_FRAMES).unwrap();
    let expected = [
        plus_foreign(wrong_mac(3 * INCIDENT_FRAMES)),
        plus_foreign(wrong_mac(INCIDENT_FRAMES)),
        zero,
    ];
    assert_counts(&mut macdrop, expected);
    assert_eq!(counts(&macdrop.stop().unwrap()), expected.map(Some));
}

/// A MAC moving between ports (issue 18): `watch` reports `fdb_moved`
/// events on the bridge whose moves add up exactly, and each line passes
/// the published schema.
#[test]
fn a_mac_moving_between_ports_is_an_fdb_moved_event() {
    const DUP: [u8; 6] = [0x02, 0, 0, 0, 0xdd, 0x02];
    const SENDS: usize = 5;
    let lab = BridgeLab::new(2).unwrap();
    let mut macdrop = Macdrop::spawn(lab.host(), &["--bridge", BRIDGE]).unwrap();
    macdrop.wait_for(|_| true, SETTLE).unwrap();
    lab.flap_mac(DUP, SENDS).unwrap();
    let moved = |m: &Macdrop| -> u64 {
        m.events()
            .iter()
            .filter(|e| e.kind == "fdb_moved")
            .filter_map(|e| e.moves)
            .sum()
    };
    // Moves are summed per report: read reports until they add up.
    let total = macdrop_tests::wait::poll_until(
        SETTLE,
        || {
            let _ = macdrop.wait_for(|_| false, Duration::from_millis(200));
            Ok(moved(&macdrop))
        },
        |n| *n >= (SENDS - 1) as u64,
    )
    .unwrap();
    assert_eq!(total, (SENDS - 1) as u64, "{:?}", macdrop.events());
    for e in macdrop.events().iter().filter(|e| e.kind == "fdb_moved") {
        assert_eq!(
            (e.interface.as_str(), e.mac.as_deref(), e.vlan),
            (BRIDGE, Some(mac_to_string(&DUP).as_str()), Some(0)),
            "{e:?}"
        );
        let ports = e.ports.clone().unwrap_or_default();
        assert!(ports == ["p1", "p2"] || ports == ["p2", "p1"], "{e:?}");
    }
    macdrop.stop().unwrap();
}
