//! A device for BPF_PROG_TEST_RUN: a veth with a MAC of the caller's choice
//! in a namespace of its own. A test run names an interface by ifindex in
//! its context, and the kernel looks it up in the calling thread's
//! namespace: skb test runs set `pkt_type` with `eth_type_trans` against
//! that device's MAC, and macdrop's configuration lookups take the path
//! real traffic takes only with a real interface's ifindex. The
//! kernel-vs-model tests (`tests/tests/test_run`) and the test_run part of
//! `cargo xtask bench` both run their frames against one of these.

use anyhow::Result;

use crate::{
    frames::{Mac, mac_to_string},
    netns::NetNs,
};

/// A veth (and its peer) in `ns`; both go with the namespace on drop.
pub struct Device {
    ns: NetNs,
    name: String,
    peer: String,
    ifindex: u32,
}

impl Device {
    /// Adds the veth `name` with MAC `mac` and its peer `peer` in `ns`,
    /// both down.
    pub fn new(ns: NetNs, name: &str, mac: Mac, peer: &str) -> Result<Self> {
        ns.exec(&[
            "ip",
            "link",
            "add",
            name,
            "address",
            &mac_to_string(&mac),
            "type",
            "veth",
            "peer",
            "name",
            peer,
        ])?;
        let ifindex = crate::kernel::ifindex(&ns, name)?;
        Ok(Self {
            ns,
            name: name.to_owned(),
            peer: peer.to_owned(),
            ifindex,
        })
    }

    /// Sets the device and its peer up.
    pub fn up(&self) -> Result<()> {
        for ifname in [&self.name, &self.peer] {
            self.ns.exec(&["ip", "link", "set", ifname, "up"])?;
        }
        Ok(())
    }

    /// The namespace the device is in.
    pub fn ns(&self) -> &NetNs {
        &self.ns
    }

    /// Its ifindex, in its namespace.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// Runs `f` on a thread inside the device's namespace (where test runs
    /// that name the device must be made).
    pub fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> Result<R> {
        self.ns.enter_thread(f)
    }
}
