//! One network namespace under watch: its netlink sockets, its instance of
//! the eBPF object, the interfaces it follows (attaching new ones as they
//! appear, keeping the final counts of those that go), and the events seen
//! there. The watch loop drives one session per namespace.
//!
//! Its parts, one file each: `members` (following the namespace: which
//! interfaces, attached how, retired with their final counts), `handoff`
//! (the two-step start from generic XDP to TCX), `evidence` (`--pcap`),
//! `flow_sampling` (flow records under a flood), `slots` (counter slots)
//! and `summary` (what it tells the user).

mod evidence;
mod flow_sampling;
mod handoff;
mod members;
mod slots;
mod summary;

pub use slots::SlotPool;

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    time::{Duration, Instant, SystemTime},
};

use aya::Ebpf;
use monitor_common::{IF_HANDOFF, IF_TC_MUTED, MAX_INTERFACES};

use crate::{
    evidence::Receiver,
    fdb_moves::FdbMoves,
    kernel::{
        attach::{AttachMode, Attacher, Hook},
        config,
        config::ConfigMaps,
        counters::CounterReader,
        drops::{DropCounts, DropHook, DropLayer, DropMaps, SlotOwners},
        egress::EgressCounter,
        evidence::{Counts, EvidenceRing},
        flows::{self, FlowReader},
        klog::KernelLogReader,
        loader, tc,
    },
    model::Interface,
    netlink::{Change, Link, NetState, Netlink, Notifications, NsidLookup},
    netns::Namespace,
    promisc,
    topology::{self, Role, Selection, Watched},
    tracker::{Event, EventKind, Tracker},
};

/// One interface the session has watched, present or gone.
struct Member {
    watched: Watched,
    /// Counter slot while present; returned to the pool once gone (the
    /// final counts live on in `model`).
    slot: Option<u32>,
    model: Interface,
    /// No hook could be attached; not retried while the device exists.
    failed: bool,
}

/// The attached kfree_skb counter.
struct Drops {
    /// Shared by the sessions started together (`loader::Batch`).
    layer: std::rc::Rc<DropLayer>,
    maps: DropMaps,
    hook: DropHook,
}

impl Drops {
    /// Every interface's drops; `extra`: a slot just taken from a member
    /// that is being retired, still to be read under its ifindex.
    fn read(
        &mut self,
        netns: u32,
        members: &[Member],
        extra: Option<(u32, u32)>,
    ) -> anyhow::Result<DropCounts> {
        let mut owner: Vec<Option<u32>> = Vec::new();
        for (slot, ifindex) in members
            .iter()
            .filter_map(|m| Some((m.slot?, m.watched.ifindex)))
            .chain(extra)
        {
            let slot = slot as usize;
            if owner.len() <= slot {
                owner.resize(slot + 1, None);
            }
            owner[slot] = Some(ifindex);
        }
        let owners = SlotOwners {
            netns,
            end: owner.len() as u32,
            ifindex: &|slot| owner.get(slot as usize).copied().flatten(),
        };
        self.layer.read(&mut self.maps, &owners)
    }
}

pub struct Session {
    pub ns: Namespace,
    netlink: Netlink,
    /// Handed to the watch loop, which multiplexes all sessions' streams.
    notifications: Option<Notifications>,
    selection: Selection,
    ebpf: Ebpf,
    config: ConfigMaps,
    counters: CounterReader,
    /// Source-MAC classes of the frames leaving uplinks
    /// (`kernel::egress`), attached only where there are uplinks.
    egress: EgressCounter,
    flows: FlowReader,
    /// The kernel programs' log (`--kernel-log`), drained into `notes` on
    /// every report.
    kernel_log: Option<KernelLogReader>,
    /// Top offenders kept per interface (`--top-flows`); 0: none recorded.
    top_flows: usize,
    attacher: Attacher,
    slots: SlotPool,
    members: Vec<Member>,
    /// ifindex -> index in `members` of the member holding a slot there:
    /// following a namespace of 1,000 interfaces stays linear.
    present: HashMap<u32, usize>,
    /// A notification said the namespace changed since it was last read.
    stale: bool,
    /// Links deleted since the namespace was last read: a member there is
    /// gone even if the read finds a device of the same name at its
    /// ifindex (deleted and re-created in between).
    deleted: HashSet<u32>,
    tracker: Tracker,
    /// Stations re-learned on another bridge port (`crate::fdb_moves`).
    fdb_moves: FdbMoves,
    /// Events not yet reported.
    events: Vec<Event>,
    /// Lines for stderr not yet printed (fallbacks, full maps).
    notes: Vec<String>,
    drops: Result<Drops, String>,
    /// `--pcap`: the evidence ring buffer and its budget.
    evidence: Option<EvidenceRing>,
    /// The initial attach is done: later failures are per interface.
    started: bool,
    /// The two-step start's thread, while interfaces move from generic XDP
    /// to TCX (`crate::session::handoff`).
    handoff: Option<handoff::Worker>,
    /// The interfaces still on generic XDP waiting for their TCX link.
    moving: HashSet<u32>,
    /// Watched veths with a peer in another namespace: ifindex -> the
    /// peer namespace's id here (as of the last read).
    peers: BTreeMap<u32, crate::workload::Peer>,
}

impl Session {
    /// Resolves the selection in `ns` (errors name what is wrong), loads
    /// the object, configures the maps and attaches. `notifications` are
    /// subscribed first so no change between the first read and the
    /// attach is missed. `top_flows`: top offenders per interface (0: the
    /// kernel records no flows). With `capture` (`--pcap`), the kernel may
    /// capture that many mismatched frames. The object is loaded through
    /// `batch`, which the sessions started together share (`ns` must be one
    /// of its namespaces).
    pub async fn start(
        ns: Namespace,
        selection: Selection,
        mode: AttachMode,
        top_flows: usize,
        capture: Option<u64>,
        batch: &mut loader::Batch<'_>,
    ) -> anyhow::Result<Self> {
        // The previous session's load left dirty free heap behind; the two
        // netlink connections' long-lived buffers (netlink-proto's 64 KiB
        // reader and 8 KiB writer each, of which a datagram touches a page
        // or two) would be carved from it and stay resident whole. Trimmed
        // first, their untouched pages are never faulted in (`heap`).
        crate::heap::trim();
        let (netlink, notifications) = {
            let _inside = ns.enter()?;
            (Netlink::connect()?, Notifications::subscribe()?)
        };
        let state = netlink.read_state().await?;
        let initial = topology::select(&state, &selection)?;
        // A macdrop killed with SIGKILL on a kernel without TCX leaves its
        // clsact filter (and qdisc) behind: remove them before attaching,
        // but only once the selection is known to be valid (a mistyped
        // flag changes nothing), and only those whose owner is provably
        // gone (`kernel::tc::owner`).
        let leftovers = {
            let _inside = ns.enter()?;
            let ifindexes: Vec<u32> = state.links.iter().map(|l| l.ifindex).collect();
            tc::cleanup_leftovers(&ifindexes)?
        };

        // A kernel without BTF still gets the frame classes.
        let layer = batch.drop_layer();
        let own = Namespace::current().is_ok_and(|own| own.inode == ns.inode);
        let highest = state.links.iter().map(|l| l.ifindex).max().unwrap_or(0);
        let direct = loader::ifindex_direct(own, highest);
        let mut ebpf = batch.load(ns.inode, capture.is_some(), direct)?;
        let config = ConfigMaps::take(&mut ebpf)?;
        let evidence = match capture {
            Some(budget) => Some(EvidenceRing::take(&mut ebpf, budget)?),
            None => None,
        };
        let counters = CounterReader::take(&mut ebpf)?;
        let egress = EgressCounter::take(&mut ebpf)?;
        let flows = FlowReader::take(&mut ebpf)?;
        let kernel_log = KernelLogReader::take(&mut ebpf, ns.name.as_deref().unwrap_or_default())?;
        let attacher = Attacher::new(&mut ebpf, mode)?;
        let mut session = Self {
            tracker: Tracker::new(&state),
            ns,
            netlink,
            notifications: Some(notifications),
            selection,
            ebpf,
            config,
            counters,
            egress,
            flows,
            kernel_log,
            top_flows,
            attacher,
            slots: SlotPool::new(MAX_INTERFACES),
            members: Vec::new(),
            present: HashMap::new(),
            stale: false,
            deleted: HashSet::new(),
            fdb_moves: FdbMoves::default(),
            events: Vec::new(),
            notes: leftovers,
            drops: Err("not attached yet".into()),
            evidence,
            started: false,
            handoff: None,
            moving: HashSet::new(),
            peers: BTreeMap::new(),
        };
        if let Err(e) = session.follow(&state, initial) {
            session.detach_all();
            return Err(e);
        }
        session.drops = layer.and_then(|layer| {
            let hook = layer.attach(&mut session.ebpf, batch.kernel_btf())?;
            let maps = DropMaps::take(&mut session.ebpf).map_err(|e| format!("{e:#}"))?;
            Ok(Drops { layer, maps, hook })
        });
        session.started = true;
        Ok(session)
    }

    /// Re-reads the namespace and follows it: new interfaces of the
    /// selection are attached, vanished ones marked gone, and the kernel's
    /// configuration (MACs, FDB, addresses) brought up to date.
    pub async fn refresh(&mut self) -> anyhow::Result<()> {
        self.stale = false;
        let state = self.netlink.read_state().await?;
        let wanted = topology::select_present(&state, &self.selection);
        self.follow(&state, wanted)
    }

    /// Whether a notification since the last `refresh` said the namespace
    /// changed.
    pub fn is_stale(&self) -> bool {
        self.stale
    }

    /// The per-interval read when nothing changed: only the kernel's
    /// `rx_otherhost_dropped` of the watched links (MACs, promiscuity and
    /// membership come with the notifications and the refresh they cause).
    /// Not of bridge ports: their frames reach the IP layer as the
    /// bridge's, so the counter stays 0 there (`kernel_behaviour` pins
    /// it), and the statistics of a bridge's 1,000 ports were most of the
    /// read; theirs come with every refresh (at least every 30 s, `RESYNC`).
    pub async fn poll(&mut self) -> anyhow::Result<()> {
        let wanted: Vec<u32> = self
            .present
            .values()
            .map(|&i| &self.members[i].watched)
            .filter(|w| w.role != Role::Port)
            .map(|w| w.ifindex)
            .collect();
        let otherhost = self.netlink.read_otherhost(&wanted).await?;
        for &i in self.present.values() {
            let m = &mut self.members[i];
            if let Some(&now) = otherhost.get(&m.watched.ifindex) {
                m.model.observe_otherhost(now);
            }
        }
        Ok(())
    }

    /// The namespace's rtnetlink notifications, for the watch loop to
    /// forward (once).
    pub fn take_notifications(&mut self) -> Option<Notifications> {
        self.notifications.take()
    }

    /// Takes one notification into account (link changes may be
    /// transitions between two dumps).
    pub fn notice(&mut self, change: &Change) {
        match change {
            Change::Link(link) => self.observe(link),
            Change::FdbLearned(l) => self.fdb_moves.learned(l, SystemTime::now()),
            Change::FdbForgotten(l) => self.fdb_moves.forgotten(l),
            Change::LinkGone(ifindex) => {
                self.fdb_moves.forget_link(*ifindex);
                self.tracker.forget(*ifindex);
                self.deleted.insert(*ifindex);
            }
            Change::Other | Change::Irrelevant => {}
        }
        self.stale |= change.needs_reread();
    }

    /// Feeds one link observation to the tracker; keeps the events that
    /// concern watched interfaces.
    pub fn observe(&mut self, link: &Link) {
        let events = self.tracker.observe(link, SystemTime::now());
        let present = &self.present;
        self.events.extend(
            events
                .into_iter()
                .filter(|e| present.contains_key(&e.ifindex)),
        );
    }

    /// Samples the counters: the interfaces for a report. Gone ones are
    /// then shown gone, and their retention may end.
    pub fn collect(&mut self) -> anyhow::Result<Vec<Interface>> {
        if let Some(log) = &mut self.kernel_log {
            self.notes.extend(log.drain());
        }
        let now = Instant::now();
        let drops = match &mut self.drops {
            Ok(d) => Some(d.read(self.ns.inode, &self.members, None)?),
            Err(_) => None,
        };
        // One walk of the flow map for every interface.
        let mut flows = if self.top_flows > 0 {
            Some(self.flows.read()?)
        } else {
            None
        };
        // Every slot in use in a few batch reads, handed to its member.
        let mut member_of = vec![usize::MAX; self.slots.end() as usize];
        for (i, m) in self.members.iter().enumerate() {
            if let Some(slot) = m.slot {
                member_of[slot as usize] = i;
            }
        }
        let members = &mut self.members;
        self.counters.read_each(self.slots.end(), |slot, frames| {
            if let Some(m) = member_of
                .get(slot as usize)
                .and_then(|&i| members.get_mut(i))
            {
                m.model.sample(*frames, now);
            }
        })?;
        for m in &mut self.members {
            if let Some(slot) = m.slot {
                // An uplink that stops being one keeps its last counts.
                if let Some(egress) = self.egress.read(m.watched.ifindex)? {
                    m.model.egress = Some(egress);
                }
                if let Some(all) = &mut flows {
                    let mine = all.remove(&slot).unwrap_or_default();
                    m.model.flows = Some(flows::top(mine, self.top_flows));
                    // The sampling for the next interval, from this one's rate.
                    let ifindex = m.watched.ifindex;
                    let now = self.config.flow_sample(ifindex);
                    let next =
                        flow_sampling::next_mask(now, flow_sampling::mismatched_rate(&m.model));
                    if next != now {
                        self.config.set_flow_sample(ifindex, next)?;
                    }
                    m.model.flow_sampling = Some(next + 1);
                }
            }
            // Gone interfaces keep what `retire` read last.
            if let Some(drops) = &drops
                && m.slot.is_some()
            {
                let key = (self.ns.inode, m.model.ifindex);
                m.model.drops = Some(drops.get(&key).cloned().unwrap_or_default());
            }
        }
        let report = self.members.iter().map(|m| m.model.clone()).collect();
        for m in &mut self.members {
            m.model.mark_shown();
        }
        Ok(report)
    }

    /// Forgets the members whose retention ended at `now`
    /// (`crate::retention`); their `expired` events go with the next
    /// report. Only their final counts were left: the kernel let go of
    /// everything else when they went (`retire`).
    pub fn expire(&mut self, retention: Duration, now: Instant) {
        let expired = crate::retention::expire(&mut self.members, |m| &mut m.model, retention, now);
        if expired.is_empty() {
            return;
        }
        self.events.extend(expired);
        self.present = self
            .members
            .iter()
            .enumerate()
            .filter(|(_, m)| m.slot.is_some())
            .map(|(i, m)| (m.watched.ifindex, i))
            .collect();
    }

    /// What `workload` needs to name the owners of this namespace's veth
    /// peers: the nsid lookup of its netlink socket and the ports.
    pub fn peers(&self) -> (NsidLookup, BTreeMap<u32, crate::workload::Peer>) {
        (self.netlink.nsid_lookup(), self.peers.clone())
    }

    /// Takes the owners `workload` found for the present interfaces; a
    /// gone one keeps the last it had.
    pub fn apply_workloads(&mut self, find: impl Fn(u32) -> Option<crate::workload::Workload>) {
        for m in self.members.iter_mut().filter(|m| m.slot.is_some()) {
            if let Some(w) = find(m.model.ifindex) {
                m.model.workload = Some(w);
            } else if !self.peers.contains_key(&m.model.ifindex) {
                m.model.workload = None;
            }
        }
    }

    pub fn take_events(&mut self) -> Vec<Event> {
        self.fdb_move_events();
        std::mem::take(&mut self.events)
    }

    /// The moves since the last report, one event per MAC on its bridge,
    /// kept when the bridge or one of the ports is watched.
    fn fdb_move_events(&mut self) {
        for m in self.fdb_moves.drain() {
            let watched = std::iter::once(&m.bridge)
                .chain(&m.ports)
                .any(|i| self.present.contains_key(i));
            let name = |i: u32| {
                self.tracker
                    .name(i)
                    .map_or_else(|| format!("ifindex {i}"), str::to_owned)
            };
            if !watched {
                continue;
            }
            self.events.push(Event {
                ts: m.last,
                ifname: name(m.bridge),
                ifindex: m.bridge,
                kind: EventKind::FdbMoved {
                    mac: m.mac,
                    vid: m.vid,
                    moves: m.moves,
                    ports: m.ports.iter().map(|&p| name(p)).collect(),
                },
            });
        }
    }

    pub fn take_notes(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notes)
    }

    pub fn detach_all(&mut self) {
        // The hand-off's thread first: what it attached and nobody took
        // detaches as it drops.
        if let Some(mut worker) = self.handoff.take() {
            drop(worker.stop());
        }
        self.moving.clear();
        self.egress.detach_all();
        if let Ok(_inside) = self.ns.enter() {
            self.attacher.detach_all(&mut self.ebpf);
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.detach_all();
    }
}
