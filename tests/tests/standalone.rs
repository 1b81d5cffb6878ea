//! macdrop on a standalone (not bridged) veth.

mod common;

use common::SETTLE;
use macdrop_tests::{
    frames::{Mac, ipv4_udp, mac_to_string},
    kernel::{ifindex, link_stats},
    lab::{
        FOREIGN_IPV4, PEER_IFACE, STANDALONE_IFACE, STANDALONE_MAC, STANDALONE_PEER_IPV4,
        STANDALONE_PEER_MAC, StandaloneLab, links,
    },
    macdrop::{FrameCounts, Macdrop, Role},
    sender::RawSender,
};

#[test]
fn counts_own_foreign_and_broadcast_exactly() {
    let lab = StandaloneLab::new().unwrap();
    let mut macdrop = Macdrop::spawn(lab.host(), &["--iface", STANDALONE_IFACE]).unwrap();

    common::send_standalone_mix(&lab).unwrap();

    use common::standalone_mix as m;
    let expected = FrameCounts {
        own: m::OWN,
        broadcast: m::BROADCAST,
        multicast: m::MULTICAST,
        foreign_unicast: m::FOREIGN_NOT_LOCAL + m::HOST_IP_WRONG_MAC,
        host_ip_wrong_mac: m::HOST_IP_WRONG_MAC,
        ..FrameCounts::default()
    }
    .with_total();
    assert_eq!(expected.total, m::TOTAL);
    let report = macdrop.settle(|r| r.frames(STANDALONE_IFACE) == Some(expected), SETTLE);
    assert_eq!(report.frames(STANDALONE_IFACE), Some(expected));

    assert_eq!(report.interfaces.len(), 1, "{report:?}");
    let v0 = report.interface(STANDALONE_IFACE).unwrap();
    assert_eq!(v0.role, Role::Standalone);
    assert_eq!(v0.master, None);
    assert_eq!(v0.netns, lab.host().inode().to_string());
    assert_eq!(v0.mac, mac_to_string(&STANDALONE_MAC));
    assert_eq!(v0.ifindex, ifindex(lab.host(), STANDALONE_IFACE).unwrap());
    assert!(!v0.promisc);

    let last = macdrop.stop().unwrap();
    assert_eq!(last.frames(STANDALONE_IFACE), Some(expected));
}

/// The first report that counts frames gives their rate too: counting
/// starts from zero when the interface is attached, so the rate is over
/// the time since then, never a 0.0/s beside frames just counted.
#[test]
fn the_first_report_with_frames_has_their_rate() {
    let lab = StandaloneLab::new().unwrap();
    let mut macdrop = Macdrop::spawn(lab.host(), &["--iface", STANDALONE_IFACE]).unwrap();
    common::send_standalone_mix(&lab).unwrap();
    let mut first_rate = None;
    macdrop
        .wait_for(
            |r| {
                let Some(i) = r.interface(STANDALONE_IFACE) else {
                    return false;
                };
                if i.frames.total > 0 && first_rate.is_none() {
                    first_rate = Some(i.rates["total"].as_f64().unwrap_or_default());
                }
                i.frames.total == common::standalone_mix::TOTAL
            },
            SETTLE,
        )
        .unwrap();
    let rate = first_rate.expect("a report with frames");
    assert!(rate > 0.0, "the first report with frames gave rate {rate}");
    macdrop.stop().unwrap();
}

/// A macvlan on the watched interface adds its MAC to the interface's
/// unicast filter, and the kernel delivers frames for it (to the macvlan):
/// they are `own`, not foreign, on the lower device.
#[test]
fn a_macvlan_mac_on_the_interface_counts_as_own() {
    const MACVLAN_MAC: Mac = [0x02, 0, 0, 0, 0x0d, 0x11];
    let lab = StandaloneLab::new().unwrap();
    let host = lab.host();
    links::add_macvlan(host, "mv0", STANDALONE_IFACE, MACVLAN_MAC).unwrap();
    host.exec(&["ip", "link", "set", "mv0", "up"]).unwrap();
    let mut macdrop = Macdrop::spawn(host, &["--iface", STANDALONE_IFACE]).unwrap();

    let tx = RawSender::new(lab.peer(), PEER_IFACE).unwrap();
    let frame = ipv4_udp(
        MACVLAN_MAC,
        STANDALONE_PEER_MAC,
        STANDALONE_PEER_IPV4,
        FOREIGN_IPV4,
    );
    tx.send(&frame, 6).unwrap();

    let expected = FrameCounts {
        own: 6,
        ..FrameCounts::default()
    }
    .with_total();
    let report = macdrop.settle(|r| r.frames(STANDALONE_IFACE) == Some(expected), SETTLE);
    assert_eq!(report.frames(STANDALONE_IFACE), Some(expected));
    // The kernel really delivered them, to the macvlan.
    let mv0 = link_stats(host, "mv0").unwrap();
    assert_eq!(mv0.rx_packets, 6);
    macdrop.stop().unwrap();
}
