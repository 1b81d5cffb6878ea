//! [`ManyPortLab`]: `br0` with hundreds or thousands of veth ports, their
//! peers all in one namespace, built with `ip -batch` (the benchmark's
//! attach-time and userspace-cost lab). Beyond nine ports the fixed MAC
//! plan of [`super::BridgeLab`] has no room: ports take the kernel's MACs.

use std::fmt::Write as _;

use anyhow::{Result, ensure};

use super::{
    BRIDGE, BRIDGE_IPV4, BRIDGE_MAC,
    links::{add_bridge, add_ipv4, ip_batch, up},
};
use crate::netns::NetNs;

/// A host namespace with `br0` (`BRIDGE_MAC`, `BRIDGE_IPV4`/24) and ports
/// `p1..pN`; a peer namespace with their other ends `q1..qN`, all up.
#[derive(Debug)]
pub struct ManyPortLab {
    ports: usize,
    host: NetNs,
    peer: NetNs,
}

impl ManyPortLab {
    /// Builds the lab in `host` and `peer` (both go on drop, with every
    /// port).
    pub fn new(host: NetNs, peer: NetNs, ports: usize) -> Result<Self> {
        ensure!(ports >= 1, "at least one port");
        let lab = Self { ports, host, peer };
        add_bridge(&lab.host, BRIDGE, Some(BRIDGE_MAC))?;
        let peer_ns = lab.peer.path();
        let mut cmds = String::new();
        for i in 1..=ports {
            let _ = writeln!(
                cmds,
                "link add p{i} type veth peer name q{i} netns {}",
                peer_ns.display()
            );
            let _ = writeln!(cmds, "link set p{i} master {BRIDGE} up");
        }
        ip_batch(&lab.host, &cmds)?;
        add_ipv4(&lab.host, BRIDGE, BRIDGE_IPV4)?;
        up(&lab.host, BRIDGE)?;
        let peers_up: String = (1..=ports).map(|i| format!("link set q{i} up\n")).collect();
        ip_batch(&lab.peer, &peers_up)?;
        Ok(lab)
    }

    /// Number of ports built by [`ManyPortLab::new`].
    pub fn ports(&self) -> usize {
        self.ports
    }

    /// The namespace holding `br0` and the ports.
    pub fn host(&self) -> &NetNs {
        &self.host
    }

    /// The namespace holding the ports' other ends.
    pub fn peer(&self) -> &NetNs {
        &self.peer
    }

    /// Adds the veth `name` with its other end `peer_name` (up) in the peer
    /// namespace, not yet a port: [`ManyPortLab::enslave`] makes it one, so
    /// a caller can time the moment it becomes watchable.
    pub fn add_loose_port(&self, name: &str, peer_name: &str) -> Result<()> {
        let peer_ns = self.peer.path().to_string_lossy().into_owned();
        self.host.exec(&[
            "ip", "link", "add", name, "type", "veth", "peer", "name", peer_name, "netns", &peer_ns,
        ])?;
        up(&self.peer, peer_name)
    }

    /// Makes `name` a port of `br0`, up.
    pub fn enslave(&self, name: &str) -> Result<()> {
        self.host
            .exec(&["ip", "link", "set", name, "master", BRIDGE, "up"])?;
        Ok(())
    }

    /// Deletes the veth `name` (and its other end).
    pub fn remove(&self, name: &str) -> Result<()> {
        self.host.exec(&["ip", "link", "del", name])?;
        Ok(())
    }
}
