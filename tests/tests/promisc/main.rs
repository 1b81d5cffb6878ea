//! Promiscuous-mode facts on the real kernel (`macdrop::promisc`), in lab
//! namespaces: who holds an interface promiscuous (tcpdump's packet
//! sockets and this process's own), and the kernel log's record of each
//! transition, read back from the real /dev/kmsg. They need root (CI runs
//! the suite as root) and fail without it.

mod history;
mod holders;

use std::{
    io::{BufRead as _, BufReader},
    os::fd::{AsRawFd as _, OwnedFd},
    process::{Child, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
// `ip -j -d link show` and `ip -j link show`: independent witnesses, not
// macdrop's own netlink code.
use macdrop_tests::{
    kernel::{ifindex as ifindex_in, promiscuity},
    netns::NetNs,
};

/// A running `tcpdump ARGS -w /dev/null` in a namespace, killed and
/// reaped on drop.
pub(crate) struct Capture {
    child: Child,
}

impl Capture {
    /// Starts tcpdump and returns once it says "listening on", i.e.
    /// once libpcap has bound its socket and joined (or, with `-p`, not
    /// joined) promiscuous mode.
    pub(crate) fn start(ns: &NetNs, args: &[&str]) -> Result<Self> {
        let mut argv = vec!["tcpdump"];
        argv.extend_from_slice(args);
        argv.extend_from_slice(&["-w", "/dev/null"]);
        let mut child = ns
            .command(&argv)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot start tcpdump")?;
        let stderr = child.stderr.take().context("tcpdump stderr")?;
        // From here on the guard kills tcpdump on every path.
        let capture = Self { child };
        let (lines, received) = mpsc::channel();
        // Reads until tcpdump exits, so its exit statistics never block
        // on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = lines.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match received.recv_timeout(left) {
                Ok(line) if line.contains("listening on") => return Ok(capture),
                Ok(line) => seen.push(line),
                Err(_) => bail!(
                    "tcpdump {} did not start listening: {}",
                    args.join(" "),
                    seen.join(" | ")
                ),
            }
        }
    }

    /// `ip netns exec` execs its command, so this is tcpdump's pid.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An `ETH_P_ALL` packet socket in the calling thread's namespace,
/// bound to `bind_ifindex` (0: all interfaces), that joined
/// `PACKET_MR_PROMISC` on `promisc_on` if given, like libpcap does.
pub(crate) fn promisc_packet_socket(bind_ifindex: u32, promisc_on: Option<u32>) -> Result<OwnedFd> {
    let protocol = (libc::ETH_P_ALL as u16).to_be();
    let fd = macdrop_tests::receiver::packet_socket()?;
    if bind_ifindex != 0 {
        // SAFETY: all-zero is a valid sockaddr_ll.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = protocol;
        addr.sll_ifindex = i32::try_from(bind_ifindex)?;
        // SAFETY: `addr` is an initialised sockaddr_ll of the given size.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&raw const addr).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error()).context("bind(AF_PACKET)");
        }
    }
    if let Some(ifindex) = promisc_on {
        // SAFETY: all-zero is a valid packet_mreq.
        let mut mreq: libc::packet_mreq = unsafe { std::mem::zeroed() };
        mreq.mr_ifindex = i32::try_from(ifindex)?;
        mreq.mr_type = libc::PACKET_MR_PROMISC as u16;
        // SAFETY: `mreq` is an initialised packet_mreq of the given size.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_ADD_MEMBERSHIP,
                (&raw const mreq).cast(),
                size_of::<libc::packet_mreq>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error())
                .context("PACKET_ADD_MEMBERSHIP PACKET_MR_PROMISC");
        }
    }
    Ok(fd)
}
