//! The kernel's flow records checked against the reference model: a frame
//! the model calls mismatched (`classify::mismatch`) adds exactly one frame
//! to the flow the model's key names (source and destination MAC, outermost
//! VLAN, destination IP), with its length and mismatch bits; any other frame,
//! foreign unicast on a bridge port included, records nothing. Through the
//! XDP programs and the tc program, with exact map contents.

use super::*;
use macdrop::{
    classify::{destination_ip, mismatch, outer_vlan},
    model::Flow,
};

/// A flow record without its times: what the model can predict.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Record {
    slot: u32,
    src: Mac,
    dst: Mac,
    vlan: Option<u16>,
    dst_ip: Option<IpAddr>,
    frames: u64,
    bytes: u64,
    mismatch: u8,
}

impl Record {
    fn of(slot: u32, f: &Flow) -> Self {
        Self {
            slot,
            src: f.src_mac,
            dst: f.dst_mac,
            vlan: f.vlan,
            dst_ip: f.dst_ip,
            frames: f.frames,
            bytes: f.bytes,
            mismatch: f.mismatch,
        }
    }
}

impl Harness {
    /// Every record in the kernel's flow map, sorted.
    fn records(&mut self) -> Vec<Record> {
        let mut out: Vec<Record> = self
            .flows
            .read()
            .unwrap()
            .iter()
            .flat_map(|(slot, fs)| fs.iter().map(|f| Record::of(*slot, f)))
            .collect();
        out.sort();
        out
    }

    /// The record the model predicts for `n` copies of `frame`, if any.
    fn model_record(&self, frame: &[u8], n: u64) -> Option<Record> {
        let class = classify(frame, &self.receiver());
        let bits = mismatch(class, self.port);
        (bits != 0).then(|| Record {
            slot: 0,
            src: Mac::from_slice(&frame[6..12]).unwrap(),
            dst: Mac::from_slice(&frame[..6]).unwrap(),
            vlan: outer_vlan(frame),
            dst_ip: destination_ip(frame),
            frames: n,
            bytes: n * frame.len() as u64,
            mismatch: bits,
        })
    }

    /// After one run of `frame`: the flow map holds exactly the model's
    /// record (or nothing); then it is emptied for the next frame.
    pub(super) fn assert_flow(&mut self, frame: &[u8], what: &str) {
        let want: Vec<Record> = self.model_record(frame, 1).into_iter().collect();
        assert_eq!(self.records(), want, "{what}: flow records vs model");
        self.flows.clear(0).unwrap();
    }
}

const Q: u16 = 0x8100;
const AD: u16 = 0x88a8;

/// A mix of flows, each sent a known number of times: IPv4, IPv6, ARP,
/// VLAN-tagged (one and two tags), a stale destination, and foreign
/// unicast for another host (a mismatch on a standalone interface only).
fn mix() -> Vec<(Vec<u8>, u64)> {
    vec![
        (eth(FOREIGN, &[], 0x0800, &ipv4(HOST)), 3),
        (eth(FOREIGN, &[Q], 0x0800, &ipv4(HOST)), 2),
        (eth(FOREIGN, &[AD, Q], 0x86dd, &ipv6("2001:db8::1")), 4),
        (eth(FOREIGN, &[], 0x0806, &arp_request(HOST)), 1),
        (eth(OLD_MAC, &[], 0x86dd, &ipv6("2001:db8::1")), 2),
        (eth(FOREIGN, &[], 0x0800, &ipv4(ELSEWHERE)), 5),
        (eth(FOREIGN, &[], 0x88cc, &ipv4(HOST)), 1),
        (eth(BR_MAC, &[], 0x0800, &ipv4(HOST)), 2),
        (eth(Mac::BROADCAST, &[], 0x0806, &arp_request(HOST)), 2),
    ]
}

/// Runs the mix (interleaved, so flows grow side by side) and compares the
/// whole map with the model's records.
fn mix_agrees(h: &mut Harness, what: &str) {
    let mix = mix();
    let rounds = mix.iter().map(|(_, n)| *n).max().unwrap();
    for round in 0..rounds {
        for (frame, n) in &mix {
            if round < *n {
                h.run(frame);
            }
        }
    }
    // Frames of different kinds may share a flow (an ARP request and an
    // IPv4 packet to the same address): merge the model's records by key.
    let mut want: Vec<Record> = Vec::new();
    for r in mix
        .iter()
        .filter_map(|(frame, n)| h.model_record(frame, *n))
    {
        let same = |w: &&mut Record| {
            (w.slot, w.src, w.dst, w.vlan, w.dst_ip) == (r.slot, r.src, r.dst, r.vlan, r.dst_ip)
        };
        match want.iter_mut().find(same) {
            Some(w) => {
                w.frames += r.frames;
                w.bytes += r.bytes;
                w.mismatch |= r.mismatch;
            }
            None => want.push(r),
        }
    }
    want.sort();
    assert_eq!(h.records(), want, "{what}");
}

#[test]
fn flows_accumulate_exactly_as_the_model_predicts() {
    for scenario in [
        Scenario::PortOfBridgeWithoutOwnMac,
        Scenario::HealthyPort,
        Scenario::Standalone,
    ] {
        on_every_program(scenario, |h, program| {
            mix_agrees(h, &format!("{program}: {scenario:?}"));
        });
    }
}

/// The mix's records pinned as numbers on a port of the incident's
/// bridge, so a mistake shared by the model and the kernel cannot hide:
/// foreign unicast for another host is forwarding there, not a mismatch.
#[test]
fn pinned_flows_on_a_port() {
    let mut h = Harness::new(Scenario::PortOfBridgeWithoutOwnMac);
    mix_agrees(&mut h, "pinned");
    // (destination MAC, VLAN, destination IP, frames, mismatch bits)
    type Pinned = (String, Option<u16>, Option<String>, u64, u8);
    let got: Vec<Pinned> = h
        .records()
        .iter()
        .map(|r| {
            (
                r.dst.to_string(),
                r.vlan,
                r.dst_ip.map(|ip| ip.to_string()),
                r.frames,
                r.mismatch,
            )
        })
        .collect();
    let host = monitor_common::MISMATCH_HOST_IP;
    let stale = host | monitor_common::MISMATCH_STALE;
    let v4 = Some("192.0.2.1".to_owned());
    let v6 = Some("2001:db8::1".to_owned());
    let mut want = vec![
        ("02:00:00:00:0b:01".to_owned(), None, v4.clone(), 2, host),
        ("02:00:00:00:0b:99".to_owned(), None, v6.clone(), 2, stale),
        (
            "02:00:00:00:ee:ee".to_owned(),
            None,
            v4.clone(),
            3 + 1,
            host,
        ),
        ("02:00:00:00:ee:ee".to_owned(), Some(10), v4, 2, host),
        ("02:00:00:00:ee:ee".to_owned(), Some(10), v6, 4, host),
    ];
    want.sort();
    let mut got = got;
    got.sort();
    assert_eq!(got, want, "IPv4 and its ARP share a flow; tags split flows");
    let v4_tagged = h
        .records()
        .into_iter()
        .find(|r| r.vlan == Some(10) && r.dst_ip.is_some_and(|ip| ip.is_ipv4()))
        .unwrap();
    assert_eq!(v4_tagged.bytes, 2 * (14 + 4 + 28) as u64);
}

/// `--top-flows 0`: the same mismatched frames are counted, and the flow
/// map stays empty.
#[test]
fn no_flow_records_when_disabled() {
    let mut h = Harness::with_config(
        Scenario::Standalone,
        Hook::Xdp(names::XDP_PROGRAM),
        config::Desired::without_flows,
    );
    let d = h.run(&eth(FOREIGN, &[], 0x0800, &ipv4(HOST)));
    assert_eq!((d.foreign_unicast, d.host_ip_wrong_mac), (1, 1));
    assert_eq!(h.records(), []);
    let dev = TcDevice::new();
    let mut h = Harness::with_config(
        Scenario::Standalone,
        Hook::Tc {
            ifindex: dev.ifindex,
        },
        config::Desired::without_flows,
    );
    dev.run(|| h.run(&eth(FOREIGN, &[Q], 0x86dd, &ipv6("2001:db8::1"))));
    assert_eq!(h.records(), []);
}

/// Under a flood the session sets the interface's flow sampling
/// (`IfConfig::flow_sample`): the class counters still count every frame,
/// and the flow table records exactly the frames `flow_weight` picks, one
/// in N counted N times, the flow marked sampled (an estimate); set back
/// to 0, every frame is recorded again. 102 frames at 1 in 4: 25 records,
/// 100 frames (a kernel ignoring the mask records 102, exact).
#[test]
fn a_sampled_flood_counts_every_frame_and_records_one_in_n() {
    const MASK: u32 = 3;
    const SENT: u32 = 102;
    let frame = eth(FOREIGN, &[], 0x0800, &ipv4(HOST));
    let len = frame.len() as u64;
    let want: u64 = (1..=u64::from(SENT))
        .filter_map(|count| monitor_common::flow_weight(count, MASK))
        .sum();
    assert_eq!(want, 100);
    let check = |h: &mut Harness, what: &str| {
        h.config.set_flow_sample(LO, MASK).unwrap();
        let d = h.run_times(&frame, SENT);
        assert_eq!(
            (d.total, d.foreign_unicast, d.host_ip_wrong_mac),
            (102, 102, 102),
            "{what}: the class counters stay exact"
        );
        let flows: Vec<Flow> = h.flows.read().unwrap().into_values().flatten().collect();
        assert_eq!(flows.len(), 1, "{what}: {flows:?}");
        let f = &flows[0];
        assert_eq!((f.frames, f.bytes), (want, want * len), "{what}");
        assert!(f.sampled && !f.exact, "{what}: an estimate says so: {f:?}");
        h.config.set_flow_sample(LO, 0).unwrap();
        h.run_times(&frame, 5);
        let f = h
            .flows
            .read()
            .unwrap()
            .into_values()
            .flatten()
            .next()
            .unwrap();
        assert_eq!(f.frames, want + 5, "{what}: every frame again");
    };
    on_every_program(Scenario::Standalone, check);
}

/// An interface that goes takes its flow sampling along: the next sync
/// without it forgets the mask, so a device that comes back at the same
/// ifindex starts with every frame recorded.
#[test]
fn a_gone_interface_forgets_its_flow_sampling() {
    let mut h = Harness::new(Scenario::Standalone);
    h.config.set_flow_sample(LO, 3).unwrap();
    assert_eq!(h.config.flow_sample(LO), 3);
    h.config.sync(config::Desired::default()).unwrap();
    assert_eq!(h.config.flow_sample(LO), 0);
}

/// A flood of distinct flows, more than the kernel's table holds, with one
/// heavy flow among them: the class counters stay exact, every count said
/// to be exact is exactly what was sent, every other one is no more (a
/// lower bound, as documented), some are said to be lower bounds (the
/// table overflowed), and the heavy flow keeps its place at the top.
#[test]
fn a_flood_of_distinct_flows_keeps_the_counts_truthful() {
    use monitor_common::{FLOW_BUCKETS, FLOW_WAYS};
    let mut h = Harness::new(Scenario::PortOfBridgeWithoutOwnMac);
    let base = eth(FOREIGN, &[], 0x0800, &ipv4(HOST));
    let with_src = |i: u32| {
        let mut f = base.clone();
        let [_, b, c, d] = i.to_be_bytes();
        f[6..12].copy_from_slice(&[0x02, 0, 0xf0, b, c, d]);
        f
    };
    let heavy = with_src(0xff_ffff);
    let distinct = 4 * FLOW_BUCKETS * FLOW_WAYS as u32;
    let mut counted = 0;
    let mut heavy_sent = 0u64;
    for i in 0..distinct {
        counted += h.run(&with_src(i)).host_ip_wrong_mac;
        if i % 16 == 0 {
            counted += h.run(&heavy).host_ip_wrong_mac;
            heavy_sent += 1;
        }
    }
    assert_eq!(
        counted,
        u64::from(distinct) + heavy_sent,
        "class counters exact"
    );
    let by_slot = h.flows.read().unwrap();
    // Kernels before 5.6 have no batch lookups on arrays: the reader's
    // bucket-by-bucket path must read exactly what the batch read did.
    h.flows.without_batch();
    let mut per_bucket = h.flows.read().unwrap();
    for flows in per_bucket.values_mut() {
        flows.sort_by_key(|f| (f.src_mac, f.dst_mac, f.vlan, f.dst_ip));
    }
    let mut batch = by_slot.clone();
    for flows in batch.values_mut() {
        flows.sort_by_key(|f| (f.src_mac, f.dst_mac, f.vlan, f.dst_ip));
    }
    assert_eq!(
        per_bucket, batch,
        "bucket-by-bucket and batch reads of the same table"
    );
    let flows: Vec<_> = by_slot.into_values().flatten().collect();
    let sent = |f: &macdrop::model::Flow| {
        if f.src_mac.0 == heavy[6..12] {
            heavy_sent
        } else {
            1
        }
    };
    for f in &flows {
        if f.exact {
            assert_eq!(f.frames, sent(f), "a count said to be exact: {f:?}");
        } else {
            assert!(f.frames <= sent(f), "a lower bound above the truth: {f:?}");
        }
    }
    assert!(
        flows.iter().any(|f| !f.exact),
        "{} flows through a table of {} per CPU, none said to be a lower bound",
        distinct,
        FLOW_BUCKETS as usize * FLOW_WAYS
    );
    let top = macdrop::kernel::flows::top(flows, 1);
    assert_eq!(
        top[0].src_mac.0,
        heavy[6..12],
        "the heavy flow stays on top: {top:?}"
    );
}
