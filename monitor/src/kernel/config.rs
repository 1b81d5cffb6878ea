//! Keeps the kernel-side configuration maps equal to what userspace knows:
//! which interfaces are watched (and their counter slot), which MACs each
//! bridge delivers to the host, which IP addresses are the host's. Updates
//! are diffs, so calling `sync` every interval costs only the changes.
//!
//! Besides the hash maps, two structures exist only so the classifier can
//! skip hash lookups on its common paths (see `monitor-ebpf/src/classify.rs`):
//! `IF_BY_INDEX`, the interfaces' configurations in an array indexed by
//! ifindex, the MAC bit filter, whose clear bits prove a key absent from
//! `LOCAL_MACS`, and the address table, a direct-mapped copy of
//! `LOCAL_ADDRS`. All are derived from the same `Desired` as the hash maps
//! and written in the same `sync`.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    net::IpAddr,
};

use anyhow::Context as _;
use aya::{
    Ebpf,
    maps::{Array as BpfArray, HashMap as BpfHashMap, MapData},
};
use monitor_common::{
    ADDR_TABLE_SLOTS, AddrKey, AddrSlot, FLOW_SAMPLE_MAX, IF_BRIDGE, IF_FAST_MAC_VALID,
    IF_FILTERED, IF_FLOWS, IF_HANDOFF_ANY, IF_PASSUP_FAST, IF_PORT, IF_WATCHED, IfConfig, IfKey,
    MAC_FILTER_WORDS, MAC_LOCAL, MAC_PREVIOUS, MAX_INTERFACES, MAX_LOCAL_ADDRS, MAX_LOCAL_MACS,
    MacKey, VLANS_UNTAGGED, addr_slot, mac_filter_bit, mac_word, names,
};

use crate::{
    delivery::{self, vlan_key},
    mac::Mac,
    netlink::NetState,
    topology::{Role, Watched},
};

/// The configuration the kernel program should see.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Desired {
    pub ifaces: HashMap<IfKey, IfConfig>,
    /// MAC -> `MAC_LOCAL` or `MAC_PREVIOUS`, per MAC domain.
    pub local_macs: HashMap<MacKey, u8>,
    pub local_addrs: HashSet<AddrKey>,
    /// Ports whose fast path may leave no verdict for their bridge
    /// (`IF_PASSUP_FAST` cleared), port ifindex -> bridge ifindex, once
    /// that bridge's program runs at tc (`ConfigMaps::set_bridge_at_tc`):
    /// the bridge is watched, not VLAN-filtering, and its verified fast
    /// MAC is the port's. There an untagged frame to that MAC reaches the
    /// bridge device untagged and is `own` there by the bridge's own fast
    /// path, which reads no verdict; at generic XDP the bridge cannot tell
    /// such a frame from one whose tag the port took out, and reads the
    /// port's verdict first.
    pub quiet_fast: HashMap<u32, u32>,
}

impl Desired {
    /// The MAC filter's words for `local_macs`.
    pub fn mac_filter(&self) -> Vec<u64> {
        let mut words = vec![0u64; MAC_FILTER_WORDS as usize];
        for key in self.local_macs.keys() {
            set_bit(&mut words, mac_filter_bit(key.mac_domain, &key.mac()));
        }
        words
    }

    /// The address table's slots for `local_addrs`: each address in its
    /// slot, `SHARED` where several meet.
    pub fn addr_table(&self) -> Vec<AddrSlot> {
        let mut slots = vec![AddrSlot::EMPTY; ADDR_TABLE_SLOTS as usize];
        for key in &self.local_addrs {
            let addr = AddrSlot::of(&key.addr);
            let slot = &mut slots[addr_slot(addr.hi) as usize];
            *slot = if *slot == AddrSlot::EMPTY || *slot == addr {
                addr
            } else {
                AddrSlot::SHARED
            };
        }
        slots
    }

    /// The same without per-flow records (`--top-flows 0`): the kernel
    /// then never touches the flow map.
    pub fn without_flows(mut self) -> Self {
        for cfg in self.ifaces.values_mut() {
            cfg.flags &= !IF_FLOWS;
        }
        self
    }

    fn add_macs<'a>(
        &mut self,
        netns: u32,
        domain: u32,
        vlans: u32,
        macs: impl IntoIterator<Item = &'a Mac>,
        kind: u8,
    ) {
        for mac in macs {
            let key = MacKey::new(netns, domain, vlans, mac.0);
            // A MAC that is local again is local, whatever it was before.
            let entry = self.local_macs.entry(key).or_insert(kind);
            if kind == MAC_LOCAL {
                *entry = MAC_LOCAL;
            }
        }
    }
}

/// Computes the map contents for `watched` (with their slots) in the
/// namespace `netns`: per interface, what the kernel delivers to the host
/// from it (`delivery`), as `MAC_LOCAL` entries per VLAN path, and the
/// previous MACs as `MAC_PREVIOUS` entries. `previous` holds each
/// interface's earlier MACs (see `tracker`).
pub fn desired(
    netns: u32,
    state: &NetState,
    watched: &[(Watched, u32)],
    previous: &BTreeMap<u32, Vec<Mac>>,
) -> Desired {
    let mut out = Desired::default();
    let deliveries: Vec<_> = watched
        .iter()
        .map(|(w, _)| {
            let d = delivery::delivery(state, w, previous);
            // The fast path's MAC: the bridge's (the common destination on
            // a bridge and its ports) or the device's, and only if the
            // kernel really delivers it untagged here: a bridge MAC missing
            // from the FDB is exactly the failure macdrop must see.
            let fast_candidate = match &w.bridge {
                Some((bridge, _)) => state.link(*bridge).and_then(|l| l.mac),
                None => state.link(w.ifindex).and_then(|l| l.mac),
            };
            let fast = fast_candidate.filter(|m| d.delivers(&[], *m));
            (d, fast)
        })
        .collect();
    let bridge_fast: HashMap<u32, Option<Mac>> = watched
        .iter()
        .zip(&deliveries)
        .filter(|((w, _), _)| w.role == Role::Bridge)
        .map(|((w, _), (_, fast))| (w.ifindex, *fast))
        .collect();
    for ((w, slot), (d, fast)) in watched.iter().zip(deliveries) {
        // Only the fast MAC, untagged, and no previous MAC: no entry at
        // all, and foreign unicast is classified without a lookup.
        let fast_only =
            d.previous.is_empty() && d.paths.len() <= 1 && d.untagged().all(|m| Some(*m) == fast);
        let mac_domain = if fast_only {
            0
        } else {
            for (path, macs) in &d.paths {
                out.add_macs(netns, w.ifindex, vlan_key(path), macs, MAC_LOCAL);
            }
            // Previous MACs on every path that delivers anything (the
            // untagged one always counts): one lookup decides.
            let paths = d.paths.keys().map(|p| vlan_key(p));
            for vlans in std::iter::once(VLANS_UNTAGGED).chain(paths) {
                out.add_macs(netns, w.ifindex, vlans, &d.previous, MAC_PREVIOUS);
            }
            w.ifindex
        };
        let role = match w.role {
            // Quiet only once the bridge is known to run at tc (`sync`).
            Role::Port => IF_PORT | IF_PASSUP_FAST,
            Role::Bridge => IF_BRIDGE,
            Role::Standalone => 0,
        };
        if w.role == Role::Port
            && let Some((bridge, _)) = w.bridge
            && fast.is_some()
            && bridge_fast.get(&bridge) == Some(&fast)
            && !state.vlans.filtering.contains_key(&bridge)
        {
            out.quiet_fast.insert(w.ifindex, bridge);
        }
        out.ifaces.insert(
            IfKey {
                netns,
                ifindex: w.ifindex,
            },
            IfConfig {
                slot: *slot,
                mac_domain,
                // `sync` keeps the filters in step with the maps.
                flags: IF_WATCHED
                    | IF_FILTERED
                    | if fast.is_some() { IF_FAST_MAC_VALID } else { 0 }
                    | role
                    | IF_FLOWS,
                // `ConfigMaps::sync` keeps the sampling in effect.
                flow_sample: 0,
                fast_mac: fast.map_or(0, |mac| mac_word(&mac.0)),
            },
        );
    }
    for addr in &state.addrs {
        out.local_addrs.insert(match addr {
            IpAddr::V4(a) => AddrKey::v4(netns, a.octets()),
            IpAddr::V6(a) => AddrKey::v6(netns, a.octets()),
        });
    }
    out
}

fn set_bit(words: &mut [u64], bit: u32) {
    words[(bit / 64) as usize] |= 1 << (bit % 64);
}

/// Userspace handles on the configuration maps, plus what was last written.
/// The filter arrays' last contents are not kept: `written` gives them
/// again at the next `sync` (160 KiB per namespace saved, which with
/// `--all-netns` over hundreds of namespaces is most of the resident
/// size; a sync recomputes them in well under a millisecond).
pub struct ConfigMaps {
    ifaces: BpfHashMap<MapData, IfKey, IfConfig>,
    if_by_index: BpfArray<MapData, IfConfig>,
    local_macs: BpfHashMap<MapData, MacKey, u8>,
    local_addrs: BpfHashMap<MapData, AddrKey, u8>,
    mac_filter: BpfArray<MapData, u64>,
    addr_table: BpfArray<MapData, AddrSlot>,
    written: Desired,
    /// Hand-off bits (`IF_HANDOFF`, `IF_TC_MUTED`) per ifindex, which the
    /// session sets while it moves an interface from generic XDP to TCX:
    /// every `sync` keeps them on the interface's entry.
    handoff: HashMap<u32, u32>,
    /// Bridge devices whose program runs at tc only (`set_bridge_at_tc`):
    /// their `Desired::quiet_fast` ports leave no verdict on the fast path.
    bridges_at_tc: HashSet<u32>,
    /// Flow sampling masks (`IfConfig::flow_sample`) per ifindex, set by
    /// the session under a flood (`set_flow_sample`): every `sync` keeps
    /// them on the interface's entry.
    flow_sample: HashMap<u32, u32>,
}

impl ConfigMaps {
    pub fn take(ebpf: &mut Ebpf) -> anyhow::Result<Self> {
        fn take<K: aya::Pod, V: aya::Pod>(
            ebpf: &mut Ebpf,
            name: &str,
        ) -> anyhow::Result<BpfHashMap<MapData, K, V>> {
            let map = ebpf
                .take_map(name)
                .with_context(|| format!("map {name} missing from the eBPF object"))?;
            BpfHashMap::try_from(map).with_context(|| format!("map {name} has the wrong type"))
        }
        fn array<V: aya::Pod>(ebpf: &mut Ebpf, name: &str) -> anyhow::Result<BpfArray<MapData, V>> {
            let map = ebpf
                .take_map(name)
                .with_context(|| format!("map {name} missing from the eBPF object"))?;
            BpfArray::try_from(map).with_context(|| format!("map {name} has the wrong type"))
        }
        Ok(Self {
            ifaces: take(ebpf, names::IFACES)?,
            if_by_index: array(ebpf, names::IF_BY_INDEX)?,
            local_macs: take(ebpf, names::LOCAL_MACS)?,
            local_addrs: take(ebpf, names::LOCAL_ADDRS)?,
            mac_filter: array(ebpf, names::MAC_FILTER)?,
            addr_table: array(ebpf, names::ADDR_TABLE)?,
            // The arrays start zeroed, as an empty `Desired`'s filter and
            // table are.
            written: Desired::default(),
            handoff: HashMap::new(),
            bridges_at_tc: HashSet::new(),
            flow_sample: HashMap::new(),
        })
    }

    /// Sets the hand-off bits of `ifindex` to `bits` (0: none) and writes
    /// its entry now if it has one, so the kernel sees the change when this
    /// returns (the caller orders the steps of a hand-off by it).
    pub fn set_handoff(&mut self, ifindex: u32, bits: u32) -> anyhow::Result<()> {
        debug_assert_eq!(bits & !IF_HANDOFF_ANY, 0);
        if bits == 0 {
            self.handoff.remove(&ifindex);
        } else {
            self.handoff.insert(ifindex, bits);
        }
        self.rewrite_flags(ifindex, |flags| (flags & !IF_HANDOFF_ANY) | bits)
    }

    /// The flow sampling mask of `ifindex` (0: none).
    pub fn flow_sample(&self, ifindex: u32) -> u32 {
        self.flow_sample.get(&ifindex).copied().unwrap_or(0)
    }

    /// Sets the flow sampling mask of `ifindex` (`IfConfig::flow_sample`,
    /// 0: every mismatched frame recorded) and writes its entry now if it
    /// has one.
    pub fn set_flow_sample(&mut self, ifindex: u32, mask: u32) -> anyhow::Result<()> {
        debug_assert!(mask < FLOW_SAMPLE_MAX && (mask + 1).is_power_of_two());
        if mask == 0 {
            self.flow_sample.remove(&ifindex);
        } else {
            self.flow_sample.insert(ifindex, mask);
        }
        self.rewrite(ifindex, |cfg| cfg.flow_sample = mask)
    }

    /// Tells whether the bridge device `ifindex`'s program now runs at tc
    /// only (true: attached there, no generic XDP left) or may run at XDP
    /// (false: before it leaves tc, or while it is on generic XDP), and
    /// writes its ports' entries now: `IF_PASSUP_FAST` is cleared on its
    /// `quiet_fast` ports only while it runs at tc. The caller calls this
    /// after the bridge reaches tc and before it leaves it, so the ports
    /// are quiet only while the bridge answers its fast path by itself.
    pub fn set_bridge_at_tc(&mut self, ifindex: u32, at_tc: bool) -> anyhow::Result<()> {
        if at_tc {
            self.bridges_at_tc.insert(ifindex);
        } else {
            self.bridges_at_tc.remove(&ifindex);
        }
        let ports: Vec<u32> = self
            .written
            .quiet_fast
            .iter()
            .filter(|(_, bridge)| **bridge == ifindex)
            .map(|(port, _)| *port)
            .collect();
        for port in ports {
            self.rewrite_flags(port, |flags| {
                if at_tc {
                    flags & !IF_PASSUP_FAST
                } else {
                    flags | IF_PASSUP_FAST
                }
            })?;
        }
        Ok(())
    }

    /// Rewrites the written entry of `ifindex`, if it has one, with
    /// `change` applied to its flags, so the kernel sees it when this
    /// returns.
    fn rewrite_flags(
        &mut self,
        ifindex: u32,
        change: impl FnOnce(u32) -> u32,
    ) -> anyhow::Result<()> {
        self.rewrite(ifindex, |cfg| cfg.flags = change(cfg.flags))
    }

    /// Rewrites the written entry of `ifindex`, if it has one, with
    /// `change` applied, so the kernel sees it when this returns.
    fn rewrite(&mut self, ifindex: u32, change: impl FnOnce(&mut IfConfig)) -> anyhow::Result<()> {
        let Some((key, value)) = self
            .written
            .ifaces
            .iter_mut()
            .find(|(k, _)| k.ifindex == ifindex)
        else {
            return Ok(());
        };
        let mut changed = *value;
        change(&mut changed);
        if changed == *value {
            return Ok(());
        }
        *value = changed;
        // The array is what the classifier reads; the hash only beyond it
        // (`in_array`, which the borrow of `written` rules out here).
        if key.ifindex < self.if_by_index.len() {
            self.if_by_index
                .set(key.ifindex, *value, 0)
                .context("cannot update the interface array")?;
        }
        self.ifaces
            .insert(*key, *value, 0)
            .context("cannot update the interface map")
    }

    /// Entries of the interface array, as loaded.
    pub fn interface_array_len(&self) -> u32 {
        self.if_by_index.len()
    }

    /// Whether `ifindex` has an entry in the interface array, which the
    /// loader sized for the namespace (`loader::ifindex_direct`); those
    /// beyond it are in the `IFACES` hash only.
    fn in_array(&self, ifindex: u32) -> bool {
        ifindex < self.interface_array_len()
    }

    /// Writes the difference between what the maps hold and `want`. Stale
    /// entries are removed first so a full map can take the new ones.
    pub fn sync(&mut self, mut want: Desired) -> anyhow::Result<()> {
        for (key, cfg) in want.ifaces.iter_mut() {
            if let Some(bits) = self.handoff.get(&key.ifindex) {
                cfg.flags |= bits;
            }
            if let Some(&mask) = self.flow_sample.get(&key.ifindex) {
                cfg.flow_sample = mask;
            }
            if want
                .quiet_fast
                .get(&key.ifindex)
                .is_some_and(|bridge| self.bridges_at_tc.contains(bridge))
            {
                cfg.flags &= !IF_PASSUP_FAST;
            }
        }
        // A device that goes takes its sampling along: one that comes back
        // at its ifindex starts exact.
        if !self.flow_sample.is_empty() {
            let present: HashSet<u32> = want.ifaces.keys().map(|k| k.ifindex).collect();
            self.flow_sample
                .retain(|ifindex, _| present.contains(ifindex));
        }
        check_capacity("interfaces", want.ifaces.len(), MAX_INTERFACES)?;
        check_capacity("local MAC addresses", want.local_macs.len(), MAX_LOCAL_MACS)?;
        check_capacity(
            "local IP addresses",
            want.local_addrs.len(),
            MAX_LOCAL_ADDRS,
        )?;

        // Interfaces: out of the array first (the classifier then finds
        // the hash entry until it goes too), into it last.
        for key in self.written.ifaces.keys() {
            if !want.ifaces.contains_key(key) && self.in_array(key.ifindex) {
                self.if_by_index
                    .set(key.ifindex, IfConfig::default(), 0)
                    .context("cannot update the interface array")?;
            }
        }
        sync_map(&mut self.ifaces, &self.written.ifaces, &want.ifaces)?;
        for (key, value) in &want.ifaces {
            if self.in_array(key.ifindex) && self.written.ifaces.get(key) != Some(value) {
                self.if_by_index
                    .set(key.ifindex, value, 0)
                    .context("cannot update the interface array")?;
            }
        }
        sync_map(
            &mut self.local_macs,
            &self.written.local_macs,
            &want.local_macs,
        )?;
        sync_set(
            &mut self.local_addrs,
            &self.written.local_addrs,
            &want.local_addrs,
        )?;
        // A MAC is in its map before its filter bit is set; in between the
        // classifier merely skips a lookup that would have found it, as if
        // the change had come a moment later.
        sync_words(
            &mut self.mac_filter,
            &self.written.mac_filter(),
            &want.mac_filter(),
        )?;
        sync_words(
            &mut self.addr_table,
            &self.written.addr_table(),
            &want.addr_table(),
        )?;
        self.written = want;
        Ok(())
    }
}

/// Writes the entries of an array that changed.
fn sync_words<V: aya::Pod + PartialEq>(
    map: &mut BpfArray<MapData, V>,
    had: &[V],
    want: &[V],
) -> anyhow::Result<()> {
    for (i, (old, new)) in had.iter().zip(want).enumerate() {
        if old != new {
            map.set(i as u32, new, 0)
                .context("cannot update a filter map")?;
        }
    }
    Ok(())
}

/// Removes what `had` has and `want` lacks, then writes what differs.
fn sync_map<K: aya::Pod + Eq + std::hash::Hash, V: aya::Pod + PartialEq>(
    map: &mut BpfHashMap<MapData, K, V>,
    had: &HashMap<K, V>,
    want: &HashMap<K, V>,
) -> anyhow::Result<()> {
    for key in had.keys() {
        if !want.contains_key(key) {
            remove(map, key)?;
        }
    }
    for (key, value) in want {
        if had.get(key) != Some(value) {
            map.insert(key, value, 0)
                .context("cannot update a configuration map")?;
        }
    }
    Ok(())
}

fn sync_set<K: aya::Pod + Eq + std::hash::Hash>(
    map: &mut BpfHashMap<MapData, K, u8>,
    had: &HashSet<K>,
    want: &HashSet<K>,
) -> anyhow::Result<()> {
    for key in had.difference(want) {
        remove(map, key)?;
    }
    for key in want.difference(had) {
        map.insert(key, 1, 0)
            .context("cannot update a configuration map")?;
    }
    Ok(())
}

fn remove<K: aya::Pod, V: aya::Pod>(
    map: &mut BpfHashMap<MapData, K, V>,
    key: &K,
) -> anyhow::Result<()> {
    match map.remove(key) {
        Ok(()) | Err(aya::maps::MapError::KeyNotFound) => Ok(()),
        Err(e) => Err(e).context("cannot remove a configuration map entry"),
    }
}

fn check_capacity(what: &str, n: usize, max: u32) -> anyhow::Result<()> {
    if n > max as usize {
        return Err(crate::error::Failure::environment(format!(
            "{n} {what} exceed macdrop's kernel map capacity of {max}; watch fewer \
             interfaces with --bridge/--iface"
        ))
        .into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::{netlink::Link, topology};
    use monitor_common::mac_of_word;

    const BR_MAC: Mac = Mac([2, 0, 0, 0, 0x0b, 1]);
    const P1_MAC: Mac = Mac([2, 0, 0, 0, 0x0a, 1]);

    fn state(fdb: Vec<Mac>) -> NetState {
        let link = Link::fake;
        NetState {
            links: vec![
                link(2, "br0", "bridge", None, BR_MAC),
                link(3, "p1", "veth", Some(2), P1_MAC),
                link(9, "v0", "veth", None, Mac([2, 0, 0, 0, 0x0d, 1])),
            ],
            addrs: vec!["192.0.2.1".parse().unwrap(), "2001:db8::1".parse().unwrap()],
            local_fdb: BTreeMap::from([(2, fdb)]),
            secondary_macs: BTreeMap::new(),
            vlans: Default::default(),
            if_addrs: BTreeMap::new(),
        }
    }

    fn watched(s: &NetState) -> Vec<(Watched, u32)> {
        s.links
            .iter()
            .enumerate()
            .map(|(i, l)| (topology::describe(s, l), i as u32))
            .collect()
    }

    #[test]
    fn a_port_delivers_the_bridge_mac_and_its_own() {
        let s = state(vec![BR_MAC, P1_MAC]);
        let d = desired(77, &s, &watched(&s), &BTreeMap::new());
        let p1 = d.ifaces[&IfKey {
            netns: 77,
            ifindex: 3,
        }];
        assert_eq!((p1.slot, p1.mac_domain), (1, 3));
        assert_eq!(
            p1.flags,
            IF_WATCHED | IF_FILTERED | IF_FAST_MAC_VALID | IF_PORT | IF_PASSUP_FAST | IF_FLOWS
        );
        assert_eq!(mac_of_word(p1.fast_mac), BR_MAC.0);
        assert_eq!(d.local_macs[&MacKey::new(77, 3, 0, P1_MAC.0)], MAC_LOCAL);
        assert_eq!(d.local_macs[&MacKey::new(77, 3, 0, BR_MAC.0)], MAC_LOCAL);
        // The bridge device delivers its own MAC on the fast path alone;
        // a frame for p1's MAC reaches it with p1's verdict.
        let br0 = d.ifaces[&IfKey {
            netns: 77,
            ifindex: 2,
        }];
        assert_eq!(
            (br0.mac_domain, br0.flags),
            (
                0,
                IF_WATCHED | IF_FILTERED | IF_FAST_MAC_VALID | IF_BRIDGE | IF_FLOWS
            )
        );
        assert_eq!(d.local_macs.len(), 2);
        assert!(d.local_addrs.contains(&AddrKey::v4(77, [192, 0, 2, 1])));
        assert_eq!(d.local_addrs.len(), 2);
    }

    #[test]
    fn another_ports_mac_is_not_delivered_on_a_port() {
        let p2 = Mac([2, 0, 0, 0, 0x0a, 2]);
        let mut s = state(vec![BR_MAC, P1_MAC, p2]);
        s.links.push(Link::fake(4, "p2", "veth", Some(2), p2));
        let d = desired(77, &s, &watched(&s), &BTreeMap::new());
        assert!(!d.local_macs.contains_key(&MacKey::new(77, 3, 0, p2.0)));
        assert!(d.local_macs.contains_key(&MacKey::new(77, 4, 0, p2.0)));
    }

    #[test]
    fn bridge_mac_missing_from_fdb_gets_no_fast_path() {
        let s = state(vec![P1_MAC]);
        let d = desired(77, &s, &watched(&s), &BTreeMap::new());
        for ifindex in [2, 3] {
            let cfg = d.ifaces[&IfKey { netns: 77, ifindex }];
            assert_eq!(cfg.flags & IF_FAST_MAC_VALID, 0, "{ifindex}");
            assert!(
                !d.local_macs
                    .contains_key(&MacKey::new(77, ifindex, 0, BR_MAC.0))
            );
        }
    }

    #[test]
    fn standalone_with_extra_unicast_addresses_gets_its_own_domain() {
        let mut s = state(vec![BR_MAC]);
        let macvlan = Mac([2, 0, 0, 0, 0xcc, 1]);
        s.secondary_macs.insert(9, vec![macvlan]);
        let d = desired(77, &s, &watched(&s), &BTreeMap::new());
        let v0 = d.ifaces[&IfKey {
            netns: 77,
            ifindex: 9,
        }];
        assert_eq!(v0.mac_domain, 9);
        assert!(d.local_macs.contains_key(&MacKey::new(77, 9, 0, macvlan.0)));
        assert!(
            d.local_macs
                .contains_key(&MacKey::new(77, 9, 0, [2, 0, 0, 0, 0x0d, 1]))
        );
    }

    #[test]
    fn a_port_may_be_quiet_only_where_its_bridge_answers_the_fast_path_alone() {
        // Healthy: the bridge's MAC is both fast MACs, no VLAN filtering.
        let s = state(vec![BR_MAC, P1_MAC]);
        let d = desired(77, &s, &watched(&s), &BTreeMap::new());
        assert_eq!(d.quiet_fast, HashMap::from([(3, 2)]));
        // Loud until the bridge is known to run at tc (`ConfigMaps`).
        let p1 = d.ifaces[&IfKey {
            netns: 77,
            ifindex: 3,
        }];
        assert_ne!(p1.flags & IF_PASSUP_FAST, 0);

        // The bridge's MAC missing from its FDB: no fast MAC, nothing quiet.
        let s = state(vec![P1_MAC]);
        let d = desired(77, &s, &watched(&s), &BTreeMap::new());
        assert!(d.quiet_fast.is_empty());

        // A VLAN-filtering bridge may tag the frame on its way up.
        let mut s = state(vec![BR_MAC, P1_MAC]);
        s.vlans.filtering.insert(2, 0x8100);
        let d = desired(77, &s, &watched(&s), &BTreeMap::new());
        assert!(d.quiet_fast.is_empty());

        // The bridge not watched: nobody answers for it.
        let s = state(vec![BR_MAC, P1_MAC]);
        let only_ports: Vec<_> = watched(&s)
            .into_iter()
            .filter(|(w, _)| w.role != Role::Bridge)
            .collect();
        let d = desired(77, &s, &only_ports, &BTreeMap::new());
        assert!(d.quiet_fast.is_empty());
    }

    #[test]
    fn previous_macs_are_stale_unless_local_again() {
        let s = state(vec![BR_MAC, P1_MAC]);
        let old_bridge = Mac([2, 0, 0, 0, 0x0b, 0x99]);
        let previous = BTreeMap::from([(2, vec![old_bridge, P1_MAC]), (9, vec![old_bridge])]);
        let d = desired(77, &s, &watched(&s), &previous);
        for domain in [2, 3] {
            assert_eq!(
                d.local_macs[&MacKey::new(77, domain, 0, old_bridge.0)],
                MAC_PREVIOUS
            );
        }
        assert_eq!(
            d.local_macs[&MacKey::new(77, 3, 0, P1_MAC.0)],
            MAC_LOCAL,
            "local wins"
        );
        // A standalone interface with a previous MAC gets a domain of its own.
        let v0 = d.ifaces[&IfKey {
            netns: 77,
            ifindex: 9,
        }];
        assert_eq!(v0.mac_domain, 9);
        assert_eq!(
            d.local_macs[&MacKey::new(77, 9, 0, old_bridge.0)],
            MAC_PREVIOUS
        );
        assert_eq!(
            d.local_macs[&MacKey::new(77, 9, 0, [2, 0, 0, 0, 0x0d, 1])],
            MAC_LOCAL
        );
    }

    #[test]
    fn filters_hold_every_key_of_their_maps() {
        let s = state(vec![BR_MAC, P1_MAC]);
        let previous = BTreeMap::from([(2, vec![Mac([2, 0, 0, 0, 0x0b, 0x99])])]);
        let d = desired(77, &s, &watched(&s), &previous);
        let has = |words: &[u64], bit: u32| words[(bit / 64) as usize] & (1 << (bit % 64)) != 0;
        let macs = d.mac_filter();
        for key in d.local_macs.keys() {
            assert!(has(&macs, mac_filter_bit(key.mac_domain, &key.mac())));
        }
        let set: u32 = macs.iter().map(|w| w.count_ones()).sum();
        assert!(set as usize <= d.local_macs.len());
        let table = d.addr_table();
        for key in &d.local_addrs {
            let addr = AddrSlot::of(&key.addr);
            assert_eq!(table[addr_slot(addr.hi) as usize], addr);
        }
        let other = AddrSlot::v4(&[192, 0, 2, 2]);
        assert_ne!(table[addr_slot(other.hi) as usize], other);
        assert_eq!(
            table.iter().filter(|s| **s != AddrSlot::EMPTY).count(),
            d.local_addrs.len()
        );
    }

    #[test]
    fn addresses_meeting_in_a_slot_share_it() {
        // Find two IPv4 addresses with the same slot.
        let mut seen = HashMap::new();
        let (a, b) = (0u32..)
            .find_map(|i| {
                let a = AddrSlot::v4(&i.to_be_bytes());
                seen.insert(addr_slot(a.hi), i)
                    .map(|j| (j.to_be_bytes(), i.to_be_bytes()))
            })
            .unwrap();
        let mut d = Desired::default();
        d.local_addrs.insert(AddrKey::v4(1, a));
        d.local_addrs.insert(AddrKey::v4(1, b));
        let table = d.addr_table();
        assert_eq!(
            table[addr_slot(AddrSlot::v4(&a).hi) as usize],
            AddrSlot::SHARED
        );
    }

    #[test]
    fn each_port_gets_two_entries_however_many_ports() {
        let mut s = state(vec![BR_MAC]);
        for i in 0..300u32 {
            let mac = Mac([2, 0, 0, 1, (i >> 8) as u8, i as u8]);
            s.links
                .push(Link::fake(1000 + i, &format!("q{i}"), "veth", Some(2), mac));
            s.local_fdb.get_mut(&2).unwrap().push(mac);
        }
        let d = desired(77, &s, &watched(&s), &BTreeMap::new());
        // Two per port; p1 (its MAC not in this FDB) and the bridge
        // deliver the fast MAC alone and need no entry.
        assert_eq!(d.local_macs.len(), 600);
        let q = d.ifaces[&IfKey {
            netns: 77,
            ifindex: 1299,
        }];
        assert_eq!((q.mac_domain, mac_of_word(q.fast_mac)), (1299, BR_MAC.0));
    }

    #[test]
    fn standalone_uses_its_device_mac_only() {
        let s = state(vec![BR_MAC]);
        let d = desired(77, &s, &watched(&s), &BTreeMap::new());
        let v0 = d.ifaces[&IfKey {
            netns: 77,
            ifindex: 9,
        }];
        assert_eq!(
            (v0.mac_domain, v0.flags),
            (0, IF_WATCHED | IF_FILTERED | IF_FAST_MAC_VALID | IF_FLOWS)
        );
        assert_eq!(mac_of_word(v0.fast_mac), [2, 0, 0, 0, 0x0d, 1]);
    }
}
