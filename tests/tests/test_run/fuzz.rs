//! Property-based agreement: generated frames — random and known MACs, 0 to
//! 4 VLAN tags of either TPID and chosen or random VIDs, IPv4/IPv6/ARP/other ethertypes, addresses
//! that are and are not the host's, cut at every length from 0 to 128 —
//! through the XDP and tc programs with BPF_PROG_TEST_RUN. For every frame
//! the verdict is PASS (XDP_PASS / TC_ACT_UNSPEC), the frame comes out
//! byte-identical (asserted by `Harness::run*`), and the counter deltas
//! equal the reference model's classification.

use proptest::{
    prelude::*,
    test_runner::{Config, TestCaseResult, TestRunner},
};

use super::*;

/// Cases per hook and scenario; the CI budget is >= 100,000 in all.
const CASES: u32 = 20_000;

fn mac() -> impl Strategy<Value = Mac> {
    prop_oneof![
        Just(BR_MAC),
        Just(LO_MAC),
        Just(P2_MAC),
        Just(OLD_MAC),
        Just(FOREIGN),
        Just(Mac::BROADCAST),
        any::<[u8; 6]>().prop_map(Mac),
        // Group addresses: IPv4 and IPv6 multicast, anything with bit 0.
        any::<[u8; 3]>().prop_map(|t| Mac([0x01, 0x00, 0x5e, t[0] & 0x7f, t[1], t[2]])),
        any::<[u8; 4]>().prop_map(|t| Mac([0x33, 0x33, t[0], t[1], t[2], t[3]])),
    ]
}

fn ipv4_dst() -> impl Strategy<Value = [u8; 4]> {
    prop_oneof![Just(HOST), Just(ELSEWHERE), any::<[u8; 4]>()]
}

fn ipv6_dst() -> impl Strategy<Value = [u8; 16]> {
    let host: [u8; 16] = "2001:db8::1"
        .parse::<std::net::Ipv6Addr>()
        .unwrap()
        .octets();
    prop_oneof![Just(host), any::<[u8; 16]>()]
}

/// A network header (and a little more) for an ethertype.
fn l3() -> impl Strategy<Value = (u16, Vec<u8>)> {
    prop_oneof![
        ipv4_dst().prop_map(|d| (0x0800, ipv4(d))),
        ipv6_dst().prop_map(|d| {
            let mut h = vec![0x60, 0, 0, 0, 0, 8, 17, 64];
            h.extend([
                0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x99,
            ]);
            h.extend(d);
            h.extend([0x30, 0x39, 0x30, 0x39, 0, 8, 0, 0]);
            (0x86dd, h)
        }),
        (ipv4_dst(), any::<bool>()).prop_map(|(t, ipv4_arp)| {
            let mut a = arp_request(t);
            if !ipv4_arp {
                a[5] = 16; // not Ethernet/IPv4 ARP: no target to check
            }
            (0x0806, a)
        }),
        (any::<u16>(), prop::collection::vec(any::<u8>(), 0..64)),
    ]
}

/// (whole frame, length to cut it at)
fn frame() -> impl Strategy<Value = (Vec<u8>, usize)> {
    (
        mac(),
        prop::collection::vec(
            (
                prop_oneof![Just(0x8100u16), Just(0x88a8u16)],
                // The scenarios' VLANs, the priority tag, priority bits,
                // and anything.
                prop_oneof![Just(0u16), Just(10), Just(11), Just(0xa00a), any::<u16>()],
            ),
            0..=4,
        ),
        l3(),
        0usize..=128,
    )
        .prop_map(|(dst, tags, (ethertype, l3), cut)| {
            let f = eth_vids(dst, &tags, ethertype, &l3);
            let cut = cut.min(f.len());
            (f, cut)
        })
}

fn config() -> Config {
    Config {
        cases: CASES,
        // Failures are kernel/model disagreements worth a minimal frame.
        max_shrink_iters: 2_000,
        failure_persistence: None,
        ..Config::default()
    }
}

/// Runs `check` on `CASES` generated frames; the harness is behind a
/// RefCell because proptest's runner takes an `Fn`.
fn for_each_frame(h: Harness, check: impl Fn(&mut Harness, Vec<u8>, usize) -> TestCaseResult) {
    let h = std::cell::RefCell::new(h);
    let mut runner = TestRunner::new(config());
    if let Err(e) = runner.run(&frame(), |(f, cut)| check(&mut h.borrow_mut(), f, cut)) {
        panic!("{e}");
    }
}

fn xdp_agrees(scenario: Scenario) {
    for_each_frame(Harness::new(scenario), |h, f, cut| {
        // test_run needs 14 bytes; shorter prefixes via ctx data_end.
        let buffer = if f.len() < 14 {
            &f[..]
        } else {
            &f[..cut.max(14)]
        };
        let got = h.run_with_len(buffer, cut);
        prop_assert_eq!(got, h.expected(&f[..cut]));
        Ok(())
    });
}

#[test]
fn xdp_agrees_with_model_on_generated_frames_healthy_port() {
    xdp_agrees(Scenario::HealthyPort);
}

#[test]
fn xdp_agrees_with_model_on_generated_frames_bridge_mac_missing() {
    xdp_agrees(Scenario::PortOfBridgeWithoutOwnMac);
}

#[test]
fn xdp_agrees_with_model_on_generated_frames_standalone() {
    xdp_agrees(Scenario::Standalone);
}

#[test]
fn xdp_agrees_with_model_on_generated_frames_vlan_device() {
    xdp_agrees(Scenario::PortWithVlanDevice);
}

#[test]
fn xdp_agrees_with_model_on_generated_frames_vlan_filtering() {
    xdp_agrees(Scenario::FilteringPort);
}

#[test]
fn tc_agrees_with_model_on_generated_frames() {
    let dev = TcDevice::new();
    for scenario in Scenario::ALL {
        let h = Harness::tc(scenario, &dev);
        dev.run(|| {
            for_each_frame(h, |h, f, cut| {
                let f = &f[..cut.max(14).min(f.len())];
                // skb test_run refuses IP frames without a whole network
                // header; those are covered by XDP above.
                prop_assume!(f.len() >= 14 && skb_test_run_accepts(f));
                let got = h.run(f);
                prop_assert_eq!(got, h.expected(f));
                Ok(())
            });
        });
    }
}
