//! What the kernel itself says about a lab, read through iproute2's JSON.
//!
//! These are the independent witnesses the tests check macdrop against:
//! interface packet counters and the bridge FDB. Only the `-j` output is
//! read, and only through serde, because iproute2's text output changes
//! between versions (6.1 even omits the `otherhost` column when it is 0).

use anyhow::{Context as _, Result};
use serde::Deserialize;

use crate::netns::NetNs;

/// Interface counters from `ip -j -s -s link show dev NAME` (`IFLA_STATS64`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkStats {
    pub rx_packets: u64,
    pub rx_dropped: u64,
    /// `rx_otherhost_dropped`: frames the IP layer threw away because they
    /// were not addressed to this host's MAC (Linux >= 5.19).
    pub rx_otherhost_dropped: u64,
    pub tx_packets: u64,
}

/// Reads the counters of `ifname` in `ns`.
pub fn link_stats(ns: &NetNs, ifname: &str) -> Result<LinkStats> {
    #[derive(Deserialize)]
    struct Link {
        stats64: Stats64,
    }
    #[derive(Deserialize)]
    struct Stats64 {
        rx: Rx,
        tx: Tx,
    }
    #[derive(Deserialize)]
    struct Rx {
        packets: u64,
        dropped: u64,
        // Printed only when non-zero by iproute2 6.1.
        #[serde(default)]
        otherhost: u64,
    }
    #[derive(Deserialize)]
    struct Tx {
        packets: u64,
    }

    let json = ns.exec(&["ip", "-j", "-s", "-s", "link", "show", "dev", ifname])?;
    let links: Vec<Link> = serde_json::from_slice(&json)
        .with_context(|| format!("parsing `ip -j -s -s link show dev {ifname}`"))?;
    let link = links
        .into_iter()
        .next()
        .with_context(|| format!("no link {ifname} in {}", ns.name()))?;
    Ok(LinkStats {
        rx_packets: link.stats64.rx.packets,
        rx_dropped: link.stats64.rx.dropped,
        rx_otherhost_dropped: link.stats64.rx.otherhost,
        tx_packets: link.stats64.tx.packets,
    })
}

/// One entry of `bridge -j fdb show br BRIDGE`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct FdbEntry {
    pub mac: String,
    /// The port (or the bridge itself) the entry points at.
    pub ifname: String,
    /// Set for the bridge's own entries; absent for `self` (device) entries.
    #[serde(default)]
    pub master: Option<String>,
    #[serde(default)]
    pub flags: Vec<String>,
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub vlan: Option<u16>,
}

/// The bridge FDB of `bridge` in `ns`, including the device (`self`) entries.
pub fn fdb(ns: &NetNs, bridge: &str) -> Result<Vec<FdbEntry>> {
    let json = ns.exec(&["bridge", "-j", "fdb", "show", "br", bridge])?;
    serde_json::from_slice(&json)
        .with_context(|| format!("parsing `bridge -j fdb show br {bridge}`"))
}

/// Whether `bridge` has an FDB entry of its own (not a device `self` entry)
/// for `mac`: such an entry, pointing at the bridge or one of its ports and
/// never learned, is what makes the bridge deliver the frame to the host.
pub fn fdb_has_bridge_entry(ns: &NetNs, bridge: &str, mac: &str) -> Result<bool> {
    Ok(fdb(ns, bridge)?
        .iter()
        .any(|entry| entry.mac == mac && entry.master.as_deref() == Some(bridge)))
}

/// The ifindex of `ifname` in `ns` (`ip -j link show dev NAME`).
pub fn ifindex(ns: &NetNs, ifname: &str) -> Result<u32> {
    #[derive(Deserialize)]
    struct Link {
        ifindex: u32,
    }
    let json = ns.exec(&["ip", "-j", "link", "show", "dev", ifname])?;
    let links: Vec<Link> = serde_json::from_slice(&json)
        .with_context(|| format!("parsing `ip -j link show dev {ifname}`"))?;
    links
        .first()
        .map(|link| link.ifindex)
        .with_context(|| format!("no link {ifname} in {}", ns.name()))
}

/// `IFLA_PROMISCUITY` of `ifname` in `ns` (`ip -j -d link show`): how many
/// holders keep it promiscuous (a packet socket's membership included).
pub fn promiscuity(ns: &NetNs, ifname: &str) -> Result<u32> {
    #[derive(Deserialize)]
    struct Link {
        promiscuity: u32,
    }
    let json = ns.exec(&["ip", "-j", "-d", "link", "show", "dev", ifname])?;
    let links: Vec<Link> = serde_json::from_slice(&json)
        .with_context(|| format!("parsing `ip -j -d link show dev {ifname}`"))?;
    links
        .first()
        .map(|l| l.promiscuity)
        .with_context(|| format!("no link {ifname} in {}", ns.name()))
}
