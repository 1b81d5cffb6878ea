//! Reads the kernel's per-flow records of mismatched frames (`FLOWS`, an
//! LRU hash with per-CPU values) and turns them into each interface's top
//! offenders.

use std::{
    collections::{BTreeSet, HashMap},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::SystemTime,
};

use anyhow::Context as _;
use aya::{
    Ebpf,
    maps::{MapData, MapError, PerCpuHashMap},
};
use monitor_common::{FLOW_IPV4, FLOW_IPV6, FLOW_NO_VLAN, FlowKey, FlowValue, MAX_FLOWS, names};

/// One top offender: the mismatched frames of one flow received on an
/// interface since attach (while the kernel's bounded flow map kept it).
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
}

impl Flow {
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
    map: PerCpuHashMap<MapData, FlowKey, FlowValue>,
    /// When each flow in the map was first read and last seen growing:
    /// the kernel keeps no time (a clock read per frame would cost more
    /// than the rest of the record), so flows are dated to the report in
    /// which their count first appeared or grew. Bounded by the map: keys
    /// gone from it are forgotten at each read.
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
        Ok(Self {
            map: PerCpuHashMap::try_from(map).context("flow map has the wrong type")?,
            seen: HashMap::new(),
        })
    }

    /// Every flow in the map, by counter slot, per-CPU copies summed.
    pub fn read(&mut self) -> anyhow::Result<HashMap<u32, Vec<Flow>>> {
        let now = SystemTime::now();
        let mut out: HashMap<u32, Vec<Flow>> = HashMap::new();
        let mut seen = HashMap::with_capacity(self.seen.len());
        for key in self.keys()? {
            let per_cpu = match self.map.get(&key, 0) {
                Ok(v) => v,
                // Evicted (or cleared) since the key was listed.
                Err(MapError::KeyNotFound) => continue,
                Err(e) => return Err(e).context("cannot read a flow record"),
            };
            let Some(mut flow) = flow_of(&key, per_cpu.iter(), now) else {
                continue;
            };
            let dated = date(self.seen.get(&key).copied(), flow.frames, now);
            (flow.first_seen, flow.last_seen) = (dated.first, dated.last);
            seen.insert(key, dated);
            out.entry(key.slot).or_default().push(flow);
        }
        self.seen = seen;
        Ok(out)
    }

    /// Removes the flows of `slot`: its interface is gone, and the slot
    /// may go to another one.
    pub fn clear(&mut self, slot: u32) -> anyhow::Result<()> {
        for key in self.keys()?.into_iter().filter(|k| k.slot == slot) {
            match self.map.remove(&key) {
                Ok(()) | Err(MapError::KeyNotFound) => {}
                Err(e) => return Err(e).context("cannot remove a flow record"),
            }
        }
        Ok(())
    }

    /// The keys, each once. The kernel restarts a key walk from the first
    /// key when the current one was evicted meanwhile, so the walk is
    /// deduplicated and bounded rather than trusted to end.
    fn keys(&self) -> anyhow::Result<BTreeSet<FlowKey>> {
        let mut keys = BTreeSet::new();
        for key in self.map.keys().take(2 * MAX_FLOWS as usize) {
            match key {
                Ok(k) => {
                    keys.insert(k);
                }
                Err(MapError::KeyNotFound) => continue,
                Err(e) => return Err(e).context("cannot list the flow records"),
            }
        }
        Ok(keys)
    }
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

/// One flow from its key and its per-CPU values, dated `now` (the reader
/// corrects the dates); None if no CPU counted a frame (an entry created
/// but not yet counted into).
fn flow_of<'a>(
    key: &FlowKey,
    per_cpu: impl Iterator<Item = &'a FlowValue>,
    now: SystemTime,
) -> Option<Flow> {
    let mut sum = FlowValue::default();
    for v in per_cpu.filter(|v| v.frames > 0) {
        sum.frames += v.frames;
        sum.bytes += v.bytes;
        sum.mismatch |= v.mismatch;
    }
    (sum.frames > 0).then(|| Flow {
        src_mac: Mac(key.src_mac),
        dst_mac: Mac(key.dst_mac),
        vlan: (key.vlan != FLOW_NO_VLAN).then_some(key.vlan),
        dst_ip: dst_ip(key),
        frames: sum.frames,
        bytes: sum.bytes,
        first_seen: now,
        last_seen: now,
        mismatch: sum.mismatch,
    })
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

    use monitor_common::{FLOW_NO_IP, MISMATCH_HOST_IP, MISMATCH_STALE};

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

    #[test]
    fn per_cpu_copies_are_summed_and_idle_cpus_ignored() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let mut ip = [0; 16];
        ip[..4].copy_from_slice(&[192, 0, 2, 1]);
        let cpu = |frames, mismatch| FlowValue {
            frames,
            bytes: frames * 60,
            mismatch,
            _pad: [0; 7],
        };
        let values = [cpu(3, MISMATCH_HOST_IP), cpu(0, 0), cpu(2, MISMATCH_STALE)];
        let f = flow_of(&key(FLOW_IPV4, ip, 10), values.iter(), now).unwrap();
        assert_eq!((f.frames, f.bytes), (5, 300));
        assert_eq!(f.mismatch, MISMATCH_HOST_IP | MISMATCH_STALE);
        assert_eq!(f.dst_ip, Some("192.0.2.1".parse().unwrap()));
        assert_eq!(f.vlan, Some(10));
        let none = flow_of(
            &key(FLOW_NO_IP, [0; 16], FLOW_NO_VLAN),
            values[1..2].iter(),
            now,
        );
        assert_eq!(none, None, "no frame counted: no flow");
        let f = flow_of(&key(FLOW_NO_IP, [0; 16], FLOW_NO_VLAN), values.iter(), now).unwrap();
        assert_eq!((f.vlan, f.dst_ip), (None, None));
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
        };
        let flows = vec![flow(1, 5, 1), flow(2, 9, 1), flow(3, 5, 2), flow(4, 1, 9)];
        let srcs = |fs: Vec<Flow>| fs.iter().map(|f| f.src_mac.0[5]).collect::<Vec<_>>();
        assert_eq!(srcs(top(flows.clone(), 10)), [2, 3, 1, 4]);
        assert_eq!(srcs(top(flows.clone(), 2)), [2, 3]);
        assert!(top(flows, 0).is_empty());
    }
}
