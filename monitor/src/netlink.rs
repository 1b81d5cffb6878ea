//! Reads the namespace's interfaces, IP addresses and bridge forwarding
//! databases over rtnetlink. One job: turn kernel netlink dumps into plain
//! structs; nothing here decides what to watch.

use std::{collections::BTreeMap, net::IpAddr};

use anyhow::Context as _;
use futures::TryStreamExt as _;
use netlink_packet_route::{
    AddressFamily,
    address::AddressAttribute,
    link::{LinkAttribute, LinkFlags, LinkInfo, LinkMessage},
    neighbour::{NeighbourAttribute, NeighbourFlags, NeighbourState},
};

use crate::mac::Mac;

/// One network interface as the kernel describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub ifindex: u32,
    pub name: String,
    /// Device address; None for devices without an Ethernet address.
    pub mac: Option<Mac>,
    /// `IFF_PROMISC` as reported to userspace.
    pub promisc: bool,
    /// `IFLA_PROMISCUITY`: how many holders asked for promiscuous mode.
    pub promiscuity: u32,
    pub up: bool,
    /// ifindex of the master device (bridge, bond, VRF), if enslaved.
    pub master: Option<u32>,
    /// `IFLA_INFO_KIND` ("bridge", "veth", ...); None for physical NICs.
    pub kind: Option<String>,
}

impl Link {
    pub fn is_bridge(&self) -> bool {
        self.kind.as_deref() == Some("bridge")
    }

    /// An up, non-promiscuous link, for tests that build a `NetState` by hand.
    #[cfg(test)]
    pub(crate) fn fake(
        ifindex: u32,
        name: &str,
        kind: &str,
        master: Option<u32>,
        mac: Mac,
    ) -> Self {
        Self {
            ifindex,
            name: name.into(),
            mac: Some(mac),
            promisc: false,
            promiscuity: 0,
            up: true,
            master,
            kind: Some(kind.into()),
        }
    }
}

/// Everything macdrop needs to know about a namespace, read in one go.
#[derive(Clone, Debug, Default)]
pub struct NetState {
    pub links: Vec<Link>,
    /// Every unicast IP address configured on any interface.
    pub addrs: Vec<IpAddr>,
    /// Per bridge ifindex: the MACs that are *local* entries of its FDB,
    /// i.e. the destinations the bridge delivers to the host.
    pub local_fdb: BTreeMap<u32, Vec<Mac>>,
}

impl NetState {
    pub fn link(&self, ifindex: u32) -> Option<&Link> {
        self.links.iter().find(|l| l.ifindex == ifindex)
    }
    pub fn link_by_name(&self, name: &str) -> Option<&Link> {
        self.links.iter().find(|l| l.name == name)
    }
}

/// A netlink route socket of the current namespace.
pub struct Netlink {
    handle: rtnetlink::Handle,
}

impl Netlink {
    /// Opens the socket and spawns its connection task on the current tokio
    /// runtime.
    pub fn connect() -> anyhow::Result<Self> {
        let (connection, handle, _) =
            rtnetlink::new_connection().context("cannot open a netlink route socket")?;
        tokio::spawn(connection);
        Ok(Self { handle })
    }

    /// Dumps links, addresses and bridge FDBs.
    pub async fn read_state(&self) -> anyhow::Result<NetState> {
        let links = self.links().await?;
        let addrs = self.addrs().await?;
        let local_fdb = self.local_fdb(&links).await?;
        Ok(NetState {
            links,
            addrs,
            local_fdb,
        })
    }

    async fn links(&self) -> anyhow::Result<Vec<Link>> {
        let mut out = Vec::new();
        let mut dump = self.handle.link().get().execute();
        while let Some(msg) = dump.try_next().await.context("netlink link dump failed")? {
            out.push(link_from_message(&msg));
        }
        out.sort_by_key(|l| l.ifindex);
        Ok(out)
    }

    async fn addrs(&self) -> anyhow::Result<Vec<IpAddr>> {
        let mut out = Vec::new();
        let mut dump = self.handle.address().get().execute();
        while let Some(msg) = dump
            .try_next()
            .await
            .context("netlink address dump failed")?
        {
            for attr in &msg.attributes {
                // IFA_LOCAL is the local address on point-to-point links,
                // where IFA_ADDRESS is the peer; elsewhere they are equal.
                if let AddressAttribute::Local(ip) | AddressAttribute::Address(ip) = attr
                    && !out.contains(ip)
                {
                    out.push(*ip);
                }
            }
        }
        Ok(out)
    }

    /// Reads the bridge FDB (`AF_BRIDGE` neighbour dump) and keeps the
    /// local entries: entries with an `NDA_MASTER` bridge in state
    /// `NUD_PERMANENT` (iproute2's "master br0 permanent"). These
    /// are exactly the destinations `br_handle_frame_finish` passes up to
    /// the host (static user entries are `NUD_NOARP` and are forwarded).
    async fn local_fdb(&self, links: &[Link]) -> anyhow::Result<BTreeMap<u32, Vec<Mac>>> {
        let mut out: BTreeMap<u32, Vec<Mac>> = BTreeMap::new();
        for bridge in links.iter().filter(|l| l.is_bridge()) {
            out.entry(bridge.ifindex).or_default();
        }
        let mut dump = self
            .handle
            .neighbours()
            .get()
            .set_address_family(AddressFamily::Bridge)
            .execute();
        while let Some(msg) = dump.try_next().await.context("netlink FDB dump failed")? {
            // NTF_SELF entries are devices' own unicast/multicast address
            // lists, not the bridge's forwarding database.
            if msg.header.state != NeighbourState::Permanent
                || msg.header.flags.contains(NeighbourFlags::Own)
            {
                continue;
            }
            let mut mac = None;
            let mut master = None;
            for attr in &msg.attributes {
                match attr {
                    NeighbourAttribute::LinkLayerAddress(bytes) => mac = Mac::from_slice(bytes),
                    NeighbourAttribute::Controller(ifindex) => master = Some(*ifindex),
                    _ => {}
                }
            }
            // NDA_MASTER names the bridge that owns the entry.
            if let (Some(mac), Some(master)) = (mac, master)
                && out.contains_key(&master)
            {
                let macs = out.entry(master).or_default();
                if !macs.contains(&mac) {
                    macs.push(mac);
                }
            }
        }
        Ok(out)
    }
}

fn link_from_message(msg: &LinkMessage) -> Link {
    let mut link = Link {
        ifindex: msg.header.index,
        name: String::new(),
        mac: None,
        promisc: msg.header.flags.contains(LinkFlags::Promisc),
        promiscuity: 0,
        up: msg.header.flags.contains(LinkFlags::Up),
        master: None,
        kind: None,
    };
    for attr in &msg.attributes {
        match attr {
            LinkAttribute::IfName(name) => link.name = name.clone(),
            LinkAttribute::Address(bytes) => link.mac = Mac::from_slice(bytes),
            LinkAttribute::Controller(ifindex) => link.master = Some(*ifindex),
            LinkAttribute::Promiscuity(n) => link.promiscuity = *n,
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    if let LinkInfo::Kind(kind) = info {
                        // Display prints the kernel's IFLA_INFO_KIND string.
                        link.kind = Some(kind.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    link
}
