//! [`StandaloneLab`]: one veth, not bridged, to a silent peer namespace.

use std::net::Ipv4Addr;

use anyhow::Result;

use super::{
    PEER_IFACE,
    links::{End, add_ipv4, add_veth, up},
};
use crate::{frames::Mac, netns::NetNs};

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
        add_veth(
            End {
                ns: &lab.host,
                name: STANDALONE_IFACE,
                mac: Some(STANDALONE_MAC),
            },
            End {
                ns: &lab.peer,
                name: PEER_IFACE,
                mac: Some(STANDALONE_PEER_MAC),
            },
        )?;
        add_ipv4(&lab.host, STANDALONE_IFACE, STANDALONE_IPV4)?;
        up(&lab.host, STANDALONE_IFACE)?;
        up(&lab.peer, PEER_IFACE)?;
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
