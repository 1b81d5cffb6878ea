//! The egress source-MAC counter (`macdrop_tc_egress`,
//! `monitor_common::egress`) against its reference model
//! (`EgressCounters::count`): crafted frames with the uplink's own source
//! MAC, a child's and another's, through BPF_PROG_TEST_RUN on the device
//! whose egress it counts; the verdict is always TC_ACT_UNSPEC, the
//! frame comes out unchanged, and the counts equal the model's exactly.
//! Frames to a multicast group are not counted, broadcast is.
//! Frames leaving an interface that is not counted are not looked at.

use aya::{
    maps::{HashMap as BpfHashMap, MapData, PerCpuArray},
    programs::SchedClassifier,
};
use monitor_common::egress::{
    EGRESS_CHILD, EGRESS_OWN, EgressCounters, EgressMacKey, names as egress,
};

use super::*;

const UPLINK_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x0e, 0x01];
const CHILD_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x0e, 0x11];
const OTHER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x0e, 0x99];
const PEER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x0e, 0x02];

/// A frame from `src` to the peer, IPv4 payload.
fn from(src: [u8; 6]) -> Vec<u8> {
    from_to(src, PEER_MAC)
}

/// A frame from `src` to `dest`, IPv4 payload.
fn from_to(src: [u8; 6], dest: [u8; 6]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dest);
    f.extend_from_slice(&src);
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    f.extend_from_slice(&ipv4([192, 0, 2, 2]));
    f
}

fn counters(ebpf: &Ebpf, slot: u32) -> EgressCounters {
    let map: PerCpuArray<&MapData, EgressCounters> =
        PerCpuArray::try_from(ebpf.map(egress::COUNTERS).unwrap()).unwrap();
    let mut sum = EgressCounters::default();
    for c in map.get(&slot, 0).unwrap().iter() {
        sum.add(c);
    }
    sum
}

#[test]
fn egress_source_mac_classes_agree_with_the_model() {
    let dev = TcDevice::new();
    let netns = macdrop::netns::inode_of(std::path::Path::new("/proc/self/ns/net")).unwrap();
    let mut ebpf = loader::load(netns, &[]).unwrap();
    {
        let prog: &mut SchedClassifier = ebpf
            .program_mut(egress::PROGRAM)
            .unwrap()
            .try_into()
            .unwrap();
        prog.load().unwrap();
    }
    let uplink = dev.ifindex;
    {
        let mut slots: BpfHashMap<&mut MapData, u32, u32> =
            BpfHashMap::try_from(ebpf.map_mut(egress::SLOTS).unwrap()).unwrap();
        slots.insert(uplink, 3, 0).unwrap();
    }
    {
        let mut macs: BpfHashMap<&mut MapData, EgressMacKey, u8> =
            BpfHashMap::try_from(ebpf.map_mut(egress::MACS).unwrap()).unwrap();
        macs.insert(EgressMacKey::new(uplink, UPLINK_MAC), EGRESS_OWN, 0)
            .unwrap();
        macs.insert(EgressMacKey::new(uplink, CHILD_MAC), EGRESS_CHILD, 0)
            .unwrap();
        // The child of another uplink is "other" here.
        macs.insert(EgressMacKey::new(uplink + 1, OTHER_MAC), EGRESS_CHILD, 0)
            .unwrap();
    }
    const MLD: [u8; 6] = [0x33, 0x33, 0, 0, 0, 0x16];
    const MDNS: [u8; 6] = [0x01, 0, 0x5e, 0, 0, 0xfb];
    let plan: [(&str, Vec<u8>, Option<u8>, u32); 8] = [
        ("own", from(UPLINK_MAC), Some(EGRESS_OWN), 3),
        ("child", from(CHILD_MAC), Some(EGRESS_CHILD), 5),
        ("other", from(OTHER_MAC), None, 7),
        ("another uplink's child", from(OTHER_MAC), None, 2),
        // Broadcast is counted (an ARP request); multicast groups are not.
        (
            "child broadcast",
            from_to(CHILD_MAC, [0xff; 6]),
            Some(EGRESS_CHILD),
            4,
        ),
        (
            "child to MLD",
            from_to(CHILD_MAC, MLD),
            Some(EGRESS_CHILD),
            6,
        ),
        ("other to mDNS", from_to(OTHER_MAC, MDNS), None, 3),
        ("own to MLD", from_to(UPLINK_MAC, MLD), Some(EGRESS_OWN), 2),
    ];
    let mut model = EgressCounters::default();
    let prog: &SchedClassifier = ebpf.program(egress::PROGRAM).unwrap().try_into().unwrap();
    dev.run(|| {
        for (what, frame, class, n) in &plan {
            for _ in 0..*n {
                let res = test_run::run_tc(prog, frame, uplink, uplink, 1).unwrap();
                assert_eq!(res.verdict, TC_ACT_UNSPEC, "{what}");
                assert_eq!(res.frame, *frame, "{what}: frame altered");
                let dest: [u8; 6] = frame[..6].try_into().unwrap();
                model.count(&dest, *class);
            }
        }
    });
    assert_eq!(
        counters(&ebpf, 3),
        model,
        "kernel against the model, per class"
    );
    assert_eq!(
        model,
        EgressCounters {
            own: 3,
            child: 9,
            other: 9,
            broadcast: 4,
        }
    );
    // Another slot saw nothing.
    assert_eq!(counters(&ebpf, 0), EgressCounters::default());

    // Once the uplink is no longer counted, its frames are not looked at.
    {
        let mut slots: BpfHashMap<&mut MapData, u32, u32> =
            BpfHashMap::try_from(ebpf.map_mut(egress::SLOTS).unwrap()).unwrap();
        slots.remove(&uplink).unwrap();
    }
    let prog: &SchedClassifier = ebpf.program(egress::PROGRAM).unwrap().try_into().unwrap();
    dev.run(|| {
        for (what, frame, _, _) in &plan {
            let res = test_run::run_tc(prog, frame, uplink, uplink, 1).unwrap();
            assert_eq!(res.verdict, TC_ACT_UNSPEC, "{what}");
        }
    });
    assert_eq!(counters(&ebpf, 3), model);
}
