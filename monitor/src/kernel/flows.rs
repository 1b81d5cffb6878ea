//! Reads the kernel's per-flow records of mismatched frames (`FLOWS`, a
//! per-CPU array of buckets, `monitor-ebpf/src/flows.rs`) and turns them
//! into each interface's top offenders, each said to be exact, a lower
//! bound or (under flow sampling) an estimate.
//!
//! A read is bounded whatever the traffic: the whole table in one
//! BPF_MAP_LOOKUP_BATCH (`FLOW_BUCKETS` buckets × CPUs, a fixed size), not
//! a syscall per flow; kernels without batch operations on arrays (before
//! 5.6) get one lookup per bucket.

use std::{
    cell::RefCell,
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::fd::AsFd as _,
    time::SystemTime,
};

use super::batch;
use anyhow::Context as _;
use aya::{
    Ebpf,
    maps::{IterableMap as _, MapData, PerCpuArray, PerCpuValues},
};
use monitor_common::{
    FLOW_BUCKETS, FLOW_IPV4, FLOW_IPV6, FLOW_NO_VLAN, FlowBucket, FlowKey, names,
};

/// One top offender: the mismatched frames of one flow received on an
/// interface since attach (while the kernel's bounded flow table kept it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Flow {
    pub src_mac: Mac,
    pub dst_mac: Mac,
    /// The outermost VLAN ID; None if untagged.
    pub vlan: Option<u16>,
    /// IPv4/IPv6 destination or ARP target; None for other protocols.
    pub dst_ip: Option<IpAddr>,
    pub frames: u64,
    /// Frame lengths as received, VLAN tag included.
    pub bytes: u64,
    pub first_seen: SystemTime,
    pub last_seen: SystemTime,
    /// `monitor_common::MISMATCH_*` bits.
    pub mismatch: u8,
    /// Whether `frames` and `bytes` are every frame of the flow since
    /// attach; false: an estimate when `sampled`, else a lower bound (the
    /// kernel evicted the flow from its bucket at some point, on some CPU,
    /// to make room for another).
    pub exact: bool,
    /// Some of its frames were recorded under flow sampling (a flood on
    /// the interface, `session::flow_sampling`): one frame in N counted N
    /// times, so `frames` and `bytes` are estimates.
    pub sampled: bool,
}

impl Flow {
    /// What the text outputs put before `frames`: "~" for an estimate
    /// (recorded under flow sampling), "≥" for a lower bound, nothing for
    /// an exact count.
    pub fn count_mark(&self) -> &'static str {
        if self.sampled {
            "~"
        } else if self.exact {
            ""
        } else {
            "≥"
        }
    }

    /// Why the frames are mismatched, by class name in the class table's
    /// order: `foreign_unicast` (for another host, received by a bridge
    /// device or standalone interface), `host_ip_wrong_mac`, `stale_mac`.
    pub fn reasons(&self) -> Vec<&'static str> {
        CLASSES
            .iter()
            .filter(|c| self.mismatch & c.mismatch != 0)
            .map(|c| c.name)
            .collect()
    }

    /// "02:00:00:00:0c:01 > 00:50:56:aa:bb:cc (VMware) vlan 10 192.0.2.1":
    /// the flow's key on one line, the MACs' vendors named where known.
    pub fn describe(&self) -> String {
        let mac = |m: Mac| match mac_vendor(m) {
            Some(v) => format!("{m} ({v})"),
            None => m.to_string(),
        };
        let mut out = format!("{} > {}", mac(self.src_mac), mac(self.dst_mac));
        if let Some(v) = self.vlan {
            out += &format!(" vlan {v}");
        }
        if let Some(ip) = self.dst_ip {
            out += &format!(" {ip}");
        }
        out
    }
}

use crate::{
    classes::CLASSES,
    mac::{Mac, mac_vendor},
};

pub struct FlowReader {
    map: PerCpuArray<MapData, FlowBucket>,
    /// Possible CPUs: the copies of each bucket.
    cpus: usize,
    batch: batch::Support,
    /// When each flow in the map was first read and last seen growing:
    /// the kernel keeps no time (a clock read per frame would cost more
    /// than the rest of the record), so flows are dated to the report in
    /// which their count first appeared or grew. Bounded by the table:
    /// keys gone from it are forgotten at each read.
    seen: HashMap<FlowKey, Seen>,
}

/// What the reader remembers of one flow between reads.
#[derive(Clone, Copy)]
struct Seen {
    frames: u64,
    first: SystemTime,
    last: SystemTime,
}

impl FlowReader {
    pub fn take(ebpf: &mut Ebpf) -> anyhow::Result<Self> {
        let map = ebpf
            .take_map(names::FLOWS)
            .with_context(|| format!("map {} missing from the eBPF object", names::FLOWS))?;
        Self::of_map(map)
    }

    /// A reader of a flow table loaded elsewhere (`MapData::from_id`):
    /// `macdrop-bench flow-read` times reads of a running macdrop's table.
    pub fn of_map(map: aya::maps::Map) -> anyhow::Result<Self> {
        let cpus = super::batch::possible_cpus()?;
        Ok(Self {
            map: PerCpuArray::try_from(map).context("flow map has the wrong type")?,
            cpus,
            batch: batch::Support::default(),
            seen: HashMap::new(),
        })
    }

    /// Reads bucket by bucket from now on, as on kernels without batch
    /// lookups on arrays (before 5.6): a switch for tests, so that path is
    /// checked against the batch one on a kernel that has both.
    pub fn without_batch(&mut self) {
        self.batch.off();
    }

    /// Every flow in the table, by counter slot, per-CPU copies summed.
    pub fn read(&mut self) -> anyhow::Result<HashMap<u32, Vec<Flow>>> {
        with_table(self.cpus, |table| {
            self.fill(table)?;
            let now = SystemTime::now();
            let mut out: HashMap<u32, Vec<Flow>> = HashMap::new();
            let mut seen = HashMap::with_capacity(self.seen.len());
            for copies in table.chunks(self.cpus) {
                for (key, mut flow) in flows_of(copies, now) {
                    let dated = date(self.seen.get(&key).copied(), flow.frames, now);
                    (flow.first_seen, flow.last_seen) = (dated.first, dated.last);
                    seen.insert(key, dated);
                    out.entry(key.slot).or_default().push(flow);
                }
            }
            self.seen = seen;
            Ok(out)
        })
    }

    /// Removes the flows of `slot`: its interface is gone, and the slot
    /// may go to another one. A bucket is written back whole, every CPU's
    /// copy: a frame another flow of the bucket counted between the read
    /// and the write is lost (the counts stay a lower bound of the truth
    /// only in that instant; interfaces go rarely).
    pub fn clear(&mut self, slot: u32) -> anyhow::Result<()> {
        with_table(self.cpus, |table| self.clear_in(table, slot))
    }

    fn clear_in(&mut self, table: &mut [FlowBucket], slot: u32) -> anyhow::Result<()> {
        self.fill(table)?;
        for (i, copies) in table.chunks(self.cpus).enumerate() {
            let has = |b: &FlowBucket| b.ways.iter().any(|e| e.frames != 0 && e.key.slot == slot);
            if !copies.iter().any(has) {
                continue;
            }
            let cleared: Vec<FlowBucket> = copies
                .iter()
                .map(|b| {
                    let mut b = *b;
                    for e in b.ways.iter_mut().filter(|e| e.key.slot == slot) {
                        *e = Default::default();
                    }
                    b
                })
                .collect();
            let values = PerCpuValues::try_from(cleared).context("cannot build a flow bucket")?;
            self.map
                .set(i as u32, values, 0)
                .context("cannot clear a flow record")?;
        }
        Ok(())
    }

    /// Reads the whole table into `table`: one batch lookup where the
    /// kernel has them, else one lookup per bucket.
    fn fill(&mut self, table: &mut [FlowBucket]) -> anyhow::Result<()> {
        let fd = self.map.map().fd().as_fd();
        if self
            .batch
            .read(|| batch::lookup_per_cpu(fd, 0, FLOW_BUCKETS, table))
            .context("cannot read the flow table")?
        {
            return Ok(());
        }
        for i in 0..FLOW_BUCKETS {
            let copies = self.map.get(&i, 0).context("cannot read a flow bucket")?;
            let at = i as usize * self.cpus;
            for (c, b) in copies.iter().enumerate().take(self.cpus) {
                table[at + c] = *b;
            }
        }
        Ok(())
    }
}

thread_local! {
    /// The flow table as last read: bucket `i`'s copy of CPU `c` at
    /// `i * cpus + c`. One per thread, shared by the readers of every
    /// session on it (they read in turn, within one report): a copy per
    /// reader would hold 144 KiB per namespace on 2 CPUs for nothing
    /// between reads, most of the resident size under `--all-netns`. Kept
    /// between reads, so a read allocates nothing.
    static TABLE: RefCell<Vec<FlowBucket>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on this thread's table, sized for `cpus` copies per bucket.
fn with_table<T>(cpus: usize, f: impl FnOnce(&mut [FlowBucket]) -> T) -> T {
    TABLE.with_borrow_mut(|table| {
        table.resize(FLOW_BUCKETS as usize * cpus, FlowBucket::default());
        f(table)
    })
}

/// The flows of one bucket from its per-CPU copies, per-CPU counts summed,
/// dated `now` (the reader corrects the dates). A flow is exact when no
/// copy says otherwise: where it has a way, the way is exact; where it has
/// none, nothing was ever evicted from the bucket (else it may have been).
fn flows_of(copies: &[FlowBucket], now: SystemTime) -> Vec<(FlowKey, Flow)> {
    let evicting = copies.iter().filter(|b| b.evictions > 0).count();
    let mut out: Vec<(FlowKey, Flow, usize)> = Vec::new();
    for b in copies {
        for e in b.ways.iter().filter(|e| e.frames != 0) {
            let i = match out.iter().position(|(k, _, _)| *k == e.key) {
                Some(i) => i,
                None => {
                    out.push((e.key, flow_of(&e.key, now), 0));
                    out.len() - 1
                }
            };
            let (_, f, on_evicting) = &mut out[i];
            f.frames += e.frames;
            f.bytes += e.bytes;
            f.mismatch |= e.mismatch;
            f.exact &= e.exact != 0 && e.sampled == 0;
            f.sampled |= e.sampled != 0;
            *on_evicting += usize::from(b.evictions > 0);
        }
    }
    out.into_iter()
        .map(|(k, mut f, on_evicting)| {
            f.exact &= on_evicting == evicting;
            (k, f)
        })
        .collect()
}

/// The `n` flows with the most frames (ties: the most recent first, then
/// by key, so the order is stable), most first.
pub fn top(mut flows: Vec<Flow>, n: usize) -> Vec<Flow> {
    flows.sort_by(|a, b| {
        b.frames
            .cmp(&a.frames)
            .then(b.last_seen.cmp(&a.last_seen))
            .then(
                (a.src_mac, a.dst_mac, a.vlan, a.dst_ip)
                    .cmp(&(b.src_mac, b.dst_mac, b.vlan, b.dst_ip)),
            )
    });
    flows.truncate(n);
    flows
}

/// The dates of a flow read at `now` with `frames`, given what the
/// previous read saw of it: first seen when it first appeared (or when its
/// count went backwards: the entry was evicted and made anew), last seen
/// when its count last grew.
fn date(before: Option<Seen>, frames: u64, now: SystemTime) -> Seen {
    match before {
        Some(b) if frames == b.frames => b,
        Some(b) if frames > b.frames => Seen {
            frames,
            last: now,
            ..b
        },
        _ => Seen {
            frames,
            first: now,
            last: now,
        },
    }
}

/// A flow of `key` with nothing counted yet, dated `now`.
fn flow_of(key: &FlowKey, now: SystemTime) -> Flow {
    Flow {
        src_mac: Mac(key.src_mac),
        dst_mac: Mac(key.dst_mac),
        vlan: (key.vlan != FLOW_NO_VLAN).then_some(key.vlan),
        dst_ip: dst_ip(key),
        frames: 0,
        bytes: 0,
        first_seen: now,
        last_seen: now,
        mismatch: 0,
        exact: true,
        sampled: false,
    }
}

fn dst_ip(key: &FlowKey) -> Option<IpAddr> {
    match key.family {
        FLOW_IPV4 => {
            let [a, b, c, d, ..] = key.dst_ip;
            Some(IpAddr::V4(Ipv4Addr::new(a, b, c, d)))
        }
        FLOW_IPV6 => Some(IpAddr::V6(Ipv6Addr::from(key.dst_ip))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use monitor_common::{FLOW_NO_IP, FlowEntry, MISMATCH_HOST_IP, MISMATCH_STALE};

    use super::*;

    fn key(family: u8, ip: [u8; 16], vlan: u16) -> FlowKey {
        FlowKey {
            netns: 7,
            slot: 1,
            src_mac: [2, 0, 0, 0, 0x0c, 1],
            dst_mac: [0, 0x50, 0x56, 0, 0, 1],
            vlan,
            family,
            _pad: 0,
            dst_ip: ip,
        }
    }

    fn entry(key: FlowKey, frames: u64, mismatch: u8, exact: bool) -> FlowEntry {
        FlowEntry {
            key,
            frames,
            bytes: frames * 60,
            mismatch,
            exact: u8::from(exact),
            sampled: 0,
            _pad: [0; 5],
        }
    }

    fn bucket(ways: [FlowEntry; 2], evictions: u64) -> FlowBucket {
        FlowBucket {
            ways,
            evictions,
            evicted_frames: evictions * 3,
        }
    }

    #[test]
    fn per_cpu_copies_are_summed_and_empty_ways_ignored() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let mut ip = [0; 16];
        ip[..4].copy_from_slice(&[192, 0, 2, 1]);
        let a = key(FLOW_IPV4, ip, 10);
        let b = key(FLOW_NO_IP, [0; 16], FLOW_NO_VLAN);
        let empty = FlowEntry::default();
        let copies = [
            bucket([entry(a, 3, MISMATCH_HOST_IP, true), empty], 0),
            bucket([empty, empty], 0),
            bucket(
                [
                    entry(b, 1, MISMATCH_STALE, true),
                    entry(a, 2, MISMATCH_STALE, true),
                ],
                0,
            ),
        ];
        let flows = flows_of(&copies, now);
        assert_eq!(flows.len(), 2);
        let (_, f) = flows.iter().find(|(k, _)| *k == a).unwrap();
        assert_eq!((f.frames, f.bytes), (5, 300));
        assert_eq!(f.mismatch, MISMATCH_HOST_IP | MISMATCH_STALE);
        assert_eq!(f.dst_ip, Some("192.0.2.1".parse().unwrap()));
        assert_eq!(f.vlan, Some(10));
        assert!(f.exact, "nothing evicted anywhere: exact");
        let (_, f) = flows.iter().find(|(k, _)| *k == b).unwrap();
        assert_eq!((f.vlan, f.dst_ip, f.frames), (None, None, 1));
    }

    #[test]
    fn a_flow_is_exact_only_where_no_eviction_could_have_hidden_frames() {
        let now = SystemTime::UNIX_EPOCH;
        let a = key(FLOW_NO_IP, [0; 16], 1);
        let b = key(FLOW_NO_IP, [0; 16], 2);
        let c = key(FLOW_NO_IP, [0; 16], 3);
        let exact = |copies: &[FlowBucket], k: FlowKey| {
            flows_of(copies, now)
                .into_iter()
                .find(|(key, _)| *key == k)
                .map(|(_, f)| f.exact)
                .unwrap()
        };
        // CPU 1 evicted something; `a` holds a way there that it took
        // before the eviction: exact on both CPUs.
        let copies = [
            bucket([entry(a, 4, 1, true), FlowEntry::default()], 0),
            bucket([entry(a, 9, 1, true), entry(b, 1, 1, false)], 1),
        ];
        assert!(exact(&copies, a));
        assert!(!exact(&copies, b), "took its way after an eviction");
        // `c` has no way on CPU 1, where flows were evicted: it may have
        // been one of them.
        let copies = [
            bucket([entry(c, 4, 1, true), FlowEntry::default()], 0),
            bucket([entry(a, 9, 1, true), entry(b, 1, 1, false)], 1),
        ];
        assert!(!exact(&copies, c));
    }

    #[test]
    fn a_flow_sampled_on_any_cpu_is_an_estimate() {
        let now = SystemTime::UNIX_EPOCH;
        let a = key(FLOW_NO_IP, [0; 16], 1);
        let sampled = FlowEntry {
            sampled: 1,
            ..entry(a, 64, 1, true)
        };
        let copies = [
            bucket([entry(a, 4, 1, true), FlowEntry::default()], 0),
            bucket([sampled, FlowEntry::default()], 0),
        ];
        let (_, f) = flows_of(&copies, now).pop().unwrap();
        assert_eq!(f.frames, 68);
        assert!(f.sampled && !f.exact, "{f:?}");
        let (_, f) = flows_of(&copies[..1], now).pop().unwrap();
        assert!(!f.sampled && f.exact);
    }

    #[test]
    fn flows_are_dated_by_the_read_in_which_they_appeared_and_grew() {
        let at = |s| SystemTime::UNIX_EPOCH + Duration::from_secs(s);
        let first = date(None, 3, at(10));
        assert_eq!((first.first, first.last), (at(10), at(10)));
        let idle = date(Some(first), 3, at(11));
        assert_eq!(
            (idle.first, idle.last),
            (at(10), at(10)),
            "no growth: same dates"
        );
        let grew = date(Some(idle), 5, at(12));
        assert_eq!((grew.first, grew.last), (at(10), at(12)));
        let anew = date(Some(grew), 1, at(13));
        assert_eq!(
            (anew.first, anew.last),
            (at(13), at(13)),
            "a count that went back is an entry evicted and made anew"
        );
    }

    #[test]
    fn top_is_by_frames_then_recency_and_bounded() {
        let at = |s| SystemTime::UNIX_EPOCH + Duration::from_secs(s);
        let flow = |last: u8, frames, seen| Flow {
            src_mac: Mac([2, 0, 0, 0, 0, last]),
            dst_mac: Mac([2, 0, 0, 0, 1, 1]),
            vlan: None,
            dst_ip: None,
            frames,
            bytes: 0,
            first_seen: at(0),
            last_seen: at(seen),
            mismatch: MISMATCH_HOST_IP,
            exact: true,
            sampled: false,
        };
        let flows = vec![flow(1, 5, 1), flow(2, 9, 1), flow(3, 5, 2), flow(4, 1, 9)];
        let srcs = |fs: Vec<Flow>| fs.iter().map(|f| f.src_mac.0[5]).collect::<Vec<_>>();
        assert_eq!(srcs(top(flows.clone(), 10)), [2, 3, 1, 4]);
        assert_eq!(srcs(top(flows.clone(), 2)), [2, 3]);
        assert!(top(flows, 0).is_empty());
    }
}
