//! [`PairLab`]: two namespaces joined by one veth, both sides talking IP,
//! for traffic the kernel's own stacks send and receive (the benchmark's
//! end-to-end rate): the sender's datagrams go to the receiver's address,
//! on the receiving veth itself or on a bridge with that veth as its port.

use std::net::Ipv4Addr;

use anyhow::Result;

use super::links::{End, add_bridge, add_ipv4, add_neighbour, add_veth, up};
use crate::{frames::Mac, netns::NetNs};

/// An interface of a [`PairLab`]: name and MAC.
#[derive(Clone, Copy, Debug)]
pub struct Iface<'a> {
    pub name: &'a str,
    pub mac: Mac,
}

/// How to build a [`PairLab`].
#[derive(Clone, Copy, Debug)]
pub struct PairOptions<'a> {
    /// The sender's veth end, with `tx_ipv4`.
    pub tx: Iface<'a>,
    pub tx_ipv4: Ipv4Addr,
    /// The receiver's veth end.
    pub rx: Iface<'a>,
    /// A bridge in the receiver's namespace with `rx` as its only port; it
    /// then holds `rx_ipv4` instead of `rx`.
    pub rx_bridge: Option<Iface<'a>>,
    /// The receiver's address (same /24 as `tx_ipv4`).
    pub rx_ipv4: Ipv4Addr,
}

/// A sender namespace and a receiver namespace; the sender has a permanent
/// neighbour entry for the receiver's address, so no ARP crosses the path.
#[derive(Debug)]
pub struct PairLab {
    tx: NetNs,
    rx: NetNs,
    receiving: String,
}

impl PairLab {
    /// Builds `options` between `tx` and `rx` (both go on drop, with
    /// everything in them).
    pub fn new(tx: NetNs, rx: NetNs, options: &PairOptions<'_>) -> Result<Self> {
        let o = options;
        let receiving = o.rx_bridge.unwrap_or(o.rx);
        // From here on, an error drops both namespaces.
        let lab = Self {
            tx,
            rx,
            receiving: receiving.name.to_owned(),
        };
        add_veth(
            End {
                ns: &lab.tx,
                name: o.tx.name,
                mac: Some(o.tx.mac),
            },
            End {
                ns: &lab.rx,
                name: o.rx.name,
                mac: Some(o.rx.mac),
            },
        )?;
        if let Some(bridge) = o.rx_bridge {
            add_bridge(&lab.rx, bridge.name, Some(bridge.mac))?;
            lab.rx
                .exec(&["ip", "link", "set", o.rx.name, "master", bridge.name])?;
            up(&lab.rx, o.rx.name)?;
        }
        add_ipv4(&lab.rx, receiving.name, o.rx_ipv4)?;
        up(&lab.rx, receiving.name)?;
        add_ipv4(&lab.tx, o.tx.name, o.tx_ipv4)?;
        up(&lab.tx, o.tx.name)?;
        add_neighbour(&lab.tx, o.tx.name, o.rx_ipv4, receiving.mac)?;
        Ok(lab)
    }

    /// The sender's namespace.
    pub fn tx(&self) -> &NetNs {
        &self.tx
    }

    /// The receiver's namespace.
    pub fn rx(&self) -> &NetNs {
        &self.rx
    }

    /// The interface holding the receiver's address: the bridge, or the
    /// receiving veth.
    pub fn receiving(&self) -> &str {
        &self.receiving
    }
}
