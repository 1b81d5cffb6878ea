//! Raw Ethernet frames, built byte by byte.
//!
//! The tests inject frames with AF_PACKET, so nothing in the kernel fixes a
//! header for us: lengths and the IPv4 header checksum must be right, or the
//! receiving IP layer would drop a frame for a reason other than the one a
//! test is about. Payloads are small and the result is padded to the 60-byte
//! Ethernet minimum (the 4-byte FCS is not ours to add), as a NIC would.

use std::net::{Ipv4Addr, Ipv6Addr};

/// A MAC address.
pub type Mac = [u8; 6];

/// `ff:ff:ff:ff:ff:ff`.
pub const BROADCAST: Mac = [0xff; 6];
/// An IPv4 multicast MAC (`01:00:5e` + low 23 bits of [`MULTICAST_V4_GROUP`]).
pub const MULTICAST_V4: Mac = [0x01, 0x00, 0x5e, 0x01, 0x02, 0x03];
/// The group [`MULTICAST_V4`] maps from: administratively scoped, not
/// link-local, so the bridge's snooping code treats it as ordinary traffic.
pub const MULTICAST_V4_GROUP: Ipv4Addr = Ipv4Addr::new(239, 1, 2, 3);
/// An IPv6 multicast MAC (`33:33` + low 32 bits of the group).
pub const MULTICAST_V6: Mac = [0x33, 0x33, 0x00, 0x00, 0x01, 0x23];

pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_ARP: u16 = 0x0806;
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
/// 802.1Q customer VLAN tag.
pub const TPID_8021Q: u16 = 0x8100;
/// 802.1ad service VLAN tag (the outer tag of QinQ).
pub const TPID_8021AD: u16 = 0x88a8;

/// Ethernet header length (no tags).
pub const ETH_HLEN: usize = 14;
/// Minimum frame length on the wire, without the FCS.
pub const ETH_ZLEN: usize = 60;

/// UDP ports used by the builders: discard (9), so nothing in a namespace
/// is listening and nothing answers with data.
const UDP_PORT: u16 = 9;
/// A few payload bytes so frames are recognisable in a capture.
const PAYLOAD: &[u8] = b"macdrop test";

/// Formats a MAC the way `ip link` and macdrop print it (`02:00:00:00:0b:01`).
pub fn mac_to_string(mac: &Mac) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// An Ethernet frame: `dst`, `src`, `ethertype`, `payload`, zero-padded to
/// [`ETH_ZLEN`].
pub fn eth(dst: Mac, src: Mac, ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(ETH_ZLEN.max(ETH_HLEN + payload.len()));
    frame.extend_from_slice(&dst);
    frame.extend_from_slice(&src);
    frame.extend_from_slice(&ethertype.to_be_bytes());
    frame.extend_from_slice(payload);
    pad(&mut frame);
    frame
}

/// An IPv4/UDP datagram (TTL 64, checksum correct, UDP checksum 0 = none).
pub fn ipv4_udp(dst_mac: Mac, src_mac: Mac, src_ip: Ipv4Addr, dst_ip: Ipv4Addr) -> Vec<u8> {
    let udp = udp(PAYLOAD);
    let total_len = u16::try_from(20 + udp.len()).expect("small datagram");
    let mut ip = Vec::with_capacity(20 + udp.len());
    ip.push(0x45); // version 4, IHL 5 words
    ip.push(0); // DSCP/ECN
    ip.extend_from_slice(&total_len.to_be_bytes());
    ip.extend_from_slice(&[0, 0]); // identification
    ip.extend_from_slice(&[0x40, 0]); // don't fragment, offset 0
    ip.push(64); // TTL
    ip.push(17); // UDP
    ip.extend_from_slice(&[0, 0]); // checksum, filled in below
    ip.extend_from_slice(&src_ip.octets());
    ip.extend_from_slice(&dst_ip.octets());
    let sum = internet_checksum(&ip);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    ip.extend_from_slice(&udp);
    eth(dst_mac, src_mac, ETHERTYPE_IPV4, &ip)
}

/// An IPv6/UDP datagram (hop limit 64). UDP over IPv6 must carry a checksum;
/// it is computed over the pseudo-header so the frame is valid if delivered.
pub fn ipv6_udp(dst_mac: Mac, src_mac: Mac, src_ip: Ipv6Addr, dst_ip: Ipv6Addr) -> Vec<u8> {
    let mut udp = udp(PAYLOAD);
    let udp_len = u32::try_from(udp.len()).expect("small datagram");
    let mut pseudo = Vec::with_capacity(40 + udp.len());
    pseudo.extend_from_slice(&src_ip.octets());
    pseudo.extend_from_slice(&dst_ip.octets());
    pseudo.extend_from_slice(&udp_len.to_be_bytes());
    pseudo.extend_from_slice(&[0, 0, 0, 17]);
    pseudo.extend_from_slice(&udp);
    let sum = match internet_checksum(&pseudo) {
        0 => 0xffff, // 0 means "no checksum", which IPv6 forbids
        sum => sum,
    };
    udp[6..8].copy_from_slice(&sum.to_be_bytes());

    let mut ip = Vec::with_capacity(40 + udp.len());
    ip.extend_from_slice(&[0x60, 0, 0, 0]); // version 6, no class/flow label
    ip.extend_from_slice(&(udp_len as u16).to_be_bytes());
    ip.push(17); // next header: UDP
    ip.push(64); // hop limit
    ip.extend_from_slice(&src_ip.octets());
    ip.extend_from_slice(&dst_ip.octets());
    ip.extend_from_slice(&udp);
    eth(dst_mac, src_mac, ETHERTYPE_IPV6, &ip)
}

/// An ARP request "who has `target_ip`, tell `sender_ip`". Usually broadcast;
/// pass a unicast `dst_mac` for the unicast requests hosts send to refresh a
/// cache entry (the case where a stale MAC shows up).
pub fn arp_request(
    dst_mac: Mac,
    src_mac: Mac,
    sender_ip: Ipv4Addr,
    target_ip: Ipv4Addr,
) -> Vec<u8> {
    let mut arp = Vec::with_capacity(28);
    arp.extend_from_slice(&1u16.to_be_bytes()); // hardware: Ethernet
    arp.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes()); // protocol: IPv4
    arp.push(6); // hardware address length
    arp.push(4); // protocol address length
    arp.extend_from_slice(&1u16.to_be_bytes()); // opcode: request
    arp.extend_from_slice(&src_mac);
    arp.extend_from_slice(&sender_ip.octets());
    arp.extend_from_slice(&[0; 6]); // target hardware address: unknown
    arp.extend_from_slice(&target_ip.octets());
    eth(dst_mac, src_mac, ETHERTYPE_ARP, &arp)
}

/// Inserts VLAN tags after the MAC addresses, outermost first:
/// `&[(TPID_8021AD, 100), (TPID_8021Q, 10)]` makes a QinQ frame. The frame is
/// re-padded in case it was built without padding.
pub fn with_vlan_tags(frame: &[u8], tags: &[(u16, u16)]) -> Vec<u8> {
    assert!(frame.len() >= ETH_HLEN, "not an Ethernet frame");
    let mut tagged = Vec::with_capacity(frame.len() + 4 * tags.len());
    tagged.extend_from_slice(&frame[..12]);
    for &(tpid, vid) in tags {
        assert!(vid < 0x1000, "VLAN id {vid} out of range");
        tagged.extend_from_slice(&tpid.to_be_bytes());
        tagged.extend_from_slice(&vid.to_be_bytes()); // PCP 0, DEI 0
    }
    tagged.extend_from_slice(&frame[12..]);
    pad(&mut tagged);
    tagged
}

/// An 8-byte UDP header (checksum 0) followed by `payload`.
fn udp(payload: &[u8]) -> Vec<u8> {
    let len = u16::try_from(8 + payload.len()).expect("small datagram");
    let mut udp = Vec::with_capacity(8 + payload.len());
    udp.extend_from_slice(&UDP_PORT.to_be_bytes());
    udp.extend_from_slice(&UDP_PORT.to_be_bytes());
    udp.extend_from_slice(&len.to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(payload);
    udp
}

fn pad(frame: &mut Vec<u8>) {
    if frame.len() < ETH_ZLEN {
        frame.resize(ETH_ZLEN, 0);
    }
}

/// RFC 1071 ones' complement sum, as used by IPv4, UDP and ICMP.
fn internet_checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|pair| u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Mac = [2, 0, 0, 0, 0, 1];
    const B: Mac = [2, 0, 0, 0, 0, 2];

    #[test]
    fn ipv4_header_checksums_to_zero() {
        let frame = ipv4_udp(
            A,
            B,
            Ipv4Addr::new(192, 0, 2, 2),
            Ipv4Addr::new(192, 0, 2, 1),
        );
        assert_eq!(frame.len(), ETH_ZLEN);
        assert_eq!(&frame[12..14], &[0x08, 0x00]);
        // A correct header sums (checksum included) to 0xffff, i.e. !0.
        assert_eq!(internet_checksum(&frame[14..34]), 0);
        assert_eq!(&frame[30..34], &[192, 0, 2, 1]);
        // Total length covers IP + UDP + payload, not the padding.
        assert_eq!(u16::from_be_bytes([frame[16], frame[17]]), 20 + 8 + 12);
    }

    #[test]
    fn checksum_matches_rfc1071_example() {
        // The worked example in RFC 1071 section 3: sum 0xddf2, checksum !sum.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(internet_checksum(&data), !0xddf2);
    }

    #[test]
    fn ipv6_udp_checksum_verifies() {
        let src = "2001:db8::2".parse().unwrap();
        let dst = "2001:db8::1".parse().unwrap();
        let frame = ipv6_udp(A, B, src, dst);
        assert_eq!(&frame[12..14], &[0x86, 0xdd]);
        let payload_len = usize::from(u16::from_be_bytes([frame[18], frame[19]]));
        let udp = &frame[54..54 + payload_len];
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&frame[22..54]);
        pseudo.extend_from_slice(&(payload_len as u32).to_be_bytes());
        pseudo.extend_from_slice(&[0, 0, 0, 17]);
        pseudo.extend_from_slice(udp);
        assert_eq!(internet_checksum(&pseudo), 0);
    }

    #[test]
    fn arp_request_layout() {
        let frame = arp_request(
            B,
            A,
            Ipv4Addr::new(192, 0, 2, 2),
            Ipv4Addr::new(192, 0, 2, 1),
        );
        assert_eq!(frame.len(), ETH_ZLEN);
        assert_eq!(&frame[..6], &B);
        assert_eq!(&frame[12..14], &[0x08, 0x06]);
        assert_eq!(&frame[20..22], &[0, 1]); // request
        assert_eq!(&frame[22..28], &A); // sender MAC
        assert_eq!(&frame[38..42], &[192, 0, 2, 1]); // target IP
    }

    #[test]
    fn vlan_tags_go_after_the_macs_outermost_first() {
        let frame = ipv4_udp(
            A,
            B,
            Ipv4Addr::new(192, 0, 2, 2),
            Ipv4Addr::new(192, 0, 2, 1),
        );
        let tagged = with_vlan_tags(&frame, &[(TPID_8021AD, 100), (TPID_8021Q, 10)]);
        assert_eq!(tagged.len(), frame.len() + 8);
        assert_eq!(&tagged[..12], &frame[..12]);
        assert_eq!(&tagged[12..16], &[0x88, 0xa8, 0, 100]);
        assert_eq!(&tagged[16..20], &[0x81, 0x00, 0, 10]);
        assert_eq!(&tagged[20..], &frame[12..]);
    }

    #[test]
    fn short_payloads_are_padded() {
        assert_eq!(eth(A, B, 0x88b5, &[]).len(), ETH_ZLEN);
        assert_eq!(eth(A, B, 0x88b5, &[0; 100]).len(), ETH_HLEN + 100);
        assert_eq!(mac_to_string(&BROADCAST), "ff:ff:ff:ff:ff:ff");
    }
}
