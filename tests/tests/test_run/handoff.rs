//! The hand-off's exactness rule (`macdrop::session::handoff`) on one frame: the XDP
//! program and then the tc program run on the same CPU, as generic XDP and
//! tc ingress do for one skb in `__netif_receive_skb_core`. The thread is
//! pinned to one CPU because the marker is per CPU, like the softirq that
//! runs both hooks.

use monitor_common::{IF_HANDOFF, IF_TC_MUTED};

use super::*;

/// Pins the calling thread to the CPU it is on.
fn pin_to_current_cpu() {
    // SAFETY: plain libc calls on a local, zeroed cpu_set_t.
    unsafe {
        let cpu = libc::sched_getcpu();
        assert!(cpu >= 0, "sched_getcpu");
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu as usize, &mut set);
        assert_eq!(
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set),
            0,
            "sched_setaffinity"
        );
    }
}

/// A tc harness with the XDP program loaded into the same object (same
/// maps), as a running macdrop has both.
fn both(dev: &TcDevice) -> Harness {
    let mut h = Harness::tc(Scenario::HealthyPort, dev);
    let prog: &mut Xdp = h
        .ebpf
        .program_mut(names::XDP_PROGRAM)
        .unwrap()
        .try_into()
        .unwrap();
    prog.load().unwrap();
    h
}

impl Harness {
    /// Runs `frame` through XDP (if `xdp`) and then tc (if `tc`); returns
    /// the counter delta over both.
    fn run_hooks(&mut self, frame: &[u8], xdp: bool, tc: bool) -> FrameCounters {
        let before = self.counters.read(0).unwrap();
        if xdp {
            self.run_xdp(names::XDP_PROGRAM, frame, frame.len());
        }
        if tc {
            let Hook::Tc { ifindex } = self.hook else {
                unreachable!("a tc harness")
            };
            let (verdict, out) = self.run_tc(ifindex, LO, frame).unwrap();
            assert_eq!(verdict, TC_ACT_UNSPEC);
            assert_eq!(out, frame, "frame altered");
        }
        self.counters.read(0).unwrap().since(&before)
    }

    fn set_handoff(&mut self, bits: u32) {
        self.config.set_handoff(LO, bits).unwrap();
    }

    /// Frames recorded in the flow map, over all flows.
    fn flow_frames(&mut self) -> u64 {
        self.flows
            .read()
            .unwrap()
            .values()
            .flatten()
            .map(|f| f.frames)
            .sum()
    }
}

#[test]
fn a_frame_seen_by_xdp_then_tc_is_counted_once_during_the_handoff() {
    let dev = TcDevice::new();
    dev.run(|| {
        pin_to_current_cpu();
        let mut h = both(&dev);
        let own = eth(BR_MAC, &[], 0x0800, &ipv4([192, 0, 2, 1]));
        // Mismatched on a port: another station's MAC, the host's IP.
        let wrong_mac = eth(FOREIGN, &[], 0x0800, &ipv4([192, 0, 2, 1]));

        // Without the bits, nothing changes: each hook counts.
        assert_eq!(h.run_hooks(&own, true, false).own, 1);
        assert_eq!(h.run_hooks(&own, false, true).own, 1);
        assert_eq!(h.run_hooks(&own, true, true).own, 2);

        // Muted (TCX being created): XDP counts everything, tc nothing.
        h.set_handoff(IF_TC_MUTED);
        assert_eq!(h.run_hooks(&own, true, true).own, 1);
        assert_eq!(h.run_hooks(&own, false, true).own, 0);
        assert_eq!(h.run_hooks(&own, true, false).own, 1);

        // Both bits (XDP marks, tc still muted): once, and a tc run after
        // an XDP run leaves no mark behind.
        h.set_handoff(IF_HANDOFF | IF_TC_MUTED);
        assert_eq!(h.run_hooks(&own, true, true).own, 1);
        h.set_handoff(IF_HANDOFF);
        assert_eq!(
            h.run_hooks(&own, false, true).own,
            1,
            "no stale mark after a muted tc run"
        );

        // IF_HANDOFF: XDP then tc counts once; tc alone counts (generic XDP
        // detached); XDP alone counts (tc not reached).
        for _ in 0..3 {
            assert_eq!(h.run_hooks(&own, true, true).own, 1);
        }
        assert_eq!(h.run_hooks(&own, false, true).own, 1);
        assert_eq!(h.run_hooks(&own, false, true).own, 1);
        assert_eq!(h.run_hooks(&own, true, true).own, 1);

        // Flows follow the count: one record per frame, at XDP.
        let before = h.flow_frames();
        let d = h.run_hooks(&wrong_mac, true, true);
        assert_eq!(d.host_ip_wrong_mac, 1);
        assert_eq!(h.flow_frames() - before, 1, "one flow record per frame");
        let d = h.run_hooks(&wrong_mac, false, true);
        assert_eq!(d.host_ip_wrong_mac, 1);
        assert_eq!(h.flow_frames() - before, 2);

        // Cleared: back to each hook counting.
        h.set_handoff(0);
        assert_eq!(h.run_hooks(&own, true, true).own, 2);
    });
}
