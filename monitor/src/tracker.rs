//! Turns successive observations of links (from rtnetlink notifications and
//! from the periodic dumps) into events: promiscuous-mode transitions and
//! MAC changes, each with the time it was observed. It also remembers each
//! interface's previous MACs, so frames still sent to them can be counted
//! as `stale_mac`.

use std::{collections::BTreeMap, time::SystemTime};

use monitor_common::MAX_PREVIOUS_MACS;

use crate::{
    mac::Mac,
    netlink::{Link, NetState},
};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// The device started accepting every frame: its promiscuity count
    /// (holders: `ip link set promisc on`, packet sockets such as tcpdump's,
    /// a bridge for its ports) went from 0 to `to` — what the kernel logs
    /// as "entered promiscuous mode".
    PromiscEntered {
        from: u32,
        to: u32,
    },
    /// The last holder let go.
    PromiscLeft {
        from: u32,
        to: u32,
    },
    /// Holders came or went without crossing zero (e.g. tcpdump on a bridge
    /// port, which its bridge already holds), or the user-visible
    /// IFF_PROMISC flag changed while other holders remained.
    PromiscuityChanged {
        from: u32,
        to: u32,
    },
    MacChanged {
        old: Mac,
        new: Mac,
    },
    /// The bridge re-learned `mac` on another port `moves` times since the
    /// last report (`fdb_moves`): two stations with one MAC, or a loop.
    /// `ports`: where it was learned, in the order first seen.
    FdbMoved {
        mac: Mac,
        vid: u16,
        moves: u64,
        ports: Vec<String>,
    },
    /// macdrop started watching the interface (at start, or when it
    /// appeared), with this hook.
    Attached {
        hook: &'static str,
    },
    /// The hook counting the interface's frames changed (the two-step
    /// start moves interfaces from generic XDP to TCX; `crate::session::handoff`).
    HookChanged {
        from: &'static str,
        to: &'static str,
    },
    /// The interface disappeared or left the selection; its final counts
    /// stay in the report for the retention window (`crate::retention`).
    Gone,
    /// The retention window of a gone interface ended: it leaves the
    /// report (and the metrics).
    Expired,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub ts: SystemTime,
    pub ifname: String,
    pub ifindex: u32,
    pub kind: EventKind,
}

impl Event {
    /// "br0 entered promiscuous mode, promiscuity 0 -> 1"
    pub fn describe(&self) -> String {
        match &self.kind {
            EventKind::PromiscEntered { from, to } => format!(
                "{} entered promiscuous mode, promiscuity {from} -> {to}",
                self.ifname
            ),
            EventKind::PromiscLeft { from, to } => format!(
                "{} left promiscuous mode, promiscuity {from} -> {to}",
                self.ifname
            ),
            EventKind::PromiscuityChanged { from, to } => format!(
                "{} promiscuity {from} -> {to} (still promiscuous)",
                self.ifname
            ),
            EventKind::MacChanged { old, new } => {
                format!("{} changed its MAC from {old} to {new}", self.ifname)
            }
            EventKind::FdbMoved {
                mac,
                vid,
                moves,
                ports,
            } => format!(
                "{} re-learned {mac}{} on another port {moves} time(s) (between {})",
                self.ifname,
                if *vid == 0 {
                    String::new()
                } else {
                    format!(" (VLAN {vid})")
                },
                ports.join(", ")
            ),
            EventKind::Attached { hook } => format!("{} is watched through {hook}", self.ifname),
            EventKind::HookChanged { from, to } => {
                format!("{} moved from {from} to {to}", self.ifname)
            }
            EventKind::Gone => format!(
                "{} is gone; its final counts are kept for the retention window",
                self.ifname
            ),
            EventKind::Expired => format!(
                "{} was gone for the retention window; it leaves the report",
                self.ifname
            ),
        }
    }

    /// Stable machine name of the event kind.
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            EventKind::PromiscEntered { .. } => "promisc_entered",
            EventKind::PromiscLeft { .. } => "promisc_left",
            EventKind::PromiscuityChanged { .. } => "promiscuity_changed",
            EventKind::MacChanged { .. } => "mac_changed",
            EventKind::FdbMoved { .. } => "fdb_moved",
            EventKind::Attached { .. } => "attached",
            EventKind::HookChanged { .. } => "hook_changed",
            EventKind::Gone => "gone",
            EventKind::Expired => "expired",
        }
    }
}

#[derive(Clone, Debug)]
struct Seen {
    name: String,
    promisc: bool,
    promiscuity: u32,
    mac: Option<Mac>,
}

impl Seen {
    fn effective(&self) -> bool {
        self.promisc || self.promiscuity > 0
    }
}

#[derive(Debug, Default)]
pub struct Tracker {
    last: BTreeMap<u32, Seen>,
    previous_macs: BTreeMap<u32, Vec<Mac>>,
}

impl Tracker {
    /// Starts from the namespace as it is: no events for the initial state.
    pub fn new(state: &NetState) -> Self {
        let mut tracker = Self::default();
        for link in &state.links {
            tracker.last.insert(link.ifindex, seen(link));
        }
        tracker
    }

    /// Records one observation of `link`; returns what changed since the
    /// last one.
    pub fn observe(&mut self, link: &Link, now: SystemTime) -> Vec<Event> {
        let mut events = Vec::new();
        let new = seen(link);
        let event = |kind| Event {
            ts: now,
            ifname: link.name.clone(),
            ifindex: link.ifindex,
            kind,
        };
        if let Some(old) = self.last.get(&link.ifindex) {
            // The kernel's own notion: promiscuous while anyone holds it.
            // (A packet socket's PACKET_MR_PROMISC raises the count without
            // setting the user-visible IFF_PROMISC flag and without any
            // rtnetlink notification: only the dumps see it.)
            let (was, is) = (old.effective(), new.effective());
            let (from, to) = (old.promiscuity, new.promiscuity);
            if was != is {
                events.push(event(if is {
                    EventKind::PromiscEntered { from, to }
                } else {
                    EventKind::PromiscLeft { from, to }
                }));
            } else if is && (from != to || old.promisc != new.promisc) {
                events.push(event(EventKind::PromiscuityChanged { from, to }));
            }
            if let (Some(old_mac), Some(new_mac)) = (old.mac, new.mac)
                && old_mac != new_mac
            {
                let previous = self.previous_macs.entry(link.ifindex).or_default();
                previous.retain(|m| *m != old_mac && *m != new_mac);
                previous.push(old_mac);
                if previous.len() > MAX_PREVIOUS_MACS {
                    previous.remove(0);
                }
                events.push(event(EventKind::MacChanged {
                    old: old_mac,
                    new: new_mac,
                }));
            }
        }
        self.last.insert(link.ifindex, new);
        events
    }

    /// Observes every link of a dump; links that vanished are forgotten (a
    /// new device may reuse the ifindex).
    pub fn observe_state(&mut self, state: &NetState, now: SystemTime) -> Vec<Event> {
        self.last
            .retain(|ifindex, _| state.link(*ifindex).is_some());
        self.previous_macs
            .retain(|ifindex, _| state.link(*ifindex).is_some());
        state
            .links
            .iter()
            .flat_map(|link| self.observe(link, now))
            .collect()
    }

    /// The link `ifindex` was deleted: a device that reuses the ifindex
    /// is new, with no previous MACs (frames to the old device's MACs are
    /// not `stale_mac` there).
    pub fn forget(&mut self, ifindex: u32) {
        self.last.remove(&ifindex);
        self.previous_macs.remove(&ifindex);
    }

    /// The name `ifindex` had when last observed.
    pub fn name(&self, ifindex: u32) -> Option<&str> {
        self.last.get(&ifindex).map(|s| s.name.as_str())
    }

    /// MACs this interface had before, oldest first (at most
    /// `MAX_PREVIOUS_MACS`).
    pub fn previous_macs(&self) -> &BTreeMap<u32, Vec<Mac>> {
        &self.previous_macs
    }
}

fn seen(link: &Link) -> Seen {
    Seen {
        name: link.name.clone(),
        promisc: link.promisc,
        promiscuity: link.promiscuity,
        mac: link.mac,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Mac = Mac([2, 0, 0, 0, 0, 0xa]);
    const B: Mac = Mac([2, 0, 0, 0, 0, 0xb]);

    fn br0(promiscuity: u32, mac: Mac) -> Link {
        let mut l = Link::fake(3, "br0", "bridge", None, mac);
        l.promisc = promiscuity > 0;
        l.promiscuity = promiscuity;
        l
    }

    #[test]
    fn promisc_transitions_with_counts() {
        let t0 = SystemTime::UNIX_EPOCH;
        let mut t = Tracker::new(&NetState {
            links: vec![br0(0, A)],
            ..Default::default()
        });
        let e = t.observe(&br0(1, A), t0);
        assert_eq!(e.len(), 1);
        assert_eq!(
            e[0].describe(),
            "br0 entered promiscuous mode, promiscuity 0 -> 1"
        );
        assert_eq!(e[0].kind_name(), "promisc_entered");
        let e = t.observe(&br0(2, A), t0);
        assert_eq!(
            e[0].describe(),
            "br0 promiscuity 1 -> 2 (still promiscuous)"
        );
        assert_eq!(e[0].kind_name(), "promiscuity_changed");
        let e = t.observe(&br0(0, A), t0);
        assert_eq!(
            e[0].describe(),
            "br0 left promiscuous mode, promiscuity 2 -> 0"
        );
        assert!(t.observe(&br0(0, A), t0).is_empty(), "no change, no event");
    }

    #[test]
    fn a_packet_socket_raises_promiscuity_without_the_flag() {
        let t0 = SystemTime::UNIX_EPOCH;
        let mut t = Tracker::new(&NetState {
            links: vec![br0(0, A)],
            ..Default::default()
        });
        let mut tcpdump = br0(0, A);
        tcpdump.promiscuity = 1; // IFF_PROMISC stays off for userspace
        let e = t.observe(&tcpdump, t0);
        assert_eq!(e[0].kind_name(), "promisc_entered");
    }

    #[test]
    fn mac_changes_remember_previous_macs() {
        let t0 = SystemTime::UNIX_EPOCH;
        let mut t = Tracker::new(&NetState {
            links: vec![br0(0, A)],
            ..Default::default()
        });
        let e = t.observe(&br0(0, B), t0);
        assert_eq!(
            e[0].describe(),
            format!("br0 changed its MAC from {A} to {B}")
        );
        assert_eq!(t.previous_macs()[&3], vec![A]);
        // Back to A: A is current again, B is now the previous one.
        t.observe(&br0(0, A), t0);
        assert_eq!(t.previous_macs()[&3], vec![B]);
        for i in 0..20u8 {
            t.observe(&br0(0, Mac([2, 0, 0, 1, 0, i])), t0);
        }
        assert_eq!(t.previous_macs()[&3].len(), MAX_PREVIOUS_MACS, "bounded");
    }

    #[test]
    fn a_deleted_link_leaves_nothing_to_a_device_that_reuses_its_ifindex() {
        let t0 = SystemTime::UNIX_EPOCH;
        let state = |links| NetState {
            links,
            ..Default::default()
        };
        let mut t = Tracker::new(&state(vec![br0(0, A)]));
        t.observe(&br0(0, B), t0);
        assert_eq!(t.previous_macs()[&3], vec![A]);
        // Deleted (its notification), then a new device with ifindex 3.
        t.forget(3);
        assert!(t.previous_macs().is_empty());
        assert!(t.observe(&br0(0, A), t0).is_empty(), "a baseline");
        // Deleted between two dumps: the dump forgets it too.
        t.observe(&br0(0, B), t0);
        t.observe_state(&state(vec![]), t0);
        assert!(t.previous_macs().is_empty() && t.last.is_empty());
    }

    #[test]
    fn a_new_link_is_a_baseline_not_an_event() {
        let mut t = Tracker::default();
        assert!(t.observe(&br0(1, A), SystemTime::UNIX_EPOCH).is_empty());
    }
}
