//! The reference model of the classification, in plain Rust over a byte
//! slice. It is the specification the eBPF classifier
//! (`monitor-ebpf/src/classify.rs`) is tested against with `test_run`
//! (`tests/tests/test_run/`), and
//! it is written independently of it on purpose: sharing the code would make
//! the agreement tests tautological.

use std::{
    collections::HashSet,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use monitor_common::{FrameCounters, MAX_VLAN_TAGS};

use crate::{
    delivery::{Delivery, Tag},
    mac::Mac,
};

/// The class of one received frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameClass {
    /// Shorter than an Ethernet header.
    Runt,
    Broadcast,
    /// Group bit set, not broadcast.
    Multicast,
    /// A destination the kernel delivers to the host on this interface,
    /// with these VLAN tags (`crate::delivery`).
    Own,
    /// Unicast to someone else. `host_ip`: the destination IP (or ARP target)
    /// is an address of the host's namespace — a frame meant for this host
    /// carrying the wrong MAC. `stale`: the destination is a MAC the bridge
    /// (or interface) had before a change.
    ForeignUnicast {
        host_ip: bool,
        stale: bool,
    },
}

/// What the classifier knows about the receiving interface.
pub struct Receiver<'a> {
    /// What the kernel delivers to the host from it, per VLAN path, and
    /// the MACs it (or its bridge) had before.
    pub delivery: &'a Delivery,
    /// IP addresses of the namespace.
    pub host_addrs: &'a HashSet<IpAddr>,
}

/// The frame's VLAN tags that decide delivery (outer first, a lone
/// priority tag dropped), or None when there are more than a path holds
/// (never delivered).
pub fn vlan_path(frame: &[u8]) -> Option<Vec<Tag>> {
    let mut tags = Vec::new();
    let mut at = 12;
    // A tag counts when its TPID and TCI are in the frame.
    while tags.len() < 4 {
        let Some(tpid @ (0x8100 | 0x88a8)) = be16(frame, at) else {
            break;
        };
        let Some(tci) = be16(frame, at + 2) else {
            break;
        };
        tags.push(Tag {
            tpid,
            vid: tci & 0x0fff,
        });
        at += 4;
    }
    // A lone priority tag (VID 0) is no tag to the kernel; before another
    // tag it stays (a VLAN-filtering bridge takes it for the PVID).
    if tags.len() == 1 && tags[0].vid == 0 {
        tags.clear();
    }
    (tags.len() <= 2).then_some(tags)
}

pub fn classify(frame: &[u8], rx: &Receiver<'_>) -> FrameClass {
    if frame.len() < 14 {
        return FrameClass::Runt;
    }
    let dst = Mac::from_slice(&frame[0..6]).expect("6 bytes");
    if dst == Mac::BROADCAST {
        FrameClass::Broadcast
    } else if dst.is_multicast() {
        FrameClass::Multicast
    } else {
        let path = vlan_path(frame);
        if path.as_ref().is_some_and(|p| rx.delivery.delivers(p, dst)) {
            return FrameClass::Own;
        }
        let host_ip = destination_ip(frame).is_some_and(|ip| rx.host_addrs.contains(&ip));
        let stale = path.is_some_and(|p| rx.delivery.stale(&p, dst));
        FrameClass::ForeignUnicast { host_ip, stale }
    }
}

/// The class a bridge device gives a frame a port passed up to it: the
/// port's verdict on its fate (the same frame: delivered or not).
pub fn passed_up(port_class: FrameClass) -> FrameClass {
    port_class
}

/// The destination IPv4/IPv6 address, or the ARP target protocol address,
/// after up to `MAX_VLAN_TAGS` 802.1Q/802.1ad tags.
pub fn destination_ip(frame: &[u8]) -> Option<IpAddr> {
    let mut ethertype_at = 12;
    let mut ethertype = be16(frame, ethertype_at)?;
    for _ in 0..MAX_VLAN_TAGS {
        if ethertype != 0x8100 && ethertype != 0x88a8 {
            break;
        }
        ethertype_at += 4;
        ethertype = be16(frame, ethertype_at)?;
    }
    let l3 = frame.get(ethertype_at + 2..)?;
    match ethertype {
        0x0800 => {
            let a: [u8; 4] = l3.get(16..20)?.try_into().ok()?;
            Some(IpAddr::V4(Ipv4Addr::from(a)))
        }
        0x86dd => {
            let a: [u8; 16] = l3.get(24..40)?.try_into().ok()?;
            Some(IpAddr::V6(Ipv6Addr::from(a)))
        }
        0x0806 => {
            // Ethernet/IPv4 ARP only.
            if l3.get(0..6)? != [0, 1, 8, 0, 6, 4] {
                return None;
            }
            let a: [u8; 4] = l3.get(24..28)?.try_into().ok()?;
            Some(IpAddr::V4(Ipv4Addr::from(a)))
        }
        _ => None,
    }
}

/// The outermost VLAN ID (802.1Q or 802.1ad tag), the flow key's VLAN.
pub fn outer_vlan(frame: &[u8]) -> Option<u16> {
    match be16(frame, 12)? {
        0x8100 | 0x88a8 => Some(be16(frame, 14)? & 0x0fff),
        _ => None,
    }
}

fn be16(frame: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(frame.get(at..at + 2)?.try_into().ok()?))
}

/// The mismatch bits (`monitor_common::MISMATCH_*`) of a frame of `class`
/// received on a bridge port (`port`) or another interface: what decides
/// whether it feeds the top-offender flows and the pcap evidence.
pub fn mismatch(class: FrameClass, port: bool) -> u8 {
    match class {
        FrameClass::ForeignUnicast { host_ip, stale } => {
            let mut bits = 0;
            if !port {
                bits |= monitor_common::MISMATCH_FOREIGN;
            }
            if host_ip {
                bits |= monitor_common::MISMATCH_HOST_IP;
            }
            if stale {
                bits |= monitor_common::MISMATCH_STALE;
            }
            bits
        }
        _ => 0,
    }
}

/// The counter increments one frame of `class` causes.
pub fn counter_delta(class: FrameClass) -> FrameCounters {
    let mut c = FrameCounters {
        total: 1,
        ..Default::default()
    };
    match class {
        FrameClass::Runt => c.runt = 1,
        FrameClass::Broadcast => c.broadcast = 1,
        FrameClass::Multicast => c.multicast = 1,
        FrameClass::Own => c.own = 1,
        FrameClass::ForeignUnicast { host_ip, stale } => {
            c.foreign_unicast = 1;
            c.host_ip_wrong_mac = u64::from(host_ip);
            c.stale_mac = u64::from(stale);
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWN: Mac = Mac([2, 0, 0, 0, 0x0b, 1]);
    const OTHER: Mac = Mac([2, 0, 0, 0, 0xee, 0xee]);
    const HOST_V4: [u8; 4] = [192, 0, 2, 1];

    fn rx_sets() -> (Vec<Mac>, HashSet<IpAddr>) {
        (
            vec![OWN],
            HashSet::from([
                IpAddr::V4(HOST_V4.into()),
                IpAddr::V6("2001:db8::1".parse().unwrap()),
            ]),
        )
    }

    fn frame(dst: Mac, ethertype: u16, l3: &[u8]) -> Vec<u8> {
        let mut f = dst.0.to_vec();
        f.extend([2, 0, 0, 0, 0x0c, 1]);
        f.extend(ethertype.to_be_bytes());
        f.extend(l3);
        f
    }

    fn ipv4_to(dst: [u8; 4]) -> Vec<u8> {
        let mut h = vec![0x45, 0, 0, 20, 0, 0, 0, 0, 64, 17, 0, 0, 198, 51, 100, 7];
        h.extend(dst);
        h
    }

    const OLD: Mac = Mac([2, 0, 0, 0, 0x0b, 0x99]);

    fn class_of(f: &[u8]) -> FrameClass {
        let (macs, addrs) = rx_sets();
        let delivery = Delivery {
            paths: [
                (vec![], macs.iter().copied().collect()),
                (vec![Tag::q(10)], [OWN].into()),
            ]
            .into(),
            previous: [OLD].into(),
        };
        classify(
            f,
            &Receiver {
                delivery: &delivery,
                host_addrs: &addrs,
            },
        )
    }

    #[test]
    fn tags_decide_delivery_by_their_path() {
        let tagged = |tags: &[[u8; 4]]| {
            let mut l3 = Vec::new();
            for (i, t) in tags.iter().enumerate() {
                if i > 0 {
                    l3.extend(&t[..2]);
                }
                l3.extend(&t[2..]);
            }
            l3.extend([0x08, 0x00]);
            l3.extend(ipv4_to(HOST_V4));
            frame(OWN, u16::from_be_bytes([tags[0][0], tags[0][1]]), &l3)
        };
        let foreign = FrameClass::ForeignUnicast {
            host_ip: true,
            stale: false,
        };
        // VID 10 on 802.1Q has a path; on 802.1ad and VID 11 it has none.
        assert_eq!(class_of(&tagged(&[[0x81, 0, 0, 10]])), FrameClass::Own);
        assert_eq!(class_of(&tagged(&[[0x88, 0xa8, 0, 10]])), foreign);
        assert_eq!(class_of(&tagged(&[[0x81, 0, 0, 11]])), foreign);
        // Priority bits do not matter; a priority tag is no tag.
        assert_eq!(class_of(&tagged(&[[0x81, 0, 0xe0, 10]])), FrameClass::Own);
        assert_eq!(class_of(&tagged(&[[0x81, 0, 0xe0, 0]])), FrameClass::Own);
        // Before another tag a priority tag is kept: its own path.
        assert_eq!(
            class_of(&tagged(&[[0x81, 0, 0, 0], [0x81, 0, 0, 10]])),
            foreign
        );
        assert_eq!(
            class_of(&tagged(&[[0x88, 0xa8, 0, 5], [0x81, 0, 0, 10]])),
            foreign
        );
    }

    #[test]
    fn mac_classes() {
        assert_eq!(class_of(&[0; 13]), FrameClass::Runt);
        assert_eq!(
            class_of(&frame(Mac::BROADCAST, 0x0800, &[])),
            FrameClass::Broadcast
        );
        assert_eq!(
            class_of(&frame(Mac([1, 0, 0x5e, 0, 0, 1]), 0x0800, &[])),
            FrameClass::Multicast
        );
        assert_eq!(
            class_of(&frame(OWN, 0x0800, &ipv4_to(HOST_V4))),
            FrameClass::Own
        );
    }

    #[test]
    fn foreign_unicast_with_and_without_host_ip() {
        assert_eq!(
            class_of(&frame(OTHER, 0x0800, &ipv4_to(HOST_V4))),
            FrameClass::ForeignUnicast {
                host_ip: true,
                stale: false
            }
        );
        assert_eq!(
            class_of(&frame(OTHER, 0x0800, &ipv4_to([203, 0, 113, 9]))),
            FrameClass::ForeignUnicast {
                host_ip: false,
                stale: false
            }
        );
        // Truncated IPv4 header: no address to check.
        assert_eq!(
            class_of(&frame(OTHER, 0x0800, &ipv4_to(HOST_V4)[..19])),
            FrameClass::ForeignUnicast {
                host_ip: false,
                stale: false
            }
        );
    }

    #[test]
    fn previous_macs_are_stale_foreign_unicast() {
        assert_eq!(
            class_of(&frame(OLD, 0x0800, &ipv4_to(HOST_V4))),
            FrameClass::ForeignUnicast {
                host_ip: true,
                stale: true
            }
        );
    }

    #[test]
    fn vlan_tags_are_skipped_up_to_the_limit() {
        let mut l3 = Vec::new();
        for _ in 0..MAX_VLAN_TAGS - 1 {
            l3.extend([0, 10, 0x81, 0x00]);
        }
        l3.extend([0, 10, 0x08, 0x00]);
        l3.extend(ipv4_to(HOST_V4));
        let tagged = frame(OTHER, 0x88a8, &l3);
        assert_eq!(
            class_of(&tagged),
            FrameClass::ForeignUnicast {
                host_ip: true,
                stale: false
            }
        );

        let mut deeper = vec![0, 10, 0x81, 0x00];
        deeper.extend(&l3);
        assert_eq!(
            class_of(&frame(OTHER, 0x88a8, &deeper)),
            FrameClass::ForeignUnicast {
                host_ip: false,
                stale: false
            },
            "more than MAX_VLAN_TAGS tags: no IP check"
        );
    }

    #[test]
    fn ipv6_and_arp_targets() {
        let mut v6 = vec![0x60, 0, 0, 0, 0, 0, 17, 64];
        v6.extend("2001:db8::99".parse::<Ipv6Addr>().unwrap().octets());
        v6.extend("2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        assert_eq!(
            class_of(&frame(OTHER, 0x86dd, &v6)),
            FrameClass::ForeignUnicast {
                host_ip: true,
                stale: false
            }
        );

        let mut arp = vec![0, 1, 8, 0, 6, 4, 0, 1];
        arp.extend([2, 0, 0, 0, 0x0c, 1, 192, 0, 2, 11]);
        arp.extend([0; 6]);
        arp.extend(HOST_V4);
        assert_eq!(
            class_of(&frame(OTHER, 0x0806, &arp)),
            FrameClass::ForeignUnicast {
                host_ip: true,
                stale: false
            }
        );
        arp[5] = 16; // not IPv4 ARP
        assert_eq!(
            class_of(&frame(OTHER, 0x0806, &arp)),
            FrameClass::ForeignUnicast {
                host_ip: false,
                stale: false
            }
        );
    }

    #[test]
    fn deltas_partition_total() {
        for class in [
            FrameClass::Runt,
            FrameClass::Broadcast,
            FrameClass::Multicast,
            FrameClass::Own,
            FrameClass::ForeignUnicast {
                host_ip: true,
                stale: false,
            },
            FrameClass::ForeignUnicast {
                host_ip: false,
                stale: true,
            },
        ] {
            let d = counter_delta(class);
            assert_eq!(d.total, 1);
            assert_eq!(
                d.own + d.broadcast + d.multicast + d.foreign_unicast + d.runt,
                1
            );
            assert!(d.host_ip_wrong_mac <= d.foreign_unicast);
            assert!(d.stale_mac <= d.foreign_unicast);
        }
    }
}
