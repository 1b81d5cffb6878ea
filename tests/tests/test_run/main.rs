//! The kernel classifier checked against the reference model
//! (`classify.rs`) with BPF_PROG_TEST_RUN on crafted frames, through both
//! hooks: for each frame the verdict must be XDP_PASS (XDP) or
//! TC_ACT_UNSPEC (tc), the frame must come out byte-identical, and the
//! counter deltas must equal the model's class (for tc, plus the kernel's
//! `pkt_type`, modelled here after `eth_type_trans`). Needs root (CI runs
//! the suite as root); without it the tests fail rather than pass vacuously.
//!
//! The runs go through `macdrop::kernel::test_run` and the device through
//! `macdrop_tests::test_run::Device`, which `cargo xtask bench` times its
//! frames with too.

use std::{
    collections::{BTreeMap, HashSet},
    net::IpAddr,
};

use aya::{
    Ebpf,
    programs::{ProgramError, SchedClassifier, Xdp},
};
use macdrop::{
    classify::{Receiver, classify, counter_delta},
    delivery::Delivery,
    kernel::{
        config,
        config::ConfigMaps,
        counters::CounterReader,
        flows::FlowReader,
        klog::KernelLogReader,
        loader,
        test_run::{self, TC_ACT_UNSPEC, XDP_PASS},
    },
    mac::Mac,
    netlink::{Link, NetState, VlanDevice, VlanMembership},
    topology,
};
use macdrop_tests::{netns::NetNs, sender::pin_to_first_cpu, test_run::Device};
use monitor_common::{
    FrameCounters, MAX_VLAN_TAGS, VERDICT_HOST_IP, VERDICT_OWN, VERDICT_VALID, mac_word, names,
};
/// The loopback device: test_run needs a real ingress device in the current
/// namespace, and the maps of this private object instance make it "watched".
const LO: u32 = 1;
const FAKE_BRIDGE: u32 = 100_000;

const BR_MAC: Mac = Mac([2, 0, 0, 0, 0x0b, 1]);
const LO_MAC: Mac = Mac([2, 0, 0, 0, 0x0a, 1]);
const P2_MAC: Mac = Mac([2, 0, 0, 0, 0x0a, 2]);
const FOREIGN: Mac = Mac([2, 0, 0, 0, 0xee, 0xee]);
/// A MAC the bridge (or the standalone device) had before a change.
const OLD_MAC: Mac = Mac([2, 0, 0, 0, 0x0b, 0x99]);
const SRC: Mac = Mac([2, 0, 0, 0, 0x0c, 1]);

/// How the loopback device is presented to the classifier.
#[derive(Clone, Copy, Debug)]
enum Scenario {
    /// A port of a healthy bridge: local FDB = bridge MAC + port MACs.
    HealthyPort,
    /// A port of a bridge whose own MAC was deleted from its FDB.
    PortOfBridgeWithoutOwnMac,
    /// Not bridged: only the device MAC is own.
    Standalone,
    /// The same without a previous MAC: the interface then has no map
    /// entry at all and only the fast path delivers (`mac_domain` 0).
    StandaloneFastOnly,
    /// A healthy port whose bridge (no VLAN filtering) has a VLAN device
    /// for 802.1Q VID 10, with the bridge's MAC.
    PortWithVlanDevice,
    /// A port of an 802.1Q VLAN-filtering bridge: PVID 1 (untagged), a
    /// member of 10; the bridge an untagged member of 1 and 10; the port's
    /// MAC local in VLAN 1 only.
    FilteringPort,
}

impl Scenario {
    const ALL: [Scenario; 6] = [
        Scenario::HealthyPort,
        Scenario::PortOfBridgeWithoutOwnMac,
        Scenario::Standalone,
        Scenario::StandaloneFastOnly,
        Scenario::PortWithVlanDevice,
        Scenario::FilteringPort,
    ];
}

/// Which program a harness runs.
#[derive(Clone, Copy, Debug)]
enum Hook {
    /// One of the XDP programs, on the loopback device.
    Xdp(&'static str),
    /// `macdrop_tc`, on the device of a `TcDevice` (run inside its
    /// namespace).
    Tc { ifindex: u32 },
}

/// A device for tc test runs. skb test_run sets `pkt_type` with
/// `eth_type_trans` against the device named by the context's `ifindex`,
/// so pkt_type is only meaningful with a device whose MAC we chose: a veth
/// with the watched interface's MAC (`LO_MAC`), in a namespace of its own
/// (test_run looks the ifindex up in the calling thread's namespace).
struct TcDevice {
    dev: Device,
    ifindex: u32,
}

impl TcDevice {
    fn new() -> Self {
        let dev = Device::new(NetNs::new().unwrap(), "d0", LO_MAC.0, "d1").unwrap();
        let ifindex = dev.ifindex();
        Self { dev, ifindex }
    }

    /// Runs `f` on a thread inside the device's namespace.
    fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        self.dev.run(f).unwrap()
    }
}

/// Runs `check` on a fresh harness of each ingress program for `scenario`:
/// both XDP programs, then tc on a device of its own; `check` gets the
/// program's name for its messages.
fn on_every_program(scenario: Scenario, check: impl Fn(&mut Harness, &str) + Sync) {
    for program in [names::XDP_PROGRAM, names::XDP_PROGRAM_LEGACY] {
        let mut h = Harness::with_program(scenario, program);
        check(&mut h, program);
    }
    let dev = TcDevice::new();
    let mut h = Harness::tc(scenario, &dev);
    dev.run(|| check(&mut h, names::TC_PROGRAM));
}

/// macdrop's object loaded for the namespace the test runs in, and that
/// namespace's inode.
fn load_here() -> (Ebpf, u32) {
    load_here_sized(monitor_common::IFINDEX_DIRECT)
}

/// `load_here`, with `direct` entries in the interface array.
fn load_here_sized(direct: u32) -> (Ebpf, u32) {
    assert!(
        macdrop::privileges::check().is_ok(),
        "test_run tests need root (CAP_BPF + CAP_NET_ADMIN): run `cargo xtask test`"
    );
    let netns = macdrop::netns::inode_of(std::path::Path::new("/proc/self/ns/net")).unwrap();
    (
        loader::load_sized(netns, &[], false, direct).unwrap(),
        netns,
    )
}

struct Harness {
    ebpf: Ebpf,
    hook: Hook,
    counters: CounterReader,
    flows: FlowReader,
    /// The watched interface is a bridge port (foreign unicast there is
    /// forwarding, not a mismatch).
    port: bool,
    config: ConfigMaps,
    delivery: Delivery,
    host_addrs: HashSet<IpAddr>,
}

impl Harness {
    fn new(scenario: Scenario) -> Self {
        Self::with_program(scenario, names::XDP_PROGRAM)
    }

    fn with_program(scenario: Scenario, program: &'static str) -> Self {
        Self::with_hook(scenario, Hook::Xdp(program))
    }

    /// A harness running `macdrop_tc` on `dev` (call `run` inside
    /// `dev.run`). The watched interface is still LO: the classifier keys
    /// on `ingress_ifindex`, which skb test_run takes from the context as
    /// given, independently of the device `ifindex` names.
    fn tc(scenario: Scenario, dev: &TcDevice) -> Self {
        Self::with_hook(
            scenario,
            Hook::Tc {
                ifindex: dev.ifindex,
            },
        )
    }

    fn with_hook(scenario: Scenario, hook: Hook) -> Self {
        Self::with_config(scenario, hook, |d| d)
    }

    /// `with_hook`, with the configuration macdrop would write passed
    /// through `adjust` first (e.g. `Desired::without_flows`).
    fn with_config(
        scenario: Scenario,
        hook: Hook,
        adjust: fn(config::Desired) -> config::Desired,
    ) -> Self {
        Self::sized(scenario, hook, adjust, monitor_common::IFINDEX_DIRECT)
    }

    /// `with_config`, the object loaded with `direct` entries in its
    /// interface array (`loader::ifindex_direct`).
    fn sized(
        scenario: Scenario,
        hook: Hook,
        adjust: fn(config::Desired) -> config::Desired,
        direct: u32,
    ) -> Self {
        let (mut ebpf, netns) = load_here_sized(direct);
        let mut cfg = ConfigMaps::take(&mut ebpf).unwrap();
        let counters = CounterReader::take(&mut ebpf).unwrap();
        let flows = FlowReader::take(&mut ebpf).unwrap();
        match hook {
            Hook::Xdp(program) => {
                let prog: &mut Xdp = ebpf.program_mut(program).unwrap().try_into().unwrap();
                prog.load().unwrap();
            }
            Hook::Tc { .. } => macdrop::kernel::tc::load_tc_program(&mut ebpf).unwrap(),
        }

        let host_addrs: Vec<IpAddr> =
            vec!["192.0.2.1".parse().unwrap(), "2001:db8::1".parse().unwrap()];
        let state = scenario_state(scenario, &host_addrs);
        let watched = topology::describe(&state, state.link(LO).unwrap());
        // The previous MAC belongs to the bridge, or to the device itself.
        let owner = watched.bridge.as_ref().map_or(LO, |(b, _)| *b);
        let previous = match scenario {
            Scenario::StandaloneFastOnly => BTreeMap::new(),
            _ => BTreeMap::from([(owner, vec![OLD_MAC])]),
        };
        // A port's bridge is watched too (slot 1), to take its verdicts.
        let mut all = vec![(watched.clone(), 0)];
        if watched.bridge.is_some() {
            all.push((
                topology::describe(&state, state.link(FAKE_BRIDGE).unwrap()),
                1,
            ));
        }
        cfg.sync(adjust(config::desired(netns, &state, &all, &previous)))
            .unwrap();
        let delivery = macdrop::delivery::delivery(&state, &watched, &previous);
        Self {
            ebpf,
            hook,
            counters,
            flows,
            port: watched.bridge.is_some(),
            config: cfg,
            delivery,
            host_addrs: host_addrs.into_iter().collect(),
        }
    }

    /// Runs one frame through the program; returns the counter delta.
    fn run(&mut self, frame: &[u8]) -> FrameCounters {
        self.run_with_len(frame, frame.len())
    }

    fn run_with_len(&mut self, frame: &[u8], data_end: usize) -> FrameCounters {
        let before = self.counters.read(0).unwrap();
        match self.hook {
            Hook::Xdp(program) => self.run_xdp(program, frame, data_end),
            Hook::Tc { ifindex } => {
                assert_eq!(data_end, frame.len(), "tc test runs take whole buffers");
                let res = self.run_tc(ifindex, LO, frame).unwrap();
                assert_eq!(res.0, TC_ACT_UNSPEC, "verdict for {frame:02x?}");
                assert_eq!(res.1, frame, "frame altered");
            }
        }
        let after = self.counters.read(0).unwrap();
        after.since(&before)
    }

    /// Runs `frame` `times` times in one test run (so on one CPU, in
    /// order); returns the counter delta.
    fn run_times(&mut self, frame: &[u8], times: u32) -> FrameCounters {
        let before = self.counters.read(0).unwrap();
        match self.hook {
            Hook::Xdp(program) => self.run_xdp_times(program, frame, frame.len(), times),
            Hook::Tc { ifindex } => {
                let res = self.run_tc_times(ifindex, LO, frame, times).unwrap();
                assert_eq!(res.0, TC_ACT_UNSPEC, "verdict for {frame:02x?}");
            }
        }
        self.counters.read(0).unwrap().since(&before)
    }

    fn run_xdp(&self, program: &str, frame: &[u8], data_end: usize) {
        self.run_xdp_times(program, frame, data_end, 1);
    }

    fn run_xdp_times(&self, program: &str, frame: &[u8], data_end: usize, times: u32) {
        let prog: &Xdp = self.ebpf.program(program).unwrap().try_into().unwrap();
        let res = test_run::run_xdp(prog, frame, data_end, LO, times).unwrap();
        assert_eq!(res.verdict, XDP_PASS, "verdict for {frame:02x?}");
        assert_eq!(&res.frame[..], frame, "frame altered");
    }

    /// One skb test run of `macdrop_tc`, in the calling thread's namespace:
    /// the verdict and the frame as it came out.
    fn run_tc(
        &self,
        dev_ifindex: u32,
        ingress: u32,
        frame: &[u8],
    ) -> Result<(u32, Vec<u8>), ProgramError> {
        self.run_tc_times(dev_ifindex, ingress, frame, 1)
    }

    /// `run_tc`, `times` runs in one.
    fn run_tc_times(
        &self,
        dev_ifindex: u32,
        ingress: u32,
        frame: &[u8],
        times: u32,
    ) -> Result<(u32, Vec<u8>), ProgramError> {
        let prog: &SchedClassifier = self
            .ebpf
            .program(names::TC_PROGRAM)
            .unwrap()
            .try_into()
            .unwrap();
        let res = test_run::run_tc(prog, frame, ingress, dev_ifindex, times)?;
        Ok((res.verdict, res.frame))
    }

    fn receiver(&self) -> Receiver<'_> {
        Receiver {
            delivery: &self.delivery,
            host_addrs: &self.host_addrs,
        }
    }

    /// One run of `macdrop_tc` as the bridge device (FAKE_BRIDGE, slot 1)
    /// on `dev` (call inside `dev.run`); returns the bridge's delta.
    fn run_on_bridge(&self, dev_ifindex: u32, frame: &[u8]) -> FrameCounters {
        let before = self.counters.read(1).unwrap();
        let (verdict, out) = self.run_tc(dev_ifindex, FAKE_BRIDGE, frame).unwrap();
        assert_eq!((verdict, out.as_slice()), (TC_ACT_UNSPEC, frame));
        self.counters.read(1).unwrap().since(&before)
    }

    fn expected(&self, frame: &[u8]) -> FrameCounters {
        let mut want = counter_delta(classify(frame, &self.receiver()));
        if let Hook::Tc { .. } = self.hook {
            want.add(&kernel_pkt_type(frame, LO_MAC));
        }
        want
    }
}

/// The namespace each scenario presents: LO (as a port of FAKE_BRIDGE, or
/// alone) and what the delivery rule reads.
fn scenario_state(scenario: Scenario, host_addrs: &[IpAddr]) -> NetState {
    let link = Link::fake;
    let mut state = NetState {
        links: vec![
            link(LO, "lo", "veth", Some(FAKE_BRIDGE), LO_MAC),
            link(FAKE_BRIDGE, "br0", "bridge", None, BR_MAC),
        ],
        addrs: host_addrs.to_vec(),
        local_fdb: BTreeMap::from([(FAKE_BRIDGE, vec![LO_MAC, P2_MAC, BR_MAC])]),
        secondary_macs: BTreeMap::new(),
        vlans: Default::default(),
        ..Default::default()
    };
    match scenario {
        Scenario::HealthyPort => {}
        Scenario::PortOfBridgeWithoutOwnMac => {
            state.local_fdb.insert(FAKE_BRIDGE, vec![LO_MAC, P2_MAC]);
        }
        Scenario::Standalone | Scenario::StandaloneFastOnly => {
            state.links = vec![link(LO, "lo", "veth", None, LO_MAC)];
            state.local_fdb.clear();
        }
        Scenario::PortWithVlanDevice => state.vlans.devices.push(VlanDevice {
            ifindex: FAKE_BRIDGE + 1,
            lower: FAKE_BRIDGE,
            tpid: 0x8100,
            vid: 10,
            mac: Some(BR_MAC),
            up: true,
        }),
        Scenario::FilteringPort => {
            let member = |vid, pvid, untagged| VlanMembership {
                vid,
                pvid,
                untagged,
            };
            state.vlans.filtering.insert(FAKE_BRIDGE, 0x8100);
            state
                .vlans
                .members
                .insert(LO, vec![member(1, true, true), member(10, false, false)]);
            state.vlans.members.insert(
                FAKE_BRIDGE,
                vec![member(1, true, true), member(10, false, true)],
            );
            state.vlans.local_fdb.insert(
                FAKE_BRIDGE,
                vec![(BR_MAC, 1), (BR_MAC, 10), (LO_MAC, 1), (P2_MAC, 1)],
            );
        }
    }
    state
}

/// The kernel's `pkt_type` for `frame` received on a device with MAC
/// `dev_mac`, as `eth_type_trans` decides it: the device's own address is
/// HOST, all-ones BROADCAST, any other group address MULTICAST, anything
/// else OTHERHOST. Relative to the device only: a bridge port calls frames
/// for its bridge OTHERHOST, which is why macdrop classifies by FDB itself.
fn kernel_pkt_type(frame: &[u8], dev_mac: Mac) -> FrameCounters {
    let mut c = FrameCounters::default();
    let dst = Mac::from_slice(&frame[..6]).expect("tc frames have an Ethernet header");
    if dst == dev_mac {
        c.pkt_host = 1;
    } else if dst == Mac::BROADCAST {
        c.pkt_broadcast = 1;
    } else if dst.is_multicast() {
        c.pkt_multicast = 1;
    } else {
        c.pkt_otherhost = 1;
    }
    c
}

// ---- crafted frames --------------------------------------------------------

fn eth(dst: Mac, tags: &[u16], ethertype: u16, l3: &[u8]) -> Vec<u8> {
    let mut f = dst.0.to_vec();
    f.extend(SRC.0);
    for (i, tpid) in tags.iter().enumerate() {
        f.extend(tpid.to_be_bytes());
        f.extend((10 + i as u16).to_be_bytes());
    }
    f.extend(ethertype.to_be_bytes());
    f.extend(l3);
    f
}

/// A frame with the given (TPID, VID) tags, outer first.
fn eth_vids(dst: Mac, tags: &[(u16, u16)], ethertype: u16, l3: &[u8]) -> Vec<u8> {
    let mut f = dst.0.to_vec();
    f.extend(SRC.0);
    for (tpid, vid) in tags {
        f.extend(tpid.to_be_bytes());
        f.extend(vid.to_be_bytes());
    }
    f.extend(ethertype.to_be_bytes());
    f.extend(l3);
    f
}

fn ipv4(dst: [u8; 4]) -> Vec<u8> {
    let mut h = vec![0x45, 0, 0, 28, 0, 1, 0, 0, 64, 17, 0, 0, 198, 51, 100, 7];
    h.extend(dst);
    h.extend([0x30, 0x39, 0x30, 0x39, 0, 8, 0, 0]); // UDP header
    h
}

fn ipv6(dst: &str) -> Vec<u8> {
    let mut h = vec![0x60, 0, 0, 0, 0, 8, 17, 64];
    h.extend(
        "2001:db8::99"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    h.extend(dst.parse::<std::net::Ipv6Addr>().unwrap().octets());
    h.extend([0x30, 0x39, 0x30, 0x39, 0, 8, 0, 0]);
    h
}

fn arp_request(target: [u8; 4]) -> Vec<u8> {
    let mut a = vec![0, 1, 8, 0, 6, 4, 0, 1];
    a.extend(SRC.0);
    a.extend([192, 0, 2, 11]);
    a.extend([0; 6]);
    a.extend(target);
    a
}

const HOST: [u8; 4] = [192, 0, 2, 1];
const ELSEWHERE: [u8; 4] = [203, 0, 113, 9];

/// Frames covering every class and every parser path.
fn corpus() -> Vec<(&'static str, Vec<u8>)> {
    let q = 0x8100;
    let ad = 0x88a8;
    let mut deep_tags = vec![ad];
    deep_tags.extend(std::iter::repeat_n(q, MAX_VLAN_TAGS));
    vec![
        ("header only", eth(FOREIGN, &[], 0x0800, &[])),
        (
            "broadcast",
            eth(Mac::BROADCAST, &[], 0x0806, &arp_request(HOST)),
        ),
        (
            "ipv4 multicast",
            eth(
                Mac([1, 0, 0x5e, 0, 0, 1]),
                &[],
                0x0800,
                &ipv4([224, 0, 0, 1]),
            ),
        ),
        (
            "ipv6 multicast",
            eth(Mac([0x33, 0x33, 0, 0, 0, 1]), &[], 0x86dd, &ipv6("ff02::1")),
        ),
        ("to bridge MAC", eth(BR_MAC, &[], 0x0800, &ipv4(HOST))),
        ("to own port MAC", eth(LO_MAC, &[], 0x0800, &ipv4(HOST))),
        ("to other port MAC", eth(P2_MAC, &[], 0x0800, &ipv4(HOST))),
        (
            "foreign, other IP",
            eth(FOREIGN, &[], 0x0800, &ipv4(ELSEWHERE)),
        ),
        ("foreign, host IP", eth(FOREIGN, &[], 0x0800, &ipv4(HOST))),
        (
            "foreign, host IP, truncated",
            eth(FOREIGN, &[], 0x0800, &ipv4(HOST)[..19]),
        ),
        (
            "foreign, 802.1Q, host IP",
            eth(FOREIGN, &[q], 0x0800, &ipv4(HOST)),
        ),
        (
            "foreign, QinQ, host IP",
            eth(FOREIGN, &[ad, q], 0x0800, &ipv4(HOST)),
        ),
        (
            "foreign, 3 tags, host IP",
            eth(FOREIGN, &[ad, q, q], 0x0800, &ipv4(HOST)),
        ),
        (
            "foreign, too many tags",
            eth(FOREIGN, &deep_tags, 0x0800, &ipv4(HOST)),
        ),
        (
            "foreign, tag truncated",
            eth(FOREIGN, &[q], 0x0800, &[])[..16].to_vec(),
        ),
        (
            "foreign, ipv6 host",
            eth(FOREIGN, &[], 0x86dd, &ipv6("2001:db8::1")),
        ),
        (
            "foreign, ipv6 other",
            eth(FOREIGN, &[], 0x86dd, &ipv6("2001:db8::2")),
        ),
        // `::` is no host's address (nor an empty slot of the kernel's
        // address table).
        (
            "foreign, ipv6 unspecified",
            eth(FOREIGN, &[], 0x86dd, &ipv6("::")),
        ),
        (
            "foreign, QinQ ipv6 host",
            eth(FOREIGN, &[ad, q], 0x86dd, &ipv6("2001:db8::1")),
        ),
        (
            "foreign, ARP for host",
            eth(FOREIGN, &[], 0x0806, &arp_request(HOST)),
        ),
        (
            "foreign, ARP elsewhere",
            eth(FOREIGN, &[], 0x0806, &arp_request(ELSEWHERE)),
        ),
        (
            "foreign, other ethertype",
            eth(FOREIGN, &[], 0x88cc, &ipv4(HOST)),
        ),
        // The VLAN paths of the delivery rule.
        (
            "to bridge MAC, 802.1Q 10",
            eth_vids(BR_MAC, &[(q, 10)], 0x0800, &ipv4(HOST)),
        ),
        (
            "to bridge MAC, 802.1Q 10, priority 5",
            eth_vids(BR_MAC, &[(q, 0xa00a)], 0x0800, &ipv4(HOST)),
        ),
        (
            "to bridge MAC, 802.1Q 11",
            eth_vids(BR_MAC, &[(q, 11)], 0x0800, &ipv4(HOST)),
        ),
        (
            "to bridge MAC, 802.1ad 10",
            eth_vids(BR_MAC, &[(ad, 10)], 0x0800, &ipv4(HOST)),
        ),
        (
            "to bridge MAC, priority tag",
            eth_vids(BR_MAC, &[(q, 0)], 0x0800, &ipv4(HOST)),
        ),
        (
            "to bridge MAC, priority tag, 802.1Q 10",
            eth_vids(BR_MAC, &[(q, 0), (q, 10)], 0x0800, &ipv4(HOST)),
        ),
        (
            "to bridge MAC, 802.1ad 5, 802.1Q 10",
            eth_vids(BR_MAC, &[(ad, 5), (q, 10)], 0x86dd, &ipv6("2001:db8::1")),
        ),
        (
            "to bridge MAC, 4 tags",
            eth_vids(
                BR_MAC,
                &[(ad, 5), (q, 10), (q, 11), (q, 12)],
                0x0800,
                &ipv4(HOST),
            ),
        ),
        (
            "to own port MAC, priority tag",
            eth_vids(LO_MAC, &[(q, 0)], 0x0800, &ipv4(HOST)),
        ),
        (
            "to own port MAC, 802.1Q 10",
            eth_vids(LO_MAC, &[(q, 10)], 0x0800, &ipv4(HOST)),
        ),
        (
            "to old MAC, 802.1Q 10",
            eth_vids(OLD_MAC, &[(q, 10)], 0x0800, &ipv4(ELSEWHERE)),
        ),
        (
            "to old MAC, 802.1Q 11",
            eth_vids(OLD_MAC, &[(q, 11)], 0x0800, &ipv4(ELSEWHERE)),
        ),
        ("to old MAC", eth(OLD_MAC, &[], 0x0800, &ipv4(HOST))),
    ]
}

fn agree_on_corpus(scenario: Scenario) {
    for program in [names::XDP_PROGRAM, names::XDP_PROGRAM_LEGACY] {
        let mut h = Harness::with_program(scenario, program);
        for (what, frame) in corpus() {
            let got = h.run(&frame);
            let want = h.expected(&frame);
            assert_eq!(
                got, want,
                "{program}: {scenario:?}: {what}: kernel vs model"
            );
            h.assert_flow(&frame, &format!("{program}: {scenario:?}: {what}"));
        }
    }
    let dev = TcDevice::new();
    let mut h = Harness::tc(scenario, &dev);
    let runnable: Vec<_> = corpus()
        .into_iter()
        .filter(|(_, f)| skb_test_run_accepts(f))
        .collect();
    assert_eq!(
        runnable.len(),
        corpus().len() - 2,
        "only `header only` and the truncated IPv4 header are refused"
    );
    dev.run(|| {
        for (what, frame) in runnable {
            let got = h.run(&frame);
            let want = h.expected(&frame);
            assert_eq!(
                got, want,
                "macdrop_tc: {scenario:?}: {what}: kernel vs model"
            );
            h.assert_flow(&frame, &format!("macdrop_tc: {scenario:?}: {what}"));
        }
    });
}

#[test]
fn kernel_agrees_with_model_on_a_healthy_bridge_port() {
    agree_on_corpus(Scenario::HealthyPort);
}

#[test]
fn kernel_agrees_with_model_when_bridge_mac_is_missing_from_fdb() {
    agree_on_corpus(Scenario::PortOfBridgeWithoutOwnMac);
}

#[test]
fn kernel_agrees_with_model_on_a_standalone_interface() {
    agree_on_corpus(Scenario::Standalone);
}

#[test]
fn kernel_agrees_with_model_on_a_standalone_interface_without_map_entries() {
    agree_on_corpus(Scenario::StandaloneFastOnly);
}

#[test]
fn kernel_agrees_with_model_with_a_vlan_device_on_the_bridge() {
    agree_on_corpus(Scenario::PortWithVlanDevice);
}

#[test]
fn kernel_agrees_with_model_on_a_vlan_filtering_bridge_port() {
    agree_on_corpus(Scenario::FilteringPort);
}

/// Another namespace's interface array is sized by its ifindexes
/// (`loader::ifindex_direct`), so a later interface may lie beyond it: the
/// configuration then goes to the `IFACES` hash only, and the classifier
/// finds it there. The whole corpus, with an array too small for LO (the
/// bridge, at ifindex 100,000, is beyond any array).
#[test]
fn kernel_agrees_with_model_beyond_the_interface_array() {
    let scenario = Scenario::HealthyPort;
    let mut h = Harness::sized(scenario, Hook::Xdp(names::XDP_PROGRAM), |d| d, LO);
    assert_eq!(h.config.interface_array_len(), LO, "the array as loaded");
    for (what, frame) in corpus() {
        let got = h.run(&frame);
        assert_eq!(
            got,
            h.expected(&frame),
            "{scenario:?}: {what}: kernel vs model"
        );
    }
}

/// The model's expectations for the scenarios, pinned as explicit numbers so
/// that a bug shared by both sides cannot hide.
#[test]
fn pinned_classes() {
    let mut h = Harness::new(Scenario::PortOfBridgeWithoutOwnMac);
    let d = h.run(&eth(BR_MAC, &[], 0x0800, &ipv4(HOST)));
    assert_eq!(
        (d.total, d.foreign_unicast, d.host_ip_wrong_mac, d.own),
        (1, 1, 1, 0)
    );
    // Another port's MAC: passed up, then dropped as OTHERHOST.
    let d = h.run(&eth(P2_MAC, &[], 0x0800, &ipv4(HOST)));
    assert_eq!(
        (d.total, d.foreign_unicast, d.host_ip_wrong_mac, d.own),
        (1, 1, 1, 0)
    );
    let d = h.run(&eth(LO_MAC, &[], 0x0800, &ipv4(HOST)));
    assert_eq!((d.total, d.own), (1, 1));
    let d = h.run(&eth(OLD_MAC, &[], 0x0800, &ipv4(HOST)));
    assert_eq!(
        (d.foreign_unicast, d.stale_mac, d.host_ip_wrong_mac),
        (1, 1, 1)
    );

    let mut h = Harness::new(Scenario::HealthyPort);
    let d = h.run(&eth(BR_MAC, &[], 0x0800, &ipv4(HOST)));
    assert_eq!((d.total, d.own, d.foreign_unicast), (1, 1, 0));
    let d = h.run(&eth(FOREIGN, &[0x88a8, 0x8100], 0x0800, &ipv4(HOST)));
    assert_eq!((d.foreign_unicast, d.host_ip_wrong_mac), (1, 1));
    // Tagged, with no VLAN device to take the tag: dropped as OTHERHOST.
    let d = h.run(&eth_vids(BR_MAC, &[(0x8100, 10)], 0x0800, &ipv4(HOST)));
    assert_eq!((d.foreign_unicast, d.host_ip_wrong_mac), (1, 1));
    // A priority tag is no tag.
    let d = h.run(&eth_vids(BR_MAC, &[(0x8100, 0)], 0x0800, &ipv4(HOST)));
    assert_eq!(d.own, 1);

    let mut h = Harness::new(Scenario::PortWithVlanDevice);
    let d = h.run(&eth_vids(BR_MAC, &[(0x8100, 10)], 0x0800, &ipv4(HOST)));
    assert_eq!(d.own, 1);
    let d = h.run(&eth_vids(BR_MAC, &[(0x88a8, 10)], 0x0800, &ipv4(HOST)));
    assert_eq!((d.foreign_unicast, d.host_ip_wrong_mac), (1, 1));

    let mut h = Harness::new(Scenario::FilteringPort);
    let d = h.run(&eth_vids(BR_MAC, &[(0x8100, 10)], 0x0800, &ipv4(HOST)));
    assert_eq!(d.own, 1);
    let d = h.run(&eth_vids(LO_MAC, &[(0x8100, 10)], 0x0800, &ipv4(HOST)));
    assert_eq!((d.foreign_unicast, d.host_ip_wrong_mac), (1, 1));
    let d = h.run(&eth(LO_MAC, &[], 0x0800, &ipv4(HOST)));
    assert_eq!(d.own, 1);

    let mut h = Harness::new(Scenario::Standalone);
    let d = h.run(&eth(BR_MAC, &[], 0x0800, &ipv4(HOST)));
    assert_eq!((d.foreign_unicast, d.host_ip_wrong_mac), (1, 1));
    let d = h.run(&eth(LO_MAC, &[], 0x0800, &ipv4(ELSEWHERE)));
    assert_eq!(d.own, 1);
}

/// The bridge device takes each unicast frame's verdict from the port that
/// passed it up (the port's XDP program, then the bridge's tc program, on
/// one CPU, as the kernel runs them), once; without one it judges alone,
/// and a port's MAC is then never its own.
#[test]
fn the_bridge_device_takes_the_ports_verdict() {
    let dev = TcDevice::new();
    let mut h = Harness::new(Scenario::HealthyPort);
    macdrop::kernel::tc::load_tc_program(&mut h.ebpf).unwrap();
    let unicast = |c: FrameCounters| (c.own, c.foreign_unicast, c.host_ip_wrong_mac, c.stale_mac);
    dev.run(|| {
        pin_to_first_cpu();
        let frames = [
            eth(BR_MAC, &[], 0x0800, &ipv4(HOST)),
            eth(LO_MAC, &[], 0x0800, &ipv4(HOST)),
            eth(P2_MAC, &[], 0x0800, &ipv4(HOST)),
            eth_vids(BR_MAC, &[(0x8100, 10)], 0x0800, &ipv4(HOST)),
            eth(OLD_MAC, &[], 0x0800, &ipv4(ELSEWHERE)),
        ];
        // Alone, the bridge knows its own MAC only.
        assert_eq!(
            unicast(h.run_on_bridge(dev.ifindex, &frames[0])),
            (1, 0, 0, 0)
        );
        assert_eq!(
            unicast(h.run_on_bridge(dev.ifindex, &frames[1])),
            (0, 1, 1, 0)
        );
        for frame in &frames {
            let port = unicast(h.run(frame));
            let bridge = unicast(h.run_on_bridge(dev.ifindex, frame));
            assert_eq!(bridge, port, "{frame:02x?}");
        }
        // The frame for the port's own MAC is the bridge's only through
        // the port; a second time (no port ran) it is not.
        assert_eq!(
            unicast(h.run_on_bridge(dev.ifindex, &frames[1])),
            (0, 1, 1, 0)
        );
    });
}

/// A quiet port (`IF_PASSUP_FAST` cleared once its bridge runs at tc)
/// leaves no verdict on its fast path, and the bridge device at tc needs
/// none there: it answers an untagged frame to its fast MAC by itself,
/// whatever an earlier frame left in the slot. A loud port overwrites the
/// slot on its fast path too.
#[test]
fn a_quiet_port_leaves_no_verdict_and_the_bridge_at_tc_reads_none() {
    let dev = TcDevice::new();
    let mut h = Harness::new(Scenario::HealthyPort);
    macdrop::kernel::tc::load_tc_program(&mut h.ebpf).unwrap();
    let unicast = |c: FrameCounters| (c.own, c.foreign_unicast, c.host_ip_wrong_mac);
    dev.run(|| {
        pin_to_first_cpu();
        let cpu = first_cpu();
        let own = eth(BR_MAC, &[], 0x0800, &ipv4(HOST));
        // Tagged without a VLAN device: the port's verdict is foreign, and
        // it stays in the slot, as when the bridge drops such a frame
        // before passing it up (a blocking port, VLAN ingress filtering).
        let stale = eth_vids(BR_MAC, &[(0x8100, 20)], 0x0800, &ipv4(HOST));
        let slot = |h: &Harness| -> u64 {
            let map: aya::maps::PerCpuArray<_, u64> =
                aya::maps::PerCpuArray::try_from(h.ebpf.map(names::PASSUP).unwrap()).unwrap();
            map.get(&0, 0).unwrap()[cpu]
        };
        let word = |verdict: u64| VERDICT_VALID | verdict | mac_word(&BR_MAC.0);

        // Loud (the default): the fast path overwrites the stale verdict.
        assert_eq!(unicast(h.run(&stale)), (0, 1, 1));
        assert_eq!(slot(&h), word(VERDICT_HOST_IP));
        assert_eq!(unicast(h.run(&own)), (1, 0, 0));
        assert_eq!(slot(&h), word(VERDICT_OWN));

        // Quiet: the fast path leaves the slot alone, other paths still
        // write, and the bridge at tc is right without the slot.
        h.config.set_bridge_at_tc(FAKE_BRIDGE, true).unwrap();
        assert_eq!(unicast(h.run(&stale)), (0, 1, 1));
        assert_eq!(unicast(h.run(&own)), (1, 0, 0));
        assert_eq!(slot(&h), word(VERDICT_HOST_IP), "no write on the fast path");
        assert_eq!(unicast(h.run_on_bridge(dev.ifindex, &own)), (1, 0, 0));
        assert_eq!(slot(&h), word(VERDICT_HOST_IP), "not read at the fast path");

        // Back to loud (the bridge leaves tc).
        h.config.set_bridge_at_tc(FAKE_BRIDGE, false).unwrap();
        assert_eq!(unicast(h.run(&own)), (1, 0, 0));
        assert_eq!(slot(&h), word(VERDICT_OWN));
    });
}

/// The CPU `pin_to_first_cpu` pins to.
fn first_cpu() -> usize {
    // SAFETY: a plain libc call.
    let cpu = unsafe { libc::sched_getcpu() };
    assert!(cpu >= 0, "sched_getcpu");
    cpu as usize
}

/// A frame on an interface without configuration is not counted, and the
/// program says so through its log (`--kernel-log`, default warn): one
/// line naming the interface, at most one per second per CPU.
#[test]
fn a_frame_without_configuration_is_logged_once_a_second() {
    const UNCONFIGURED: u32 = 4242;
    let dev = TcDevice::new();
    let mut h = Harness::tc(Scenario::HealthyPort, &dev);
    let mut log = KernelLogReader::take(&mut h.ebpf, "lab")
        .unwrap()
        .expect("the default level is warn");
    let frame = eth(BR_MAC, &[], 0x0800, &ipv4(HOST));
    let before = h.counters.read(0).unwrap();
    dev.run(|| {
        pin_to_first_cpu();
        for _ in 0..3 {
            let (verdict, out) = h.run_tc(dev.ifindex, UNCONFIGURED, &frame).unwrap();
            assert_eq!((verdict, out.as_slice()), (TC_ACT_UNSPEC, frame.as_slice()));
        }
    });
    assert_eq!(h.counters.read(0).unwrap().since(&before).total, 0);
    assert_eq!(
        log.drain(),
        [format!(
            "kernel warn: frame on ifindex {UNCONFIGURED} (netns {}) not counted: macdrop has \
             no configuration for it [lab]",
            macdrop::netns::inode_of(std::path::Path::new("/proc/self/ns/net")).unwrap()
        )]
    );
    // A configured interface logs nothing.
    dev.run(|| assert_eq!(h.run(&frame).own, 1));
    assert!(log.drain().is_empty());
}

/// Every corpus frame cut at every length: the kernel must agree with the
/// model on each prefix (no read past the end, no class from missing bytes).
///
/// BPF_PROG_TEST_RUN refuses buffers shorter than an Ethernet header, so
/// prefixes under 14 bytes (the `runt` class, which real Ethernet devices
/// never deliver) are made by passing 14 bytes with a context `data_end`
/// shorter than the buffer: since Linux 6.18 that sets the linear length the
/// program sees.
#[test]
fn kernel_agrees_with_model_on_every_truncation() {
    let mut h = Harness::new(Scenario::HealthyPort);
    let mut runts = 0;
    for (what, frame) in corpus() {
        for n in 0..=frame.len() {
            let buffer = &frame[..n.max(14)];
            let got = h.run_with_len(buffer, n);
            let want = h.expected(&frame[..n]);
            assert_eq!(got, want, "{what} cut at {n} bytes");
            runts += got.runt;
        }
    }
    assert_eq!(
        runts,
        14 * corpus().len() as u64,
        "lengths 0..=13 are runts"
    );
}

/// Whether skb test_run takes `frame` (measured on 6.18): it refuses, with
/// EINVAL, an untagged IPv4 or IPv6 frame without a whole network header
/// (20 / 40 bytes); anything else from a whole Ethernet header on is taken.
/// Real tc does see such frames; the classifier takes the same paths for
/// them as for the truncated frames test_run does accept (VLAN-tagged ones,
/// ARP), and the XDP runs cover every length.
fn skb_test_run_accepts(frame: &[u8]) -> bool {
    let l3 = frame.len().saturating_sub(14);
    match frame.get(12..14) {
        Some([0x08, 0x00]) => l3 >= 20,
        Some([0x86, 0xdd]) => l3 >= 40,
        Some(_) => true,
        None => false,
    }
}

/// The tc program on every prefix of every corpus frame, from a whole
/// Ethernet header on (tc never sees a runt: the skb went through
/// `eth_type_trans` first). Prefixes test_run refuses must be refused with
/// EINVAL, so `skb_test_run_accepts` stays a measured fact.
#[test]
fn tc_agrees_with_model_on_every_truncation() {
    let dev = TcDevice::new();
    let mut h = Harness::tc(Scenario::HealthyPort, &dev);
    let (mut compared, mut refused) = (0, 0);
    dev.run(|| {
        for (what, frame) in corpus() {
            for n in 14..=frame.len() {
                let prefix = &frame[..n];
                if skb_test_run_accepts(prefix) {
                    let got = h.run(prefix);
                    let want = h.expected(prefix);
                    assert_eq!(got, want, "macdrop_tc: {what} cut at {n} bytes");
                    compared += 1;
                } else {
                    let err = h.run_tc(dev.ifindex, LO, prefix).unwrap_err();
                    let ProgramError::SyscallError(e) = &err else {
                        panic!("{what} cut at {n}: {err:?}");
                    };
                    assert_eq!(
                        e.io_error.raw_os_error(),
                        Some(libc::EINVAL),
                        "{what} cut at {n}"
                    );
                    refused += 1;
                }
            }
        }
    });
    // Measured on 6.18: 413 prefixes compared, 261 refused.
    assert!(compared > refused, "{compared} compared, {refused} refused");
}

/// pkt_type pinned as numbers: the kernel's view is relative to the
/// receiving device's MAC, not to the bridge's FDB. A frame for the bridge
/// on a port is OTHERHOST to the kernel and `own` to macdrop; a frame for
/// the port's own MAC is HOST to both.
#[test]
fn tc_pinned_pkt_types() {
    let dev = TcDevice::new();
    let mut h = Harness::tc(Scenario::HealthyPort, &dev);
    dev.run(|| {
        let d = h.run(&eth(BR_MAC, &[], 0x0800, &ipv4(HOST)));
        assert_eq!((d.total, d.own, d.pkt_otherhost, d.pkt_host), (1, 1, 1, 0));
        let d = h.run(&eth(LO_MAC, &[], 0x0800, &ipv4(HOST)));
        assert_eq!((d.own, d.pkt_host, d.pkt_otherhost), (1, 1, 0));
        let d = h.run(&eth(Mac::BROADCAST, &[], 0x0806, &arp_request(HOST)));
        assert_eq!((d.broadcast, d.pkt_broadcast), (1, 1));
        let d = h.run(&eth(
            Mac([0x33, 0x33, 0, 0, 0, 1]),
            &[],
            0x86dd,
            &ipv6("ff02::1"),
        ));
        assert_eq!((d.multicast, d.pkt_multicast), (1, 1));
        let d = h.run(&eth(FOREIGN, &[], 0x0800, &ipv4(HOST)));
        assert_eq!(
            (
                d.foreign_unicast,
                d.host_ip_wrong_mac,
                d.pkt_otherhost,
                d.pkt_other
            ),
            (1, 1, 1, 0)
        );
    });
}

mod counters;
mod egress;
mod evidence;
mod flows;
mod footprint;
mod fuzz;
mod handoff;
