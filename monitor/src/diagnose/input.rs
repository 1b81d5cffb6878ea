//! What the rules look at: the window's observations and events, what
//! `status` knows about each watched namespace, and the flow records.

use std::{collections::BTreeMap, net::IpAddr};

use super::timeline::Observed;
use crate::{
    mac::Mac,
    status::{IfaceStatus, Status},
    tracker::Event,
};

/// One "top offender": frames that arrived on `interface` for this host's
/// IP with a MAC it will not deliver, per (source MAC, destination MAC,
/// VLAN, destination IP), from the kernel's flow records. With them
/// the rules name the MACs and their vendors; without them (`--top-flows
/// 0`) they point at tcpdump.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Flow {
    pub netns: u32,
    pub interface: String,
    pub src_mac: Mac,
    pub dst_mac: Mac,
    pub vlan: Option<u16>,
    pub dst_ip: Option<IpAddr>,
    pub frames: u64,
}

/// What `status` knows about one namespace, and its addresses.
#[derive(Clone, Debug)]
pub struct NsFacts {
    pub inode: u32,
    pub name: Option<String>,
    pub status: Status,
    /// Unicast addresses per ifindex.
    pub addrs: BTreeMap<u32, Vec<IpAddr>>,
    /// br_netfilter's switches and the forward chains that drop; None
    /// when not read.
    pub netfilter: Option<crate::netfilter::Facts>,
}

impl NsFacts {
    pub(super) fn iface(&self, name: &str) -> Option<&IfaceStatus> {
        self.status.interfaces.iter().find(|i| i.link.name == name)
    }

    /// The ports of bridge `name`, or the slaves of bond `name`.
    pub(super) fn enslaved(&self, name: &str) -> Vec<&IfaceStatus> {
        self.status
            .interfaces
            .iter()
            .filter(|i| i.master.as_deref() == Some(name))
            .collect()
    }

    /// The addresses frames for this host through `name` are meant for:
    /// its own, else every non-loopback address of the namespace.
    pub(super) fn host_ips(&self, name: &str) -> Vec<IpAddr> {
        let own = self
            .iface(name)
            .and_then(|i| self.addrs.get(&i.link.ifindex))
            .cloned()
            .unwrap_or_default();
        let mut ips = if own.is_empty() {
            self.addrs
                .values()
                .flatten()
                .copied()
                .filter(|ip| !ip.is_loopback())
                .collect()
        } else {
            own
        };
        ips.sort_by_key(|ip| (ip.is_ipv6(), *ip));
        ips.dedup();
        ips
    }
}

/// Everything the rules look at.
pub struct Input<'a> {
    pub seconds: f64,
    pub observed: &'a [Observed],
    pub events: &'a [Event],
    pub namespaces: &'a [NsFacts],
    pub flows: Option<&'a [Flow]>,
}
