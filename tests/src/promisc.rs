//! Holds an interface in promiscuous mode the way tcpdump does: a packet
//! socket that joins `PACKET_MR_PROMISC`. The kernel raises the device's
//! promiscuity while the socket lives (without setting the IFF_PROMISC flag
//! userspace sees, and without an rtnetlink notification).

use std::{
    ffi::CString,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
};

use anyhow::{Context as _, Result, bail};

use crate::netns::NetNs;

#[derive(Debug)]
pub struct PromiscSocket {
    _fd: OwnedFd,
}

impl PromiscSocket {
    /// Opens the socket in `ns` and joins PACKET_MR_PROMISC on `ifname`.
    /// Dropping it closes the socket, which releases promiscuous mode.
    pub fn join(ns: &NetNs, ifname: &str) -> Result<Self> {
        let fd = ns.enter_thread(|| open_and_join(ifname))??;
        Ok(Self { _fd: fd })
    }
}

fn open_and_join(ifname: &str) -> Result<OwnedFd> {
    let name = CString::new(ifname).context("interface name")?;
    // SAFETY: NUL-terminated name.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if ifindex == 0 {
        bail!("no interface {ifname}");
    }
    // ETH_P_ALL is unnecessary: the membership is what raises promiscuity;
    // protocol 0 keeps the socket from receiving frames at all.
    // SAFETY: plain syscall.
    let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(std::io::Error::last_os_error()).context("socket(AF_PACKET)");
    }
    // SAFETY: `raw` is a new, valid fd that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let mreq = libc::packet_mreq {
        mr_ifindex: ifindex as i32,
        mr_type: libc::PACKET_MR_PROMISC as u16,
        mr_alen: 0,
        mr_address: [0; 8],
    };
    // SAFETY: valid fd and a pointer to a packet_mreq of the given size.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_ADD_MEMBERSHIP,
            (&mreq as *const libc::packet_mreq).cast(),
            size_of::<libc::packet_mreq>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("PACKET_ADD_MEMBERSHIP");
    }
    Ok(fd)
}
