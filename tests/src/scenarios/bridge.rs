//! `bridge`: a mix of frames into p1 of a two-port bridge, exact counts on
//! p1, br0 (what the bridge passed up) and p2.

use std::path::Path;

use anyhow::{Context as _, Result};

use super::{
    Attach, KernelFacts, Outcome, expect_counts, expect_nothing_left, observe, settle, spawn,
};
use crate::{
    frames::{BROADCAST, MULTICAST_V4, MULTICAST_V4_GROUP, TPID_8021Q, ipv4_udp, with_vlan_tags},
    kernel::link_stats,
    lab::{
        BRIDGE, BRIDGE_IPV4, BRIDGE_MAC, FOREIGN_IPV4, FOREIGN_MAC, PEER_IFACE, peer_ipv4,
        peer_mac, port_mac,
    },
    macdrop::FrameCounts,
    sender::RawSender,
};

/// Frames from peer 1 into p1 of a two-port bridge.
pub mod plan {
    /// To br0's MAC, dst IP 192.0.2.1.
    pub const TO_BRIDGE_MAC: u64 = 3;
    /// To p2's MAC, a local FDB entry of the bridge, dst IP 192.0.2.1:
    /// passed up, then dropped as OTHERHOST on br0.
    pub const TO_OTHER_PORT_MAC: u64 = 2;
    pub const BROADCAST: u64 = 4;
    pub const MULTICAST: u64 = 2;
    /// Foreign MAC, dst IP not on the host.
    pub const FOREIGN_NOT_LOCAL: u64 = 3;
    /// Foreign MAC, dst IP 192.0.2.1, untagged and with an 802.1Q tag.
    pub const FOREIGN_HOST_IPV4: u64 = 2;
    pub const FOREIGN_HOST_DOT1Q: u64 = 1;

    pub const OWN: u64 = TO_BRIDGE_MAC;
    pub const HOST_IP_WRONG_MAC: u64 = TO_OTHER_PORT_MAC + FOREIGN_HOST_IPV4 + FOREIGN_HOST_DOT1Q;
    pub const FOREIGN: u64 = FOREIGN_NOT_LOCAL + HOST_IP_WRONG_MAC;
}

pub fn run(bin: &Path, attach: &Attach, kernel: &KernelFacts) -> Result<Outcome> {
    use plan as m;
    let lab = super::two_port_lab()?;
    let mut macdrop = match spawn(bin, lab.host(), &["--bridge", BRIDGE], attach)? {
        Ok(macdrop) => macdrop,
        Err(why) => return Ok(Outcome::Unsupported(why)),
    };
    let br0_before = link_stats(lab.host(), BRIDGE)?.rx_packets;

    let tx = RawSender::new(lab.peer(1), PEER_IFACE)?;
    let (src, sip) = (peer_mac(1), peer_ipv4(1));
    let n = |count: u64| count as usize;
    let foreign_to_host = ipv4_udp(FOREIGN_MAC, src, sip, BRIDGE_IPV4);
    tx.send(
        &ipv4_udp(BRIDGE_MAC, src, sip, BRIDGE_IPV4),
        n(m::TO_BRIDGE_MAC),
    )?;
    tx.send(
        &ipv4_udp(port_mac(2), src, sip, BRIDGE_IPV4),
        n(m::TO_OTHER_PORT_MAC),
    )?;
    let subnet_broadcast = std::net::Ipv4Addr::new(192, 0, 2, 255);
    tx.send(
        &ipv4_udp(BROADCAST, src, sip, subnet_broadcast),
        n(m::BROADCAST),
    )?;
    tx.send(
        &ipv4_udp(MULTICAST_V4, src, sip, MULTICAST_V4_GROUP),
        n(m::MULTICAST),
    )?;
    tx.send(
        &ipv4_udp(FOREIGN_MAC, src, sip, FOREIGN_IPV4),
        n(m::FOREIGN_NOT_LOCAL),
    )?;
    tx.send(&foreign_to_host, n(m::FOREIGN_HOST_IPV4))?;
    tx.send(
        &with_vlan_tags(&foreign_to_host, &[(TPID_8021Q, 10)]),
        n(m::FOREIGN_HOST_DOT1Q),
    )?;

    let on_p1 = FrameCounts {
        own: m::OWN,
        broadcast: m::BROADCAST,
        multicast: m::MULTICAST,
        foreign_unicast: m::FOREIGN,
        host_ip_wrong_mac: m::HOST_IP_WRONG_MAC,
        ..FrameCounts::default()
    }
    .with_total();
    // The bridge passes up local FDB destinations, broadcast and multicast
    // (no querier, so snooping floods and delivers), each with its fate.
    let on_br0 = FrameCounts {
        own: m::OWN,
        broadcast: m::BROADCAST,
        multicast: m::MULTICAST,
        foreign_unicast: m::TO_OTHER_PORT_MAC,
        host_ip_wrong_mac: m::TO_OTHER_PORT_MAC,
        ..FrameCounts::default()
    }
    .with_total();
    let zero = FrameCounts::default();
    let report = settle(&mut macdrop, |r| {
        r.frames("p1") == Some(on_p1)
            && r.frames(BRIDGE) == Some(on_br0)
            && r.frames("p2") == Some(zero)
    })?;
    expect_counts(&macdrop, "p1", report.frames("p1"), on_p1)?;
    if report.frames(BRIDGE) != Some(on_br0) {
        // Tell a kernel that passed up something else from a miscount.
        let passed_up = link_stats(lab.host(), BRIDGE)?.rx_packets - br0_before;
        expect_counts(&macdrop, BRIDGE, report.frames(BRIDGE), on_br0)
            .with_context(|| format!("the kernel's br0 rx_packets grew by {passed_up}"))?;
    }
    expect_counts(&macdrop, "p2", report.frames("p2"), zero)?;
    let observed = observe(&macdrop, kernel)?;
    macdrop.stop()?;
    expect_nothing_left(lab.host())?;
    Ok(Outcome::Ran(Box::new(observed)))
}
