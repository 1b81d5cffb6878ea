//! One network namespace under watch: its netlink sockets, its instance of
//! the eBPF object, the interfaces it follows (attaching new ones as they
//! appear, keeping the final counts of those that go), and the events seen
//! there. The watch loop drives one session per namespace.

use std::{
    collections::{HashMap, HashSet},
    time::{Instant, SystemTime},
};

use aya::Ebpf;
use monitor_common::{IF_HANDOFF, IF_TC_MUTED, MAX_INTERFACES};

use crate::{
    evidence::Receiver,
    handoff,
    kernel::{
        attach::{AttachMode, Attacher, Hook},
        config,
        config::ConfigMaps,
        counters::CounterReader,
        drops::{DropHook, DropLayer, DropMap},
        evidence::{Counts, EvidenceRing},
        flows::{self, FlowReader},
        loader, tc,
    },
    model::Interface,
    netlink::{Change, Link, NetState, Netlink, Notifications},
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

/// Counter slots: a fixed kernel array, recycled as interfaces come and go.
#[derive(Debug)]
pub struct SlotPool {
    next: u32,
    free: Vec<u32>,
    capacity: u32,
}

impl SlotPool {
    pub fn new(capacity: u32) -> Self {
        Self {
            next: 0,
            free: Vec::new(),
            capacity,
        }
    }

    pub fn take(&mut self) -> Option<u32> {
        if let Some(slot) = self.free.pop() {
            return Some(slot);
        }
        (self.next < self.capacity).then(|| {
            self.next += 1;
            self.next - 1
        })
    }

    pub fn give_back(&mut self, slot: u32) {
        self.free.push(slot);
    }
}

/// The attached kfree_skb counter.
struct Drops {
    layer: DropLayer,
    map: DropMap,
    hook: DropHook,
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
    flows: FlowReader,
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
    tracker: Tracker,
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
    /// to TCX (`crate::handoff`).
    handoff: Option<handoff::Worker>,
    /// The interfaces still on generic XDP waiting for their TCX link.
    moving: HashSet<u32>,
}

impl Session {
    /// Resolves the selection in `ns` (errors name what is wrong), loads
    /// the object, configures the maps and attaches. `notifications` are
    /// subscribed first so no change between the first read and the
    /// attach is missed. `top_flows`: top offenders per interface (0: the
    /// kernel records no flows). With `capture` (`--pcap`), the kernel may
    /// capture that many mismatched frames.
    pub async fn start(
        ns: Namespace,
        selection: Selection,
        mode: AttachMode,
        top_flows: usize,
        capture: Option<u64>,
    ) -> anyhow::Result<Self> {
        let (netlink, notifications) = {
            let _inside = ns.enter()?;
            (Netlink::connect()?, Notifications::subscribe()?)
        };
        let state = netlink.read_state().await?;
        // A macdrop killed with SIGKILL on a kernel without TCX leaves its
        // clsact filter (and qdisc) behind: remove them before anything.
        let leftovers = {
            let _inside = ns.enter()?;
            let ifindexes: Vec<u32> = state.links.iter().map(|l| l.ifindex).collect();
            tc::cleanup_leftovers(&ifindexes)?
        };
        let initial = topology::select(&state, &selection)?;

        // BTF tells the drop program where to find skb->dev and friends; a
        // kernel without it still gets the frame classes.
        let layer = DropLayer::prepare();
        let globals = layer
            .as_ref()
            .map(|l| l.globals().to_vec())
            .unwrap_or_default();
        let mut ebpf = loader::load_with(ns.inode, &globals, capture.is_some())?;
        // aya parsed the kernel's BTF for the load and freed it.
        crate::heap::trim();
        let config = ConfigMaps::take(&mut ebpf)?;
        let evidence = match capture {
            Some(budget) => Some(EvidenceRing::take(&mut ebpf, budget)?),
            None => None,
        };
        let counters = CounterReader::take(&mut ebpf)?;
        let flows = FlowReader::take(&mut ebpf)?;
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
            flows,
            top_flows,
            attacher,
            slots: SlotPool::new(MAX_INTERFACES),
            members: Vec::new(),
            present: HashMap::new(),
            stale: false,
            events: Vec::new(),
            notes: leftovers,
            drops: Err("not attached yet".into()),
            evidence,
            started: false,
            handoff: None,
            moving: HashSet::new(),
        };
        if let Err(e) = session.follow(&state, initial) {
            session.detach_all();
            return Err(e);
        }
        session.drops = layer.and_then(|layer| {
            let hook = layer.attach(&mut session.ebpf)?;
            let map = DropLayer::take_map(&mut session.ebpf).map_err(|e| format!("{e:#}"))?;
            Ok(Drops { layer, map, hook })
        });
        // The tp_btf attach parsed the kernel's BTF once more.
        crate::heap::trim();
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
    pub async fn poll(&mut self) -> anyhow::Result<()> {
        let otherhost = self.netlink.read_otherhost().await?;
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
        if let Change::Link(link) = change {
            self.observe(link);
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

    fn follow(&mut self, state: &NetState, wanted: Vec<Watched>) -> anyhow::Result<()> {
        for link in &state.links {
            self.observe(link);
        }
        // Gone: no longer present under the same name (an ifindex may be
        // reused by a new device), or no longer selected (a port that left
        // its bridge).
        let mut leaving: Vec<(usize, bool)> = {
            let wanted: HashMap<u32, &Watched> = wanted.iter().map(|w| (w.ifindex, w)).collect();
            self.present
                .values()
                .filter_map(|&i| {
                    let m = &self.members[i].watched;
                    let present = state.link(m.ifindex).is_some_and(|l| l.name == m.name);
                    let still_wanted = wanted.get(&m.ifindex).is_some_and(|w| same(w, m));
                    (!(present && still_wanted)).then_some((i, present))
                })
                .collect()
        };
        leaving.sort_unstable();
        for (i, present) in leaving {
            self.retire(i, present);
        }
        // New: configure first, so the very first frame is classified
        // right, then attach (ports before bridges: `wanted` is ordered).
        let new: Vec<Watched> = {
            let known: HashSet<(u32, &str, Role)> = self
                .members
                .iter()
                .filter(|m| m.slot.is_some() || m.failed)
                .map(|m| key(&m.watched))
                .collect();
            wanted
                .into_iter()
                .filter(|w| !known.contains(&key(w)))
                .collect()
        };
        let mut added = Vec::new();
        for w in new {
            let Some(slot) = self.slots.take() else {
                self.notes.push(format!(
                    "cannot watch {}: all {MAX_INTERFACES} counter slots of macdrop's kernel maps \
                     are in use; watch fewer interfaces with --bridge/--iface",
                    w.name
                ));
                continue;
            };
            self.counters.clear(slot)?;
            self.flows.clear(slot)?;
            let model = Interface::new(
                w.name.clone(),
                w.ifindex,
                self.ns.inode,
                w.role,
                w.master().map(str::to_owned),
            )
            .in_namespace(self.ns.name.clone());
            self.present.insert(w.ifindex, self.members.len());
            self.members.push(Member {
                watched: w,
                slot: Some(slot),
                model,
                failed: false,
            });
            added.push(self.members.len() - 1);
        }
        self.sync_config(state)?;
        let kinds: Vec<(usize, Option<String>)> = added
            .into_iter()
            .map(|i| {
                let kind = state
                    .link(self.members[i].watched.ifindex)
                    .and_then(|l| l.kind.clone());
                (i, kind)
            })
            .collect();
        // The initial batch: many TCX attaches at once start on generic
        // XDP and move in the background (`crate::handoff`); later
        // interfaces, and small batches, go to their hook directly.
        let tcx_first: HashSet<usize> = kinds
            .iter()
            .filter(|(i, kind)| {
                self.attacher
                    .first_hook(&self.members[*i].watched, kind.as_deref())
                    == Hook::Tcx
            })
            .map(|(i, _)| *i)
            .collect();
        let two_step = !self.started && tcx_first.len() > handoff::MIN_BATCH;
        let mut first_on_xdp = Vec::new();
        for (i, kind) in kinds {
            if two_step && tcx_first.contains(&i) && self.attach_xdp_generic(i)? {
                first_on_xdp.push(self.members[i].watched.ifindex);
                continue;
            }
            self.attach(i, kind.as_deref())?;
        }
        if !first_on_xdp.is_empty() {
            self.start_handoff(first_on_xdp)?;
        }
        self.refresh_identity(state);
        Ok(())
    }

    /// The hand-off's first hook on member `i`. False if generic XDP cannot
    /// be attached there (another tool's XDP program, or its bridge's): the
    /// caller attaches it the normal way.
    fn attach_xdp_generic(&mut self, i: usize) -> anyhow::Result<bool> {
        let w = self.members[i].watched.clone();
        let attached = {
            let _inside = self.ns.enter()?;
            self.attacher.attach_xdp_generic(&mut self.ebpf, w.ifindex)
        };
        if attached.is_err() {
            return Ok(false);
        }
        self.members[i].model.hook = Some(Hook::XdpGeneric);
        self.events.push(Event {
            ts: SystemTime::now(),
            ifname: w.name,
            ifindex: w.ifindex,
            kind: EventKind::Attached {
                hook: Hook::XdpGeneric.as_str(),
            },
        });
        Ok(true)
    }

    /// Mutes tc on the interfaces now on generic XDP (step 1 of
    /// `crate::handoff`), then starts the thread creating their TCX links.
    fn start_handoff(&mut self, ifindexes: Vec<u32>) -> anyhow::Result<()> {
        for &ifindex in &ifindexes {
            self.config.set_handoff(ifindex, IF_TC_MUTED)?;
        }
        let prog = self.attacher.tc_program_fd(&mut self.ebpf)?;
        self.moving = ifindexes.iter().copied().collect();
        self.handoff = Some(handoff::Worker::spawn(&self.ns, prog, ifindexes)?);
        Ok(())
    }

    /// Whether interfaces are still moving from generic XDP to TCX.
    pub fn handing_off(&self) -> bool {
        self.handoff.is_some()
    }

    /// Takes the TCX links the hand-off's thread created since the last
    /// call and moves their interfaces to them (steps 2-4 of
    /// `crate::handoff`); quick: two RCU grace periods per call, whatever
    /// the number of interfaces. Called on every tick while
    /// `handing_off`.
    pub fn advance_handoff(&mut self) -> anyhow::Result<()> {
        let Some(worker) = &mut self.handoff else {
            return Ok(());
        };
        let finished = worker.finished();
        let arrived = worker.take();
        let mut ready = Vec::new();
        for (ifindex, result) in arrived {
            // Not moving any more: the interface left meanwhile (the link,
            // if any, detaches as it drops).
            if !self.moving.remove(&ifindex) {
                continue;
            }
            match result {
                Ok(link) => ready.push((ifindex, link)),
                Err(e) => {
                    // It stays on generic XDP, which counts it.
                    self.config.set_handoff(ifindex, 0)?;
                    if let Some(m) = self.member_at(ifindex) {
                        let name = m.watched.name.clone();
                        self.notes.push(format!(
                            "{name}: cannot move to tcx ({e:#}); watching through xdp-generic"
                        ));
                    }
                }
            }
        }
        if !ready.is_empty() {
            self.take_over(ready)?;
        }
        if finished && self.moving.is_empty() {
            self.handoff = None;
        }
        Ok(())
    }

    fn take_over(&mut self, ready: Vec<(u32, tc::TcAttachment)>) -> anyhow::Result<()> {
        for (ifindex, _) in &ready {
            self.config
                .set_handoff(*ifindex, IF_HANDOFF | IF_TC_MUTED)?;
        }
        if let Err(e) = handoff::grace_period() {
            // Without a grace period the marks cannot be trusted: the
            // muted TCX links go (dropped), generic XDP keeps counting.
            for (ifindex, _) in &ready {
                self.config.set_handoff(*ifindex, 0)?;
            }
            self.notes.push(format!(
                "cannot wait for an RCU grace period (membarrier: {e}); {} interface(s) stay on                  xdp-generic",
                ready.len()
            ));
            return Ok(());
        }
        let mut moved = Vec::new();
        for (ifindex, link) in ready {
            self.config.set_handoff(ifindex, IF_HANDOFF)?;
            // Detaching needs no namespace: both links are file descriptors.
            match self.attacher.take_over(ifindex, link) {
                Ok(()) => moved.push(ifindex),
                Err(link) => {
                    drop(link);
                    self.config.set_handoff(ifindex, 0)?;
                }
            }
        }
        // No XDP run is in flight after this; if it fails, the bit stays
        // (tc still counts every frame without a mark, as it must).
        if handoff::grace_period().is_ok() {
            for &ifindex in &moved {
                self.config.set_handoff(ifindex, 0)?;
            }
        }
        let now = SystemTime::now();
        for ifindex in moved {
            let Some(&i) = self.present.get(&ifindex) else {
                continue;
            };
            let to = self.attacher.hook(ifindex).unwrap_or(Hook::Tcx);
            let m = &mut self.members[i];
            m.model.hook = Some(to);
            self.events.push(Event {
                ts: now,
                ifname: m.watched.name.clone(),
                ifindex,
                kind: EventKind::HookChanged {
                    from: Hook::XdpGeneric.as_str(),
                    to: to.as_str(),
                },
            });
        }
        Ok(())
    }

    fn member_at(&self, ifindex: u32) -> Option<&Member> {
        self.present.get(&ifindex).map(|&i| &self.members[i])
    }

    fn attach(&mut self, i: usize, kind: Option<&str>) -> anyhow::Result<()> {
        let w = self.members[i].watched.clone();
        let attached = {
            let _inside = self.ns.enter()?;
            self.attacher.attach(&mut self.ebpf, &w, kind)
        };
        match attached {
            Ok(outcome) => {
                if let Some(note) = outcome.note {
                    self.notes.push(note);
                }
                self.members[i].model.hook = Some(outcome.hook);
                self.events.push(Event {
                    ts: SystemTime::now(),
                    ifname: w.name.clone(),
                    ifindex: w.ifindex,
                    kind: EventKind::Attached {
                        hook: outcome.hook.as_str(),
                    },
                });
                Ok(())
            }
            // An interface that vanished between the dump and the attach
            // is not an error: it is gone.
            Err(_) if !self.still_exists(w.ifindex) => {
                self.retire(i, false);
                Ok(())
            }
            // After start, one interface that cannot be watched must not
            // stop the monitor of all the others: say so and go on.
            Err(e) if self.started => {
                self.notes.push(format!("cannot watch {}: {e:#}", w.name));
                if let Some(slot) = self.members[i].slot.take() {
                    self.slots.give_back(slot);
                    self.present.remove(&w.ifindex);
                }
                self.members[i].failed = true;
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    fn still_exists(&self, ifindex: u32) -> bool {
        let Ok(_inside) = self.ns.enter() else {
            return false;
        };
        let mut name = [0 as libc::c_char; libc::IF_NAMESIZE];
        // SAFETY: if_indextoname writes at most IF_NAMESIZE bytes.
        !unsafe { libc::if_indextoname(ifindex, name.as_mut_ptr()) }.is_null()
    }

    /// Takes one member out of the kernel's view: final counts read, slot
    /// freed, link released (a vanished device already dropped it).
    fn retire(&mut self, i: usize, detach: bool) {
        let Some(slot) = self.members[i].slot.take() else {
            return;
        };
        self.present.remove(&self.members[i].watched.ifindex);
        if let Ok(frames) = self.counters.read(slot) {
            self.members[i].model.sample(frames, Instant::now());
        }
        if self.top_flows > 0
            && let Ok(mut all) = self.flows.read()
        {
            let mine = all.remove(&slot).unwrap_or_default();
            self.members[i].model.flows = Some(flows::top(mine, self.top_flows));
        }
        let ifindex = self.members[i].watched.ifindex;
        if self.moving.remove(&ifindex) {
            if let Some(worker) = &self.handoff {
                worker.cancel(ifindex);
            }
            // The entry goes with the next sync; the bits must not stay
            // for a device that may reuse the ifindex.
            let _ = self.config.set_handoff(ifindex, 0);
        }
        if detach {
            if let Ok(_inside) = self.ns.enter() {
                self.attacher.detach(&mut self.ebpf, ifindex);
            }
        } else {
            self.attacher.forget(&mut self.ebpf, ifindex);
        }
        self.members[i].model.mark_gone();
        // Detached: nothing adds to the slot's flows any more.
        if let Err(e) = self.flows.clear(slot) {
            self.notes.push(format!("{e:#}"));
        }
        self.slots.give_back(slot);
        self.events.push(Event {
            ts: SystemTime::now(),
            ifname: self.members[i].watched.name.clone(),
            ifindex,
            kind: EventKind::Gone,
        });
    }

    fn sync_config(&mut self, state: &NetState) -> anyhow::Result<()> {
        let present: Vec<(Watched, u32)> = self
            .members
            .iter()
            .filter_map(|m| m.slot.map(|s| (m.watched.clone(), s)))
            .collect();
        let desired = config::desired(self.ns.inode, state, &present, self.tracker.previous_macs());
        self.config.sync(if self.top_flows == 0 {
            desired.without_flows()
        } else {
            desired
        })
    }

    /// Copies MAC, promiscuity and kernel counters from the latest dump.
    fn refresh_identity(&mut self, state: &NetState) {
        // /proc is scanned only when some promiscuity is not explained by
        // a bridge holding its port (the common, cheap case).
        let unexplained =
            |m: &Member, l: &Link| l.promiscuity > u32::from(m.watched.role == Role::Port);
        let sockets = self
            .members
            .iter()
            .filter(|m| m.slot.is_some())
            .any(|m| {
                state
                    .link(m.watched.ifindex)
                    .is_some_and(|l| unexplained(m, l))
            })
            .then(|| {
                let _inside = self.ns.enter().ok()?;
                promisc::Snapshot::read().ok()
            })
            .flatten();
        for m in self.members.iter_mut().filter(|m| m.slot.is_some()) {
            let Some(link) = state.link(m.watched.ifindex) else {
                continue;
            };
            m.model.observe_link(link);
            m.model.promisc_holders = (link.promiscuity > 0).then(|| {
                let holders = sockets
                    .as_ref()
                    .map(|s| s.holders(link.ifindex).promiscuous())
                    .unwrap_or_default();
                promisc::describe_with_flag(
                    link.promiscuity,
                    link.promisc_flag,
                    m.watched.role == Role::Port,
                    &holders,
                )
            });
        }
    }

    /// Samples the counters: the interfaces for a report.
    pub fn collect(&mut self) -> anyhow::Result<Vec<Interface>> {
        let now = Instant::now();
        let drops = match &self.drops {
            Ok(d) => Some(d.layer.read(&d.map)?),
            Err(_) => None,
        };
        // One walk of the flow map for every interface.
        let mut flows = if self.top_flows > 0 {
            Some(self.flows.read()?)
        } else {
            None
        };
        for m in &mut self.members {
            if let Some(slot) = m.slot {
                m.model.sample(self.counters.read(slot)?, now);
                if let Some(all) = &mut flows {
                    let mine = all.remove(&slot).unwrap_or_default();
                    m.model.flows = Some(flows::top(mine, self.top_flows));
                }
            }
            if let Some(drops) = &drops {
                let key = (self.ns.inode, m.model.ifindex);
                // Gone interfaces keep what they had.
                if m.slot.is_some() || m.model.drops.is_none() {
                    m.model.drops = Some(drops.get(&key).cloned().unwrap_or_default());
                }
            }
        }
        Ok(self.members.iter().map(|m| m.model.clone()).collect())
    }

    /// The evidence ring, with `--pcap`.
    pub fn evidence(&self) -> Option<&EvidenceRing> {
        self.evidence.as_ref()
    }

    /// Every evidence record waiting in the ring, each with who received
    /// it (None for an interface the session does not know).
    pub fn drain_evidence(&mut self) -> Vec<(monitor_common::EvidenceRecord, Option<Receiver>)> {
        let mut records = Vec::new();
        if let Some(ring) = &mut self.evidence {
            ring.drain(&mut records);
        }
        records
            .into_iter()
            .map(|r| {
                let receiver = self.receiver(r.ifindex);
                (r, receiver)
            })
            .collect()
    }

    /// Closes the capture budget: the kernel copies no more frames.
    pub fn stop_capture(&mut self) -> anyhow::Result<()> {
        match &mut self.evidence {
            Some(ring) => ring.set_budget(0),
            None => Ok(()),
        }
    }

    /// The kernel's capture counts (zero without `--pcap`).
    pub fn evidence_counts(&self) -> anyhow::Result<Counts> {
        match &self.evidence {
            Some(ring) => ring.counts(),
            None => Ok(Counts::default()),
        }
    }

    /// The interface `ifindex` of this namespace, as the evidence names it
    /// (the latest member with that ifindex: ifindexes may be reused).
    fn receiver(&self, ifindex: u32) -> Option<Receiver> {
        let m = self
            .members
            .iter()
            .rev()
            .find(|m| m.watched.ifindex == ifindex)?;
        Some(Receiver {
            name: m.watched.name.clone(),
            role: m.watched.role,
            master: m.watched.master().map(str::to_owned),
            netns: self.ns.inode,
            netns_name: self.ns.name.clone(),
        })
    }

    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    pub fn take_notes(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notes)
    }

    /// Adds this session's programs' run-time statistics into `into`.
    pub fn add_program_stats(
        &self,
        into: &mut std::collections::BTreeMap<String, crate::kernel::self_stats::ProgramStats>,
    ) {
        crate::kernel::self_stats::add_program_stats(&self.ebpf, into);
    }

    pub fn drop_source(&self) -> Result<&'static str, String> {
        self.drops
            .as_ref()
            .map(|d| d.hook.as_str())
            .map_err(Clone::clone)
    }

    /// "3 interface(s) in netns ...: p1 (port of br0, tcx), ..." for the
    /// start-up line: every present interface, or on a big bridge the first
    /// few and a count per hook, so one stderr line stays readable.
    pub fn summary(&self) -> String {
        let present: Vec<(String, &'static str)> = self
            .members
            .iter()
            .filter(|m| m.slot.is_some())
            .map(|m| {
                let hook = m.model.hook.map(|h| h.as_str()).unwrap_or("-");
                let what = match m.watched.master() {
                    Some(master) => format!("{} (port of {master}, {hook})", m.watched.name),
                    None => format!("{} ({}, {hook})", m.watched.name, m.watched.role.as_str()),
                };
                (what, hook)
            })
            .collect();
        format!(
            "{} interface(s) in {}: {}",
            present.len(),
            self.ns.describe(),
            summarize(&present)
        )
    }

    pub fn detach_all(&mut self) {
        // The hand-off's thread first: what it attached and nobody took
        // detaches as it drops.
        if let Some(mut worker) = self.handoff.take() {
            drop(worker.stop());
        }
        self.moving.clear();
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

/// Interfaces listed in full on the start-up line; beyond, the first of
/// them and a count per hook (`macdrop status` and the reports list all).
const LISTED: usize = 12;

/// The start-up line's list of (description, hook).
fn summarize(present: &[(String, &'static str)]) -> String {
    if present.len() <= LISTED {
        return present
            .iter()
            .map(|(what, _)| what.as_str())
            .collect::<Vec<_>>()
            .join(", ");
    }
    let shown = LISTED - 2;
    let mut by_hook: std::collections::BTreeMap<&str, usize> = Default::default();
    for (_, hook) in present {
        *by_hook.entry(hook).or_default() += 1;
    }
    let hooks: Vec<String> = by_hook.iter().map(|(h, n)| format!("{n} {h}")).collect();
    let first: Vec<&str> = present[..shown].iter().map(|(w, _)| w.as_str()).collect();
    format!(
        "{}, and {} more (hooks: {})",
        first.join(", "),
        present.len() - shown,
        hooks.join(", ")
    )
}

/// The same interface: same device (ifindex and name) in the same role.
fn same(a: &Watched, b: &Watched) -> bool {
    key(a) == key(b)
}

/// What `same` compares, for sets.
fn key(w: &Watched) -> (u32, &str, Role) {
    (w.ifindex, w.name.as_str(), w.role)
}

#[cfg(test)]
mod tests {
    use super::{SlotPool, summarize};

    #[test]
    fn a_long_start_up_list_is_cut_with_a_count_per_hook() {
        let few: Vec<(String, &str)> = (1..=3).map(|i| (format!("p{i}"), "tcx")).collect();
        assert_eq!(summarize(&few), "p1, p2, p3");
        let mut many: Vec<(String, &str)> = (1..=1000).map(|i| (format!("p{i}"), "tcx")).collect();
        many.push(("br0".into(), "xdp-generic"));
        assert_eq!(
            summarize(&many),
            "p1, p2, p3, p4, p5, p6, p7, p8, p9, p10, and 991 more (hooks: 1000 tcx, 1 xdp-generic)"
        );
    }

    #[test]
    fn slots_are_recycled_and_bounded() {
        let mut pool = SlotPool::new(2);
        assert_eq!(pool.take(), Some(0));
        assert_eq!(pool.take(), Some(1));
        assert_eq!(pool.take(), None, "full");
        pool.give_back(0);
        assert_eq!(pool.take(), Some(0), "a freed slot is reused");
        assert_eq!(pool.take(), None);
    }
}
