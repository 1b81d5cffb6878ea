//! What the diagnosis window saw, accumulated report by report: each
//! interface's final counts, when frames for this host's IP with a wrong
//! MAC were counted, what arrived while the interface was promiscuous, and
//! every event.

use std::{collections::BTreeMap, time::SystemTime};

use monitor_common::FrameCounters;

use crate::{
    model::{Interface, World},
    tracker::Event,
};

/// One interface over the window.
#[derive(Clone, Debug)]
pub struct Observed {
    /// The last report's view: counts since attach, i.e. over the window.
    pub iface: Interface,
    /// Report times of the first and last interval in which
    /// `host_ip_wrong_mac` grew (precision: one interval).
    pub first_wrong: Option<SystemTime>,
    pub last_wrong: Option<SystemTime>,
    /// The same for `stale_mac`.
    pub first_stale: Option<SystemTime>,
    pub last_stale: Option<SystemTime>,
    /// Frames counted in intervals during which the interface was
    /// promiscuous at the start or at the end.
    pub while_promisc: FrameCounters,
    /// Promiscuous in at least one report.
    pub promisc_seen: bool,
}

impl Observed {
    /// `iface` before the window's first report: nothing seen yet.
    pub fn new(iface: Interface) -> Self {
        Observed {
            iface,
            first_wrong: None,
            last_wrong: None,
            first_stale: None,
            last_stale: None,
            while_promisc: FrameCounters::default(),
            promisc_seen: false,
        }
    }
}

/// (namespace inode, ifindex, name): what identifies an interface.
type Key = (u32, u32, String);

#[derive(Debug, Default)]
pub struct Timeline {
    observed: BTreeMap<Key, Observed>,
    events: Vec<Event>,
    reports: u32,
    pub first: Option<SystemTime>,
    pub last: Option<SystemTime>,
    /// The last report's: where confirmed drops come from, or why not.
    pub drop_source: Option<Result<&'static str, String>>,
}

impl Timeline {
    pub fn add(&mut self, world: &World) {
        self.reports += 1;
        self.first.get_or_insert(world.ts);
        self.last = Some(world.ts);
        for i in &world.interfaces {
            let key = (i.netns, i.ifindex, i.name.clone());
            let entry = self.observed.entry(key).or_insert_with(|| {
                Observed::new(Interface::new(
                    i.name.clone(),
                    i.ifindex,
                    i.netns,
                    i.role,
                    i.master.clone(),
                ))
            });
            // Counts start at zero at attach, so the first report's are
            // the first interval's.
            let delta = i.frames.since(&entry.iface.frames);
            let was_promisc = entry.iface.promisc;
            if delta.host_ip_wrong_mac > 0 {
                entry.first_wrong.get_or_insert(world.ts);
                entry.last_wrong = Some(world.ts);
            }
            if delta.stale_mac > 0 {
                entry.first_stale.get_or_insert(world.ts);
                entry.last_stale = Some(world.ts);
            }
            if was_promisc || i.promisc {
                entry.while_promisc.add(&delta);
            }
            entry.promisc_seen |= i.promisc;
            entry.iface = i.clone();
        }
        self.events.extend(world.events.iter().cloned());
        self.drop_source = Some(world.drop_source.clone());
    }

    pub fn reports(&self) -> u32 {
        self.reports
    }

    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// Every interface seen, in namespace, then report order of names.
    pub fn observed(&self) -> Vec<Observed> {
        self.observed.values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::topology::Role;

    fn world(t: u64, wrong: u64, promisc: bool) -> World {
        let mut br0 = Interface::new("br0".into(), 2, 7, Role::Bridge, None);
        br0.frames.total = wrong * 2;
        br0.frames.foreign_unicast = wrong;
        br0.frames.host_ip_wrong_mac = wrong;
        br0.promisc = promisc;
        World {
            ts: SystemTime::UNIX_EPOCH + Duration::from_secs(t),
            interfaces: vec![br0],
            events: Vec::new(),
            drop_source: Ok("tp_btf"),
            self_stats: None,
            evidence: None,
        }
    }

    #[test]
    fn first_and_last_growth_and_what_came_while_promiscuous() {
        let mut t = Timeline::default();
        t.add(&world(1, 0, false));
        t.add(&world(2, 3, false));
        t.add(&world(3, 3, true)); // became promiscuous, nothing new
        t.add(&world(4, 10, true));
        t.add(&world(5, 12, false)); // left during this interval
        t.add(&world(6, 20, false));
        let o = &t.observed()[0];
        assert_eq!(o.iface.frames.host_ip_wrong_mac, 20);
        assert_eq!(
            o.first_wrong,
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(2))
        );
        assert_eq!(
            o.last_wrong,
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(6))
        );
        assert_eq!(o.while_promisc.host_ip_wrong_mac, 7 + 2);
        assert!(o.promisc_seen);
        assert_eq!(t.reports(), 6);
    }
}
