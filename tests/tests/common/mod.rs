//! Traffic plans shared by the integration tests: which frames peer 1 sends
//! into a bridge port, and what each watched interface must count for them.
//!
//! The kernel-behaviour tests (no macdrop) and the macdrop tests send the
//! same plans, so what macdrop reports can be traced to what the kernel was
//! measured to do with the very same frames.

#![allow(dead_code)] // each test binary uses a different part

pub mod diagnosis;

use std::{
    net::Ipv4Addr,
    path::PathBuf,
    time::{Duration, SystemTime},
};

use anyhow::Result;
use macdrop_tests::{
    frames::{
        BROADCAST, MULTICAST_V4, MULTICAST_V4_GROUP, TPID_8021AD, TPID_8021Q, arp_request,
        ipv4_udp, ipv6_udp, with_vlan_tags,
    },
    lab::{
        BRIDGE_IPV4, BRIDGE_IPV6, BRIDGE_MAC, BridgeLab, FOREIGN_IPV4, FOREIGN_MAC, PEER_IFACE,
        STANDALONE_IPV4, STANDALONE_MAC, STANDALONE_PEER_IPV4, STANDALONE_PEER_MAC, StandaloneLab,
        peer_ipv4, peer_ipv6, peer_mac, port_mac,
    },
    macdrop::{Finished, FrameCounts},
    sender::RawSender,
};

/// A directory of the test's own under the temporary directory, removed on
/// drop (also when the test fails).
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("macdrop-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// How long a test waits for counters to reach their expected values.
pub const SETTLE: Duration = Duration::from_secs(10);

/// The time a report or event names (RFC 3339).
pub fn time_of(ts: &str) -> SystemTime {
    use time::{OffsetDateTime, format_description::well_known::Rfc3339};
    let t = OffsetDateTime::parse(ts, &Rfc3339).unwrap();
    SystemTime::UNIX_EPOCH + Duration::from_nanos(t.unix_timestamp_nanos() as u64)
}

/// The subnet broadcast address of the bridge's network.
pub const BRIDGE_SUBNET_BROADCAST: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 255);

/// Frame counts of the mixed plan, one constant per kind of frame.
pub mod mix {
    /// To br0's MAC, dst IP 192.0.2.1: delivered to the host.
    pub const TO_BRIDGE_MAC: u64 = 7;
    /// To p2's MAC (a local FDB entry of the bridge), dst IP 192.0.2.1:
    /// passed up, then dropped as OTHERHOST on br0 (the bridge makes a
    /// frame HOST only for its own MAC).
    pub const TO_OTHER_PORT_MAC: u64 = 2;
    /// To br0's MAC with an 802.1Q tag (VID 10), dst IP 192.0.2.1: passed
    /// up with its tag, then dropped as OTHERHOST on br0, which has no
    /// VLAN device for VID 10.
    pub const TO_BRIDGE_MAC_DOT1Q: u64 = 3;
    pub const BROADCAST: u64 = 5;
    pub const MULTICAST: u64 = 4;
    /// Foreign MAC, dst IP not on the host (203.0.113.9).
    pub const FOREIGN_NOT_LOCAL: u64 = 6;
    /// Foreign MAC, dst IP 192.0.2.1 (the host's).
    pub const FOREIGN_HOST_IPV4: u64 = 3;
    /// Foreign MAC, 802.1Q tag, dst IP 192.0.2.1.
    pub const FOREIGN_HOST_DOT1Q: u64 = 1;
    /// Foreign MAC, 802.1ad + 802.1Q tags (QinQ), dst IP 192.0.2.1.
    pub const FOREIGN_HOST_QINQ: u64 = 1;
    /// Foreign MAC, three tags (the deepest stack macdrop walks), dst IP 192.0.2.1.
    pub const FOREIGN_HOST_THREE_TAGS: u64 = 1;
    /// Foreign MAC, four tags: too deep to reach the IP header.
    pub const FOREIGN_FOUR_TAGS: u64 = 2;
    /// Foreign MAC, IPv6 to 2001:db8::1 (br0's address).
    pub const FOREIGN_HOST_IPV6: u64 = 1;
    /// Unicast ARP request to a foreign MAC for 192.0.2.1.
    pub const FOREIGN_ARP_FOR_HOST: u64 = 1;

    pub const OWN: u64 = TO_BRIDGE_MAC;
    /// Passed up to br0 and dropped there as OTHERHOST.
    pub const PASSED_UP_DROPPED: u64 = TO_OTHER_PORT_MAC + TO_BRIDGE_MAC_DOT1Q;
    pub const HOST_IP_WRONG_MAC: u64 = PASSED_UP_DROPPED
        + FOREIGN_HOST_IPV4
        + FOREIGN_HOST_DOT1Q
        + FOREIGN_HOST_QINQ
        + FOREIGN_HOST_THREE_TAGS
        + FOREIGN_HOST_IPV6
        + FOREIGN_ARP_FOR_HOST;
    pub const FOREIGN_UNICAST: u64 = FOREIGN_NOT_LOCAL + HOST_IP_WRONG_MAC + FOREIGN_FOUR_TAGS;
    pub const ALL: u64 = OWN + BROADCAST + MULTICAST + FOREIGN_UNICAST;
    /// What the bridge passes up to br0: local FDB destinations, broadcast
    /// and multicast (no multicast querier, so snooping floods and delivers).
    pub const PASSED_UP: u64 = OWN + PASSED_UP_DROPPED + BROADCAST + MULTICAST;
}

/// Sends the mixed plan from peer 1 into p1. The lab must have IPv6 on br0.
pub fn send_mix(lab: &BridgeLab) -> Result<()> {
    let tx = RawSender::new(lab.peer(1), PEER_IFACE)?;
    let src = peer_mac(1);
    let sip = peer_ipv4(1);
    let to_host = |dst_mac| ipv4_udp(dst_mac, src, sip, BRIDGE_IPV4);
    let foreign_to_host = to_host(FOREIGN_MAC);
    let n = |count: u64| count as usize;

    tx.send(&to_host(BRIDGE_MAC), n(mix::TO_BRIDGE_MAC))?;
    tx.send(&to_host(port_mac(2)), n(mix::TO_OTHER_PORT_MAC))?;
    tx.send(
        &with_vlan_tags(&to_host(BRIDGE_MAC), &[(TPID_8021Q, 10)]),
        n(mix::TO_BRIDGE_MAC_DOT1Q),
    )?;
    tx.send(
        &ipv4_udp(BROADCAST, src, sip, BRIDGE_SUBNET_BROADCAST),
        n(mix::BROADCAST),
    )?;
    tx.send(
        &ipv4_udp(MULTICAST_V4, src, sip, MULTICAST_V4_GROUP),
        n(mix::MULTICAST),
    )?;
    tx.send(
        &ipv4_udp(FOREIGN_MAC, src, sip, FOREIGN_IPV4),
        n(mix::FOREIGN_NOT_LOCAL),
    )?;
    tx.send(&foreign_to_host, n(mix::FOREIGN_HOST_IPV4))?;
    tx.send(
        &with_vlan_tags(&foreign_to_host, &[(TPID_8021Q, 10)]),
        n(mix::FOREIGN_HOST_DOT1Q),
    )?;
    tx.send(
        &with_vlan_tags(&foreign_to_host, &[(TPID_8021AD, 100), (TPID_8021Q, 10)]),
        n(mix::FOREIGN_HOST_QINQ),
    )?;
    tx.send(
        &with_vlan_tags(
            &foreign_to_host,
            &[(TPID_8021AD, 100), (TPID_8021Q, 10), (TPID_8021Q, 20)],
        ),
        n(mix::FOREIGN_HOST_THREE_TAGS),
    )?;
    tx.send(
        &with_vlan_tags(
            &foreign_to_host,
            &[
                (TPID_8021AD, 100),
                (TPID_8021Q, 10),
                (TPID_8021Q, 20),
                (TPID_8021Q, 30),
            ],
        ),
        n(mix::FOREIGN_FOUR_TAGS),
    )?;
    tx.send(
        &ipv6_udp(FOREIGN_MAC, src, peer_ipv6(1), BRIDGE_IPV6),
        n(mix::FOREIGN_HOST_IPV6),
    )?;
    tx.send(
        &arp_request(FOREIGN_MAC, src, sip, BRIDGE_IPV4),
        n(mix::FOREIGN_ARP_FOR_HOST),
    )?;
    Ok(())
}

/// What macdrop must count on p1 for [`send_mix`].
pub fn mix_on_port() -> FrameCounts {
    FrameCounts {
        own: mix::OWN,
        broadcast: mix::BROADCAST,
        multicast: mix::MULTICAST,
        foreign_unicast: mix::FOREIGN_UNICAST,
        host_ip_wrong_mac: mix::HOST_IP_WRONG_MAC,
        ..FrameCounts::default()
    }
    .with_total()
}

/// What macdrop must count on br0 for [`send_mix`]: only what the bridge
/// passed up, each with the fate it had on p1.
pub fn mix_on_bridge() -> FrameCounts {
    FrameCounts {
        own: mix::OWN,
        broadcast: mix::BROADCAST,
        multicast: mix::MULTICAST,
        foreign_unicast: mix::PASSED_UP_DROPPED,
        host_ip_wrong_mac: mix::PASSED_UP_DROPPED,
        ..FrameCounts::default()
    }
    .with_total()
}

/// Frames of the incident plan: unicast to br0's MAC carrying br0's IPv4
/// address, as a peer with a stale ARP entry would send them.
pub const INCIDENT_FRAMES: u64 = 7;

/// Sends [`INCIDENT_FRAMES`] frames to br0's MAC (dst IP 192.0.2.1) from peer 1.
pub fn send_to_bridge_mac(lab: &BridgeLab, count: u64) -> Result<()> {
    let tx = RawSender::new(lab.peer(1), PEER_IFACE)?;
    tx.send(
        &ipv4_udp(BRIDGE_MAC, peer_mac(1), peer_ipv4(1), BRIDGE_IPV4),
        count as usize,
    )
}

/// Sends `count` frames to a foreign MAC with a dst IP not on the host.
pub fn send_foreign(lab: &BridgeLab, count: u64) -> Result<()> {
    let tx = RawSender::new(lab.peer(1), PEER_IFACE)?;
    tx.send(
        &ipv4_udp(FOREIGN_MAC, peer_mac(1), peer_ipv4(1), FOREIGN_IPV4),
        count as usize,
    )
}

/// The standalone plan: what the peer sends into the standalone veth.
pub mod standalone_mix {
    /// To the veth's own MAC and IP.
    pub const OWN: u64 = 4;
    /// Foreign MAC, dst IP not on the host.
    pub const FOREIGN_NOT_LOCAL: u64 = 3;
    /// Foreign MAC, the veth's IP.
    pub const FOREIGN_HOST_IP: u64 = 2;
    /// The veth's own MAC and IP with an 802.1Q tag (VID 20): no VLAN
    /// device takes it, so the kernel drops it as OTHERHOST.
    pub const OWN_MAC_DOT1Q: u64 = 3;
    pub const BROADCAST: u64 = 5;
    pub const MULTICAST: u64 = 1;
    /// Not delivered, with the host's IP.
    pub const HOST_IP_WRONG_MAC: u64 = FOREIGN_HOST_IP + OWN_MAC_DOT1Q;
    pub const TOTAL: u64 = OWN + FOREIGN_NOT_LOCAL + HOST_IP_WRONG_MAC + BROADCAST + MULTICAST;
}

/// A frame from the standalone peer to a foreign MAC and a foreign IP:
/// the host's kernel throws it away as not for it (`rx_otherhost_dropped`).
pub fn standalone_foreign() -> Vec<u8> {
    ipv4_udp(
        FOREIGN_MAC,
        STANDALONE_PEER_MAC,
        STANDALONE_PEER_IPV4,
        FOREIGN_IPV4,
    )
}

/// Sends the standalone plan from the peer of a `StandaloneLab`.
pub fn send_standalone_mix(lab: &StandaloneLab) -> Result<()> {
    use standalone_mix as m;
    let tx = RawSender::new(lab.peer(), PEER_IFACE)?;
    let (src, sip) = (STANDALONE_PEER_MAC, STANDALONE_PEER_IPV4);
    tx.send(
        &ipv4_udp(STANDALONE_MAC, src, sip, STANDALONE_IPV4),
        m::OWN as usize,
    )?;
    tx.send(
        &ipv4_udp(FOREIGN_MAC, src, sip, FOREIGN_IPV4),
        m::FOREIGN_NOT_LOCAL as usize,
    )?;
    tx.send(
        &ipv4_udp(FOREIGN_MAC, src, sip, STANDALONE_IPV4),
        m::FOREIGN_HOST_IP as usize,
    )?;
    tx.send(
        &with_vlan_tags(
            &ipv4_udp(STANDALONE_MAC, src, sip, STANDALONE_IPV4),
            &[(TPID_8021Q, 20)],
        ),
        m::OWN_MAC_DOT1Q as usize,
    )?;
    tx.send(
        &ipv4_udp(BROADCAST, src, sip, STANDALONE_IPV4),
        m::BROADCAST as usize,
    )?;
    tx.send(
        &ipv4_udp(MULTICAST_V4, src, sip, MULTICAST_V4_GROUP),
        m::MULTICAST as usize,
    )?;
    Ok(())
}

/// A pcap path in a fresh directory, removed on drop.
pub struct TempPcap {
    dir: PathBuf,
}

impl TempPcap {
    pub fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("macdrop-pcap-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self { dir }
    }
    pub fn path(&self) -> PathBuf {
        self.dir.join("evidence.pcapng")
    }
    pub fn arg(&self) -> String {
        self.path().to_str().unwrap().to_owned()
    }
}

impl Drop for TempPcap {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A run that failed as it should: exit `code`, one line on stderr
/// ("macdrop: ...") mentioning each of `mentions`, no report, no panic.
pub fn check_one_line_error(what: &str, out: &Finished, code: i32, mentions: &[&str]) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "{what}: stderr:\n{}",
        out.stderr
    );
    assert_eq!(
        out.stderr.trim_end().lines().count(),
        1,
        "{what}: want a one-line message, got:\n{}",
        out.stderr
    );
    assert!(
        out.stderr.starts_with("macdrop: "),
        "{what}: {}",
        out.stderr
    );
    for word in mentions {
        assert!(
            out.stderr.contains(word),
            "{what}: message does not mention {word:?}: {}",
            out.stderr
        );
    }
    assert!(
        out.stdout.is_empty(),
        "{what}: printed a report: {}",
        out.stdout
    );
    assert_no_panic(&out.stderr);
}

/// No panic message nor backtrace in `stderr`.
pub fn assert_no_panic(stderr: &str) {
    for marker in ["panicked", "RUST_BACKTRACE", "stack backtrace"] {
        assert!(!stderr.contains(marker), "{marker:?} in stderr:\n{stderr}");
    }
}
