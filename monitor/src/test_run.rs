//! The kernel classifier checked against the reference model
//! (`classify.rs`) with BPF_PROG_TEST_RUN on crafted frames: for each frame
//! the verdict must be XDP_PASS, the frame must come out byte-identical, and
//! the counter deltas must equal the model's class. Needs root (CI runs the
//! suite as root); without it the tests fail rather than pass vacuously.

use std::{
    collections::{BTreeMap, HashSet},
    net::IpAddr,
};

use aya::{
    Ebpf,
    programs::{TestRun as _, TestRunOptions, Xdp},
};
use monitor_common::{FrameCounters, MAX_VLAN_TAGS, names};

use crate::{
    classify::{Receiver, classify, counter_delta},
    kernel::{config, config::ConfigMaps, counters::CounterReader, loader},
    mac::Mac,
    netlink::{Link, NetState},
    topology,
};

const XDP_PASS: u32 = 2;
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
}

struct Harness {
    ebpf: Ebpf,
    program: &'static str,
    counters: CounterReader,
    _config: ConfigMaps,
    local_macs: HashSet<Mac>,
    host_addrs: HashSet<IpAddr>,
    previous_macs: HashSet<Mac>,
}

impl Harness {
    fn new(scenario: Scenario) -> Self {
        Self::with_program(scenario, names::XDP_PROGRAM)
    }

    fn with_program(scenario: Scenario, program: &'static str) -> Self {
        assert!(
            crate::privileges::check().is_ok(),
            "test_run tests need root (CAP_BPF + CAP_NET_ADMIN): run `cargo xtask test`"
        );
        let netns = loader::netns_inode("/proc/self/ns/net").unwrap();
        let mut ebpf = loader::load(netns, &[]).unwrap();
        let mut cfg = ConfigMaps::take(&mut ebpf).unwrap();
        let counters = CounterReader::take(&mut ebpf).unwrap();
        let prog: &mut Xdp = ebpf.program_mut(program).unwrap().try_into().unwrap();
        prog.load().unwrap();

        let host_addrs: Vec<IpAddr> =
            vec!["192.0.2.1".parse().unwrap(), "2001:db8::1".parse().unwrap()];
        let link = Link::fake;
        let (links, fdb) = match scenario {
            Scenario::HealthyPort | Scenario::PortOfBridgeWithoutOwnMac => {
                let mut fdb = vec![LO_MAC, P2_MAC];
                if matches!(scenario, Scenario::HealthyPort) {
                    fdb.push(BR_MAC);
                }
                (
                    vec![
                        link(LO, "lo", "veth", Some(FAKE_BRIDGE), LO_MAC),
                        link(FAKE_BRIDGE, "br0", "bridge", None, BR_MAC),
                    ],
                    BTreeMap::from([(FAKE_BRIDGE, fdb)]),
                )
            }
            Scenario::Standalone => (vec![link(LO, "lo", "veth", None, LO_MAC)], BTreeMap::new()),
        };
        let state = NetState {
            links,
            addrs: host_addrs.clone(),
            local_fdb: fdb,
            secondary_macs: BTreeMap::new(),
        };
        let watched = topology::describe(&state, state.link(LO).unwrap());
        // The previous MAC belongs to the bridge, or to the device itself.
        let owner = watched.bridge.as_ref().map_or(LO, |(b, _)| *b);
        let previous = BTreeMap::from([(owner, vec![OLD_MAC])]);
        cfg.sync(config::desired(
            netns,
            &state,
            &[(watched.clone(), 0)],
            &previous,
        ))
        .unwrap();
        let local_macs = topology::local_macs(&state, &watched);
        Self {
            ebpf,
            program,
            counters,
            _config: cfg,
            local_macs,
            host_addrs: host_addrs.into_iter().collect(),
            previous_macs: HashSet::from([OLD_MAC]),
        }
    }

    /// Runs one frame through the program; returns the counter delta.
    fn run(&mut self, frame: &[u8]) -> FrameCounters {
        self.run_with_len(frame, frame.len())
    }

    fn run_with_len(&mut self, frame: &[u8], data_end: usize) -> FrameCounters {
        let before = self.counters.read(0).unwrap();
        let prog: &Xdp = self.ebpf.program(self.program).unwrap().try_into().unwrap();
        // struct xdp_md: data, data_end, data_meta, ingress_ifindex,
        // rx_queue_index, egress_ifindex.
        // The kernel wants data_end == frame length when a context is given.
        let mut ctx = [0u8; 24];
        ctx[4..8].copy_from_slice(&(data_end as u32).to_ne_bytes());
        ctx[12..16].copy_from_slice(&LO.to_ne_bytes());
        let mut out = vec![0u8; frame.len() + 64];
        let mut opts = TestRunOptions::new();
        opts.data_in = Some(frame);
        opts.data_out = Some(&mut out);
        opts.ctx_in = Some(&ctx);
        let res = prog.test_run(opts).unwrap();
        assert_eq!(res.return_value, XDP_PASS, "verdict for {frame:02x?}");
        assert_eq!(&out[..res.data_size_out as usize], frame, "frame altered");
        let after = self.counters.read(0).unwrap();
        after.since(&before)
    }

    fn expected(&self, frame: &[u8]) -> FrameCounters {
        counter_delta(classify(
            frame,
            &Receiver {
                local_macs: &self.local_macs,
                host_addrs: &self.host_addrs,
                previous_macs: &self.previous_macs,
            },
        ))
    }
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
        }
    }
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
    let d = h.run(&eth(P2_MAC, &[], 0x0800, &ipv4(HOST)));
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

    let mut h = Harness::new(Scenario::Standalone);
    let d = h.run(&eth(BR_MAC, &[], 0x0800, &ipv4(HOST)));
    assert_eq!((d.foreign_unicast, d.host_ip_wrong_mac), (1, 1));
    let d = h.run(&eth(LO_MAC, &[], 0x0800, &ipv4(ELSEWHERE)));
    assert_eq!(d.own, 1);
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
