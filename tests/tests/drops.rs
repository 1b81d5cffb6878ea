//! Confirmed drops on the real kernel: load the `kfree_skb` program
//! (`macdrop::kernel::drops`) for a lab's namespace, register watched
//! interfaces in `MACDROP_IFACES` (each in a counter slot of its own) and
//! send exact numbers of frames through namespace labs; each drop must be
//! counted once, on its (namespace, ifindex), with the kernel's reason,
//! whether it lands in the interface's slot or, beyond its first two
//! reasons, in the hash. Through both hooks (tp_btf and the raw
//! tracepoint). Needs root (CI runs the suite as root) and fails without
//! it. The BTF side's unit tests stay with the module.

use std::time::Duration;

use aya::{
    Ebpf,
    maps::{HashMap as BpfHashMap, MapData},
};
use macdrop::kernel::{
    drops::{DropCounts, DropHook, DropLayer, DropMaps, KernelBtf, SlotOwners},
    loader,
};
use macdrop_tests::{
    frames, kernel as lab_kernel,
    lab::{self, BridgeLab, StandaloneLab},
    netns::NetNs,
    sender::{RawSender, pin_to_first_cpu},
    wait::poll_until,
};
use monitor_common::{IfConfig, IfKey, names as xdp_names};

/// Frames per test; different per lab where counts could mix.
const N: usize = 50;
/// Frames are processed asynchronously (softirq): poll up to this long.
const SETTLE: Duration = Duration::from_secs(5);

/// A private object instance for one namespace (as macdrop loads one per
/// namespace it watches) with the drop program attached and the given
/// interfaces of that namespace in the watched-interface map, interface
/// `i` in counter slot `i`.
struct Rig {
    layer: DropLayer,
    maps: DropMaps,
    netns: u32,
    /// The ifindex in each slot.
    slots: Vec<u32>,
    _ifaces: BpfHashMap<MapData, IfKey, IfConfig>,
    _ebpf: Ebpf,
}

impl Rig {
    fn new(hook: DropHook, watched: &[IfKey]) -> Self {
        assert!(
            macdrop::privileges::check().is_ok(),
            "drop-layer tests need root (CAP_BPF + CAP_NET_ADMIN): run `cargo xtask test`"
        );
        let netns = watched[0].netns;
        assert!(
            watched.iter().all(|k| k.netns == netns),
            "one namespace per object"
        );
        let layer = DropLayer::prepare().unwrap();
        let mut ebpf = loader::load(netns, &layer.globals()).unwrap();
        let mut ifaces: BpfHashMap<MapData, IfKey, IfConfig> =
            BpfHashMap::try_from(ebpf.take_map(xdp_names::IFACES).unwrap()).unwrap();
        // The drop program uses the slot; the rest of the XDP
        // configuration in the value is not used here.
        for (slot, key) in watched.iter().enumerate() {
            let cfg = IfConfig {
                slot: slot as u32,
                ..IfConfig::default()
            };
            ifaces.insert(key, cfg, 0).unwrap();
        }
        let maps = DropMaps::take(&mut ebpf).unwrap();
        layer
            .attach_hook(&mut ebpf, hook, &mut KernelBtf::default())
            .unwrap_or_else(|e| panic!("attach {hook}: {e}"));
        Self {
            layer,
            maps,
            netns,
            slots: watched.iter().map(|k| k.ifindex).collect(),
            _ifaces: ifaces,
            _ebpf: ebpf,
        }
    }

    /// Polls until the counts equal `want` (or time runs out) and
    /// returns the last read, for the caller to assert on.
    fn settle(&mut self, want: &DropCounts) -> DropCounts {
        poll_until(SETTLE, || self.read(), |c| c == want).unwrap()
    }

    fn read(&mut self) -> anyhow::Result<DropCounts> {
        let slots = &self.slots;
        let owners = SlotOwners {
            netns: self.netns,
            end: slots.len() as u32,
            ifindex: &|slot| slots.get(slot as usize).copied(),
        };
        self.layer.read(&mut self.maps, &owners)
    }
}

fn key(ns: &NetNs, ifname: &str) -> IfKey {
    IfKey {
        netns: u32::try_from(ns.inode()).unwrap(),
        ifindex: lab_kernel::ifindex(ns, ifname).unwrap(),
    }
}

fn counts(entries: &[(IfKey, &[(&str, u64)])]) -> DropCounts {
    entries
        .iter()
        .map(|(k, reasons)| {
            (
                (k.netns, k.ifindex),
                reasons.iter().map(|(r, n)| ((*r).to_owned(), *n)).collect(),
            )
        })
        .collect()
}

/// Foreign unicast frames from the standalone lab's peer.
fn send_foreign_to_standalone(lab: &StandaloneLab, n: usize) {
    let frame = frames::ipv4_udp(
        lab::FOREIGN_MAC,
        lab::STANDALONE_PEER_MAC,
        lab::STANDALONE_PEER_IPV4,
        lab::STANDALONE_IPV4,
    );
    RawSender::new(lab.peer(), lab::PEER_IFACE)
        .unwrap()
        .send(&frame, n)
        .unwrap();
}

/// A plain veth drops foreign unicast in the IP layer: OTHERHOST, one
/// per frame, on (host namespace, v0), and nothing else.
fn standalone_otherhost(hook: DropHook) {
    let lab = StandaloneLab::new().unwrap();
    let v0 = key(lab.host(), lab::STANDALONE_IFACE);
    let mut rig = Rig::new(hook, &[v0]);
    send_foreign_to_standalone(&lab, N);
    let want = counts(&[(v0, &[("OTHERHOST", N as u64)])]);
    assert_eq!(rig.settle(&want), want);
}

#[test]
fn standalone_otherhost_tp_btf() {
    standalone_otherhost(DropHook::TpBtf);
}

#[test]
fn standalone_otherhost_raw_tracepoint() {
    standalone_otherhost(DropHook::RawTracepoint);
}

/// A bridge with a single port, not promiscuous: foreign unicast is
/// flooded to no port and freed on the port with NO_TX_TARGET; the
/// bridge never passes it up, so there is no OTHERHOST anywhere.
fn one_port_bridge_no_tx_target(hook: DropHook) {
    let lab = BridgeLab::new(1).unwrap();
    let p1 = key(lab.host(), &lab::port_name(1));
    let br0 = key(lab.host(), lab::BRIDGE);
    let mut rig = Rig::new(hook, &[p1, br0]);
    let frame = frames::ipv4_udp(
        lab::FOREIGN_MAC,
        lab::peer_mac(1),
        lab::peer_ipv4(1),
        lab::FOREIGN_IPV4,
    );
    RawSender::new(lab.peer(1), lab::PEER_IFACE)
        .unwrap()
        .send(&frame, N)
        .unwrap();
    let want = counts(&[(p1, &[("NO_TX_TARGET", N as u64)])]);
    let got = rig.settle(&want);
    assert_eq!(got, want);
    assert!(got.values().all(|r| !r.contains_key("OTHERHOST")));
}

#[test]
fn one_port_bridge_no_tx_target_tp_btf() {
    one_port_bridge_no_tx_target(DropHook::TpBtf);
}

#[test]
fn one_port_bridge_no_tx_target_raw_tracepoint() {
    one_port_bridge_no_tx_target(DropHook::RawTracepoint);
}

/// Two namespaces whose watched veths have the same ifindex, different
/// traffic, each with an object of its own (as macdrop runs them): each
/// counts only its own namespace's drops, on its (netns, ifindex). A
/// third, unwatched lab's drops are counted by neither.
fn same_ifindex_in_two_namespaces(hook: DropHook) {
    let a = StandaloneLab::new().unwrap();
    let b = StandaloneLab::new().unwrap();
    let unwatched = StandaloneLab::new().unwrap();
    let (ka, kb) = (
        key(a.host(), lab::STANDALONE_IFACE),
        key(b.host(), lab::STANDALONE_IFACE),
    );
    assert_eq!(ka.ifindex, kb.ifindex, "the labs should mirror each other");
    assert_ne!(ka.netns, kb.netns);
    let mut rig_a = Rig::new(hook, &[ka]);
    let mut rig_b = Rig::new(hook, &[kb]);
    send_foreign_to_standalone(&unwatched, 10);
    send_foreign_to_standalone(&a, 30);
    send_foreign_to_standalone(&b, 70);
    let want = counts(&[(ka, &[("OTHERHOST", 30)])]);
    assert_eq!(rig_a.settle(&want), want);
    let want = counts(&[(kb, &[("OTHERHOST", 70)])]);
    assert_eq!(rig_b.settle(&want), want);
}

/// Three reasons on one interface, all from one CPU: the first two fill
/// the interface's slot, the third goes to the hash, and each is counted
/// exactly. Foreign unicast (OTHERHOST), then frames to the interface's
/// own MAC with a protocol nobody handles, then IPv4 with a bad header
/// (the last two's reason names differ between kernels, so only their
/// counts are checked: two further reasons of 20 and 30).
fn three_reasons_on_one_interface(hook: DropHook) {
    let lab = StandaloneLab::new().unwrap();
    let v0 = key(lab.host(), lab::STANDALONE_IFACE);
    let mut rig = Rig::new(hook, &[v0]);
    let unhandled = frames::eth(
        lab::STANDALONE_MAC,
        lab::STANDALONE_PEER_MAC,
        0x88b5,
        &[0; 46],
    );
    let mut bad_header = frames::ipv4_udp(
        lab::STANDALONE_MAC,
        lab::STANDALONE_PEER_MAC,
        lab::STANDALONE_PEER_IPV4,
        lab::STANDALONE_IPV4,
    );
    bad_header[14] = 0x44; // IHL 4 words: shorter than any IPv4 header
    std::thread::scope(|s| {
        s.spawn(|| {
            pin_to_first_cpu();
            send_foreign_to_standalone(&lab, 10);
            let tx = RawSender::new(lab.peer(), lab::PEER_IFACE).unwrap();
            tx.send(&unhandled, 20).unwrap();
            tx.send(&bad_header, 30).unwrap();
        });
    });
    let read = poll_until(
        SETTLE,
        || rig.read(),
        |c| {
            c.get(&(v0.netns, v0.ifindex))
                .is_some_and(|r| r.values().sum::<u64>() >= 60)
        },
    )
    .unwrap();
    let reasons = &read[&(v0.netns, v0.ifindex)];
    assert_eq!(read.len(), 1, "{read:?}");
    assert_eq!(reasons.get("OTHERHOST"), Some(&10), "{read:?}");
    let mut others: Vec<u64> = reasons
        .iter()
        .filter(|(r, _)| *r != "OTHERHOST")
        .map(|(_, n)| *n)
        .collect();
    others.sort();
    assert_eq!(others, [20, 30], "{read:?}");
}

#[test]
fn three_reasons_on_one_interface_tp_btf() {
    three_reasons_on_one_interface(DropHook::TpBtf);
}

#[test]
fn three_reasons_on_one_interface_raw_tracepoint() {
    three_reasons_on_one_interface(DropHook::RawTracepoint);
}

#[test]
fn same_ifindex_in_two_namespaces_tp_btf() {
    same_ifindex_in_two_namespaces(DropHook::TpBtf);
}

#[test]
fn same_ifindex_in_two_namespaces_raw_tracepoint() {
    same_ifindex_in_two_namespaces(DropHook::RawTracepoint);
}

#[test]
fn attach_prefers_tp_btf() {
    let rig_hook = {
        let layer = DropLayer::prepare().unwrap();
        let netns = macdrop::netns::inode_of(std::path::Path::new("/proc/self/ns/net")).unwrap();
        let mut ebpf = loader::load(netns, &layer.globals()).unwrap();
        layer.attach(&mut ebpf, &mut KernelBtf::default())
    };
    assert_eq!(rig_hook, Ok(DropHook::TpBtf));
}
