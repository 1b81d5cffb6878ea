//! Confirmed drops on the real kernel: load the `kfree_skb` program
//! (`macdrop::kernel::drops`), register watched interfaces in
//! `MACDROP_IFACES` and send exact numbers of frames through namespace labs;
//! each drop must be counted once, on its (namespace, ifindex), with the
//! kernel's reason. Through both hooks (tp_btf and the raw tracepoint).
//! Needs root (CI runs the suite as root) and fails without it. The BTF
//! side's unit tests stay with the module.

use std::time::Duration;

use aya::{
    Ebpf,
    maps::{HashMap as BpfHashMap, MapData},
};
use macdrop::kernel::{
    drops::{DropCounts, DropHook, DropLayer, DropMap, KernelBtf},
    loader,
};
use macdrop_tests::{
    frames, kernel as lab_kernel,
    lab::{self, BridgeLab, StandaloneLab},
    netns::NetNs,
    sender::RawSender,
    wait::poll_until,
};
use monitor_common::{IfConfig, IfKey, names as xdp_names};

/// Frames per test; different per lab where counts could mix.
const N: usize = 50;
/// Frames are processed asynchronously (softirq): poll up to this long.
const SETTLE: Duration = Duration::from_secs(5);

/// A private object instance with the drop program attached and the
/// given interfaces in the watched-interface map.
struct Rig {
    layer: DropLayer,
    drops: DropMap,
    _ifaces: BpfHashMap<MapData, IfKey, IfConfig>,
    _ebpf: Ebpf,
}

impl Rig {
    fn new(hook: DropHook, watched: &[IfKey]) -> Self {
        assert!(
            macdrop::privileges::check().is_ok(),
            "drop-layer tests need root (CAP_BPF + CAP_NET_ADMIN): run `cargo xtask test`"
        );
        let layer = DropLayer::prepare().unwrap();
        let netns = macdrop::netns::inode_of(std::path::Path::new("/proc/self/ns/net")).unwrap();
        let mut ebpf = loader::load(netns, &layer.globals()).unwrap();
        let mut ifaces: BpfHashMap<MapData, IfKey, IfConfig> =
            BpfHashMap::try_from(ebpf.take_map(xdp_names::IFACES).unwrap()).unwrap();
        // Only presence matters to the drop program; the XDP
        // configuration in the value is not used here.
        for key in watched {
            ifaces.insert(key, IfConfig::default(), 0).unwrap();
        }
        let drops = DropLayer::take_map(&mut ebpf).unwrap();
        layer
            .attach_hook(&mut ebpf, hook, &mut KernelBtf::default())
            .unwrap_or_else(|e| panic!("attach {hook}: {e}"));
        Self {
            layer,
            drops,
            _ifaces: ifaces,
            _ebpf: ebpf,
        }
    }

    /// Polls until the counts equal `want` (or time runs out) and
    /// returns the last read, for the caller to assert on.
    fn settle(&self, want: &DropCounts) -> DropCounts {
        poll_until(SETTLE, || self.layer.read(&self.drops), |c| c == want).unwrap()
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
    let rig = Rig::new(hook, &[v0]);
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
    let rig = Rig::new(hook, &[p1, br0]);
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
/// traffic: each count lands on its own (netns, ifindex). A third,
/// unwatched lab's drops are filtered out in the kernel.
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
    let rig = Rig::new(hook, &[ka, kb]);
    send_foreign_to_standalone(&unwatched, 10);
    send_foreign_to_standalone(&a, 30);
    send_foreign_to_standalone(&b, 70);
    let want = counts(&[(ka, &[("OTHERHOST", 30)]), (kb, &[("OTHERHOST", 70)])]);
    assert_eq!(rig.settle(&want), want);
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
