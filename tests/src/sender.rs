//! Injects raw frames into an interface with an AF_PACKET socket.
//!
//! Tests need frames the peer's kernel would never build itself (a stale
//! destination MAC, QinQ tags, a unicast ARP request to a foreign MAC), and
//! they need to know exactly how many left. A raw packet socket sends the
//! bytes as given; a blocking socket and a check of every `send` make the
//! count exact or the call fails.

use std::{
    ffi::CString,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
};

use anyhow::{Context as _, Result, bail};

use crate::netns::NetNs;

/// An AF_PACKET/SOCK_RAW socket bound to one interface of one namespace.
#[derive(Debug)]
pub struct RawSender {
    fd: OwnedFd,
    ifname: String,
}

impl RawSender {
    /// Opens the socket inside `ns` (a socket belongs to the namespace it is
    /// created in, even when used from another thread later) and binds it to
    /// `ifname` there.
    pub fn new(ns: &NetNs, ifname: &str) -> Result<Self> {
        let fd = ns
            .enter_thread(|| open_bound(ifname))?
            .with_context(|| format!("raw socket on {ifname} in {}", ns.name()))?;
        Ok(Self {
            fd,
            ifname: ifname.to_owned(),
        })
    }

    /// Sends exactly `count` copies of `frame`. Fails on the first short or
    /// failed send: the kernel reports a frame it dropped on transmit (e.g. a
    /// full veth ring) as an error, so success means `count` frames left.
    pub fn send(&self, frame: &[u8], count: usize) -> Result<()> {
        for sent in 0..count {
            // SAFETY: `frame` is a valid buffer of `frame.len()` bytes and
            // the fd is an open socket owned by `self`.
            let n =
                unsafe { libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
            if n < 0 {
                return Err(std::io::Error::last_os_error()).with_context(|| {
                    format!(
                        "send on {} failed after {sent} of {count} frames",
                        self.ifname
                    )
                });
            }
            if n as usize != frame.len() {
                bail!(
                    "short send on {}: {n} of {} bytes (after {sent} of {count} frames)",
                    self.ifname,
                    frame.len()
                );
            }
        }
        Ok(())
    }
}

/// Creates the socket and binds it, in the calling thread's namespace.
fn open_bound(ifname: &str) -> Result<OwnedFd> {
    let c_name = CString::new(ifname).context("interface name contains NUL")?;
    // SAFETY: `c_name` is a valid NUL-terminated string.
    let ifindex = unsafe { libc::if_nametoindex(c_name.as_ptr()) };
    if ifindex == 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("no interface {ifname}"));
    }
    // Protocol 0: a send-only socket. It receives nothing, so no receive
    // queue fills up and nothing is copied to us from the interface.
    // SAFETY: plain syscall.
    let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(std::io::Error::last_os_error()).context("socket(AF_PACKET, SOCK_RAW)");
    }
    // SAFETY: `raw` is a fresh fd that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };

    // SAFETY: all-zero is a valid sockaddr_ll.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_ifindex = ifindex as i32;
    // SAFETY: `addr` is a properly initialised sockaddr_ll of the given size.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&raw const addr).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| format!("bind to {ifname}"));
    }
    Ok(fd)
}

/// Pins the calling thread to the first CPU it may use, so that the frames
/// it sends through a veth are received on that CPU (per-CPU state in the
/// kernel, e.g. the hand-over between a port's and the bridge's programs,
/// or an interface's per-CPU drop reasons, then sees them all).
pub fn pin_to_first_cpu() {
    // SAFETY: plain syscalls on a zeroed cpu_set_t of the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        assert_eq!(
            libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut set),
            0
        );
        let first = (0..libc::CPU_SETSIZE as usize)
            .find(|&c| libc::CPU_ISSET(c, &set))
            .expect("a CPU");
        libc::CPU_ZERO(&mut set);
        libc::CPU_SET(first, &mut set);
        assert_eq!(
            libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set),
            0
        );
    }
}
