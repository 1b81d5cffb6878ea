//! What the kernel itself says about a lab, read through iproute2's JSON.
//!
//! These are the independent witnesses the tests check macdrop against:
//! interface packet counters and the bridge FDB. Only the `-j` output is
//! read, and only through serde, because iproute2's text output changes
//! between versions (6.1 even omits the `otherhost` column when it is 0).

use anyhow::{Context as _, Result};
use serde::Deserialize;

use crate::netns::NetNs;

/// `struct nlmsghdr` and `struct ifinfomsg`, as the kernel lays them out.
const NLMSG_HDRLEN: usize = 16;
const IFINFOMSG_LEN: usize = 16;

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

/// The length of `IFLA_STATS64` (`struct rtnl_link_stats64`) the kernel
/// sends for the interface `ifindex` of this thread's namespace, read with
/// one RTM_GETLINK on a netlink socket of its own (not iproute2, which
/// pads a shorter struct and prints `otherhost` only when it is not 0).
pub fn stats64_len(ifindex: u32) -> Result<usize> {
    use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};

    const RTM_GETLINK: u16 = 18;

    // SAFETY: socket(2) with constant arguments; the result is checked.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    anyhow::ensure!(
        fd >= 0,
        "netlink socket: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: `fd` is a new descriptor nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };

    let mut request = Vec::with_capacity(NLMSG_HDRLEN + IFINFOMSG_LEN);
    request.extend(((NLMSG_HDRLEN + IFINFOMSG_LEN) as u32).to_ne_bytes());
    request.extend(RTM_GETLINK.to_ne_bytes());
    request.extend((libc::NLM_F_REQUEST as u16).to_ne_bytes());
    request.extend(1u32.to_ne_bytes()); // sequence
    request.extend(0u32.to_ne_bytes()); // port: the kernel's
    // struct ifinfomsg: family, pad, type, index, flags, change.
    request.extend([libc::AF_UNSPEC as u8, 0]);
    request.extend(0u16.to_ne_bytes());
    request.extend((ifindex as i32).to_ne_bytes());
    request.extend(0u32.to_ne_bytes());
    request.extend(0u32.to_ne_bytes());
    // SAFETY: the buffer is valid for its length; a netlink socket needs no
    // address to reach the kernel.
    let sent = unsafe { libc::send(fd.as_raw_fd(), request.as_ptr().cast(), request.len(), 0) };
    anyhow::ensure!(
        sent == request.len() as isize,
        "netlink send: {}",
        std::io::Error::last_os_error()
    );
    let mut buf = vec![0u8; 64 * 1024];
    // SAFETY: the buffer is valid and writable for its length.
    let got = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    anyhow::ensure!(
        got >= 0,
        "netlink recv: {}",
        std::io::Error::last_os_error()
    );
    stats64_len_in(&buf[..got as usize])
        .with_context(|| format!("RTM_GETLINK of ifindex {ifindex}"))
}

/// [`stats64_len`]'s parse of the kernel's answer (one RTM_NEWLINK, or an
/// error message).
fn stats64_len_in(reply: &[u8]) -> Result<usize> {
    const NLMSG_ERROR: u16 = 2;
    const IFLA_STATS64: u16 = 23;
    let u16_at = |b: &[u8], off: usize| {
        b.get(off..off + 2)
            .map(|s| u16::from_ne_bytes([s[0], s[1]]))
    };
    let u32_at = |b: &[u8], off: usize| {
        b.get(off..off + 4)
            .map(|s| u32::from_ne_bytes([s[0], s[1], s[2], s[3]]))
    };
    let len = u32_at(reply, 0).context("short netlink reply")? as usize;
    let kind = u16_at(reply, 4).context("short netlink reply")?;
    let msg = reply.get(..len).context("netlink reply cut short")?;
    if kind == NLMSG_ERROR {
        let errno = u32_at(msg, NLMSG_HDRLEN).context("short netlink error")? as i32;
        anyhow::bail!("{}", std::io::Error::from_raw_os_error(-errno));
    }
    let mut at = NLMSG_HDRLEN + IFINFOMSG_LEN;
    while at + 4 <= msg.len() {
        let rta_len = u16_at(msg, at).context("attribute")? as usize;
        let rta_type = u16_at(msg, at + 2).context("attribute")? & 0x3fff;
        anyhow::ensure!(rta_len >= 4, "netlink attribute of length {rta_len}");
        if rta_type == IFLA_STATS64 {
            return Ok(rta_len - 4);
        }
        at += (rta_len + 3) & !3;
    }
    anyhow::bail!("no IFLA_STATS64 in the kernel's answer")
}

/// Whether the kernel's `rtnl_link_stats64` has `rx_otherhost_dropped`:
/// the 25th counter, after the 24 every supported kernel has, so a struct
/// of at least 25 u64. Read on `lo` of this thread's namespace.
pub fn has_otherhost_counter() -> Result<bool> {
    const WITH_OTHERHOST: usize = 25 * 8;
    Ok(stats64_len(1)? >= WITH_OTHERHOST)
}

/// Whether VLAN devices can be created in `ns` (8021q), tried on a scratch
/// veth pair (not a dummy: the matrix guests load veth, not dummy) that is
/// removed again.
pub fn has_8021q(ns: &NetNs) -> bool {
    let ok = ns
        .exec(&[
            "ip", "link", "add", "vq0", "type", "veth", "peer", "name", "vq1",
        ])
        .is_ok()
        && ns
            .exec(&[
                "ip", "link", "add", "link", "vq0", "name", "vq0.1", "type", "vlan", "id", "1",
            ])
            .is_ok();
    let _ = ns.exec(&["ip", "link", "del", "vq0"]);
    ok
}

/// Whether bridges here can filter VLANs (CONFIG_BRIDGE_VLAN_FILTERING,
/// which needs 8021q built in or as a module): tried on a scratch bridge.
pub fn has_vlan_filtering(ns: &NetNs) -> bool {
    let ok = ns
        .exec(&[
            "ip",
            "link",
            "add",
            "vfprobe",
            "type",
            "bridge",
            "vlan_filtering",
            "1",
        ])
        .is_ok();
    let _ = ns.exec(&["ip", "link", "del", "vfprobe"]);
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An RTM_NEWLINK with IFLA_IFNAME ("lo", padded) then IFLA_STATS64.
    fn newlink(stats: usize) -> Vec<u8> {
        let mut attrs = Vec::new();
        attrs.extend(7u16.to_ne_bytes()); // 4 + "lo\0"
        attrs.extend(3u16.to_ne_bytes());
        attrs.extend(b"lo\0\0");
        attrs.extend(((4 + stats) as u16).to_ne_bytes());
        attrs.extend((23u16 | 0x8000).to_ne_bytes()); // NLA_F_NESTED is masked
        attrs.extend(vec![0u8; stats]);
        let len = NLMSG_HDRLEN + IFINFOMSG_LEN + attrs.len();
        let mut msg = Vec::new();
        msg.extend((len as u32).to_ne_bytes());
        msg.extend(16u16.to_ne_bytes());
        msg.extend([0u8; 10]);
        msg.extend([0u8; IFINFOMSG_LEN]);
        msg.extend(attrs);
        msg
    }

    #[test]
    fn stats64_is_found_after_other_attributes() {
        assert_eq!(stats64_len_in(&newlink(192)).unwrap(), 192);
        assert_eq!(stats64_len_in(&newlink(200)).unwrap(), 200);
    }

    #[test]
    fn a_netlink_error_is_an_error() {
        let mut msg = Vec::new();
        msg.extend(36u32.to_ne_bytes());
        msg.extend(2u16.to_ne_bytes());
        msg.extend([0u8; 10]);
        msg.extend((-libc::ENODEV).to_ne_bytes());
        msg.extend([0u8; 16]);
        let err = stats64_len_in(&msg).unwrap_err().to_string();
        assert!(err.contains("No such device"), "{err}");
    }

    /// The kernel's answer has the size of the kernel's own struct, as
    /// its BTF gives it (no root needed: lo of this namespace).
    #[test]
    fn stats64_has_the_size_of_the_kernels_struct() {
        let Some(btf) = crate::btf::Btf::kernel().unwrap() else {
            crate::skip::record(
                "IFLA_STATS64 against rtnl_link_stats64 in the kernel's BTF",
                "this kernel exposes no BTF",
            );
            return;
        };
        let size = btf
            .struct_size("rtnl_link_stats64")
            .expect("struct rtnl_link_stats64 in the kernel's BTF") as usize;
        assert_eq!(stats64_len(1).unwrap(), size);
        assert_eq!(
            has_otherhost_counter().unwrap(),
            btf.has_struct_member("rtnl_link_stats64", "rx_otherhost_dropped")
        );
    }
}
