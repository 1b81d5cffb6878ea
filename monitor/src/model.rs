//! The one model of the world the renderers read: every watched interface
//! with its identity, state, cumulative counts since attach and rates over
//! the last interval. Only the watch loop writes it.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant, SystemTime},
};

use monitor_common::{FrameCounters, egress::EgressCounters};

use crate::{
    classes::{self, Class},
    kernel::attach::Hook,
    mac::Mac,
    netlink::Link,
    topology::Role,
    tracker::Event,
    workload::Workload,
};

/// Per-second rates of each frame class over the last interval.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Rates([f64; classes::COUNT]);

impl Rates {
    pub fn get(&self, class: Class) -> f64 {
        self.0[class.index()]
    }

    pub fn set(&mut self, class: Class, rate: f64) {
        self.0[class.index()] = rate;
    }

    fn between(old: &FrameCounters, new: &FrameCounters, secs: f64) -> Self {
        let mut out = Self::default();
        if secs > 0.0 {
            for class in classes::all() {
                let frames = class.count(new).saturating_sub(class.count(old));
                out.set(class, frames as f64 / secs);
            }
        }
        out
    }
}

/// The top offenders' type is the flow reader's (`kernel::flows`), named
/// here too as part of the model.
pub use crate::kernel::flows::Flow;

#[derive(Clone, Debug)]
pub struct Interface {
    pub name: String,
    pub ifindex: u32,
    /// Inode number of the interface's network namespace.
    pub netns: u32,
    /// The namespace's name (under /run/netns, or as given to --netns);
    /// None for the namespace macdrop runs in.
    pub netns_name: Option<String>,
    pub role: Role,
    /// Master bridge name, for ports.
    pub master: Option<String>,
    pub mac: Option<Mac>,
    /// How a bridge got its MAC (sysfs `addr_assign_type`,
    /// `sysfs::NET_ADDR_*`), for the fleet's rules; None for other roles
    /// or when sysfs is another namespace's.
    pub addr_assign_type: Option<u8>,
    pub promisc: bool,
    /// How many holders asked for promiscuous mode (`IFLA_PROMISCUITY`).
    pub promiscuity: u32,
    /// Who they are, e.g. "promiscuity 2: bridge port, tcpdump (pid 4242)".
    pub promisc_holders: Option<String>,
    pub hook: Option<Hook>,
    /// `rx_otherhost_dropped` since macdrop attached; None where the kernel
    /// has no such counter.
    pub kernel_rx_otherhost_dropped: Option<u64>,
    /// Confirmed kernel drops on this interface since attach, by drop reason
    /// name; None when the drop layer is unavailable.
    pub drops: Option<BTreeMap<String, u64>>,
    /// Cumulative counts since macdrop attached.
    pub frames: FrameCounters,
    /// Frames that left the interface per source-MAC class, since the
    /// egress counter attached; None unless it is an uplink
    /// (`topology::uplinks`, `kernel::egress`).
    pub egress: Option<EgressCounters>,
    pub rates: Rates,
    /// The top offenders since attach, most frames first; None when flows
    /// are not tracked (`--top-flows 0`).
    pub flows: Option<Vec<Flow>>,
    /// The flow table records one mismatched frame in this many from now
    /// on (`session::flow_sampling`): 1 but under a flood; None when flows
    /// are not recorded.
    pub flow_sampling: Option<u32>,
    /// The interface disappeared; `frames` holds its final counts (kept
    /// for the retention window, `crate::retention`).
    pub gone: bool,
    /// Earlier instances of the same series (same namespace, name and
    /// role: a device re-created under the same name) that expired while
    /// this one stayed, their counts summed: the metrics add them, so a
    /// series' counters never go down (`Interface::inherit`).
    pub earlier: Option<Box<Interface>>,
    /// What owns the namespace at the other end of a veth (`workload`);
    /// None when unknown or not a veth with a peer elsewhere.
    pub workload: Option<Workload>,
    sampled_at: Option<Instant>,
    otherhost_at_attach: Option<u64>,
    /// When it went (`mark_gone`).
    gone_since: Option<Instant>,
    /// A report showed it gone: from now on its retention may end.
    shown_gone: bool,
}

impl Interface {
    pub fn new(name: String, ifindex: u32, netns: u32, role: Role, master: Option<String>) -> Self {
        Self {
            name,
            ifindex,
            netns,
            netns_name: None,
            role,
            master,
            mac: None,
            addr_assign_type: None,
            promisc: false,
            promiscuity: 0,
            promisc_holders: None,
            hook: None,
            kernel_rx_otherhost_dropped: None,
            drops: None,
            frames: FrameCounters::default(),
            egress: None,
            rates: Rates::default(),
            flows: None,
            flow_sampling: None,
            gone: false,
            earlier: None,
            workload: None,
            sampled_at: None,
            otherhost_at_attach: None,
            gone_since: None,
            shown_gone: false,
        }
    }

    pub fn in_namespace(mut self, name: Option<String>) -> Self {
        self.netns_name = name;
        self
    }

    /// Copies what the kernel says about the link now: MAC, promiscuity,
    /// and the otherhost counter (as a delta from its value at the first
    /// observation, i.e. at attach).
    pub fn observe_link(&mut self, link: &Link) {
        self.mac = link.mac;
        self.promisc = link.promisc;
        self.promiscuity = link.promiscuity;
        if let Some(now) = link.rx_otherhost_dropped {
            self.observe_otherhost(now);
        }
    }

    /// Takes the kernel's cumulative `rx_otherhost_dropped` (from a link
    /// dump or the per-interval statistics read).
    pub fn observe_otherhost(&mut self, now: u64) {
        let base = *self.otherhost_at_attach.get_or_insert(now);
        self.kernel_rx_otherhost_dropped = Some(now.saturating_sub(base));
    }

    /// Records a new cumulative sample taken at `at`.
    pub fn sample(&mut self, frames: FrameCounters, at: Instant) {
        if let Some(prev) = self.sampled_at {
            let secs = at.saturating_duration_since(prev).as_secs_f64();
            self.rates = Rates::between(&self.frames, &frames, secs);
        }
        self.frames = frames;
        self.sampled_at = Some(at);
    }

    /// The interface vanished at `at`: keep its counts, stop its rates.
    /// Marking it again (its whole namespace went later) changes nothing.
    pub fn mark_gone(&mut self, at: Instant) {
        if self.gone {
            return;
        }
        self.gone = true;
        self.gone_since = Some(at);
        self.rates = Rates::default();
    }

    /// A report includes it: if it is gone, its final counts have now been
    /// shown, and its retention may end.
    pub fn mark_shown(&mut self) {
        self.shown_gone |= self.gone;
    }

    /// Whether its retention ended at `now`: gone for at least `retention`
    /// and shown gone in a report before (so every gone interface appears
    /// in at least one report with its final counts, whatever the window).
    pub fn expired(&self, retention: Duration, now: Instant) -> bool {
        self.shown_gone
            && self
                .gone_since
                .is_some_and(|at| now.saturating_duration_since(at) >= retention)
    }

    /// What identifies its metric series: instances that share it are
    /// summed there.
    pub fn series_key(&self) -> (u32, &str, Role) {
        (self.netns, self.name.as_str(), self.role)
    }

    /// Takes on the counts of `expired`, an earlier instance of the same
    /// series that leaves the report while this one stays, with those it
    /// carried itself.
    pub fn inherit(&mut self, expired: &mut Interface) {
        let carried = self.earlier.get_or_insert_with(|| {
            let mut c = Interface::new(
                expired.name.clone(),
                expired.ifindex,
                expired.netns,
                expired.role,
                expired.master.clone(),
            );
            c.gone = true;
            Box::new(c)
        });
        if let Some(older) = expired.earlier.take() {
            carried.absorb(&older);
        }
        carried.absorb(expired);
    }

    /// Adds `other`'s counts (frames, confirmed drops, the otherhost
    /// counter) into this one's.
    fn absorb(&mut self, other: &Interface) {
        self.frames.add(&other.frames);
        if let Some(e) = &other.egress {
            self.egress.get_or_insert_with(Default::default).add(e);
        }
        if let Some(drops) = &other.drops {
            let into = self.drops.get_or_insert_with(BTreeMap::new);
            for (reason, n) in drops {
                *into.entry(reason.clone()).or_default() += n;
            }
        }
        if let Some(n) = other.kernel_rx_otherhost_dropped {
            *self.kernel_rx_otherhost_dropped.get_or_insert(0) += n;
        }
        // The metrics show `pkt_type` counts for a series some instance of
        // which ran at tc.
        if !matches!(self.hook, Some(Hook::Tcx | Hook::TcClsact)) {
            self.hook = other.hook;
        }
    }
}

/// One report: the time it describes, every interface, and the events
/// (promiscuous transitions, MAC changes) seen since the previous report.
#[derive(Clone, Debug)]
pub struct World {
    pub ts: SystemTime,
    pub interfaces: Vec<Interface>,
    pub events: Vec<Event>,
    /// Where confirmed drops come from ("tp_btf", "raw_tracepoint"), or why
    /// they are unavailable.
    pub drop_source: Result<&'static str, String>,
    /// With `--self-stats`: macdrop's programs' runs and run time, by
    /// program name, since they were loaded.
    pub self_stats: Option<BTreeMap<String, crate::kernel::self_stats::ProgramStats>>,
    /// With `--pcap`: what was captured so far.
    pub evidence: Option<crate::evidence::Summary>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_per_second_deltas() {
        let mut i = Interface::new("p1".into(), 3, 1, Role::Port, Some("br0".into()));
        let t0 = Instant::now();
        i.sample(
            FrameCounters {
                total: 10,
                own: 10,
                ..Default::default()
            },
            t0,
        );
        assert_eq!(i.rates, Rates::default(), "no rate from a single sample");
        i.sample(
            FrameCounters {
                total: 30,
                own: 10,
                foreign_unicast: 20,
                host_ip_wrong_mac: 5,
                ..Default::default()
            },
            t0 + Duration::from_secs(2),
        );
        assert_eq!(i.rates.get(Class::Total), 10.0);
        assert_eq!(i.rates.get(Class::Own), 0.0);
        assert_eq!(i.rates.get(Class::ForeignUnicast), 10.0);
        assert_eq!(i.rates.get(Class::HostIpWrongMac), 2.5);
        assert_eq!(i.frames.total, 30);
        i.mark_gone(t0 + Duration::from_secs(3));
        assert!(i.gone);
        assert_eq!(i.frames.total, 30, "counts survive the interface");
    }
}
