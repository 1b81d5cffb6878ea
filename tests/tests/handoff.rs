//! The two-step start (docs/design.md): on a bridge with many ports,
//! macdrop with the default attach watches through generic XDP at once and
//! moves every interface to TCX in the background. Frames sent from the
//! moment it is watching until every interface is on TCX, and after, are
//! counted exactly once (a double count or a loss fails); and however
//! macdrop ends, during the hand-off or after, nothing it attached stays.

mod common;

use std::{
    io::Write as _,
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use common::SETTLE;
use macdrop_tests::{
    bpf,
    btf::KernelBtf,
    frames::ipv4_udp,
    lab::{BRIDGE, BRIDGE_IPV4, BRIDGE_MAC, BridgeLab, PEER_IFACE, peer_ipv4, peer_mac, port_name},
    macdrop::{Macdrop, Report},
    netns::NetNs,
    sender::RawSender,
};

/// Ports with a sending peer (the lab's own).
const SENDING: usize = 4;

/// Adds `extra` silent ports (`q1`..) to the lab's bridge, their peers in
/// `crowd`: one `ip -batch` for all.
fn add_ports(lab: &BridgeLab, crowd: &NetNs, extra: usize) {
    let path = std::env::temp_dir().join(format!(
        "macdrop-handoff-{}-{}.batch",
        std::process::id(),
        crowd.name()
    ));
    let _remove = RemoveOnDrop(path.clone());
    let mut file = std::fs::File::create(&path).unwrap();
    for n in 1..=extra {
        writeln!(
            file,
            "link add q{n} type veth peer name r{n} netns {}\nlink set q{n} master {BRIDGE}\n\
             link set q{n} up",
            crowd.name()
        )
        .unwrap();
    }
    file.flush().unwrap();
    lab.host()
        .exec(&["ip", "-batch", path.to_str().unwrap()])
        .unwrap();
}

struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The two-step start moves to TCX: on a kernel whose tc attaches through
/// a clsact qdisc (no `BPF_TCX_INGRESS` in its BTF) there is none, and the
/// test is skipped. False then.
fn has_two_step_start(test: &str) -> bool {
    let tcx = KernelBtf::read().unwrap().tcx;
    if !tcx {
        macdrop_tests::skip::record(
            test,
            "no TCX in this kernel (no BPF_TCX_INGRESS in its BTF): macdrop attaches through \
             clsact at once, with no two-step start",
        );
    }
    tcx
}

fn all_on_tcx(r: &Report) -> bool {
    r.interfaces
        .iter()
        .all(|i| i.hook.as_deref() == Some("tcx"))
}

#[test]
fn frames_during_the_handoff_are_counted_exactly_once() {
    if !has_two_step_start("handoff: frames during the hand-off counted exactly once") {
        return;
    }
    // p1 is handed off among the first, p2-p4 (made after the crowd) and
    // the bridge among the last, so frames are in flight through every
    // step of the hand-off on some interface.
    let mut lab = BridgeLab::new(1).unwrap();
    let crowd = NetNs::new().unwrap();
    add_ports(&lab, &crowd, 36);
    for _ in 2..=SENDING {
        lab.add_port(macdrop_tests::netns::TEST_PREFIX).unwrap();
    }
    let senders: Vec<RawSender> = (1..=SENDING)
        .map(|i| RawSender::new(lab.peer(i), PEER_IFACE).unwrap())
        .collect();
    let frames: Vec<Vec<u8>> = (1..=SENDING)
        .map(|i| ipv4_udp(BRIDGE_MAC, peer_mac(i), peer_ipv4(i), BRIDGE_IPV4))
        .collect();

    let mut macdrop = Macdrop::spawn(lab.host(), &["--bridge", BRIDGE]).unwrap();
    let held = bpf::held_by(macdrop.pid()).unwrap();
    let moving = AtomicBool::new(true);
    // Frames go from the watching line on, through the hand-off and for a
    // while after it, from one thread per sender (so on changing CPUs).
    let (sent, handed_off) = std::thread::scope(|s| {
        let workers: Vec<_> = senders
            .iter()
            .zip(&frames)
            .map(|(sender, frame)| {
                let moving = &moving;
                s.spawn(move || {
                    let mut sent = 0u64;
                    let mut after = 0;
                    // Batches of 10, 50 more batches once all are on TCX.
                    while after < 50 {
                        sender.send(frame, 10).unwrap();
                        sent += 10;
                        if !moving.load(Ordering::Relaxed) {
                            after += 1;
                        }
                        std::thread::yield_now();
                    }
                    sent
                })
            })
            .collect();
        let handed_off = macdrop.wait_for(all_on_tcx, Duration::from_secs(60));
        moving.store(false, Ordering::Relaxed);
        let sent: Vec<u64> = workers.into_iter().map(|w| w.join().unwrap()).collect();
        (sent, handed_off)
    });
    let handed_off = handed_off.unwrap();
    assert_eq!(handed_off.interfaces.len(), 41, "40 ports and the bridge");

    let total: u64 = sent.iter().sum();
    let want = |r: &Report| {
        (1..=SENDING).all(|i| r.frames(&port_name(i)).map(|f| f.own) == Some(sent[i - 1]))
            && r.frames(BRIDGE).map(|f| f.own) == Some(total)
    };
    let report = macdrop.settle(want, SETTLE);
    for i in 1..=SENDING {
        assert_eq!(
            report.frames(&port_name(i)).map(|f| f.own),
            Some(sent[i - 1]),
            "{}: every frame sent, once",
            port_name(i)
        );
    }
    assert_eq!(
        report.frames(BRIDGE).map(|f| f.own),
        Some(total),
        "{BRIDGE}: every frame passed up, once"
    );
    assert!(all_on_tcx(&report));
    let moved: Vec<_> = macdrop
        .events()
        .iter()
        .filter(|e| e.kind == "hook_changed")
        .map(|e| {
            assert_eq!(
                (e.hook_from.as_deref(), e.hook.as_deref()),
                (Some("xdp-generic"), Some("tcx"))
            );
            e.interface.clone()
        })
        .collect();
    assert_eq!(moved.len(), 41, "one hook_changed per interface: {moved:?}");
    let first: Vec<_> = macdrop
        .events()
        .iter()
        .filter(|e| e.kind == "attached")
        .map(|e| e.hook.clone())
        .collect();
    assert_eq!(
        first,
        vec![Some("xdp-generic".to_owned()); 41],
        "a big start begins on generic XDP"
    );

    let stopped = macdrop.stop().unwrap();
    assert_eq!(stopped.frames(BRIDGE).map(|f| f.own), Some(total));
    assert_left_nothing(&held, "SIGTERM after the hand-off");
}

/// Ended while interfaces are still moving (200 ports: about 2 s of TCX
/// attaches on an idle host), macdrop leaves neither kind of link: every
/// program it held is gone, and a program stays as long as any link to it
/// exists.
#[test]
fn an_exit_during_the_handoff_leaves_nothing() {
    if !has_two_step_start("handoff: an exit during the hand-off leaves nothing") {
        return;
    }
    for (how, signal) in [
        ("SIGINT", libc::SIGINT),
        ("SIGTERM", libc::SIGTERM),
        ("SIGHUP", libc::SIGHUP),
        ("SIGKILL", libc::SIGKILL),
    ] {
        let lab = BridgeLab::new(1).unwrap();
        let crowd = NetNs::new().unwrap();
        add_ports(&lab, &crowd, 200);
        let macdrop = Macdrop::spawn(lab.host(), &["--bridge", BRIDGE]).unwrap();
        let held = bpf::held_by(macdrop.pid()).unwrap();
        assert!(
            !held.programs.is_empty() && !held.links.is_empty(),
            "{how}: macdrop holds no BPF objects? {held:?}"
        );
        macdrop.kill_with(signal).unwrap();
        assert_left_nothing(&held, how);
    }
}

fn assert_left_nothing(held: &bpf::Held, how: &str) {
    let left = macdrop_tests::wait::poll_until(
        SETTLE,
        || bpf::still_existing(held),
        |left| left.programs.is_empty() && left.links.is_empty(),
    )
    .unwrap();
    assert_eq!(left, bpf::Held::default(), "{how}: left behind");
}
