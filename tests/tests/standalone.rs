//! macdrop on a standalone (not bridged) veth.

mod common;

use common::SETTLE;
use macdrop_tests::{
    frames::mac_to_string,
    kernel::ifindex,
    lab::{STANDALONE_IFACE, STANDALONE_MAC, StandaloneLab},
    macdrop::{FrameCounts, Macdrop, Role},
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
        foreign_unicast: m::FOREIGN_NOT_LOCAL + m::FOREIGN_HOST_IP,
        host_ip_wrong_mac: m::FOREIGN_HOST_IP,
        ..FrameCounts::default()
    }
    .with_total();
    assert_eq!(expected.total, m::TOTAL);
    let report = macdrop
        .wait_for(|r| r.frames(STANDALONE_IFACE) == Some(expected), SETTLE)
        .unwrap_or_else(|_| macdrop.latest().cloned().expect("no report"));
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
