//! [`BridgeLab`]: a bridge with up to nine ports, each to a silent peer
//! namespace of its own.

use std::time::Duration;

use anyhow::{Result, ensure};

use super::links::{End, add_bridge, add_ipv4, add_veth_at, up};
use super::{
    BRIDGE, BRIDGE_IPV4, BRIDGE_IPV6, BRIDGE_MAC, PEER_IFACE, peer_ipv4, peer_mac, port_mac,
    port_name,
};
use crate::{
    frames::{Mac, ipv4_udp, mac_to_string},
    kernel,
    netns::{NetNs, TEST_PREFIX},
    sender::RawSender,
    wait::poll_until,
};

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

        add_bridge(
            &lab.host,
            BRIDGE,
            options.pin_bridge_mac.then_some(BRIDGE_MAC),
        )?;
        // No link-local address, even if IPv6 is enabled later.
        lab.host
            .exec(&["ip", "link", "set", BRIDGE, "addrgenmode", "none"])?;
        for i in 1..=options.ports {
            lab.connect_port(i)?;
        }
        add_ipv4(&lab.host, BRIDGE, BRIDGE_IPV4)?;
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
        up(&lab.host, BRIDGE)?;
        Ok(lab)
    }

    /// Creates port `pI` to peer `I`'s namespace and enslaves it to br0.
    fn connect_port(&self, i: usize) -> Result<()> {
        self.connect_port_at(i, None)
    }

    /// `connect_port`, the port at ifindex `index` if given.
    fn connect_port_at(&self, i: usize, index: Option<u32>) -> Result<()> {
        let port = port_name(i);
        let peer = &self.peers[i - 1];
        add_veth_at(
            End {
                ns: &self.host,
                name: &port,
                mac: Some(port_mac(i)),
            },
            index,
            End {
                ns: peer,
                name: PEER_IFACE,
                mac: Some(peer_mac(i)),
            },
        )?;
        self.host
            .exec(&["ip", "link", "set", &port, "master", BRIDGE])?;
        up(&self.host, &port)?;
        up(peer, PEER_IFACE)?;
        Ok(())
    }

    /// Adds one more port (and peer namespace) to a running lab; returns
    /// its number.
    pub fn add_port(&mut self, ns_prefix: &str) -> Result<usize> {
        self.add_port_at(ns_prefix, None)
    }

    /// `add_port`, the port at ifindex `index` if given.
    pub fn add_port_at(&mut self, ns_prefix: &str, index: Option<u32>) -> Result<usize> {
        ensure!(self.peers.len() < 9, "at most 9 ports");
        self.peers.push(NetNs::with_prefix(ns_prefix)?);
        let i = self.peers.len();
        self.connect_port_at(i, index)?;
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

    /// Peers 1 and 2 take turns sending one frame to br0 with the same
    /// source `mac` (duplicate container MACs), `sends` times in all. Each
    /// send is repeated until br0's FDB has `mac` behind the sender's port
    /// (resending from that port moves nothing), so every send after the
    /// first is exactly one move between p1 and p2.
    pub fn flap_mac(&self, mac: Mac, sends: usize) -> Result<()> {
        let senders = [
            RawSender::new(self.peer(1), PEER_IFACE)?,
            RawSender::new(self.peer(2), PEER_IFACE)?,
        ];
        for n in 0..sends {
            let i = n % 2;
            let frame = ipv4_udp(BRIDGE_MAC, mac, peer_ipv4(i + 1), BRIDGE_IPV4);
            let entry = format!("{} dev {} ", mac_to_string(&mac), port_name(i + 1));
            let fdb = poll_until(
                Duration::from_secs(10),
                || {
                    senders[i].send(&frame, 1)?;
                    let out = self.host.exec(&["bridge", "fdb", "show", "br", BRIDGE])?;
                    Ok(String::from_utf8_lossy(&out).into_owned())
                },
                |fdb| fdb.lines().any(|l| l.starts_with(&entry)),
            )?;
            ensure!(
                fdb.lines().any(|l| l.starts_with(&entry)),
                "{BRIDGE} never learned {entry}on send {n}: {fdb}"
            );
        }
        Ok(())
    }

    /// Turns promiscuous mode of `br0` on or off (`ip link set br0 promisc`).
    pub fn set_promisc(&self, on: bool) -> Result<()> {
        let state = if on { "on" } else { "off" };
        self.host
            .exec(&["ip", "link", "set", BRIDGE, "promisc", state])?;
        Ok(())
    }

    /// Turns VLAN filtering of `br0` on (`ip link set br0 type bridge
    /// vlan_filtering 1`); an error where the kernel lacks
    /// CONFIG_BRIDGE_VLAN_FILTERING.
    pub fn set_vlan_filtering(&self) -> Result<()> {
        self.host.exec(&[
            "ip",
            "link",
            "set",
            BRIDGE,
            "type",
            "bridge",
            "vlan_filtering",
            "1",
        ])?;
        Ok(())
    }
}
