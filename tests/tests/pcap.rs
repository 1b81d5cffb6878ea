//! `--pcap FILE`: the first N mismatched frames, read back with tshark and
//! tcpdump. Exact frames (MACs, IPs, VLAN tag, lengths, interface, why),
//! nothing that is not mismatched, N respected, the kernel's rate bound,
//! and promiscuous mode never touched.

mod common;

use std::{net::Ipv4Addr, path::Path, time::Instant};

use common::{SETTLE, TempPcap};
use macdrop_tests::{
    frames::{BROADCAST, MULTICAST_V4, TPID_8021Q, eth, ipv4_udp, mac_to_string, with_vlan_tags},
    kernel::promiscuity,
    lab::{
        BRIDGE, BRIDGE_IPV4, BRIDGE_MAC, BridgeLab, FOREIGN_IPV4, FOREIGN_MAC, PEER_IFACE,
        STANDALONE_IFACE, STANDALONE_IPV4, STANDALONE_MAC, STANDALONE_PEER_IPV4,
        STANDALONE_PEER_MAC, StandaloneLab, peer_ipv4, peer_mac,
    },
    macdrop::{Macdrop, PcapReport, Report},
    pcap::{CapturedFrame, read},
    sender::RawSender,
};

/// Snap length of the evidence.
const SNAPLEN: u32 = 128;
/// The kernel's rate bound per CPU (monitor_common::EVIDENCE_BURST,
/// EVIDENCE_RATE).
const BURST: u64 = 256;
const RATE_PER_MS: f64 = 1.0;

/// Waits until the report says `n` frames were written.
fn wait_written(macdrop: &mut Macdrop, n: u64) -> Report {
    macdrop.settle(
        |r| r.pcap.as_ref().is_some_and(|p| p.frames_written >= n),
        SETTLE,
    )
}

fn pcap_of(report: &Report) -> PcapReport {
    report.pcap.clone().expect("a pcap object with --pcap")
}

fn frames(path: &Path) -> Vec<CapturedFrame> {
    read(path).unwrap()
}

/// `macdrop watch --iface v0 --attach HOOK --pcap FILE [--pcap-count N]`.
fn spawn_capturing(
    lab: &StandaloneLab,
    hook: &str,
    pcap: &TempPcap,
    count: Option<&str>,
) -> Macdrop {
    let file = pcap.arg();
    let mut args = vec![
        "--iface",
        STANDALONE_IFACE,
        "--attach",
        hook,
        "--pcap",
        &file,
    ];
    if let Some(n) = count {
        args.extend(["--pcap-count", n]);
    }
    Macdrop::spawn(lab.host(), &args).unwrap()
}

fn ip(a: Ipv4Addr) -> String {
    a.to_string()
}

/// A frame with `payload_len` bytes of IPv4 payload after the UDP header:
/// longer than the snap length when large.
fn large_udp(dst: [u8; 6], src: [u8; 6], sip: Ipv4Addr, dip: Ipv4Addr, extra: usize) -> Vec<u8> {
    let mut f = ipv4_udp(dst, src, sip, dip);
    // Grow the frame and fix the IPv4 total length (checksum unchanged is
    // fine: macdrop and the capture never check it; the host drops it
    // anyway as not addressed to it).
    f.truncate(14 + 20 + 8 + 12);
    f.extend(std::iter::repeat_n(0x5a, extra));
    let total = (f.len() - 14) as u16;
    f[16..18].copy_from_slice(&total.to_be_bytes());
    f
}

/// On a standalone interface every foreign unicast is mismatched (the host
/// drops it as OTHERHOST): exactly those reach the file, with each hook.
#[test]
fn standalone_mismatched_frames_reach_the_file_with_each_hook() {
    let lab = StandaloneLab::new().unwrap();
    let tx = RawSender::new(lab.peer(), PEER_IFACE).unwrap();
    let (src, sip) = (STANDALONE_PEER_MAC, STANDALONE_PEER_IPV4);
    let to_host_ip = ipv4_udp(FOREIGN_MAC, src, sip, STANDALONE_IPV4);
    let to_other_ip = ipv4_udp(FOREIGN_MAC, src, sip, FOREIGN_IPV4);
    let tagged = with_vlan_tags(&to_host_ip, &[(TPID_8021Q, 10)]);
    let large = large_udp(FOREIGN_MAC, src, sip, FOREIGN_IPV4, 1400);
    // Not mismatched: never in the file.
    let own = ipv4_udp(STANDALONE_MAC, src, sip, STANDALONE_IPV4);
    let bcast = eth(BROADCAST, src, 0x88b5, b"broadcast");
    let mcast = eth(MULTICAST_V4, src, 0x88b5, b"multicast");

    for hook in ["tc", "xdp"] {
        let pcap = TempPcap::new(&format!("standalone-{hook}"));
        let before = promiscuity(lab.host(), STANDALONE_IFACE).unwrap();
        let mut macdrop = spawn_capturing(&lab, hook, &pcap, None);
        for (frame, n) in [
            (&own, 4),
            (&to_host_ip, 3),
            (&bcast, 2),
            (&to_other_ip, 2),
            (&mcast, 2),
            (&tagged, 1),
            (&large, 1),
        ] {
            tx.send(frame, n).unwrap();
        }
        let report = wait_written(&mut macdrop, 7);
        assert_eq!(
            promiscuity(lab.host(), STANDALONE_IFACE).unwrap(),
            before,
            "{hook}: capturing changed the promiscuity"
        );
        let last = macdrop.stop().unwrap();
        let summary = pcap_of(&last);
        assert_eq!(
            (
                summary.frames_written,
                summary.frames_limit,
                summary.not_captured_rate_limit
            ),
            (7, 100, 0),
            "{hook}: {report:?}"
        );
        assert_eq!(summary.file, pcap.arg());

        let got = frames(&pcap.path());
        assert_eq!(got.len(), 7, "{hook}: {got:#?}");
        let v0 = STANDALONE_IFACE;
        let foreign = mac_to_string(&FOREIGN_MAC);
        let peer = mac_to_string(&STANDALONE_PEER_MAC);
        let host_ip = format!("host_ip_wrong_mac + foreign_unicast on {v0} (standalone)");
        let other = format!("foreign_unicast on {v0} (standalone)");
        // (why, destination IP, VLAN ids, length on the wire), in order.
        let want: Vec<(&str, String, Vec<u16>, u32)> = vec![
            (&host_ip, ip(STANDALONE_IPV4), vec![], 60),
            (&host_ip, ip(STANDALONE_IPV4), vec![], 60),
            (&host_ip, ip(STANDALONE_IPV4), vec![], 60),
            (&other, ip(FOREIGN_IPV4), vec![], 60),
            (&other, ip(FOREIGN_IPV4), vec![], 60),
            (&host_ip, ip(STANDALONE_IPV4), vec![10], 64),
            (&other, ip(FOREIGN_IPV4), vec![], large.len() as u32),
        ];
        for (i, (f, (comment, dst_ip, vlans, len))) in got.iter().zip(&want).enumerate() {
            let at = format!("{hook}: frame {i}: {f:?}");
            assert_eq!(f.interface, v0, "{at}");
            assert_eq!(&f.comment, comment, "{at}");
            assert_eq!(
                (f.eth_src.as_str(), f.eth_dst.as_str()),
                (peer.as_str(), foreign.as_str()),
                "{at}"
            );
            assert_eq!((f.ip_src.clone(), &f.ip_dst), (ip(sip), dst_ip), "{at}");
            assert_eq!(&f.vlans, vlans, "{at}: the tag the frame had on the wire");
            assert_eq!(f.len, *len, "{at}: original length");
            assert_eq!(f.cap_len, (*len).min(SNAPLEN), "{at}: headers only");
        }
    }
}

/// On a bridge port, foreign unicast is normal forwarding: only frames for
/// the host's IP (here: to the bridge's MAC, which is missing from its FDB,
/// the README's incident) are evidence, named as on the port of br0.
#[test]
fn bridge_port_captures_only_frames_for_the_host() {
    let lab = BridgeLab::new(2).unwrap();
    lab.remove_bridge_mac_from_fdb().unwrap();
    let pcap = TempPcap::new("bridge");
    let mut macdrop =
        Macdrop::spawn(lab.host(), &["--bridge", BRIDGE, "--pcap", &pcap.arg()]).unwrap();
    let tx = RawSender::new(lab.peer(1), PEER_IFACE).unwrap();
    // p1 -> p2: bridged, not evidence.
    tx.send(
        &ipv4_udp(peer_mac(2), peer_mac(1), peer_ipv4(1), peer_ipv4(2)),
        5,
    )
    .unwrap();
    tx.send(
        &ipv4_udp(BRIDGE_MAC, peer_mac(1), peer_ipv4(1), BRIDGE_IPV4),
        3,
    )
    .unwrap();
    wait_written(&mut macdrop, 3);
    let last = macdrop.stop().unwrap();
    assert_eq!(pcap_of(&last).frames_written, 3);
    let got = frames(&pcap.path());
    assert_eq!(got.len(), 3, "{got:#?}");
    for f in &got {
        assert_eq!(f.interface, "p1");
        assert_eq!(f.comment, "host_ip_wrong_mac on p1 (port of br0)");
        assert_eq!(f.eth_dst, mac_to_string(&BRIDGE_MAC));
        assert_eq!(f.ip_dst, ip(BRIDGE_IPV4));
    }
}

/// `--pcap-count N`: more than N mismatched frames, exactly N in the file.
#[test]
fn writes_exactly_n_frames() {
    let lab = StandaloneLab::new().unwrap();
    let tx = RawSender::new(lab.peer(), PEER_IFACE).unwrap();
    let frame = ipv4_udp(
        FOREIGN_MAC,
        STANDALONE_PEER_MAC,
        STANDALONE_PEER_IPV4,
        STANDALONE_IPV4,
    );
    for hook in ["tc", "xdp"] {
        let pcap = TempPcap::new(&format!("count-{hook}"));
        let mut macdrop = spawn_capturing(&lab, hook, &pcap, Some("5"));
        tx.send(&frame, 12).unwrap();
        // All 12 counted, 5 written.
        let report = macdrop.settle(
            |r| {
                r.frames(STANDALONE_IFACE)
                    .is_some_and(|f| f.host_ip_wrong_mac == 12)
                    && r.pcap.as_ref().is_some_and(|p| p.frames_written == 5)
            },
            SETTLE,
        );
        assert_eq!(
            report.frames(STANDALONE_IFACE).unwrap().host_ip_wrong_mac,
            12
        );
        let last = macdrop.stop().unwrap();
        assert_eq!(pcap_of(&last).frames_written, 5, "{hook}");
        assert_eq!(frames(&pcap.path()).len(), 5, "{hook}");
    }
}

/// A flood beyond the kernel's rate bound: the file holds what the bound
/// lets through (a burst of 256, then 1 per ms on this CPU), and every
/// other mismatched frame is reported as not captured.
#[test]
fn a_flood_is_bounded_in_the_kernel_and_reported() {
    const FLOOD: u64 = 2000;
    let lab = StandaloneLab::new().unwrap();
    let pcap = TempPcap::new("flood");
    let mut macdrop = spawn_capturing(&lab, "tc", &pcap, Some("100000"));
    let frame = ipv4_udp(
        FOREIGN_MAC,
        STANDALONE_PEER_MAC,
        STANDALONE_PEER_IPV4,
        FOREIGN_IPV4,
    );
    // One CPU: a veth delivers on the sender's CPU, so one bucket counts.
    let started = Instant::now();
    std::thread::scope(|s| {
        s.spawn(|| {
            pin_to_cpu(0);
            let tx = RawSender::new(lab.peer(), PEER_IFACE).unwrap();
            tx.send(&frame, FLOOD as usize).unwrap();
        });
    });
    let elapsed = started.elapsed();
    let report = macdrop.settle(
        |r| {
            r.pcap
                .as_ref()
                .is_some_and(|p| p.frames_written + p.not_captured_rate_limit == FLOOD)
        },
        SETTLE,
    );
    let last = macdrop.stop().unwrap();
    let p = pcap_of(&last);
    assert_eq!(
        p.frames_written + p.not_captured_rate_limit + p.not_captured_ring_full,
        FLOOD,
        "every mismatched frame is written or counted as not captured: {report:?}"
    );
    let allowed = BURST + (elapsed.as_secs_f64() * 1000.0 * RATE_PER_MS).ceil() as u64 + 1;
    eprintln!("flood of {FLOOD} in {elapsed:?}: {p:?}, at most {allowed} allowed");
    assert!(
        (BURST..=allowed).contains(&p.frames_written),
        "{} written in {elapsed:?}: want {BURST}..={allowed}",
        p.frames_written
    );
    assert!(p.not_captured_rate_limit >= FLOOD - allowed, "{p:?}");
    assert_eq!(frames(&pcap.path()).len() as u64, p.frames_written);
}

fn pin_to_cpu(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is empty; CPU_SET and sched_setaffinity on
    // the calling thread with a valid set.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        assert_eq!(
            libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set),
            0,
            "sched_setaffinity"
        );
    }
}

#[test]
fn without_pcap_reports_no_pcap_object() {
    let lab = StandaloneLab::new().unwrap();
    let mut macdrop = Macdrop::spawn(lab.host(), &["--iface", STANDALONE_IFACE]).unwrap();
    macdrop.wait_for(|_| true, SETTLE).unwrap();
    let json = macdrop.latest_json().unwrap().unwrap();
    assert!(json["pcap"].is_null(), "{json}");
    macdrop.stop().unwrap();
}
