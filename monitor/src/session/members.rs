//! Following the namespace: which interfaces are watched, attached how,
//! configured in the kernel's maps, and retired with their final counts.

use super::*;

impl Session {
    pub(super) fn follow(&mut self, state: &NetState, wanted: Vec<Watched>) -> anyhow::Result<()> {
        for link in &state.links {
            self.observe(link);
        }
        // Gone: deleted, no longer present under the same name (an ifindex
        // may be reused by a new device), or no longer selected (a port
        // that left its bridge).
        let deleted = std::mem::take(&mut self.deleted);
        let mut leaving: Vec<(usize, bool)> = {
            let wanted: HashMap<u32, &Watched> = wanted.iter().map(|w| (w.ifindex, w)).collect();
            self.present
                .values()
                .filter_map(|&i| {
                    let m = &self.members[i].watched;
                    let present = !deleted.contains(&m.ifindex)
                        && state.link(m.ifindex).is_some_and(|l| l.name == m.name);
                    let still_wanted = wanted.get(&m.ifindex).is_some_and(|w| same(w, m));
                    (!(present && still_wanted)).then_some((i, present))
                })
                .collect()
        };
        leaving.sort_unstable();
        let changed = !leaving.is_empty();
        for (i, present) in leaving {
            self.retire(i, present);
        }
        // One that could not be watched goes like the others when its
        // device does (or leaves the selection), and then expires.
        let now = Instant::now();
        for m in self
            .members
            .iter_mut()
            .filter(|m| m.failed && !m.model.gone)
        {
            if !wanted.iter().any(|w| same(w, &m.watched)) {
                m.model.mark_gone(now);
            }
        }
        // New: configure first, so the very first frame is classified
        // right, then attach (ports before bridges: `wanted` is ordered).
        let new: Vec<Watched> = {
            let known: HashSet<(u32, &str, Role)> = self
                .members
                .iter()
                .filter(|m| m.slot.is_some() || (m.failed && !m.model.gone))
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
            if let Ok(d) = &mut self.drops {
                d.maps.clear(slot)?;
            }
            let mut model = Interface::new(
                w.name.clone(),
                w.ifindex,
                self.ns.inode,
                w.role,
                w.master().map(str::to_owned),
            )
            .in_namespace(self.ns.name.clone());
            // The slot was just cleared and the hook comes next: counting
            // starts from zero now, so the first report's rates are over
            // the time since, not 0.0/s beside frames already counted.
            model.sample(monitor_common::FrameCounters::default(), Instant::now());
            self.present.insert(w.ifindex, self.members.len());
            self.members.push(Member {
                watched: w,
                slot: Some(slot),
                model,
                failed: false,
            });
            added.push(self.members.len() - 1);
        }
        // The kernel's drop counts of the interfaces that went (their final
        // counts are read) and of any earlier device with a new member's
        // ifindex: before the configuration lets the new one count.
        if changed || !added.is_empty() {
            let fresh: HashSet<u32> = added
                .iter()
                .map(|&i| self.members[i].watched.ifindex)
                .collect();
            let keep: HashSet<u32> = self
                .present
                .keys()
                .filter(|ifindex| !fresh.contains(ifindex))
                .copied()
                .collect();
            self.forget_drops(|ifindex| keep.contains(&ifindex));
        }
        self.sync_config(state)?;
        self.peers = crate::workload::ports_to_name(state, self.present.keys());
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
        // XDP and move in the background (`crate::session::handoff`); later
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
        self.sync_egress(state);
        Ok(())
    }

    /// Counts the egress of the watched uplinks (`topology::uplinks`),
    /// and of those only.
    fn sync_egress(&mut self, state: &NetState) {
        let wanted = topology::uplinks(state, |i| self.present.contains_key(&i));
        let Ok(_inside) = self.ns.enter() else {
            return;
        };
        let notes = self.egress.sync(&mut self.ebpf, &wanted);
        self.notes.extend(notes);
    }

    /// The hand-off's first hook on member `i`. False if generic XDP cannot
    /// be attached there (another tool's XDP program, or its bridge's): the
    /// caller attaches it the normal way.
    pub(super) fn attach_xdp_generic(&mut self, i: usize) -> anyhow::Result<bool> {
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

    pub(super) fn member_at(&self, ifindex: u32) -> Option<&Member> {
        self.present.get(&ifindex).map(|&i| &self.members[i])
    }

    pub(super) fn attach(&mut self, i: usize, kind: Option<&str>) -> anyhow::Result<()> {
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
                self.tell_config_the_hook(w.ifindex)?;
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

    /// Tells the configuration whether the bridge device `ifindex` (if it
    /// is one) now runs at tc only, which lets its ports skip the verdict
    /// on their fast path (`config::ConfigMaps::set_bridge_at_tc`). Called
    /// once its hook is attached and nothing of an earlier one is left.
    pub(super) fn tell_config_the_hook(&mut self, ifindex: u32) -> anyhow::Result<()> {
        let is_bridge = self
            .member_at(ifindex)
            .is_some_and(|m| m.watched.role == Role::Bridge);
        if !is_bridge {
            return Ok(());
        }
        let at_tc = matches!(
            self.attacher.hook(ifindex),
            Some(Hook::Tcx | Hook::TcClsact)
        );
        self.config.set_bridge_at_tc(ifindex, at_tc)
    }

    pub(super) fn still_exists(&self, ifindex: u32) -> bool {
        let Ok(_inside) = self.ns.enter() else {
            return false;
        };
        let mut name = [0 as libc::c_char; libc::IF_NAMESIZE];
        // SAFETY: if_indextoname writes at most IF_NAMESIZE bytes.
        !unsafe { libc::if_indextoname(ifindex, name.as_mut_ptr()) }.is_null()
    }

    /// Takes one member out of the kernel's view: final counts read, slot
    /// freed, link released (a vanished device already dropped it).
    pub(super) fn retire(&mut self, i: usize, detach: bool) {
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
        if let Ok(Some(egress)) = self.egress.read(ifindex) {
            self.members[i].model.egress = Some(egress);
        }
        self.egress.forget(ifindex);
        // Its final drop counts, before `follow` removes them from the map
        // and its slot goes to another interface.
        if let Ok(d) = &mut self.drops
            && let Ok(all) = d.read(self.ns.inode, &self.members, Some((slot, ifindex)))
        {
            let key = (self.ns.inode, ifindex);
            self.members[i].model.drops = Some(all.get(&key).cloned().unwrap_or_default());
        }
        if self.moving.remove(&ifindex) {
            if let Some(worker) = &self.handoff {
                worker.cancel(ifindex);
            }
            // The entry goes with the next sync; the bits must not stay
            // for a device that may reuse the ifindex.
            let _ = self.config.set_handoff(ifindex, 0);
        }
        // Its ports leave every verdict again before it stops answering.
        let _ = self.config.set_bridge_at_tc(ifindex, false);
        if detach {
            if let Ok(_inside) = self.ns.enter() {
                self.attacher.detach(&mut self.ebpf, ifindex);
            }
        } else {
            self.attacher.forget(&mut self.ebpf, ifindex);
        }
        self.members[i].model.mark_gone(Instant::now());
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

    /// Removes the kernel's drop counts of every interface `keep` rejects
    /// (a failure is a note: the counts stay, nothing else is wrong).
    fn forget_drops(&mut self, keep: impl Fn(u32) -> bool) {
        if let Ok(d) = &mut self.drops
            && let Err(e) = d.maps.forget(keep)
        {
            self.notes.push(format!("{e:#}"));
        }
    }

    pub(super) fn sync_config(&mut self, state: &NetState) -> anyhow::Result<()> {
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
    pub(super) fn refresh_identity(&mut self, state: &NetState) {
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
            // Bridges only: one sysfs read each, when the namespace changed.
            m.model.addr_assign_type = link
                .is_bridge()
                .then(|| crate::sysfs::addr_assign_type(&link.name, link.ifindex))
                .flatten();
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
}

/// The same interface: same device (ifindex and name) in the same role.
fn same(a: &Watched, b: &Watched) -> bool {
    key(a) == key(b)
}

/// What `same` compares, for sets.
fn key(w: &Watched) -> (u32, &str, Role) {
    (w.ifindex, w.name.as_str(), w.role)
}
