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
