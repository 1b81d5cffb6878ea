//! Reads the namespace's interfaces, IP addresses and bridge forwarding
//! databases over rtnetlink. One job: turn kernel netlink dumps into plain
//! structs; nothing here decides what to watch.

mod link_dump;
mod nsid;
mod stats;

pub use nsid::NsidLookup;
pub use stats::ONE_BY_ONE;

use std::{collections::BTreeMap, net::IpAddr};

use anyhow::Context as _;
use futures::TryStreamExt as _;
use netlink_packet_route::{
    AddressFamily, RouteNetlinkMessage,
    address::AddressAttribute,
    link::{
        AfSpecBridge, BridgeVlanInfoFlags, InfoBridge, InfoData, InfoVlan, LinkAttribute,
        LinkExtentMask, LinkFlags, LinkInfo, LinkLayerType, LinkMessage,
    },
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
    /// Whether the device is promiscuous: the kernel's own IFF_PROMISC
    /// (`dev->flags`, 0x100 in /sys/class/net/X/flags), i.e. promiscuity
    /// above zero. rtnetlink's `ifi_flags` only carries the flag userspace
    /// set with `ip link set promisc on`, not a bridge's hold on its ports
    /// nor tcpdump's packet socket, so it is combined with the count here.
    pub promisc: bool,
    /// IFF_PROMISC as rtnetlink reports it: set by userspace (`ip link set
    /// promisc on`), one of the holders counted in `promiscuity`.
    pub promisc_flag: bool,
    /// `IFLA_PROMISCUITY`: how many holders asked for promiscuous mode.
    pub promiscuity: u32,
    pub up: bool,
    /// ifindex of the master device (bridge, bond, VRF), if enslaved.
    pub master: Option<u32>,
    /// `IFLA_INFO_KIND` ("bridge", "veth", ...); None for physical NICs.
    pub kind: Option<String>,
    /// Frames start with an Ethernet header (ARPHRD_ETHER, or loopback,
    /// which uses one too); tun, WireGuard, GRE and the like do not.
    pub ethernet: bool,
    /// `rx_otherhost_dropped` from `IFLA_STATS64`: frames the IP layer threw
    /// away as not addressed to this host. None where the kernel has no such
    /// counter (before 5.19).
    pub rx_otherhost_dropped: Option<u64>,
    /// `IFLA_LINK_NETNSID`: the id, in this namespace's own numbering, of
    /// the namespace holding the other end of the link (a veth's peer,
    /// say); None when the other end is here or there is none. The id means
    /// nothing elsewhere: `workload` turns it into a namespace.
    pub peer_netnsid: Option<i32>,
    /// `IFLA_PERM_ADDRESS`: the address the hardware (or the hypervisor's
    /// virtual NIC) came with; None for devices without one (veth, bridge).
    pub perm_mac: Option<Mac>,
    /// `rx_nohandler` from `IFLA_STATS64`: frames no protocol handler took,
    /// e.g. those a bond's inactive slave receives.
    pub rx_nohandler: Option<u64>,
    /// `IFLA_LINK`: the device a stacked device (macvlan, VLAN) sits on,
    /// when it is in this namespace (`peer_netnsid` None). Not set for
    /// devices whose IFLA_LINK is their own ifindex.
    pub lower: Option<u32>,
}

impl Link {
    pub fn is_bridge(&self) -> bool {
        self.kind.as_deref() == Some("bridge")
    }

    /// An up, non-promiscuous link, for tests and benchmarks that build a
    /// `NetState` by hand.
    pub fn fake(ifindex: u32, name: &str, kind: &str, master: Option<u32>, mac: Mac) -> Self {
        Self {
            ifindex,
            name: name.into(),
            mac: Some(mac),
            promisc: false,
            promisc_flag: false,
            promiscuity: 0,
            up: true,
            master,
            kind: Some(kind.into()),
            ethernet: true,
            rx_otherhost_dropped: Some(0),
            peer_netnsid: None,
            perm_mac: None,
            rx_nohandler: Some(0),
            lower: None,
        }
    }
}

/// Everything macdrop needs to know about a namespace, read in one go.
#[derive(Clone, Debug, Default)]
pub struct NetState {
    pub links: Vec<Link>,
    /// Every unicast IP address configured on any interface.
    pub addrs: Vec<IpAddr>,
    /// The same per ifindex.
    pub if_addrs: BTreeMap<u32, Vec<IpAddr>>,
    /// Per bridge ifindex: the MACs that are *local* entries of its FDB,
    /// i.e. the destinations the bridge delivers to the host.
    pub local_fdb: BTreeMap<u32, Vec<Mac>>,
    /// Per non-bridge ifindex: extra unicast addresses the device accepts
    /// besides its own (its unicast filter list, e.g. a macvlan's MAC on
    /// its lower device).
    pub secondary_macs: BTreeMap<u32, Vec<Mac>>,
    /// VLAN facts the delivery rule needs (`crate::delivery`).
    pub vlans: VlanState,
}

/// One VLAN device (`ip link add link LOWER ... type vlan`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VlanDevice {
    pub ifindex: u32,
    /// The device it takes tagged frames from.
    pub lower: u32,
    /// 0x8100 or 0x88a8.
    pub tpid: u16,
    pub vid: u16,
    pub mac: Option<Mac>,
    /// IFF_UP. The lower device hands its tagged frames to a VLAN device
    /// that is down all the same, and `vlan_do_receive` frees them there:
    /// such a device takes the frames of its tag and delivers none.
    pub up: bool,
}

/// A VLAN an interface is a member of on a VLAN-filtering bridge (a port,
/// or the bridge itself: "self").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VlanMembership {
    pub vid: u16,
    /// Untagged frames entering the port get this VID.
    pub pvid: bool,
    /// Frames of this VLAN leave untagged.
    pub untagged: bool,
}

/// The VLAN configuration of a namespace.
#[derive(Clone, Debug, Default)]
pub struct VlanState {
    pub devices: Vec<VlanDevice>,
    /// Per VLAN-filtering bridge: the TPID it filters on
    /// (`IFLA_BR_VLAN_PROTOCOL`). A bridge without filtering (or a kernel
    /// without CONFIG_BRIDGE_VLAN_FILTERING, which sends no
    /// `IFLA_BR_VLAN_FILTERING`) is absent: it ignores VLANs and its
    /// protocol decides nothing.
    pub filtering: BTreeMap<u32, u16>,
    /// Per port or bridge (self) of a filtering bridge: its VLANs, as
    /// `bridge vlan show` lists them. The bridge's own list holds only the
    /// VLANs configured on it (`self`), not those that exist only because
    /// a port has them. Ports of bridges without filtering are absent,
    /// although the kernel keeps their default VLAN 1 there too.
    pub members: BTreeMap<u32, Vec<VlanMembership>>,
    /// Per bridge (every bridge, with or without filtering): its local FDB
    /// entries with their VLAN, 0 for the entry without one.
    ///
    /// What the kernel keeps (`bridge -d fdb show`, Debian's 6.12 with
    /// CONFIG_BRIDGE_VLAN_FILTERING): every MAC it installs as local (the
    /// bridge's own, each port's) has one entry without a VLAN, which a
    /// bridge without filtering looks up, plus one per VLAN of its device
    /// (the bridge's MAC per VLAN configured on the bridge `self`, a port's
    /// per VLAN of that port): added and removed with the VLAN, whether
    /// filtering is on or not. A fresh bridge has VLAN 1 (default_pvid) on
    /// itself and on every port, so its MACs come as (MAC, 0) and (MAC, 1)
    /// even before filtering is turned on. Without
    /// CONFIG_BRIDGE_VLAN_FILTERING only the entries without a VLAN exist.
    pub local_fdb: BTreeMap<u32, Vec<(Mac, u16)>>,
}

impl VlanState {
    /// The VLAN device on `lower` for tag (`tpid`, `vid`).
    pub fn device(&self, lower: u32, tpid: u16, vid: u16) -> Option<&VlanDevice> {
        self.devices
            .iter()
            .find(|d| d.lower == lower && d.tpid == tpid && d.vid == vid)
    }
    /// The devices stacked on `lower`.
    pub fn devices_on(&self, lower: u32) -> impl Iterator<Item = &VlanDevice> {
        self.devices.iter().filter(move |d| d.lower == lower)
    }
    /// The TPID the bridge filters on, if VLAN filtering is on.
    pub fn filtering(&self, bridge: u32) -> Option<u16> {
        self.filtering.get(&bridge).copied()
    }
    pub fn membership(&self, ifindex: u32, vid: u16) -> Option<VlanMembership> {
        self.members
            .get(&ifindex)?
            .iter()
            .find(|m| m.vid == vid)
            .copied()
    }
    pub fn pvid(&self, ifindex: u32) -> Option<u16> {
        self.members
            .get(&ifindex)?
            .iter()
            .find(|m| m.pvid)
            .map(|m| m.vid)
    }
    pub fn members_of(&self, ifindex: u32) -> &[VlanMembership] {
        self.members.get(&ifindex).map(Vec::as_slice).unwrap_or(&[])
    }
}

impl NetState {
    /// Whether `mac` is a local entry of the bridge's FDB for VLAN `vid`
    /// (0: the entries without a VLAN, which a bridge without VLAN
    /// filtering looks up). Without per-VLAN entries read (a state built
    /// by hand), `local_fdb` answers for every VLAN.
    pub fn fdb_local(&self, bridge: u32, mac: Mac, vid: u16) -> bool {
        match self.vlans.local_fdb.get(&bridge) {
            Some(entries) => entries.contains(&(mac, vid)),
            None => self
                .local_fdb
                .get(&bridge)
                .is_some_and(|macs| macs.contains(&mac)),
        }
    }

    /// Runs for every watched interface on every refresh: a binary search
    /// over the dump's links (`read_state` sorts them by ifindex), with a
    /// scan as the fallback for a miss, so states built by hand in any
    /// order are answered right too.
    pub fn link(&self, ifindex: u32) -> Option<&Link> {
        match self.links.binary_search_by_key(&ifindex, |l| l.ifindex) {
            Ok(i) => Some(&self.links[i]),
            Err(_) => self.links.iter().find(|l| l.ifindex == ifindex),
        }
    }
    pub fn link_by_name(&self, name: &str) -> Option<&Link> {
        self.links.iter().find(|l| l.name == name)
    }
}

/// A netlink route socket of the current namespace.
pub struct Netlink {
    handle: rtnetlink::Handle,
    /// The link dump's own socket (`link_dump`: what it saves).
    link_dump: link_dump::LinkDump,
    /// The task driving the socket; aborted on drop, which closes the
    /// socket (a netlink socket keeps its namespace alive).
    connection: tokio::task::JoinHandle<()>,
}

impl Drop for Netlink {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

impl Netlink {
    /// Opens the socket and spawns its connection task on the current tokio
    /// runtime.
    pub fn connect() -> anyhow::Result<Self> {
        let (connection, handle, _) =
            rtnetlink::new_connection().context("cannot open a netlink route socket")?;
        let connection = tokio::spawn(connection);
        Ok(Self {
            handle,
            link_dump: link_dump::LinkDump::open()?,
            connection,
        })
    }

    /// Dumps links, addresses, bridge FDBs and bridge VLANs.
    pub async fn read_state(&self) -> anyhow::Result<NetState> {
        let mut vlans = VlanState::default();
        let links = self.links(&mut vlans)?;
        let (addrs, if_addrs) = self.addrs().await?;
        let (local_fdb, secondary_macs) = self.fdb(&links, &mut vlans).await?;
        self.bridge_vlans(&mut vlans).await?;
        // The parsed dumps are freed by now; see `heap`.
        crate::heap::trim();
        Ok(NetState {
            links,
            addrs,
            if_addrs,
            local_fdb,
            secondary_macs,
            vlans,
        })
    }

    /// The links, and the VLAN facts their messages carry (VLAN devices,
    /// bridges' VLAN filtering) into `vlans`.
    fn links(&self, vlans: &mut VlanState) -> anyhow::Result<Vec<Link>> {
        let mut out = Vec::new();
        self.link_dump.each(|msg| {
            let link = link_from_message(msg);
            add_vlan_facts(vlans, msg, &link);
            out.push(link);
        })?;
        out.sort_by_key(|l| l.ifindex);
        Ok(out)
    }

    /// The VLANs of every bridge port and bridge ("self"), as `bridge vlan
    /// show` lists them: the AF_BRIDGE link dump with RTEXT_FILTER_BRVLAN
    /// (one entry per VID; RTEXT_FILTER_BRVLAN_COMPRESSED would send
    /// ranges). Only filtering bridges' are kept: without filtering the
    /// kernel ignores them, and without any filtering bridge the dump is
    /// not even asked for.
    async fn bridge_vlans(&self, vlans: &mut VlanState) -> anyhow::Result<()> {
        if vlans.filtering.is_empty() {
            return Ok(());
        }
        let mut dump = self
            .handle
            .link()
            .get()
            .set_filter_mask(AddressFamily::Bridge, vec![LinkExtentMask::Brvlan])
            .execute();
        while let Some(msg) = dump
            .try_next()
            .await
            .context("netlink bridge VLAN dump failed")?
        {
            // A port's message names its bridge as IFLA_MASTER; the
            // bridge's own names the bridge itself.
            let master = msg.attributes.iter().find_map(|a| match a {
                LinkAttribute::Controller(ifindex) => Some(*ifindex),
                _ => None,
            });
            if !master.is_some_and(|m| vlans.filtering.contains_key(&m)) {
                continue;
            }
            let members = bridge_vlan_members(&msg);
            // A port whose driver answers AF_BRIDGE requests too (a
            // switchdev NIC) has a second message without VLANs.
            if !members.is_empty() {
                vlans.members.insert(msg.header.index, members);
            }
        }
        Ok(())
    }

    async fn addrs(&self) -> anyhow::Result<(Vec<IpAddr>, BTreeMap<u32, Vec<IpAddr>>)> {
        let mut out = Vec::new();
        let mut per_if: BTreeMap<u32, Vec<IpAddr>> = BTreeMap::new();
        let mut dump = self.handle.address().get().execute();
        while let Some(msg) = dump
            .try_next()
            .await
            .context("netlink address dump failed")?
        {
            for attr in &msg.attributes {
                // IFA_LOCAL is the local address on point-to-point links,
                // where IFA_ADDRESS is the peer; elsewhere they are equal.
                if let AddressAttribute::Local(ip) | AddressAttribute::Address(ip) = attr {
                    if !out.contains(ip) {
                        out.push(*ip);
                    }
                    let list = per_if.entry(msg.header.index).or_default();
                    if !list.contains(ip) {
                        list.push(*ip);
                    }
                }
            }
        }
        Ok((out, per_if))
    }

    /// Reads the `AF_BRIDGE` neighbour dump, which holds two things:
    /// - bridge FDB entries, with an `NDA_MASTER` bridge: the local ones
    ///   (state `NUD_PERMANENT`, iproute2's "master br0 permanent") are
    ///   exactly the destinations `br_handle_frame_finish` passes up to the
    ///   host; static user entries are `NUD_NOARP` and are forwarded;
    /// - devices' own address lists (`NTF_SELF`): their unicast entries are
    ///   extra MACs the device accepts (e.g. a macvlan's on its lower device).
    async fn fdb(
        &self,
        links: &[Link],
        vlans: &mut VlanState,
    ) -> anyhow::Result<(MacsByIfindex, MacsByIfindex)> {
        let mut local_fdb = MacsByIfindex::new();
        let mut secondary = MacsByIfindex::new();
        for bridge in links.iter().filter(|l| l.is_bridge()) {
            local_fdb.entry(bridge.ifindex).or_default();
            vlans.local_fdb.entry(bridge.ifindex).or_default();
        }
        let mut dump = self
            .handle
            .neighbours()
            .get()
            .set_address_family(AddressFamily::Bridge)
            .execute();
        while let Some(msg) = dump.try_next().await.context("netlink FDB dump failed")? {
            if msg.header.state != NeighbourState::Permanent {
                continue;
            }
            let (mac, master, vid) = fdb_attributes(&msg.attributes);
            let Some(mac) = mac else { continue };
            let (map, key) = if msg.header.flags.contains(NeighbourFlags::Own) {
                let device = links.iter().find(|l| l.ifindex == msg.header.ifindex);
                if mac.is_multicast() || device.is_none_or(|d| d.is_bridge() || d.mac == Some(mac))
                {
                    continue;
                }
                (&mut secondary, msg.header.ifindex)
            } else {
                match master {
                    Some(bridge) if local_fdb.contains_key(&bridge) => {
                        let entries = vlans.local_fdb.entry(bridge).or_default();
                        if !entries.contains(&(mac, vid)) {
                            entries.push((mac, vid));
                        }
                        (&mut local_fdb, bridge)
                    }
                    _ => continue,
                }
            };
            let macs = map.entry(key).or_default();
            if !macs.contains(&mac) {
                macs.push(mac);
            }
        }
        Ok((local_fdb, secondary))
    }
}

type MacsByIfindex = BTreeMap<u32, Vec<Mac>>;

/// An FDB entry's MAC, master bridge (`NDA_MASTER`) and VLAN (0: none).
fn fdb_attributes(attributes: &[NeighbourAttribute]) -> (Option<Mac>, Option<u32>, u16) {
    let (mut mac, mut master, mut vid) = (None, None, 0);
    for attr in attributes {
        match attr {
            NeighbourAttribute::LinkLayerAddress(bytes) => mac = Mac::from_slice(bytes),
            NeighbourAttribute::Controller(ifindex) => master = Some(*ifindex),
            NeighbourAttribute::Vlan(v) => vid = *v,
            _ => {}
        }
    }
    (mac, master, vid)
}

/// A change the kernel announced on the namespace's rtnetlink groups.
#[derive(Debug)]
pub enum Change {
    /// A link appeared or changed (flags, MAC, master, ...).
    Link(Link),
    /// A link disappeared.
    LinkGone(u32),
    /// An address, a local FDB entry or something not decoded: re-read
    /// the state.
    Other,
    /// A bridge learned a station's MAC on a port, or the entry moved to
    /// another port (the kernel notifies both, and nothing else about
    /// learned entries): what `fdb_moves` follows. The state is not re-read
    /// for it (it comes and goes with every station on a busy bridge; only
    /// local entries decide what is delivered to the host).
    FdbLearned(Learned),
    /// A learned entry aged out or was flushed.
    FdbForgotten(Learned),
    /// Nothing macdrop reads: ARP and NDP neighbours, static FDB entries.
    Irrelevant,
}

/// A learned (dynamic) bridge FDB entry: `mac` (on `vid`, 0 without VLAN
/// filtering) is behind `port` of `bridge`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Learned {
    pub bridge: u32,
    pub port: u32,
    pub mac: Mac,
    pub vid: u16,
}

impl Learned {
    /// The entry a bridge-family neighbour message describes, if it is a
    /// learned one: with a master bridge, not the device's own list
    /// (NTF_SELF), not permanent (local) nor static (NUD_NOARP).
    fn from_message(n: &netlink_packet_route::neighbour::NeighbourMessage) -> Option<Self> {
        if n.header.family != AddressFamily::Bridge
            || matches!(
                n.header.state,
                NeighbourState::Permanent | NeighbourState::Noarp
            )
            || n.header.flags.contains(NeighbourFlags::Own)
        {
            return None;
        }
        let (mac, bridge, vid) = fdb_attributes(&n.attributes);
        Some(Learned {
            bridge: bridge?,
            port: n.header.ifindex,
            mac: mac.filter(|m| !m.is_multicast())?,
            vid,
        })
    }
}

impl Change {
    /// Whether the namespace's state must be read again.
    pub fn needs_reread(&self) -> bool {
        !matches!(
            self,
            Change::Irrelevant | Change::FdbLearned(_) | Change::FdbForgotten(_)
        )
    }
}

/// Link, address and neighbour (FDB) notifications of the current
/// namespace, so changes are seen when they happen rather than at the next
/// interval (a promiscuous on/off pair inside one interval is not lost).
pub struct Notifications {
    messages: futures::channel::mpsc::UnboundedReceiver<(
        netlink_packet_core::NetlinkMessage<RouteNetlinkMessage>,
        rtnetlink::sys::SocketAddr,
    )>,
    /// The task driving the socket; aborted on drop (see `Netlink`).
    connection: tokio::task::JoinHandle<()>,
}

impl Drop for Notifications {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

impl Notifications {
    /// RTNLGRP_LINK carries what VLAN changes need: every change of a
    /// port's or a bridge's VLANs (`bridge vlan add/del`, RTM_SETLINK and
    /// RTM_DELLINK, and the VLAN API's RTM_NEWVLAN/RTM_DELVLAN alike) comes
    /// as an AF_BRIDGE RTM_NEWLINK there, and turning VLAN filtering on or
    /// off, or changing its protocol, as the bridge's own RTM_NEWLINK (see
    /// `tests/tests/netlink.rs`). RTNLGRP_BRVLAN is not joined: its
    /// RTM_NEWVLAN and RTM_DELVLAN say nothing more, and
    /// netlink-packet-route cannot decode them (netlink-proto would log and
    /// drop each one).
    pub fn subscribe() -> anyhow::Result<Self> {
        use rtnetlink::MulticastGroup as G;
        let (connection, _handle, messages) =
            rtnetlink::new_multicast_connection(&[G::Link, G::Neigh, G::Ipv4Ifaddr, G::Ipv6Ifaddr])
                .context("cannot subscribe to rtnetlink notifications")?;
        let connection = tokio::spawn(connection);
        Ok(Self {
            messages,
            connection,
        })
    }

    /// The next change; None if the socket closed.
    pub async fn next(&mut self) -> Option<Change> {
        use futures::StreamExt as _;
        let (msg, _) = self.messages.next().await?;
        Some(decode(msg))
    }

    /// A change that already arrived, without waiting.
    pub fn ready(&mut self) -> Option<Change> {
        use futures::{FutureExt as _, StreamExt as _};
        let (msg, _) = self.messages.next().now_or_never().flatten()?;
        Some(decode(msg))
    }
}

fn decode(msg: netlink_packet_core::NetlinkMessage<RouteNetlinkMessage>) -> Change {
    use netlink_packet_core::NetlinkPayload;
    match msg.payload {
        // The bridge's own notifications about a port or about itself
        // (AF_BRIDGE: VLANs changed, a port joined or left) carry no
        // promiscuity, kind or counters, and a DELLINK among them means
        // "left the bridge", not "gone": re-read the state instead of
        // taking them for the link.
        NetlinkPayload::InnerMessage(
            RouteNetlinkMessage::NewLink(link) | RouteNetlinkMessage::DelLink(link),
        ) if link.header.interface_family == AddressFamily::Bridge => Change::Other,
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(link)) => {
            Change::Link(link_from_message(&link))
        }
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(link)) => {
            Change::LinkGone(link.header.index)
        }
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewNeighbour(n))
            if n.header.family != AddressFamily::Bridge
                || n.header.state != NeighbourState::Permanent =>
        {
            Learned::from_message(&n).map_or(Change::Irrelevant, Change::FdbLearned)
        }
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelNeighbour(n))
            if n.header.family != AddressFamily::Bridge
                || n.header.state != NeighbourState::Permanent =>
        {
            Learned::from_message(&n).map_or(Change::Irrelevant, Change::FdbForgotten)
        }
        _ => Change::Other,
    }
}

/// A VLAN device's lower device, TPID and VID, and a bridge's VLAN
/// filtering, from one link message.
fn add_vlan_facts(vlans: &mut VlanState, msg: &LinkMessage, link: &Link) {
    let lower = msg.attributes.iter().find_map(|a| match a {
        LinkAttribute::Link(ifindex) => Some(*ifindex),
        _ => None,
    });
    // A VLAN device moved into this namespace keeps its lower device in
    // the other one: IFLA_LINK is then an ifindex over there (named by
    // IFLA_LINK_NETNSID), and whatever has that number here is unrelated.
    let lower_elsewhere = msg
        .attributes
        .iter()
        .any(|a| matches!(a, LinkAttribute::LinkNetNsId(_)));
    for attr in &msg.attributes {
        let LinkAttribute::LinkInfo(infos) = attr else {
            continue;
        };
        for info in infos {
            match info {
                LinkInfo::Data(InfoData::Vlan(data)) => {
                    let vid = data.iter().find_map(|d| match d {
                        InfoVlan::Id(vid) => Some(*vid),
                        _ => None,
                    });
                    // The kernel always sends the protocol; 802.1Q if not.
                    let tpid = data
                        .iter()
                        .find_map(|d| match d {
                            InfoVlan::Protocol(p) => Some(u16::from(*p)),
                            _ => None,
                        })
                        .unwrap_or(monitor_common::TPID_8021Q);
                    if let (Some(vid), Some(lower), false) = (vid, lower, lower_elsewhere) {
                        vlans.devices.push(VlanDevice {
                            ifindex: link.ifindex,
                            lower,
                            tpid,
                            vid,
                            mac: link.mac,
                            up: link.up,
                        });
                    }
                }
                LinkInfo::Data(InfoData::Bridge(data)) => {
                    let filtering = data
                        .iter()
                        .any(|d| matches!(d, InfoBridge::VlanFiltering(true)));
                    let tpid = data
                        .iter()
                        .find_map(|d| match d {
                            InfoBridge::VlanProtocol(p) => Some(u16::from(*p)),
                            _ => None,
                        })
                        .unwrap_or(monitor_common::TPID_8021Q);
                    if filtering {
                        vlans.filtering.insert(link.ifindex, tpid);
                    }
                }
                _ => {}
            }
        }
    }
}

/// The VLANs of one AF_BRIDGE link message (a port, or a bridge itself).
fn bridge_vlan_members(msg: &LinkMessage) -> Vec<VlanMembership> {
    let mut out = Vec::new();
    // The first VID of a range (RANGE_BEGIN) until its RANGE_END entry.
    let mut range_start = None;
    for attr in &msg.attributes {
        let LinkAttribute::AfSpecBridge(specs) = attr else {
            continue;
        };
        for spec in specs {
            let AfSpecBridge::VlanInfo(info) = spec else {
                continue;
            };
            if info.flags.contains(BridgeVlanInfoFlags::RangeBegin) {
                range_start = Some(info.vid);
                continue;
            }
            // The dump asks for one entry per VID, but notifications and
            // RTEXT_FILTER_BRVLAN_COMPRESSED answers send ranges of VLANs
            // with the same flags (never the PVID): expand them, so this
            // reads either.
            let first = match range_start.take() {
                Some(start) if info.flags.contains(BridgeVlanInfoFlags::RangeEnd) => start,
                _ => info.vid,
            };
            for vid in first..=info.vid {
                out.push(VlanMembership {
                    vid,
                    pvid: info.flags.contains(BridgeVlanInfoFlags::Pvid),
                    untagged: info.flags.contains(BridgeVlanInfoFlags::Untagged),
                });
            }
        }
    }
    out
}

/// Decodes one RTM_NEWLINK message (from a dump or a notification).
pub fn link_from_message(msg: &LinkMessage) -> Link {
    let mut link = Link {
        ifindex: msg.header.index,
        name: String::new(),
        mac: None,
        promisc: msg.header.flags.contains(LinkFlags::Promisc),
        promisc_flag: false,
        promiscuity: 0,
        up: msg.header.flags.contains(LinkFlags::Up),
        master: None,
        kind: None,
        ethernet: matches!(
            msg.header.link_layer_type,
            LinkLayerType::Ether | LinkLayerType::Loopback
        ),
        rx_otherhost_dropped: None,
        peer_netnsid: None,
        perm_mac: None,
        rx_nohandler: None,
        lower: None,
    };
    for attr in &msg.attributes {
        match attr {
            LinkAttribute::IfName(name) => link.name = name.clone(),
            LinkAttribute::Address(bytes) => link.mac = Mac::from_slice(bytes),
            // All zeros where the driver has no permanent address.
            LinkAttribute::PermAddress(bytes) => {
                link.perm_mac = Mac::from_slice(bytes).filter(|m| m.0 != [0; 6]);
            }
            LinkAttribute::Controller(ifindex) => link.master = Some(*ifindex),
            LinkAttribute::Promiscuity(n) => link.promiscuity = *n,
            LinkAttribute::LinkNetNsId(id) if *id >= 0 => link.peer_netnsid = Some(*id),
            LinkAttribute::Link(ifindex) if *ifindex != msg.header.index => {
                link.lower = Some(*ifindex)
            }
            // Older kernels send a shorter struct, which the parser pads
            // with zeros: only trust the field where the kernel has it.
            LinkAttribute::Stats64(stats) => {
                link.rx_nohandler = Some(stats.rx_nohandler);
                if crate::kernel_version::has_otherhost_counter() {
                    link.rx_otherhost_dropped = Some(stats.rx_otherhost_dropped);
                }
            }
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
    if link.peer_netnsid.is_some() {
        // The ifindex is the other namespace's.
        link.lower = None;
    }
    link.promisc_flag = link.promisc;
    link.promisc |= link.promiscuity > 0;
    link
}

#[cfg(test)]
mod tests {
    use netlink_packet_route::link::{BridgeVlanInfo, InfoKind, LinkHeader, VlanProtocol};

    use super::*;

    fn message(index: u32, family: AddressFamily, attributes: Vec<LinkAttribute>) -> LinkMessage {
        let mut msg = LinkMessage::default();
        msg.header = LinkHeader {
            index,
            interface_family: family,
            ..LinkHeader::default()
        };
        msg.attributes = attributes;
        msg
    }

    #[test]
    fn vlan_devices_and_filtering_bridges_come_from_link_messages() {
        let mut vlans = VlanState::default();
        let vlan = message(
            7,
            AddressFamily::Unspec,
            vec![
                LinkAttribute::IfName("br0.10".into()),
                LinkAttribute::Address(vec![2, 0, 0, 0, 0x0e, 1]),
                LinkAttribute::Link(2),
                LinkAttribute::LinkInfo(vec![
                    LinkInfo::Kind(InfoKind::Vlan),
                    LinkInfo::Data(InfoData::Vlan(vec![
                        InfoVlan::Id(10),
                        InfoVlan::Protocol(VlanProtocol::Ieee8021Ad),
                    ])),
                ]),
            ],
        );
        add_vlan_facts(&mut vlans, &vlan, &link_from_message(&vlan));
        let bridge = message(
            2,
            AddressFamily::Unspec,
            vec![LinkAttribute::LinkInfo(vec![
                LinkInfo::Kind(InfoKind::Bridge),
                LinkInfo::Data(InfoData::Bridge(vec![
                    InfoBridge::VlanFiltering(true),
                    InfoBridge::VlanProtocol(VlanProtocol::Ieee8021Q),
                ])),
            ])],
        );
        add_vlan_facts(&mut vlans, &bridge, &link_from_message(&bridge));
        let off = message(
            3,
            AddressFamily::Unspec,
            vec![LinkAttribute::LinkInfo(vec![LinkInfo::Data(
                InfoData::Bridge(vec![InfoBridge::VlanFiltering(false)]),
            )])],
        );
        add_vlan_facts(&mut vlans, &off, &link_from_message(&off));

        assert_eq!(
            vlans.devices,
            [VlanDevice {
                ifindex: 7,
                lower: 2,
                tpid: 0x88a8,
                vid: 10,
                mac: Some(Mac([2, 0, 0, 0, 0x0e, 1])),
                up: false,
            }]
        );
        assert_eq!(vlans.device(2, 0x88a8, 10).map(|d| d.ifindex), Some(7));
        assert!(vlans.device(2, 0x8100, 10).is_none());
        assert_eq!(vlans.filtering(2), Some(0x8100));
        assert_eq!(vlans.filtering(3), None, "filtering off");
    }

    #[test]
    fn bridge_vlans_come_with_their_pvid_and_untagged_flags() {
        let info = |vid, flags| AfSpecBridge::VlanInfo(BridgeVlanInfo { flags, vid });
        let msg = message(
            4,
            AddressFamily::Bridge,
            vec![LinkAttribute::AfSpecBridge(vec![
                info(1, BridgeVlanInfoFlags::Pvid | BridgeVlanInfoFlags::Untagged),
                info(10, BridgeVlanInfoFlags::empty()),
            ])],
        );
        assert_eq!(
            bridge_vlan_members(&msg),
            [
                VlanMembership {
                    vid: 1,
                    pvid: true,
                    untagged: true
                },
                VlanMembership {
                    vid: 10,
                    pvid: false,
                    untagged: false
                },
            ]
        );
    }

    #[test]
    fn bridge_vlan_ranges_are_expanded() {
        let info = |vid, flags| AfSpecBridge::VlanInfo(BridgeVlanInfo { flags, vid });
        let msg = message(
            4,
            AddressFamily::Bridge,
            vec![LinkAttribute::AfSpecBridge(vec![
                info(1, BridgeVlanInfoFlags::Pvid),
                info(
                    10,
                    BridgeVlanInfoFlags::RangeBegin | BridgeVlanInfoFlags::Untagged,
                ),
                info(
                    12,
                    BridgeVlanInfoFlags::RangeEnd | BridgeVlanInfoFlags::Untagged,
                ),
                info(20, BridgeVlanInfoFlags::empty()),
            ])],
        );
        let member = |vid, pvid, untagged| VlanMembership {
            vid,
            pvid,
            untagged,
        };
        assert_eq!(
            bridge_vlan_members(&msg),
            [
                member(1, true, false),
                member(10, false, true),
                member(11, false, true),
                member(12, false, true),
                member(20, false, false),
            ]
        );
    }

    /// A bridge's notification about a port (AF_BRIDGE) carries no
    /// promiscuity: taking it for the link once made the tracker report
    /// the port leaving promiscuous mode and entering it again.
    #[test]
    fn bridge_family_link_notifications_only_ask_for_a_reread() {
        use netlink_packet_core::NetlinkMessage;
        let port = |family| {
            NetlinkMessage::from(RouteNetlinkMessage::NewLink(message(
                4,
                family,
                vec![LinkAttribute::IfName("p1".into())],
            )))
        };
        assert!(matches!(decode(port(AddressFamily::Bridge)), Change::Other));
        assert!(matches!(
            decode(port(AddressFamily::Unspec)),
            Change::Link(_)
        ));
        let gone = NetlinkMessage::from(RouteNetlinkMessage::DelLink(message(
            4,
            AddressFamily::Bridge,
            vec![],
        )));
        assert!(
            matches!(decode(gone), Change::Other),
            "left the bridge, not gone"
        );
    }

    /// One netlink attribute as the kernel lays it out: length (header
    /// included), type, payload, padding to 4 bytes.
    fn nla(kind: u16, payload: &[u8]) -> Vec<u8> {
        let len = u16::try_from(4 + payload.len()).unwrap();
        let mut out = [len.to_ne_bytes(), kind.to_ne_bytes()].concat();
        out.extend_from_slice(payload);
        out.resize(out.len().next_multiple_of(4), 0);
        out
    }

    /// An RTM_NEWLINK body (`ifinfomsg` and attributes) for a VLAN device,
    /// built byte by byte the way `rtnl_fill_ifinfo` and `vlan_fill_info`
    /// write it (IFLA_VLAN_PROTOCOL in network byte order): the parsing is
    /// checked on every kernel, 8021q or not (`vlan_devices` in
    /// `tests/tests/netlink.rs` reads real ones where the kernel has it).
    fn vlan_link_bytes(flags: u32, proto: u16, extra: &[u8]) -> Vec<u8> {
        const ARPHRD_ETHER: u16 = 1;
        let mut msg = vec![0, 0]; // AF_UNSPEC, padding
        msg.extend_from_slice(&ARPHRD_ETHER.to_ne_bytes());
        msg.extend_from_slice(&9i32.to_ne_bytes()); // ifindex
        msg.extend_from_slice(&flags.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes()); // change mask
        msg.extend(nla(3, b"p1.20\0")); // IFLA_IFNAME
        msg.extend(nla(1, &[2, 0, 0, 0, 0x0e, 2])); // IFLA_ADDRESS
        msg.extend(nla(5, &4u32.to_ne_bytes())); // IFLA_LINK
        let data = [
            nla(1, &20u16.to_ne_bytes()), // IFLA_VLAN_ID
            nla(5, &proto.to_be_bytes()), // IFLA_VLAN_PROTOCOL
        ]
        .concat();
        let info = [nla(1, b"vlan\0"), nla(2, &data)].concat(); // KIND, DATA
        msg.extend(nla(18, &info)); // IFLA_LINKINFO
        msg.extend_from_slice(extra);
        msg
    }

    fn parse_link(bytes: &[u8]) -> LinkMessage {
        use netlink_packet_core::Parseable as _;
        LinkMessage::parse(bytes).expect("a well-formed RTM_NEWLINK body")
    }

    #[test]
    fn a_vlan_device_is_read_from_the_kernels_bytes() {
        const IFF_UP: u32 = 1;
        let mut vlans = VlanState::default();
        for (flags, proto) in [(IFF_UP, 0x8100), (0, 0x88a8)] {
            let msg = parse_link(&vlan_link_bytes(flags, proto, &[]));
            let link = link_from_message(&msg);
            assert_eq!(link.kind.as_deref(), Some("vlan"));
            add_vlan_facts(&mut vlans, &msg, &link);
        }
        let device = |tpid, up| VlanDevice {
            ifindex: 9,
            lower: 4,
            tpid,
            vid: 20,
            mac: Some(Mac([2, 0, 0, 0, 0x0e, 2])),
            up,
        };
        assert_eq!(vlans.devices, [device(0x8100, true), device(0x88a8, false)]);
        assert_eq!(vlans.device(4, 0x8100, 20), Some(&device(0x8100, true)));
        assert_eq!(vlans.device(4, 0x8100, 21), None);
        assert_eq!(
            vlans.device(9, 0x8100, 20),
            None,
            "keyed by the lower device"
        );
        assert_eq!(vlans.devices_on(4).count(), 2);
    }

    /// IFLA_LINK of a VLAN device whose lower device lives in another
    /// namespace is an ifindex over there: it must not be taken for the
    /// device with that number here.
    #[test]
    fn a_vlan_device_over_a_lower_device_elsewhere_is_left_out() {
        let netnsid = nla(37, &0i32.to_ne_bytes()); // IFLA_LINK_NETNSID
        let msg = parse_link(&vlan_link_bytes(1, 0x8100, &netnsid));
        let mut vlans = VlanState::default();
        add_vlan_facts(&mut vlans, &msg, &link_from_message(&msg));
        assert_eq!(vlans.devices, []);
    }
}
