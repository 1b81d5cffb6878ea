//! The evidence records (`--pcap`) of each program, from the ring buffer
//! after test runs of crafted mismatched frames: for every frame length
//! from the Ethernet header to past the snap length (every path of the
//! legacy XDP program's copy) the record holds the frame's first
//! `min(len, 128)` bytes exactly, its length, the mismatch bits the model
//! predicts, the hook and the interface; frames that are not mismatched
//! and frames past the budget leave nothing.

use aya::maps::{Array, MapData, RingBuf};
use monitor_common::{
    EVIDENCE_HOOK_TC, EVIDENCE_HOOK_XDP, EVIDENCE_SNAPLEN, EvidenceCtl, EvidenceRecord,
};

use super::*;
use macdrop::classify::mismatch;

/// The capture maps of a harness's object.
struct Capture {
    ring: RingBuf<MapData>,
    ctl: Array<MapData, EvidenceCtl>,
}

impl Capture {
    fn take(h: &mut Harness, budget: u64) -> Self {
        let ring = RingBuf::try_from(h.ebpf.take_map(names::EVIDENCE_RING).unwrap()).unwrap();
        let mut ctl = Array::try_from(h.ebpf.take_map(names::EVIDENCE_CTL).unwrap()).unwrap();
        ctl.set(0, EvidenceCtl { budget, taken: 0 }, 0).unwrap();
        Self { ring, ctl }
    }

    /// Every record in the ring, in order.
    fn drain(&mut self) -> Vec<EvidenceRecord> {
        let mut out = Vec::new();
        while let Some(item) = self.ring.next() {
            assert_eq!(item.len(), size_of::<EvidenceRecord>());
            // SAFETY: a whole record (size checked above).
            out.push(unsafe { item.as_ptr().cast::<EvidenceRecord>().read_unaligned() });
        }
        out
    }

    fn taken(&self) -> u64 {
        self.ctl.get(&0, 0).unwrap().taken
    }
}

/// A mismatched frame (IPv4 for the host's address to a foreign MAC) of
/// exactly `len` bytes: cut short, or padded with a byte pattern that
/// shows any misplaced copy.
fn mismatched_frame(len: usize) -> Vec<u8> {
    let mut f = eth(FOREIGN, &[], 0x0800, &ipv4(HOST));
    f.resize(len.max(f.len()), 0);
    for (i, b) in f.iter_mut().enumerate().skip(14 + 20) {
        *b = (i * 7 + 3) as u8;
    }
    f.truncate(len);
    f
}

/// Runs each frame and checks the one record it leaves, field by field.
fn one_record_per_frame(h: &mut Harness, cap: &mut Capture, frames: &[Vec<u8>], what: &str) {
    let hook = match h.hook {
        Hook::Xdp(_) => EVIDENCE_HOOK_XDP,
        Hook::Tc { .. } => EVIDENCE_HOOK_TC,
    };
    for frame in frames {
        let len = frame.len();
        let bits = mismatch(classify(frame, &h.receiver()), h.port);
        assert_ne!(bits, 0, "{what}: {len} bytes: the corpus is mismatched");
        h.run(frame);
        let recs = cap.drain();
        assert_eq!(recs.len(), 1, "{what}: {len} bytes: one record");
        let r = &recs[0];
        let n = len.min(EVIDENCE_SNAPLEN);
        assert_eq!(
            (r.orig_len, r.cap_len, r.mismatch, r.hook, r.ifindex),
            (len as u32, n as u16, bits, hook, LO),
            "{what}: {len} bytes"
        );
        assert_eq!(
            &r.data[..n],
            &frame[..n],
            "{what}: {len} bytes: the frame's bytes"
        );
    }
    assert_eq!(cap.taken(), frames.len() as u64, "{what}: taken");
}

/// Every length from the Ethernet header to past the snap length, then
/// common and large frames (within a single-buffer XDP test run's page).
fn lengths() -> Vec<usize> {
    (14..=EVIDENCE_SNAPLEN + 3)
        .chain([200, 1500, 3000])
        .collect()
}

#[test]
fn xdp_programs_capture_every_length_exactly() {
    for program in [names::XDP_PROGRAM, names::XDP_PROGRAM_LEGACY] {
        let mut h = Harness::with_program(Scenario::Standalone, program);
        // The copy's paths cost the verifier little (measured on 6.18: the
        // legacy program 36,674 instructions in all before the VLAN paths
        // and the bridge hand-over, 70,072 with them; the limit is
        // 1,000,000): keep well away from the limit.
        let prog: &Xdp = h.ebpf.program(program).unwrap().try_into().unwrap();
        let verified = prog.info().unwrap().verified_instruction_count();
        assert!(
            verified.is_some_and(|n| n < 100_000),
            "{program}: {verified:?} instructions verified"
        );
        let mut cap = Capture::take(&mut h, 1_000);
        let frames: Vec<Vec<u8>> = lengths().into_iter().map(mismatched_frame).collect();
        one_record_per_frame(&mut h, &mut cap, &frames, program);
        // A frame that is not mismatched leaves nothing.
        h.run(&eth(LO_MAC, &[], 0x0800, &ipv4(HOST)));
        assert_eq!(cap.drain(), [], "{program}: own MAC");
    }
}

#[test]
fn tc_captures_every_length_exactly() {
    let dev = TcDevice::new();
    let mut h = Harness::tc(Scenario::Standalone, &dev);
    let mut cap = Capture::take(&mut h, 1_000);
    let frames: Vec<Vec<u8>> = lengths()
        .into_iter()
        .map(mismatched_frame)
        .filter(|f| skb_test_run_accepts(f))
        .collect();
    assert!(frames.len() > 100);
    dev.run(|| one_record_per_frame(&mut h, &mut cap, &frames, "macdrop_tc"));
}

/// The budget closes capture: with 2 frames allowed, the third mismatched
/// frame is counted but leaves no record.
#[test]
fn the_budget_closes_capture_in_every_xdp_program() {
    for program in [names::XDP_PROGRAM, names::XDP_PROGRAM_LEGACY] {
        let mut h = Harness::with_program(Scenario::Standalone, program);
        let mut cap = Capture::take(&mut h, 2);
        let frame = mismatched_frame(60);
        for _ in 0..3 {
            h.run(&frame);
        }
        assert_eq!(cap.drain().len(), 2, "{program}");
        assert_eq!(cap.taken(), 2, "{program}");
    }
}

/// Under a flood whose flows are sampled 1 in 4, only the frames the
/// sampler picks reach the rate bound and the capture: 42 frames leave the
/// 10 records of the 10 full groups, and the frames those stand for count
/// as kept out by the bound, so the counts add up to the 40 frames of
/// those groups. Without sampling every frame is captured again. (Few
/// frames: without `--pcap` the harness's ring holds a page.)
#[test]
fn under_flow_sampling_only_the_picked_frames_are_captured() {
    use aya::maps::PerCpuArray;
    use monitor_common::EvidenceCpu;
    const MASK: u32 = 3;
    let check = |h: &mut Harness, what: &str| {
        let mut cap = Capture::take(h, 1_000);
        let cpu: PerCpuArray<MapData, EvidenceCpu> =
            PerCpuArray::try_from(h.ebpf.take_map(names::EVIDENCE_CPU).unwrap()).unwrap();
        let limited = || -> u64 { cpu.get(&0, 0).unwrap().iter().map(|c| c.rate_limited).sum() };
        let frame = mismatched_frame(60);
        h.config.set_flow_sample(LO, MASK).unwrap();
        let d = h.run_times(&frame, 42);
        assert_eq!(d.host_ip_wrong_mac, 42, "{what}: the counters stay exact");
        assert_eq!(cap.drain().len(), 10, "{what}: one record per group of 4");
        assert_eq!(limited(), 30, "{what}: the rest of each group is counted");
        h.config.set_flow_sample(LO, 0).unwrap();
        h.run_times(&frame, 3);
        assert_eq!(cap.drain().len(), 3, "{what}: every frame again");
        assert_eq!(limited(), 30, "{what}");
        assert_eq!(cap.taken(), 13, "{what}");
    };
    on_every_program(Scenario::Standalone, check);
}
