//! Lab topologies, for the tests and for `cargo xtask bench` alike: a
//! bridge with ports ([`BridgeLab`]), a standalone veth ([`StandaloneLab`]),
//! two namespaces talking IP over a veth ([`PairLab`]), a bridge with
//! thousands of ports ([`ManyPortLab`]), hundreds of namespaces with a
//! bridge each ([`BridgedNamespaces`]); [`links`] holds the steps they are
//! built from.
//!
//! Every MAC is fixed so tests can address frames and assert on them (but
//! [`ManyPortLab`]'s ports'), every address is from the documentation
//! ranges (RFC 5737, RFC 3849; [`links::add_ipv4`] refuses any other), and
//! the peers of the tests' labs are built to be silent (no IPv4 address,
//! IPv6 disabled before any link exists), so the only frames a watched
//! interface receives are the ones a test sends. Labs are built with `ip`/`bridge` commands and torn
//! down by dropping the namespaces that hold them.

mod bridge;
mod bridged_netns;
pub mod links;
mod many;
mod pair;
mod standalone;

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::frames::Mac;

pub use bridge::{BridgeLab, BridgeLabOptions};
pub use bridged_netns::BridgedNamespaces;
pub use many::ManyPortLab;
pub use pair::{Iface, PairLab, PairOptions};
pub use standalone::{
    STANDALONE_IFACE, STANDALONE_IPV4, STANDALONE_MAC, STANDALONE_PEER_IPV4, STANDALONE_PEER_MAC,
    StandaloneLab,
};

/// Name of the bridge in a [`BridgeLab`].
pub const BRIDGE: &str = "br0";
pub const BRIDGE_MAC: Mac = [0x02, 0, 0, 0, 0x0b, 0x01];
pub const BRIDGE_IPV4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
pub const BRIDGE_IPV6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
/// A unicast MAC that no interface in any lab has.
pub const FOREIGN_MAC: Mac = [0x02, 0, 0, 0, 0xee, 0xee];
/// An address on no lab interface, outside every lab subnet (TEST-NET-3).
pub const FOREIGN_IPV4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 9);

/// Name of a peer's interface inside its own namespace.
pub const PEER_IFACE: &str = "eth0";

/// Host-side name of port `i` (1-based).
pub fn port_name(i: usize) -> String {
    format!("p{i}")
}

/// MAC of the host side of port `i` (1-based): `02:00:00:00:0a:0i`.
pub fn port_mac(i: usize) -> Mac {
    [0x02, 0, 0, 0, 0x0a, port_byte(i)]
}

/// MAC of the peer end of port `i` (1-based): `02:00:00:00:0c:0i`.
pub fn peer_mac(i: usize) -> Mac {
    [0x02, 0, 0, 0, 0x0c, port_byte(i)]
}

/// A source address for frames sent by peer `i`: on the bridge's subnet but
/// assigned to nobody (192.0.2.100 + i).
pub fn peer_ipv4(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(192, 0, 2, 100 + port_byte(i))
}

/// Like [`peer_ipv4`], for IPv6 (2001:db8::100 + i).
pub fn peer_ipv6(i: usize) -> Ipv6Addr {
    Ipv6Addr::new(
        0x2001,
        0xdb8,
        0,
        0,
        0,
        0,
        0,
        0x100 + u16::from(port_byte(i)),
    )
}

fn port_byte(i: usize) -> u8 {
    // The MAC plan (`0a:0i`, `0c:0i`) has room for single-digit ports only.
    assert!((1..=9).contains(&i), "port {i} out of range 1..=9");
    i as u8
}
