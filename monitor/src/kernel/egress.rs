//! The egress source-MAC counter of one namespace (`macdrop_tc_egress`,
//! `monitor_common::egress`): attached only on the uplinks the
//! forged-transmits rule needs (`topology::uplinks`), its maps filled
//! from the namespace's state and kept in step with it, its counts read
//! per uplink for the collector.
//!
//! Attached as `macdrop_tc` is (`kernel::tc`): a TCX egress link from
//! Linux 6.6 (a file descriptor: nothing stays attached after exit or
//! SIGKILL), a clsact egress filter before (named with macdrop's owner
//! token, so the next start removes one a killed macdrop left).

use std::collections::BTreeMap;

use anyhow::Context as _;
use aya::{
    Ebpf,
    maps::{HashMap, MapData, PerCpuArray, PerCpuValues},
    programs::SchedClassifier,
};
use monitor_common::egress::{
    EGRESS_CHILD, EGRESS_OWN, EgressCounters, EgressMacKey, MAX_EGRESS_IFACES, names,
};

use super::tc::{TcAttachment, TcMode};
use crate::{mac::Mac, topology::Uplink};

/// One counted uplink.
struct Counted {
    slot: u32,
    /// The `EGRESS_MACS` entries written for it, MAC -> class.
    macs: BTreeMap<Mac, u8>,
    _link: TcAttachment,
}

pub struct EgressCounter {
    slots: HashMap<MapData, u32, u32>,
    macs: HashMap<MapData, EgressMacKey, u8>,
    counters: PerCpuArray<MapData, EgressCounters>,
    /// The program went through the verifier (at the first uplink).
    loaded: bool,
    free: Vec<u32>,
    next: u32,
    counted: BTreeMap<u32, Counted>,
    /// Uplinks whose attach failed: not retried (nor said again) while
    /// they stay uplinks.
    failed: std::collections::BTreeSet<u32>,
}

impl EgressCounter {
    pub fn take(ebpf: &mut Ebpf) -> anyhow::Result<Self> {
        let mut map = |name: &str| {
            ebpf.take_map(name)
                .with_context(|| format!("map {name} missing from the eBPF object"))
        };
        Ok(Self {
            slots: HashMap::try_from(map(names::SLOTS)?).context("egress slots map type")?,
            macs: HashMap::try_from(map(names::MACS)?).context("egress MACs map type")?,
            counters: PerCpuArray::try_from(map(names::COUNTERS)?)
                .context("egress counters map type")?,
            loaded: false,
            free: Vec::new(),
            next: 0,
            counted: BTreeMap::new(),
            failed: Default::default(),
        })
    }

    /// Counts exactly `wanted` from now on: new uplinks get a cleared
    /// slot, their MACs and the program on their egress; uplinks no
    /// longer wanted are detached and their entries removed; the MACs of
    /// the others follow the state. Must run inside the namespace. Returns notes for
    /// stderr (a failure on one uplink leaves it uncounted, nothing else).
    pub fn sync(&mut self, ebpf: &mut Ebpf, wanted: &BTreeMap<u32, Uplink>) -> Vec<String> {
        let mut notes = Vec::new();
        let leaving: Vec<u32> = self
            .counted
            .keys()
            .filter(|i| !wanted.contains_key(i))
            .copied()
            .collect();
        for ifindex in leaving {
            self.forget(ifindex);
        }
        self.failed.retain(|i| wanted.contains_key(i));
        for (&ifindex, uplink) in wanted {
            if self.failed.contains(&ifindex) {
                continue;
            }
            let classes = classes(uplink);
            if let Some(old) = self.counted.get(&ifindex).map(|c| c.macs.clone()) {
                if let Err(e) = self.write_macs(ifindex, &old, &classes) {
                    notes.push(format!("{e:#}"));
                }
                if let Some(c) = self.counted.get_mut(&ifindex) {
                    c.macs = classes;
                }
                continue;
            }
            let Some(slot) = self.free.pop().or_else(|| {
                (self.next < MAX_EGRESS_IFACES).then(|| {
                    self.next += 1;
                    self.next - 1
                })
            }) else {
                notes.push(format!(
                    "egress source MACs not counted on ifindex {ifindex}: all \
                     {MAX_EGRESS_IFACES} uplink slots are in use"
                ));
                continue;
            };
            match self.start(ebpf, ifindex, slot, &classes) {
                Ok(link) => {
                    self.counted.insert(
                        ifindex,
                        Counted {
                            slot,
                            macs: classes,
                            _link: link,
                        },
                    );
                }
                Err(e) => {
                    self.remove_entries(ifindex, &classes);
                    self.free.push(slot);
                    self.failed.insert(ifindex);
                    notes.push(format!(
                        "egress source MACs not counted on ifindex {ifindex}: {e:#}"
                    ));
                }
            }
        }
        notes
    }

    /// Clears `slot`, writes the uplink's entries, then attaches the
    /// program: the first frame it sees is classified with them.
    fn start(
        &mut self,
        ebpf: &mut Ebpf,
        ifindex: u32,
        slot: u32,
        classes: &BTreeMap<Mac, u8>,
    ) -> anyhow::Result<TcAttachment> {
        let cpus = super::batch::possible_cpus()?;
        let zeros = PerCpuValues::try_from(vec![EgressCounters::default(); cpus])
            .context("building zeroed per-CPU values")?;
        self.counters
            .set(slot, zeros, 0)
            .with_context(|| format!("cannot clear egress slot {slot}"))?;
        self.write_macs(ifindex, &BTreeMap::new(), classes)?;
        self.slots
            .insert(ifindex, slot, 0)
            .context("cannot fill the egress slots map")?;
        let prog = program(ebpf)?;
        if !self.loaded {
            prog.load()
                .with_context(|| format!("the kernel rejected {}", names::PROGRAM))?;
            self.loaded = true;
            // Before its first attach (`loader::shed`).
            super::loader::shed(ebpf, names::PROGRAM);
        }
        let prog = program(ebpf)?;
        let prog_id = prog
            .info()
            .with_context(|| format!("{} is not loaded", names::PROGRAM))?
            .id();
        use std::os::fd::AsFd as _;
        let fd = prog
            .fd()
            .with_context(|| format!("{} is not loaded", names::PROGRAM))?;
        let mode = TcMode::for_running_kernel();
        super::tc::attach_egress(fd.as_fd(), prog_id, ifindex, mode)
            .with_context(|| format!("cannot attach {} to the egress", names::PROGRAM))
    }

    /// Brings the uplink's `EGRESS_MACS` entries from `old` to `new`.
    fn write_macs(
        &mut self,
        ifindex: u32,
        old: &BTreeMap<Mac, u8>,
        new: &BTreeMap<Mac, u8>,
    ) -> anyhow::Result<()> {
        for mac in old.keys().filter(|m| !new.contains_key(m)) {
            let _ = self.macs.remove(&EgressMacKey::new(ifindex, mac.0));
        }
        for (mac, class) in new.iter().filter(|(m, c)| old.get(m) != Some(c)) {
            self.macs
                .insert(EgressMacKey::new(ifindex, mac.0), class, 0)
                .with_context(|| {
                    format!("cannot add {mac} to the egress MACs map (full: too many children)")
                })?;
        }
        Ok(())
    }

    fn remove_entries(&mut self, ifindex: u32, classes: &BTreeMap<Mac, u8>) {
        let _ = self.slots.remove(&ifindex);
        for mac in classes.keys() {
            let _ = self.macs.remove(&EgressMacKey::new(ifindex, mac.0));
        }
    }

    /// Stops counting `ifindex` (detached, entries removed, slot freed).
    /// A vanished device took its link with it; its ifindex may name
    /// another device next.
    pub fn forget(&mut self, ifindex: u32) {
        self.failed.remove(&ifindex);
        if let Some(c) = self.counted.remove(&ifindex) {
            self.remove_entries(ifindex, &c.macs);
            self.free.push(c.slot);
            // `c._link` drops here: off the hook now (BPF_LINK_DETACH, or
            // the filter and a qdisc macdrop added removed).
        }
    }

    /// The uplink's counts since it was attached, if it is counted.
    pub fn read(&self, ifindex: u32) -> anyhow::Result<Option<EgressCounters>> {
        let Some(c) = self.counted.get(&ifindex) else {
            return Ok(None);
        };
        let per_cpu = self
            .counters
            .get(&c.slot, 0)
            .with_context(|| format!("cannot read egress slot {}", c.slot))?;
        let mut sum = EgressCounters::default();
        for v in per_cpu.iter() {
            sum.add(v);
        }
        Ok(Some(sum))
    }

    pub fn detach_all(&mut self) {
        let all: Vec<u32> = self.counted.keys().copied().collect();
        for ifindex in all {
            self.forget(ifindex);
        }
    }
}

/// `EGRESS_MACS` values of one uplink: its own MAC, its children's (a
/// child with the uplink's MAC is its own).
fn classes(u: &Uplink) -> BTreeMap<Mac, u8> {
    let mut out: BTreeMap<Mac, u8> = u.children.iter().map(|m| (*m, EGRESS_CHILD)).collect();
    if let Some(own) = u.own {
        out.insert(own, EGRESS_OWN);
    }
    out
}

fn program(ebpf: &mut Ebpf) -> anyhow::Result<&mut SchedClassifier> {
    ebpf.program_mut(names::PROGRAM)
        .with_context(|| format!("program {} missing from the eBPF object", names::PROGRAM))?
        .try_into()
        .with_context(|| format!("{} is not a tc classifier", names::PROGRAM))
}
