//! [`BridgedNamespaces`]: many namespaces, each with a small bridge of its
//! own (`br0` and one veth port, its peer beside it): what a node with
//! hundreds of pods or VMs looks like to `macdrop --all-netns`, one
//! session per namespace (the benchmark's namespace-scale lab).

use std::path::Path;

use anyhow::Result;

use super::{BRIDGE, links::ip_batch};
use crate::netns::NetNs;

/// The one port of each namespace's bridge.
pub const PORT: &str = "p1";

/// `count` namespaces bound in a directory of their own, each with `br0`
/// (STP off) and the veth `p1` enslaved to it, its peer `q1` in the same
/// namespace, all up and without addresses. Every namespace goes on drop.
#[derive(Debug)]
pub struct BridgedNamespaces {
    namespaces: Vec<NetNs>,
}

impl BridgedNamespaces {
    /// Builds the namespaces under `dir` ([`NetNs::private`]), named
    /// `<prefix>-<pid>-<counter>`. On an error, those built so far go.
    pub fn new(dir: &Path, prefix: &str, count: usize) -> Result<Self> {
        let mut namespaces = Vec::with_capacity(count);
        let commands = format!(
            "link add {BRIDGE} type bridge stp_state 0\n\
             link add {PORT} type veth peer name q1\n\
             link set {PORT} master {BRIDGE} up\n\
             link set q1 up\n\
             link set {BRIDGE} up\n"
        );
        for _ in 0..count {
            let ns = NetNs::private(dir, prefix)?;
            ip_batch(&ns, &commands)?;
            namespaces.push(ns);
        }
        Ok(Self { namespaces })
    }

    /// Every namespace, in the order built.
    pub fn namespaces(&self) -> &[NetNs] {
        &self.namespaces
    }
}
