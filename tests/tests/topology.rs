//! Live topology and clean attach: ports that come and go, other
//! namespaces, the choice of hook, coexistence with other programs, and
//! nothing left behind after any kind of exit.

mod common;

use std::time::{Duration, SystemTime};

use common::SETTLE;
use macdrop_tests::{
    bpf,
    btf::KernelBtf,
    frames::{BROADCAST, ipv4_udp},
    lab::{
        BRIDGE, BRIDGE_IPV4, BRIDGE_MAC, BridgeLab, FOREIGN_IPV4, FOREIGN_MAC, PEER_IFACE,
        StandaloneLab, peer_ipv4, peer_mac, port_name,
    },
    macdrop::{EventReport, FrameCounts, Macdrop, Output, PktType, macdrop_bin, watch_argv},
    netns::TEST_PREFIX,
    sender::RawSender,
};

/// How late an "attached" event may come after the port appeared.
const ATTACH_DEADLINE: Duration = Duration::from_secs(1);

/// Sends `own` frames to br0's MAC, `foreign` to a foreign MAC and
/// `broadcast` broadcasts from peer `i`.
fn send_plan(lab: &BridgeLab, i: usize, own: usize, foreign: usize, broadcast: usize) {
    let tx = RawSender::new(lab.peer(i), PEER_IFACE).unwrap();
    let (src, sip) = (peer_mac(i), peer_ipv4(i));
    tx.send(&ipv4_udp(BRIDGE_MAC, src, sip, BRIDGE_IPV4), own)
        .unwrap();
    tx.send(&ipv4_udp(FOREIGN_MAC, src, sip, FOREIGN_IPV4), foreign)
        .unwrap();
    tx.send(&ipv4_udp(BROADCAST, src, sip, BRIDGE_IPV4), broadcast)
        .unwrap();
}

fn plan_counts(own: u64, foreign: u64, broadcast: u64) -> FrameCounts {
    FrameCounts {
        own,
        foreign_unicast: foreign,
        broadcast,
        ..FrameCounts::default()
    }
    .with_total()
}

fn attached_event(macdrop: &mut Macdrop, name: &str) -> EventReport {
    macdrop
        .wait_for_event(|e| e.kind == "attached" && e.interface == name, SETTLE)
        .unwrap_or_else(|e| panic!("{name} never attached: {e:#}"))
}

fn event_time(e: &EventReport) -> SystemTime {
    use time::{OffsetDateTime, format_description::well_known::Rfc3339};
    let t = OffsetDateTime::parse(&e.ts, &Rfc3339).unwrap_or_else(|err| panic!("{}: {err}", e.ts));
    SystemTime::UNIX_EPOCH + Duration::from_nanos(t.unix_timestamp_nanos() as u64)
}

/// A port added to a watched bridge is attached within a second and
/// counted exactly; a removed port keeps its final counts, marked gone.
#[test]
fn ports_that_come_and_go_are_followed() {
    let mut lab = BridgeLab::new(1).unwrap();
    let mut macdrop = Macdrop::spawn(lab.host(), &["--bridge", BRIDGE]).unwrap();
    send_plan(&lab, 1, 2, 3, 1);

    let before = SystemTime::now();
    let i = lab.add_port(TEST_PREFIX).unwrap();
    let p2 = port_name(i);
    let attached = attached_event(&mut macdrop, &p2);
    let late = event_time(&attached)
        .duration_since(before)
        .unwrap_or_default();
    assert!(
        late <= ATTACH_DEADLINE,
        "{p2} attached {late:?} after it appeared"
    );
    send_plan(&lab, i, 4, 1, 2);
    let want_p2 = plan_counts(4, 1, 2);
    let report = macdrop.settle(|r| r.frames(&p2) == Some(want_p2), SETTLE);
    assert_eq!(report.frames(&p2), Some(want_p2));

    lab.remove_port(1).unwrap();
    macdrop
        .wait_for_event(|e| e.kind == "gone" && e.interface == "p1", SETTLE)
        .unwrap();
    let last = macdrop.stop().unwrap();
    let p1 = last
        .interface("p1")
        .expect("a gone port stays in the report");
    assert!(p1.gone);
    assert_eq!(p1.frames, plan_counts(2, 3, 1), "final counts are kept");
    assert_eq!(last.frames(&p2), Some(want_p2));
}

/// `--netns NAME` watches a namespace macdrop does not run in, and the
/// report names it.
#[test]
fn another_namespace_by_name() {
    let lab = BridgeLab::new(1).unwrap();
    let elsewhere = StandaloneLab::new().unwrap();
    let name = lab.host().name().to_owned();
    let mut macdrop =
        Macdrop::spawn(elsewhere.host(), &["--netns", &name, "--bridge", BRIDGE]).unwrap();
    send_plan(&lab, 1, 3, 2, 1);
    let want = plan_counts(3, 2, 1);
    let report = macdrop.settle(|r| r.frames("p1") == Some(want), SETTLE);
    assert_eq!(report.frames("p1"), Some(want));
    let p1 = report.interface("p1").unwrap();
    assert_eq!(p1.netns, lab.host().inode().to_string());
    assert_eq!(p1.netns_name.as_deref(), Some(name.as_str()));
    assert!(report.interface("v0").is_none(), "only the named namespace");
    macdrop.stop().unwrap();
}

/// In a namespace macdrop does not run in, the interface array is sized
/// by the namespace's ifindexes (four times the highest, at least 1,024:
/// `loader::ifindex_direct`): a port that comes later at an ifindex beyond
/// it is configured in the hash alone and still counted exactly.
#[test]
fn a_port_beyond_the_interface_array_is_counted() {
    let mut lab = BridgeLab::new(1).unwrap();
    let elsewhere = StandaloneLab::new().unwrap();
    let name = lab.host().name().to_owned();
    let mut macdrop =
        Macdrop::spawn(elsewhere.host(), &["--netns", &name, "--bridge", BRIDGE]).unwrap();
    // Beyond any array but the full one macdrop's own namespace gets.
    let i = lab.add_port_at(TEST_PREFIX, Some(60_000)).unwrap();
    let p2 = port_name(i);
    attached_event(&mut macdrop, &p2);
    send_plan(&lab, i, 4, 3, 2);
    send_plan(&lab, 1, 1, 2, 1);
    let want = plan_counts(4, 3, 2);
    let report = macdrop.settle(|r| r.frames(&p2) == Some(want), SETTLE);
    assert_eq!(report.frames(&p2), Some(want));
    assert_eq!(report.interface(&p2).unwrap().ifindex, 60_000);
    assert_eq!(report.frames("p1"), Some(plan_counts(1, 2, 1)));
    macdrop.stop().unwrap();
}

/// `--all-netns` finds every named namespace with a bridge.
#[test]
fn all_namespaces_with_a_bridge() {
    let (a, b) = (BridgeLab::new(1).unwrap(), BridgeLab::new(1).unwrap());
    let quiet = StandaloneLab::new().unwrap();
    let macdrop = Macdrop::spawn(quiet.host(), &["--all-netns"]).unwrap();
    counts_in_both(macdrop, &a, &b, &quiet);
}

/// Each watched namespace holds about 28 descriptors: under a soft limit
/// of 48 (the hard one higher, as systemd's 1,024:524,288 default is) two
/// namespaces already need more. macdrop lifts its soft limit to the hard
/// one, so both are watched and counted exactly.
#[test]
fn all_namespaces_under_a_low_soft_open_files_limit() {
    let (a, b) = (BridgeLab::new(1).unwrap(), BridgeLab::new(1).unwrap());
    let quiet = StandaloneLab::new().unwrap();
    let bin = macdrop_bin();
    let mut argv: Vec<&std::ffi::OsStr> = ["prlimit", "--nofile=48:8192", "--"]
        .map(std::ffi::OsStr::new)
        .to_vec();
    argv.extend(watch_argv(&bin, &["--all-netns"], Output::Json));
    let macdrop = Macdrop::spawn_command(quiet.host().command(&argv), Output::Json).unwrap();
    counts_in_both(macdrop, &a, &b, &quiet);
}

/// Frames into p1 of `a` and `b` are counted there exactly, and `quiet`
/// (no bridge) is not watched.
fn counts_in_both(mut macdrop: Macdrop, a: &BridgeLab, b: &BridgeLab, quiet: &StandaloneLab) {
    send_plan(a, 1, 1, 0, 0);
    send_plan(b, 1, 0, 2, 0);
    let in_ns = |r: &macdrop_tests::macdrop::Report, lab: &BridgeLab| {
        r.interfaces
            .iter()
            .find(|i| i.name == "p1" && i.netns == lab.host().inode().to_string())
            .map(|i| i.frames)
    };
    let (want_a, want_b) = (plan_counts(1, 0, 0), plan_counts(0, 2, 0));
    let report = macdrop.settle(
        |r| in_ns(r, a) == Some(want_a) && in_ns(r, b) == Some(want_b),
        SETTLE,
    );
    assert_eq!(in_ns(&report, a), Some(want_a));
    assert_eq!(in_ns(&report, b), Some(want_b));
    assert!(
        !report
            .interfaces
            .iter()
            .any(|i| i.netns == quiet.host().inode().to_string()),
        "a namespace without a bridge is not watched"
    );
    macdrop.stop().unwrap();
}

/// Every `--attach` mode gives the same exact counts; the report says which
/// hook each interface got.
#[test]
fn every_hook_counts_the_same() {
    // tc's hook on this kernel, from its BTF: TCX or a clsact qdisc.
    let tc = KernelBtf::read().unwrap().tc_hook();
    for (mode, port_hook, bridge_hook) in [
        ("auto", tc, tc),
        ("tc", tc, tc),
        ("xdp", "xdp-driver", "xdp-generic"),
        ("xdp-generic", "xdp-generic", "xdp-generic"),
    ] {
        let lab = BridgeLab::new(2).unwrap();
        let mut macdrop =
            Macdrop::spawn(lab.host(), &["--bridge", BRIDGE, "--attach", mode]).unwrap();
        send_plan(&lab, 1, 3, 4, 2);
        let want_p1 = plan_counts(3, 4, 2);
        // br0 gets what the bridge passes up: own and broadcast.
        let want_br0 = plan_counts(3, 0, 2);
        let report = macdrop.settle(
            |r| r.frames("p1") == Some(want_p1) && r.frames(BRIDGE) == Some(want_br0),
            SETTLE,
        );
        assert_eq!(report.frames("p1"), Some(want_p1), "{mode}");
        assert_eq!(report.frames(BRIDGE), Some(want_br0), "{mode}");
        let hook = |n: &str| report.interface(n).and_then(|i| i.hook.clone());
        assert_eq!(hook("p1").as_deref(), Some(port_hook), "{mode}");
        assert_eq!(hook(BRIDGE).as_deref(), Some(bridge_hook), "{mode}");
        // The kernel's own view beside macdrop's, where there is an skb:
        // on the port everything not for p1's MAC is "otherhost" (the
        // bridge then claims its own), on br0 the bridge's MAC is "host".
        let pkt = |n: &str| report.interface(n).and_then(|i| i.pkt_type);
        if port_hook == tc {
            let want = PktType {
                otherhost: 7,
                broadcast: 2,
                ..PktType::default()
            };
            assert_eq!(pkt("p1"), Some(want), "{mode}");
            let want = PktType {
                host: 3,
                broadcast: 2,
                ..PktType::default()
            };
            assert_eq!(pkt(BRIDGE), Some(want), "{mode}");
        } else {
            assert_eq!(pkt("p1"), None, "{mode}: XDP has no pkt_type");
        }
        macdrop.stop().unwrap();
    }
}

/// A port whose XDP hook another program holds (here: a second macdrop) is
/// watched through tc instead, with a note saying so, and the other program
/// keeps running and counting.
#[test]
fn a_port_with_a_foreign_xdp_program_is_watched_through_tc() {
    let lab = BridgeLab::new(1).unwrap();
    let mut other = Macdrop::spawn(lab.host(), &["--iface", "p1", "--attach", "xdp"]).unwrap();
    let mut macdrop = Macdrop::spawn(lab.host(), &["--bridge", BRIDGE, "--attach", "xdp"]).unwrap();
    assert!(
        macdrop
            .stderr()
            .contains("p1: xdp-driver is taken by another program"),
        "{}",
        macdrop.stderr()
    );
    send_plan(&lab, 1, 2, 5, 1);
    let want = plan_counts(2, 5, 1);
    let mine = macdrop.settle(|r| r.frames("p1") == Some(want), SETTLE);
    assert_eq!(mine.frames("p1"), Some(want));
    let tc = KernelBtf::read().unwrap().tc_hook();
    assert_eq!(mine.interface("p1").unwrap().hook.as_deref(), Some(tc));
    let theirs = other.settle(|r| r.frames("p1") == Some(want), SETTLE);
    assert_eq!(
        theirs.frames("p1"),
        Some(want),
        "the other program still runs"
    );
    assert_eq!(
        theirs.interface("p1").unwrap().hook.as_deref(),
        Some("xdp-driver")
    );
    macdrop.stop().unwrap();
    other.stop().unwrap();
}

/// However macdrop ends — signal, duration, or SIGKILL — no program or
/// link it held outlives it (the kernel's own listing, via bpftool).
#[test]
fn nothing_is_left_behind_after_any_exit() {
    for (how, signal) in [
        ("SIGINT", Some(libc::SIGINT)),
        ("SIGTERM", Some(libc::SIGTERM)),
        ("SIGHUP", Some(libc::SIGHUP)),
        ("SIGKILL", Some(libc::SIGKILL)),
        ("--duration", None),
    ] {
        for mode in ["auto", "xdp"] {
            let lab = BridgeLab::new(2).unwrap();
            let mut args = vec!["--bridge", BRIDGE, "--attach", mode];
            if signal.is_none() {
                args.extend(["--duration", "1"]);
            }
            let macdrop =
                Macdrop::spawn_bin(&macdrop_bin(), lab.host(), &args, Output::Json).unwrap();
            let held = bpf::held_by(macdrop.pid()).unwrap();
            assert!(
                !held.programs.is_empty() && !held.links.is_empty(),
                "{how}/{mode}: macdrop holds no BPF objects? {held:?}"
            );
            match signal {
                Some(sig) => macdrop.kill_with(sig).map(|_| ()).unwrap(),
                None => macdrop.wait_until_exit(SETTLE).map(|_| ()).unwrap(),
            }
            let left = macdrop_tests::wait::poll_until(
                SETTLE,
                || bpf::still_existing(&held),
                |left| left.programs.is_empty() && left.links.is_empty(),
            )
            .unwrap();
            assert_eq!(left, bpf::Held::default(), "{how}/{mode}: left behind");
        }
    }
}

/// `--all-netns` follows namespaces: one created after start (as a pod's
/// would be) is watched once it has a bridge, and when it is deleted its
/// interfaces stay in the report with their final counts, marked gone —
/// and macdrop holds nothing of it, so the kernel can free it.
#[test]
fn all_namespaces_follows_namespaces_that_come_and_go() {
    let quiet = StandaloneLab::new().unwrap();
    let mut macdrop = Macdrop::spawn(quiet.host(), &["--all-netns"]).unwrap();
    macdrop.wait_for(|_| true, SETTLE).unwrap();
    let lab = BridgeLab::new(1).unwrap();
    let inode = lab.host().inode().to_string();
    let p1_of_lab = |r: &macdrop_tests::macdrop::Report| {
        r.interfaces
            .iter()
            .find(|i| i.name == "p1" && i.netns == inode)
            .cloned()
    };
    let report = macdrop.settle(|r| p1_of_lab(r).is_some_and(|i| i.hook.is_some()), SETTLE);
    assert!(
        p1_of_lab(&report).is_some(),
        "the new namespace was never watched"
    );
    send_plan(&lab, 1, 2, 1, 0);
    let want = plan_counts(2, 1, 0);
    let report = macdrop.settle(|r| p1_of_lab(r).is_some_and(|i| i.frames == want), SETTLE);
    assert_eq!(p1_of_lab(&report).map(|i| i.frames), Some(want));

    drop(lab);
    let report = macdrop.settle(|r| p1_of_lab(r).is_some_and(|i| i.gone), SETTLE);
    let p1 = p1_of_lab(&report).expect("a gone namespace's port stays in the report");
    assert!(p1.gone);
    assert_eq!(p1.frames, want, "final counts kept");
    // No file descriptor of macdrop's points at that namespace. (The
    // sockets a session holds are released with it too — the netlink
    // connection tasks are aborted — but counting file descriptors here
    // would also count the sessions of other tests' namespaces, which
    // `--all-netns` follows as they come and go in parallel.)
    let fds = std::fs::read_dir(format!("/proc/{}/fd", macdrop.pid())).unwrap();
    for fd in fds.flatten() {
        if let Ok(target) = std::fs::read_link(fd.path()) {
            assert!(
                !target.to_string_lossy().contains(&inode),
                "macdrop still holds {target:?}"
            );
        }
    }
    macdrop.stop().unwrap();
}

/// Between its safety re-reads (every 30 s) macdrop reads no topology on
/// its intervals, only statistics: a change the kernel announces — here
/// the bridge's own MAC removed from its FDB, an RTM_DELNEIGH — is taken in
/// from the notification, within moments.
#[test]
fn announced_changes_are_taken_in_between_full_reads() {
    let lab = BridgeLab::new(1).unwrap();
    let mut macdrop = Macdrop::spawn(lab.host(), &["--bridge", BRIDGE]).unwrap();
    let tx = RawSender::new(lab.peer(1), PEER_IFACE).unwrap();
    let to_bridge = ipv4_udp(BRIDGE_MAC, peer_mac(1), peer_ipv4(1), BRIDGE_IPV4);
    tx.send(&to_bridge, 2).unwrap();
    let own = plan_counts(2, 0, 0);
    let report = macdrop.settle(|r| r.frames("p1") == Some(own), SETTLE);
    assert_eq!(report.frames("p1"), Some(own), "own while in the FDB");

    lab.remove_bridge_mac_from_fdb().unwrap();
    // One frame at a time until one counts as host_ip_wrong_mac: the
    // kernel maps were updated from the notification.
    let started = std::time::Instant::now();
    let mut sent = 0;
    let wrong = |r: &macdrop_tests::macdrop::Report| {
        r.frames("p1").is_some_and(|f| f.host_ip_wrong_mac > 0)
    };
    while macdrop.wait_for(wrong, Duration::from_millis(300)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the FDB change was not taken in within 5 s (the safety re-read is 30 s away)"
        );
        tx.send(&to_bridge, 1).unwrap();
        sent += 1;
    }
    tx.send(&to_bridge, 3).unwrap();
    let report = macdrop.settle(
        |r| r.frames("p1").is_some_and(|f| f.host_ip_wrong_mac == 3 + 1),
        SETTLE,
    );
    let p1 = report.frames("p1").unwrap();
    assert_eq!(
        p1.host_ip_wrong_mac, 4,
        "exactly the frames after the first"
    );
    assert_eq!(
        p1.own + p1.foreign_unicast,
        2 + sent + 3,
        "every frame counted once"
    );
    macdrop.stop().unwrap();
}

/// Exit detaches every port in about one RCU grace period per link (what
/// the kernel needs per TCX detach, about 10 ms here): the lab's 9 ports
/// and the bridge take well under 2 s, and nothing is left.
#[test]
fn exit_detaches_every_port_quickly() {
    let lab = BridgeLab::new(9).unwrap();
    let macdrop = Macdrop::spawn(lab.host(), &["--bridge", BRIDGE]).unwrap();
    let held = bpf::held_by(macdrop.pid()).unwrap();
    assert_eq!(
        held.links.len(),
        9 + 1 + 1,
        "9 ports, the bridge, the drop program: {held:?}"
    );
    let started = std::time::Instant::now();
    macdrop.stop().unwrap();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2), "exit took {took:?}");
    let left = macdrop_tests::wait::poll_until(
        SETTLE,
        || bpf::still_existing(&held),
        |left| left.programs.is_empty() && left.links.is_empty(),
    )
    .unwrap();
    assert_eq!(left, bpf::Held::default(), "left behind");
}
