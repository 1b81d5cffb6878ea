//! One namespace as the rules see it: its observed interfaces, their
//! bridges and ports, the window's events, and what `status` knows.

use std::time::SystemTime;

use super::{
    input::{Input, NsFacts},
    rules::bridge_mac_not_in_fdb,
    timeline::Observed,
};
use crate::{
    mac::Mac,
    topology::Role,
    tracker::{Event, EventKind},
    verdict::MAC_MISMATCH_REASONS,
};

pub struct Scope<'a> {
    pub input: &'a Input<'a>,
    pub ns: &'a NsFacts,
}

/// A MAC change seen in the window.
#[derive(Clone, Copy, Debug)]
pub struct MacChange {
    pub ts: SystemTime,
    pub old: Mac,
    pub new: Mac,
}

impl MacChange {
    /// "br0 changed its MAC from OLD to NEW at HH:MM:SS.mmm"
    pub fn sentence(&self, name: &str) -> String {
        format!(
            "{name} changed its MAC from {} to {} at {}",
            self.old,
            self.new,
            super::text::clock(self.ts)
        )
    }
}

/// Frames of one kind counted on one interface they entered through.
#[derive(Clone, Debug)]
pub struct EntryCount {
    pub interface: String,
    /// What owns the port's peer namespace, for sentences
    /// (`Workload::describe`), when known.
    pub workload: Option<String>,
    pub frames: u64,
    pub first: Option<SystemTime>,
    pub last: Option<SystemTime>,
    /// The kernel's non-zero MAC-mismatch drops there, per reason.
    pub kernel_drops: Vec<(&'static str, u64)>,
}

impl EntryCount {
    pub fn new(
        o: &Observed,
        frames: u64,
        first: Option<SystemTime>,
        last: Option<SystemTime>,
    ) -> Self {
        EntryCount {
            interface: o.iface.name.clone(),
            workload: o.iface.workload.as_ref().map(|w| w.describe()),
            frames,
            first,
            last,
            kernel_drops: kernel_drops(o),
        }
    }

    /// The interface for a sentence, with what owns its peer when known:
    /// "p1", or "p1 (behind it: web1 (docker, 3f2a1b9c0d4e…))".
    pub fn who(&self) -> String {
        match &self.workload {
            Some(w) => format!("{} (behind it: {w})", self.interface),
            None => self.interface.clone(),
        }
    }
}

/// The kernel's non-zero MAC-mismatch drops on `o`, per reason.
pub fn kernel_drops(o: &Observed) -> Vec<(&'static str, u64)> {
    let Some(drops) = o.iface.drops.as_ref() else {
        return Vec::new();
    };
    MAC_MISMATCH_REASONS
        .iter()
        .filter_map(|r| drops.get(*r).filter(|n| **n > 0).map(|n| (*r, *n)))
        .collect()
}

/// All the kernel's MAC-mismatch drops on `o`.
pub fn drops_total(o: &Observed) -> u64 {
    kernel_drops(o).iter().map(|(_, n)| n).sum()
}

/// The bridge whose FDB decides what `owner` delivers: its master for a
/// port watched without its bridge, else the interface itself.
pub fn bridge_of(owner: &Observed) -> &str {
    match (owner.iface.role, &owner.iface.master) {
        (Role::Port, Some(master)) => master.as_str(),
        _ => owner.iface.name.as_str(),
    }
}

impl Scope<'_> {
    pub fn observed(&self) -> impl Iterator<Item = &Observed> {
        self.input
            .observed
            .iter()
            .filter(|o| o.iface.netns == self.ns.inode)
    }

    pub fn named(&self, name: &str) -> Option<&Observed> {
        self.observed().find(|o| o.iface.name == name)
    }

    fn ports_of<'b>(&'b self, bridge: &'b str) -> impl Iterator<Item = &'b Observed> + 'b {
        self.observed().filter(move |o| {
            o.iface.role == Role::Port && o.iface.master.as_deref() == Some(bridge)
        })
    }

    /// The interfaces a frame for `name` enters through: a bridge's ports,
    /// or the interface itself.
    pub fn entries<'b>(&'b self, name: &'b str) -> Vec<&'b Observed> {
        let ports: Vec<&Observed> = self.ports_of(name).collect();
        if ports.is_empty() {
            self.named(name).into_iter().collect()
        } else {
            ports
        }
    }

    pub fn events_of<'b>(&'b self, name: &'b str) -> impl Iterator<Item = &'b Event> + 'b {
        self.input.events.iter().filter(move |e| e.ifname == name)
    }

    pub fn mac_changes(&self, name: &str) -> Vec<MacChange> {
        self.events_of(name)
            .filter_map(|e| match e.kind {
                EventKind::MacChanged { old, new } => Some(MacChange { ts: e.ts, old, new }),
                _ => None,
            })
            .collect()
    }

    /// The bridge's own MAC when it is missing from its FDB: the frames to
    /// it are `bridge_mac_not_in_fdb`'s.
    pub fn fdb_missing(&self, bridge: &str) -> Option<Mac> {
        self.ns
            .iface(bridge)
            .and_then(bridge_mac_not_in_fdb::detect)
            .map(|f| f.mac)
    }

    /// The interfaces findings are reported on: bridges, standalone
    /// interfaces, and ports watched without their bridge.
    pub fn owners(&self) -> Vec<&Observed> {
        self.observed()
            .filter(|o| {
                o.iface.role != Role::Port
                    || o.iface
                        .master
                        .as_deref()
                        .is_none_or(|m| self.named(m).is_none())
            })
            .collect()
    }

    /// MACs of this host frames through `name` may be addressed to: its
    /// bridge's local FDB entries, or the device's own MAC.
    pub fn own_macs(&self, name: &str) -> Vec<Mac> {
        self.ns
            .iface(name)
            .and_then(|s| s.bridge.as_ref().map(|b| b.local_fdb.clone()))
            .or_else(|| {
                self.ns
                    .iface(name)
                    .and_then(|s| s.link.mac)
                    .map(|m| vec![m])
            })
            .unwrap_or_default()
    }
}
