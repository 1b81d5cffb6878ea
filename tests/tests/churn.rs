//! Scale and churn: a watched bridge gets 200 veth ports added and removed
//! in waves while traffic flows on two ports that stay. Every port is
//! attached within a second of appearing, the surviving ports' counts are
//! exact, and macdrop's file descriptors and memory come back to where they
//! were.

mod common;

use std::{
    collections::BTreeSet,
    time::{Duration, SystemTime},
};

use common::{SETTLE, time_of};
use macdrop_tests::{
    frames::ipv4_udp,
    lab::{
        BRIDGE, BRIDGE_IPV4, BRIDGE_MAC, BridgeLab, FOREIGN_IPV4, FOREIGN_MAC, PEER_IFACE, links,
        peer_ipv4, peer_mac, port_name,
    },
    macdrop::Macdrop,
    netns::NetNs,
    sender::RawSender,
};

const WAVES: usize = 4;
const PORTS_PER_WAVE: usize = 50;
const FRAMES_PER_WAVE: usize = 100;

/// Runs `ip -batch` with `commands` inside `ns`: one process for a whole
/// wave, so ports appear as fast as a container runtime makes them.
fn ip_batch(ns: &NetNs, commands: &[String]) {
    links::ip_batch(ns, &commands.join("\n")).unwrap();
}

fn ts(e: &macdrop_tests::macdrop::EventReport) -> SystemTime {
    time_of(&e.ts)
}

#[test]
fn two_hundred_ports_come_and_go_while_traffic_flows() {
    let lab = BridgeLab::new(2).unwrap();
    let crowd = NetNs::new().unwrap();
    let mut macdrop = Macdrop::spawn(lab.host(), &["--bridge", BRIDGE]).unwrap();
    let senders: Vec<RawSender> = (1..=2)
        .map(|i| RawSender::new(lab.peer(i), PEER_IFACE).unwrap())
        .collect();
    let send = |i: usize| {
        let frame = ipv4_udp(BRIDGE_MAC, peer_mac(i), peer_ipv4(i), BRIDGE_IPV4);
        senders[i - 1].send(&frame, FRAMES_PER_WAVE).unwrap();
    };
    // Baseline once macdrop has settled into its loop.
    macdrop.wait_for(|_| true, SETTLE).unwrap();
    let (fds_before, rss_before) = (macdrop.open_fds().unwrap(), macdrop.rss_kib().unwrap());

    for wave in 0..WAVES {
        let names: Vec<String> = (0..PORTS_PER_WAVE)
            .map(|n| format!("c{}", wave * PORTS_PER_WAVE + n))
            .collect();
        // One `ip -batch` per port, timed, so each port's deadline runs
        // from when that port appeared (joined the bridge), not from the
        // start of the wave.
        let mut appeared = Vec::new();
        for name in &names {
            let peer = format!("x{}", &name[1..]);
            let add = [
                format!(
                    "link add {name} type veth peer name {peer} netns {}",
                    crowd.name()
                ),
                format!("link set {name} up"),
            ];
            ip_batch(lab.host(), &add);
            appeared.push(SystemTime::now());
            ip_batch(lab.host(), &[format!("link set {name} master {BRIDGE}")]);
        }
        send(1);
        for (name, appeared) in names.iter().zip(appeared) {
            let e = macdrop
                .wait_for_event(|e| e.kind == "attached" && &e.interface == name, SETTLE)
                .unwrap_or_else(|e| panic!("wave {wave}: {name} never attached: {e:#}"));
            let late = ts(&e).duration_since(appeared).unwrap_or_default();
            assert!(
                late <= Duration::from_secs(1),
                "wave {wave}: {name} attached {late:?} after it joined the bridge"
            );
        }
        let del: Vec<String> = names.iter().map(|n| format!("link del {n}")).collect();
        ip_batch(lab.host(), &del);
        send(2);
        let gone: BTreeSet<&String> = names.iter().collect();
        for name in gone {
            macdrop
                .wait_for_event(|e| e.kind == "gone" && &e.interface == name, SETTLE)
                .unwrap_or_else(|e| panic!("wave {wave}: {name} never gone: {e:#}"));
        }
    }

    let want = (WAVES * FRAMES_PER_WAVE) as u64;
    let report = macdrop.settle(
        |r| {
            r.frames("p1").is_some_and(|f| f.own == want)
                && r.frames("p2").is_some_and(|f| f.own == want)
        },
        SETTLE,
    );
    for p in ["p1", "p2"] {
        let f = report.frames(p).unwrap();
        assert_eq!((f.total, f.own), (want, want), "{p}");
    }
    let churned = report
        .interfaces
        .iter()
        .filter(|i| i.name.starts_with('c'))
        .count();
    assert_eq!(churned, WAVES * PORTS_PER_WAVE, "every port is reported");
    assert!(
        report
            .interfaces
            .iter()
            .filter(|i| i.name.starts_with('c'))
            .all(|i| i.gone)
    );

    // Resources: every link and socket of a gone port released; memory
    // grows only by the gone ports' final counts kept in the report.
    let fds_after =
        macdrop_tests::wait::poll_until(SETTLE, || macdrop.open_fds(), |n| *n <= fds_before)
            .unwrap();
    assert_eq!(fds_after, fds_before, "file descriptors back to baseline");
    let rss_after = macdrop.rss_kib().unwrap();
    assert!(
        rss_after <= rss_before + 8 * 1024,
        "RSS grew from {rss_before} KiB to {rss_after} KiB"
    );
    macdrop.stop().unwrap();
}

/// A gone port keeps its confirmed drops, and the port that takes its
/// counter slot (the kernel counts an interface's first drop reasons per
/// slot) starts from zero: 10 foreign frames into a one-port bridge are
/// freed on p1 (flooded to no port), p1 goes, p2 comes, 5 more are freed
/// on p2.
#[test]
fn a_gone_ports_drops_stay_and_its_slot_starts_from_zero() {
    let mut lab = BridgeLab::new(1).unwrap();
    let mut macdrop = Macdrop::spawn(lab.host(), &["--bridge", BRIDGE]).unwrap();
    let foreign = |lab: &BridgeLab, i: usize, n: usize| {
        let frame = ipv4_udp(FOREIGN_MAC, peer_mac(i), peer_ipv4(i), FOREIGN_IPV4);
        RawSender::new(lab.peer(i), PEER_IFACE)
            .unwrap()
            .send(&frame, n)
            .unwrap();
    };
    let drops = |r: &macdrop_tests::macdrop::Report, name: &str| {
        r.interface(name)
            .and_then(|i| i.kernel_drops.as_ref())
            .map(|d| d.values().sum::<u64>())
    };
    macdrop.wait_for(|_| true, SETTLE).unwrap();
    foreign(&lab, 1, 10);
    let report = macdrop.settle(|r| drops(r, "p1") == Some(10), SETTLE);
    assert_eq!(drops(&report, "p1"), Some(10), "{report:?}");

    lab.remove_port(1).unwrap();
    macdrop
        .wait_for_event(|e| e.kind == "gone" && e.interface == "p1", SETTLE)
        .unwrap();
    let i = lab.add_port("mdp-churn").unwrap();
    assert_eq!(port_name(i), "p2");
    macdrop
        .wait_for_event(|e| e.kind == "attached" && e.interface == "p2", SETTLE)
        .unwrap();
    foreign(&lab, i, 5);
    let report = macdrop.settle(|r| drops(r, "p2") == Some(5), SETTLE);
    assert_eq!(drops(&report, "p2"), Some(5), "{report:?}");
    assert_eq!(drops(&report, "p1"), Some(10), "{report:?}");
    assert!(report.interface("p1").unwrap().gone, "{report:?}");
    macdrop.stop().unwrap();
}
