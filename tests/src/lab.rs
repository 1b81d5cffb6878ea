//! Lab topologies: a bridge with ports, or a standalone veth.
//!
//! Every MAC is fixed so tests can address frames and assert on them, every
//! address is from the documentation ranges (RFC 5737, RFC 3849), and the
//! peers are built to be silent (no IPv4 address, IPv6 disabled before any
//! link exists), so the only frames a watched interface receives are the
//! ones a test sends. Labs are built with `ip`/`bridge` commands and torn
//! down by dropping the namespaces that hold them.

use std::net::{Ipv4Addr, Ipv6Addr};

use anyhow::{Result, ensure};

use crate::{
    frames::{Mac, mac_to_string},
    kernel,
    netns::{NetNs, TEST_PREFIX},
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

/// How to build a [`BridgeLab`].
#[derive(Clone, Debug)]
pub struct BridgeLabOptions {
    /// Number of ports, 1..=9.
    pub ports: usize,
    /// Give `br0` 2001:db8::1/64 (IPv6 enabled on `br0` only).
    pub bridge_ipv6: bool,
    /// Prefix of the namespace names.
    pub ns_prefix: String,
    /// Create `br0` with the fixed `BRIDGE_MAC`. Without it the bridge
    /// takes the lowest port MAC (p1's) and changes it as ports come and go.
    pub pin_bridge_mac: bool,
}

impl Default for BridgeLabOptions {
    fn default() -> Self {
        Self {
            ports: 2,
            bridge_ipv6: false,
            ns_prefix: TEST_PREFIX.to_owned(),
            pin_bridge_mac: true,
        }
    }
}

/// A "host" namespace with bridge `br0` (192.0.2.1/24) and ports `p1..pN`,
/// each a veth whose other end is `eth0` in a peer namespace of its own.
///
/// Field order matters for teardown: peers are dropped first, then the host.
#[derive(Debug)]
pub struct BridgeLab {
    peers: Vec<NetNs>,
    host: NetNs,
}

impl BridgeLab {
    /// A lab with `ports` ports and no IPv6 on the bridge.
    pub fn new(ports: usize) -> Result<Self> {
        Self::with_options(BridgeLabOptions {
            ports,
            ..BridgeLabOptions::default()
        })
    }

    pub fn with_options(options: BridgeLabOptions) -> Result<Self> {
        ensure!((1..=9).contains(&options.ports), "ports must be 1..=9");
        let host = NetNs::with_prefix(&options.ns_prefix)?;
        let mut peers = Vec::with_capacity(options.ports);
        for _ in 0..options.ports {
            peers.push(NetNs::with_prefix(&options.ns_prefix)?);
        }
        // From here on, an error drops `host` and `peers`, which removes
        // everything built so far.
        let lab = Self { peers, host };

        let br_mac = mac_to_string(&BRIDGE_MAC);
        // STP off: ports forward at once instead of after the listening and
        // learning delays, and the bridge sends no BPDUs.
        let mut add_bridge = vec!["ip", "link", "add", BRIDGE];
        if options.pin_bridge_mac {
            add_bridge.extend(["address", &br_mac]);
        }
        add_bridge.extend(["type", "bridge", "stp_state", "0"]);
        lab.host.exec(&add_bridge)?;
        // No link-local address, even if IPv6 is enabled later.
        lab.host
            .exec(&["ip", "link", "set", BRIDGE, "addrgenmode", "none"])?;
        for i in 1..=options.ports {
            lab.connect_port(i)?;
        }
        lab.host.exec(&[
            "ip",
            "addr",
            "add",
            &format!("{BRIDGE_IPV4}/24"),
            "dev",
            BRIDGE,
        ])?;
        if options.bridge_ipv6 {
            lab.host.exec(&[
                "sysctl",
                "-qw",
                &format!("net.ipv6.conf.{BRIDGE}.disable_ipv6=0"),
            ])?;
            // nodad: usable at once, and no DAD probe leaves the bridge.
            lab.host.exec(&[
                "ip",
                "addr",
                "add",
                &format!("{BRIDGE_IPV6}/64"),
                "dev",
                BRIDGE,
                "nodad",
            ])?;
        }
        lab.host.exec(&["ip", "link", "set", BRIDGE, "up"])?;
        Ok(lab)
    }

    /// Creates port `pI` to peer `I`'s namespace and enslaves it to br0.
    fn connect_port(&self, i: usize) -> Result<()> {
        let port = port_name(i);
        let peer = &self.peers[i - 1];
        // Create the peer end directly in its namespace, so the many
        // `eth0`s never meet in the host namespace.
        self.host.exec(&[
            "ip",
            "link",
            "add",
            &port,
            "address",
            &mac_to_string(&port_mac(i)),
            "type",
            "veth",
            "peer",
            "name",
            PEER_IFACE,
            "address",
            &mac_to_string(&peer_mac(i)),
            "netns",
            peer.name(),
        ])?;
        self.host
            .exec(&["ip", "link", "set", &port, "master", BRIDGE])?;
        self.host.exec(&["ip", "link", "set", &port, "up"])?;
        peer.exec(&["ip", "link", "set", PEER_IFACE, "up"])?;
        Ok(())
    }

    /// Adds one more port (and peer namespace) to a running lab; returns
    /// its number.
    pub fn add_port(&mut self, ns_prefix: &str) -> Result<usize> {
        ensure!(self.peers.len() < 9, "at most 9 ports");
        self.peers.push(NetNs::with_prefix(ns_prefix)?);
        let i = self.peers.len();
        self.connect_port(i)?;
        Ok(i)
    }

    /// Deletes port `pN` (and its veth peer): the bridge loses it, and an
    /// unpinned bridge recomputes its MAC.
    pub fn remove_port(&self, i: usize) -> Result<()> {
        self.host.exec(&["ip", "link", "del", &port_name(i)])?;
        Ok(())
    }

    /// The namespace holding `br0` and the ports.
    pub fn host(&self) -> &NetNs {
        &self.host
    }

    /// The namespace at the other end of port `i` (1-based).
    pub fn peer(&self, i: usize) -> &NetNs {
        &self.peers[i - 1]
    }

    /// Number of ports.
    pub fn ports(&self) -> usize {
        self.peers.len()
    }

    /// Gives peer `i`'s `eth0` an address (e.g. `"192.0.2.11/24"`), for labs
    /// where the peer must talk IP itself (the demo's pings).
    pub fn set_peer_address(&self, i: usize, cidr: &str) -> Result<()> {
        self.peer(i)
            .exec(&["ip", "addr", "add", cidr, "dev", PEER_IFACE])?;
        Ok(())
    }

    /// Deletes the bridge's own local FDB entry, the setup of the README's
    /// incident: frames to br0's MAC are then flooded, not delivered.
    ///
    /// The flag is `self`, not `master`: `master` asks the *upper* device of
    /// `dev` to act, and br0 has none, so on Linux 6.18 / iproute2 6.1
    /// `bridge fdb del MAC dev br0 master` fails with EOPNOTSUPP. With `self`
    /// br0's own fdb_del runs, which is the bridge's. The result is checked
    /// in the FDB itself rather than trusted.
    pub fn remove_bridge_mac_from_fdb(&self) -> Result<()> {
        let mac = mac_to_string(&BRIDGE_MAC);
        self.host
            .exec(&["bridge", "fdb", "del", &mac, "dev", BRIDGE, "self"])?;
        ensure!(
            !kernel::fdb_has_bridge_entry(&self.host, BRIDGE, &mac)?,
            "{mac} is still in the FDB of {BRIDGE} after `bridge fdb del`"
        );
        Ok(())
    }

    /// Turns promiscuous mode of `br0` on or off (`ip link set br0 promisc`).
    pub fn set_promisc(&self, on: bool) -> Result<()> {
        let state = if on { "on" } else { "off" };
        self.host
            .exec(&["ip", "link", "set", BRIDGE, "promisc", state])?;
        Ok(())
    }
}

/// Name of the watched interface in a [`StandaloneLab`].
pub const STANDALONE_IFACE: &str = "v0";
pub const STANDALONE_MAC: Mac = [0x02, 0, 0, 0, 0x0d, 0x01];
pub const STANDALONE_IPV4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
pub const STANDALONE_PEER_MAC: Mac = [0x02, 0, 0, 0, 0x0d, 0x02];
/// Source address for frames from the standalone peer (assigned to nobody).
pub const STANDALONE_PEER_IPV4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);

/// A "host" namespace with veth `v0` (198.51.100.1/24), not bridged, whose
/// other end is `eth0` in a silent peer namespace.
///
/// Field order matters for teardown: the peer is dropped first.
#[derive(Debug)]
pub struct StandaloneLab {
    peer: NetNs,
    host: NetNs,
}

impl StandaloneLab {
    pub fn new() -> Result<Self> {
        let host = NetNs::new()?;
        let peer = NetNs::new()?;
        let lab = Self { peer, host };
        lab.host.exec(&[
            "ip",
            "link",
            "add",
            STANDALONE_IFACE,
            "address",
            &mac_to_string(&STANDALONE_MAC),
            "type",
            "veth",
            "peer",
            "name",
            PEER_IFACE,
            "address",
            &mac_to_string(&STANDALONE_PEER_MAC),
            "netns",
            lab.peer.name(),
        ])?;
        lab.host.exec(&[
            "ip",
            "addr",
            "add",
            &format!("{STANDALONE_IPV4}/24"),
            "dev",
            STANDALONE_IFACE,
        ])?;
        lab.host
            .exec(&["ip", "link", "set", STANDALONE_IFACE, "up"])?;
        lab.peer.exec(&["ip", "link", "set", PEER_IFACE, "up"])?;
        Ok(lab)
    }

    /// The namespace holding `v0`.
    pub fn host(&self) -> &NetNs {
        &self.host
    }

    /// The namespace holding the peer's `eth0`.
    pub fn peer(&self) -> &NetNs {
        &self.peer
    }
}
