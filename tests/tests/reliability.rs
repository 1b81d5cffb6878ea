//! macdrop never alters traffic: 100,000 distinct frames pushed through a
//! watched bridge port arrive at the other side exactly as sent — the same
//! number, the same bytes — with every hook, as without macdrop.

mod common;

use std::time::Duration;

use common::SETTLE;
use macdrop_tests::{
    frames::eth,
    lab::{BRIDGE, BridgeLab, PEER_IFACE, peer_mac},
    macdrop::Macdrop,
    receiver::{Received, Receiver},
    sender::RawSender,
    wait::poll_until,
};

const FRAMES: usize = 100_000;
/// Frames in flight at most: the receiver keeps up without its socket
/// queue ever overflowing, so a loss would be macdrop's, not the test's.
const CHUNK: usize = 2_000;
/// IEEE 802 local experimental ethertype: frames nobody processes.
const ETHERTYPE: u16 = 0x88b5;

fn frame(k: usize) -> Vec<u8> {
    // A sequence number and a pattern derived from it, so every frame is
    // distinct and a flipped byte changes the digest.
    let mut payload = (k as u64).to_be_bytes().to_vec();
    payload.extend((0..40).map(|i| (k as u8).wrapping_mul(31).wrapping_add(i)));
    eth(peer_mac(2), peer_mac(1), ETHERTYPE, &payload)
}

/// Sends every frame from peer 1 to peer 2 across the bridge; returns what
/// peer 2 received.
fn push(lab: &BridgeLab) -> Received {
    let rx = Receiver::start(lab.peer(2), PEER_IFACE, peer_mac(1)).unwrap();
    let tx = RawSender::new(lab.peer(1), PEER_IFACE).unwrap();
    for start in (0..FRAMES).step_by(CHUNK) {
        for k in start..(start + CHUNK).min(FRAMES) {
            tx.send(&frame(k), 1).unwrap();
        }
        let sent = (start + CHUNK).min(FRAMES) as u64;
        poll_until(
            Duration::from_secs(10),
            || Ok::<_, anyhow::Error>(rx.count()),
            |n| *n >= sent,
        )
        .unwrap();
    }
    rx.stop().unwrap()
}

#[test]
fn traffic_through_a_watched_port_is_untouched() {
    let sent = Received::of(
        (0..FRAMES)
            .map(frame)
            .collect::<Vec<_>>()
            .iter()
            .map(Vec::as_slice),
    );
    let lab = BridgeLab::new(2).unwrap();
    assert_eq!(push(&lab), sent, "baseline without macdrop");
    for mode in ["auto", "xdp", "xdp-generic"] {
        let mut macdrop =
            Macdrop::spawn(lab.host(), &["--bridge", BRIDGE, "--attach", mode]).unwrap();
        assert_eq!(push(&lab), sent, "{mode}: the receiver got other frames");
        // And macdrop saw them all, as foreign unicast on p1.
        let want = FRAMES as u64;
        let report = macdrop.settle(
            |r| r.frames("p1").is_some_and(|f| f.foreign_unicast == want),
            SETTLE,
        );
        assert_eq!(report.frames("p1").unwrap().foreign_unicast, want, "{mode}");
        macdrop.stop().unwrap();
    }
}
