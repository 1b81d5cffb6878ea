//! Promiscuous-mode facts: who holds an interface promiscuous now
//! ([`holders`](mod@holders)) and when it entered and left promiscuous
//! mode since boot ([`history`](mod@history)). Userspace only; nothing
//! here changes any interface.
//!
//! How Linux keeps promiscuity (net/core/dev.c, measured on 6.18):
//!
//! - A device has a counter, `promiscuity` (`IFLA_PROMISCUITY`, `ip -d
//!   link`); every holder adds one. The device is really promiscuous, its
//!   `dev->flags` has `IFF_PROMISC`, iff the counter is above zero.
//! - The `IFF_PROMISC` that rtnetlink (`ifi_flags`, the `PROMISC` of `ip
//!   link`) and `SIOCGIFFLAGS` report is *only the one userspace asked for
//!   with `ip link set X promisc on`* (`dev_get_flags` takes it from
//!   `gflags`). A bridge port, or an interface tcpdump listens on, has
//!   promiscuity 1 and no `PROMISC` in `ip link`. `/sys/class/net/X/flags`
//!   (0x100) shows the real flag. So "is it promiscuous now" is
//!   `promiscuity > 0`, not the netlink flag.
//! - Holders: `ip link set promisc on` (one, however often repeated); each
//!   packet socket that joined `PACKET_MR_PROMISC` (tcpdump without `-p`);
//!   the bridge, one per port from the moment it is enslaved, even while
//!   the port is down (measured: a new port goes 0 -> 1 at `ip link set
//!   PORT master BR`; `br_manage_promisc` may drop it again on a
//!   VLAN-filtering bridge whose ports' traffic is all static and whose
//!   port can filter unicast itself — this kernel lacks
//!   `CONFIG_BRIDGE_VLAN_FILTERING`, so that case was not measured); upper
//!   devices passing theirs down (macvlan passthru, bonding, team, VLAN);
//!   Open vSwitch on its ports. Only packet sockets can be traced back to a
//!   process: [`holders`](mod@holders).
//! - The kernel log records each change of the flag, not of the counter:
//!   tcpdump on an already promiscuous bridge port logs nothing. See
//!   [`history`](mod@history) for what is logged, and when not.

pub mod history;
pub mod holders;

pub use history::{
    History, IfaceHistory, LogState, Transition, TransitionKind, Uncertainty, Verdict,
};
pub use holders::{Holder, Holders, PacketSocket, Snapshot, describe, describe_with_flag, holders};

/// Helpers shared by the privileged tests of both modules.
#[cfg(test)]
pub(crate) mod test_support {
    use std::{
        io::{BufRead as _, BufReader},
        os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
        process::{Child, Stdio},
        sync::mpsc,
        time::{Duration, Instant},
    };

    use anyhow::{Context as _, Result, bail};
    use macdrop_tests::netns::NetNs;

    /// `IFLA_PROMISCUITY` of `ifname` in `ns`, from `ip -j -d link show`:
    /// an independent witness, not macdrop's own netlink code.
    pub(crate) fn promiscuity(ns: &NetNs, ifname: &str) -> Result<u32> {
        let json = ns.exec(&["ip", "-j", "-d", "link", "show", "dev", ifname])?;
        let links: serde_json::Value = serde_json::from_slice(&json)?;
        let value = links[0]["promiscuity"]
            .as_u64()
            .with_context(|| format!("no promiscuity for {ifname}: {links}"))?;
        Ok(u32::try_from(value)?)
    }

    /// The ifindex of `ifname` in `ns`.
    pub(crate) fn ifindex_in(ns: &NetNs, ifname: &str) -> Result<u32> {
        macdrop_tests::kernel::ifindex(ns, ifname)
    }

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
    pub(crate) fn promisc_packet_socket(
        bind_ifindex: u32,
        promisc_on: Option<u32>,
    ) -> Result<OwnedFd> {
        let protocol = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: plain syscall.
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                i32::from(protocol),
            )
        };
        if raw < 0 {
            return Err(std::io::Error::last_os_error()).context("socket(AF_PACKET)");
        }
        // SAFETY: `raw` is a fresh fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
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
}
