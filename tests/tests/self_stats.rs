//! `--self-stats`: macdrop's own per-frame cost, measured by the kernel,
//! with the statistics switched on only while macdrop runs.

mod common;

use common::SETTLE;
use macdrop_tests::{
    frames::ipv4_udp,
    lab::{
        FOREIGN_IPV4, FOREIGN_MAC, PEER_IFACE, STANDALONE_IFACE, STANDALONE_PEER_IPV4,
        STANDALONE_PEER_MAC, StandaloneLab,
    },
    macdrop::Macdrop,
    sender::RawSender,
};

#[test]
fn self_stats_count_every_run_and_are_switched_off_at_exit() {
    const N: u64 = 25;
    let lab = StandaloneLab::new().unwrap();
    let mut macdrop = Macdrop::spawn(
        lab.host(),
        &[
            "--iface",
            STANDALONE_IFACE,
            "--attach",
            "tc",
            "--self-stats",
        ],
    )
    .unwrap();
    let frame = ipv4_udp(
        FOREIGN_MAC,
        STANDALONE_PEER_MAC,
        STANDALONE_PEER_IPV4,
        FOREIGN_IPV4,
    );
    RawSender::new(lab.peer(), PEER_IFACE)
        .unwrap()
        .send(&frame, N as usize)
        .unwrap();
    let runs = |r: &macdrop_tests::macdrop::Report| {
        r.self_stats
            .as_ref()
            .and_then(|s| s.get("macdrop_tc"))
            .map(|s| s.runs)
    };
    let last = macdrop.settle(|r| runs(r) == Some(N), SETTLE);
    // Every frame ran the tc program once; nothing else ran it here.
    assert_eq!(runs(&last), Some(N), "{last:?}");
    let avg = last.self_stats.as_ref().unwrap()["macdrop_tc"].avg_ns;
    assert!(avg > 0.0, "{last:?}");
    macdrop.stop().unwrap();

    // Switched off again with macdrop: a program that runs now is not
    // counted (BPF_ENABLE_STATS lasts as long as macdrop's file descriptor,
    // the sysctl is never touched).
    let mut plain =
        Macdrop::spawn(lab.host(), &["--iface", STANDALONE_IFACE, "--attach", "tc"]).unwrap();
    plain.wait_for(|_| true, SETTLE).unwrap();
    RawSender::new(lab.peer(), PEER_IFACE)
        .unwrap()
        .send(&frame, N as usize)
        .unwrap();
    plain.settle(
        |r| r.frames(STANDALONE_IFACE).is_some_and(|f| f.total == N),
        SETTLE,
    );
    let held = macdrop_tests::bpf::held_by(plain.pid()).unwrap();
    for id in &held.programs {
        assert_eq!(
            macdrop_tests::bpf::run_count(*id).unwrap(),
            0,
            "program {id}"
        );
    }
    plain.stop().unwrap();
}
