//! The fate oracle: the kernel judges macdrop. Seeded random frames go into
//! a lab's port (or standalone interface) while macdrop watches; what the
//! kernel did with each frame is observed independently of macdrop, and
//! macdrop's counts must match it exactly, batch by batch.
//!
//! The observer: AF_PACKET sockets in the host namespace bound to the
//! protocols ETH_P_IP, ETH_P_IPV6 and ETH_P_ARP, and to the two VLAN
//! ethertypes (not ETH_P_ALL, no device,
//! no promiscuous membership). Such sockets sit in the kernel's protocol
//! dispatch beside `ip_rcv`, `ipv6_rcv` and `arp_rcv`: they receive exactly
//! the frames that reach the host's protocol handlers, after every bridge,
//! VLAN device and VLAN check, with `sll_pkttype` the kernel's final verdict.
//! HOST is delivered; OTHERHOST is passed up and then dropped (IPv4/IPv6
//! count it in `rx_otherhost_dropped`); not seen at all is forwarded,
//! flooded or dropped by the bridge. A frame that reaches the dispatch
//! with a VLAN ethertype still on it (a tag left after the first, when no
//! VLAN device took the first) has no handler: passed up and dropped,
//! whatever its pkttype. Measured on 6.18 with this module: a
//! frame to the standalone veth's MAC arrives HOST, one to a foreign MAC
//! OTHERHOST, a frame a bridge forwards not at all.
//!
//! Each frame carries a unique source MAC (`02:fa:te:..`), which is how a
//! seen frame is matched to the one sent.
//!
//! macdrop's side is the `watch --format json` binary: per batch, the
//! receiving interface's and the bridge's counter deltas. `own` on the
//! receiving interface must equal the frames the kernel delivered, the
//! bridge's counts the frames it passed up (its `own` those delivered),
//! `host_ip_wrong_mac` the frames for the host's IP not delivered. macdrop
//! judges fate without promiscuous mode: while the bridge is promiscuous,
//! frames the kernel delivers only because of it are counted in a column of
//! their own ("rescued by promiscuity", frames to the bridge's MAC when its
//! FDB lacks it) and expected as `foreign` in macdrop, not left out.

use std::{
    collections::HashMap,
    fmt::Write as _,
    net::{Ipv4Addr, Ipv6Addr},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    time::Duration,
};

use anyhow::{Context as _, Result, bail, ensure};

use crate::{
    frames::{
        BROADCAST, ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6, MULTICAST_V4, Mac, TPID_8021AD,
        TPID_8021Q, arp_request, ipv4_udp, ipv6_udp, mac_to_string, with_vlan_tags,
    },
    kernel::ifindex,
    lab::{
        BRIDGE, BRIDGE_IPV4, BRIDGE_IPV6, BRIDGE_MAC, BridgeLab, BridgeLabOptions, FOREIGN_IPV4,
        FOREIGN_MAC, PEER_IFACE, STANDALONE_IFACE, STANDALONE_IPV4, STANDALONE_MAC, StandaloneLab,
        peer_ipv4, peer_ipv6, port_mac,
    },
    macdrop::{FrameCounts, Macdrop, Output, Report},
    netns::NetNs,
    sender::RawSender,
};

/// How long one batch may take to show in macdrop's reports.
const SETTLE: Duration = Duration::from_secs(10);

/// A small deterministic generator (xorshift64*): the same seed gives the
/// same frames on every kernel.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next_u64() % items.len() as u64) as usize]
    }
}

/// The branches of the delivery rule a lab covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LabKind {
    /// A bridge with two ports, its MAC in its FDB.
    Bridge,
    /// The same with the bridge's MAC removed from its FDB (the incident).
    BridgeMacMissing,
    /// The incident with the bridge promiscuous (what tcpdump does).
    BridgeMacMissingPromisc,
    /// vlan_filtering 1: p1 PVID 1 untagged and a member of 10 and 20; the
    /// bridge an untagged member of 1 and 10, not of 20; p2 in VLAN 1.
    VlanFiltering,
    /// A VLAN device br0.10 on the bridge and p1.20 on the port (needs
    /// 8021q; skipped where the kernel has none).
    VlanDevices,
    /// A veth not in any bridge.
    Standalone,
}

impl LabKind {
    pub const ALL: [LabKind; 6] = [
        LabKind::Bridge,
        LabKind::BridgeMacMissing,
        LabKind::BridgeMacMissingPromisc,
        LabKind::VlanFiltering,
        LabKind::VlanDevices,
        LabKind::Standalone,
    ];
}

/// One lab's result.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub frames: u64,
    pub delivered: u64,
    pub dropped_otherhost: u64,
    pub not_passed_up: u64,
    pub rescued_by_promisc: u64,
    /// Why the lab did not run, if it did not.
    pub skipped: Option<String>,
}

/// What was sent, for matching and for the expectations.
#[derive(Clone, Debug)]
struct Sent {
    bytes: Vec<u8>,
    dst: Mac,
    host_ip: bool,
    unicast: bool,
}

/// The kernel's verdict on one frame, as the dispatch sockets saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    Delivered { ifindex: u32 },
    Otherhost { ifindex: u32 },
    NotSeen,
}

/// Protocol-dispatch sockets in one namespace.
struct Observer {
    socks: Vec<OwnedFd>,
}

const PACKET_HOST: u8 = 0;
const PACKET_OTHERHOST: u8 = 3;
const PACKET_OUTGOING: u8 = 4;

impl Observer {
    fn new(ns: &NetNs) -> Result<Self> {
        let socks = ns.enter_thread(|| -> Result<Vec<OwnedFd>> {
            [
                ETHERTYPE_IPV4,
                ETHERTYPE_IPV6,
                ETHERTYPE_ARP,
                TPID_8021Q,
                TPID_8021AD,
            ]
            .into_iter()
            .map(|proto| {
                // SAFETY: plain socket(2); the fd is owned at once.
                let fd = unsafe {
                    libc::socket(
                        libc::AF_PACKET,
                        libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                        i32::from(proto.to_be()),
                    )
                };
                ensure!(
                    fd >= 0,
                    "AF_PACKET socket: {}",
                    std::io::Error::last_os_error()
                );
                // SAFETY: a new fd owned by nobody else.
                Ok(unsafe { OwnedFd::from_raw_fd(fd) })
            })
            .collect()
        })??;
        Ok(Self { socks })
    }

    /// Every frame received so far: (source MAC, pkttype, ifindex), the
    /// pkttype of a frame dispatched with a VLAN ethertype made OTHERHOST:
    /// nothing delivers it.
    fn drain(&self) -> Result<Vec<(Mac, u8, u32)>> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 2048];
        for sock in &self.socks {
            loop {
                // SAFETY: sockaddr_ll is plain C data, all zeroes valid.
                let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
                let mut len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
                // SAFETY: `buf` and `addr` are valid for the sizes given.
                let n = unsafe {
                    libc::recvfrom(
                        sock.as_raw_fd(),
                        buf.as_mut_ptr().cast(),
                        buf.len(),
                        0,
                        (&raw mut addr).cast(),
                        &mut len,
                    )
                };
                if n < 0 {
                    let e = std::io::Error::last_os_error();
                    if e.kind() == std::io::ErrorKind::WouldBlock {
                        break;
                    }
                    return Err(e).context("recvfrom");
                }
                if n < 12 || addr.sll_pkttype == PACKET_OUTGOING {
                    continue;
                }
                let src: Mac = buf[6..12].try_into().expect("6 bytes");
                let proto = u16::from_be(addr.sll_protocol);
                let pkttype = if proto == TPID_8021Q || proto == TPID_8021AD {
                    PACKET_OTHERHOST
                } else {
                    addr.sll_pkttype
                };
                out.push((src, pkttype, addr.sll_ifindex as u32));
            }
        }
        Ok(out)
    }
}

/// A lab built for the oracle, with what the frames need.
struct Lab {
    bridge_lab: Option<BridgeLab>,
    standalone_lab: Option<StandaloneLab>,
    sender: RawSender,
    /// The interface the frames enter by, and the bridge if any.
    rx: &'static str,
    bridge: Option<&'static str>,
    /// Interfaces whose dispatch counts as "through the bridge".
    bridge_ifindexes: Vec<u32>,
    dst_macs: Vec<Mac>,
    vids: Vec<u16>,
    host_v4: Ipv4Addr,
    host_v6: Option<Ipv6Addr>,
    src_v4: Ipv4Addr,
    src_v6: Ipv6Addr,
    macdrop_args: Vec<&'static str>,
    promisc_rescue: bool,
}

impl Lab {
    fn host(&self) -> &NetNs {
        match (&self.bridge_lab, &self.standalone_lab) {
            (Some(b), _) => b.host(),
            (None, Some(s)) => s.host(),
            (None, None) => unreachable!("a lab has one of the two"),
        }
    }
}

fn build(kind: LabKind) -> Result<Result<Lab, String>> {
    if kind == LabKind::Standalone {
        let lab = StandaloneLab::new()?;
        let sender = RawSender::new(lab.peer(), PEER_IFACE)?;
        return Ok(Ok(Lab {
            bridge_lab: None,
            sender,
            rx: STANDALONE_IFACE,
            bridge: None,
            bridge_ifindexes: Vec::new(),
            dst_macs: vec![STANDALONE_MAC, FOREIGN_MAC, port_mac(2)],
            vids: vec![10, 20],
            host_v4: STANDALONE_IPV4,
            host_v6: None,
            src_v4: Ipv4Addr::new(198, 51, 100, 2),
            src_v6: Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2),
            macdrop_args: vec!["--iface", STANDALONE_IFACE],
            promisc_rescue: false,
            standalone_lab: Some(lab),
        }));
    }
    let lab = BridgeLab::with_options(BridgeLabOptions {
        ports: 2,
        bridge_ipv6: true,
        ..BridgeLabOptions::default()
    })?;
    let host = lab.host();
    let mut vids = vec![10, 20];
    match kind {
        LabKind::Bridge => {}
        LabKind::BridgeMacMissing => lab.remove_bridge_mac_from_fdb()?,
        LabKind::BridgeMacMissingPromisc => {
            lab.remove_bridge_mac_from_fdb()?;
            lab.set_promisc(true)?;
        }
        LabKind::VlanFiltering => {
            vids = vec![1, 10, 20, 30];
            if lab.set_vlan_filtering().is_err() {
                return Ok(Err(
                    "no bridge VLAN filtering (CONFIG_BRIDGE_VLAN_FILTERING) in this kernel".into(),
                ));
            }
            for argv in [
                &["bridge", "vlan", "add", "vid", "10", "dev", "p1"][..],
                &["bridge", "vlan", "add", "vid", "20", "dev", "p1"],
                &[
                    "bridge", "vlan", "add", "vid", "10", "dev", BRIDGE, "self", "untagged",
                ],
            ] {
                host.exec(argv)?;
            }
        }
        LabKind::VlanDevices => {
            if !crate::kernel::has_8021q(host) {
                return Ok(Err("no 8021q (VLAN devices) in this kernel".into()));
            }
            let vlan_mac = mac_to_string(&VLAN_DEVICE_MAC);
            for argv in [
                &[
                    "ip", "link", "add", "link", BRIDGE, "name", "br0.10", "type", "vlan", "id",
                    "10",
                ][..],
                &["ip", "link", "set", "br0.10", "up"],
                &[
                    "ip", "link", "add", "link", "p1", "name", "p1.20", "address", &vlan_mac,
                    "type", "vlan", "id", "20",
                ],
                &["ip", "link", "set", "p1.20", "up"],
            ] {
                host.exec(argv)?;
            }
            vids = vec![10, 20, 30];
        }
        LabKind::Standalone => unreachable!(),
    }
    let mut bridge_ifindexes = vec![ifindex(host, BRIDGE)?];
    if kind == LabKind::VlanDevices {
        bridge_ifindexes.push(ifindex(host, "br0.10")?);
    }
    let sender = RawSender::new(lab.peer(1), PEER_IFACE)?;
    let mut dst_macs = vec![BRIDGE_MAC, port_mac(1), port_mac(2), FOREIGN_MAC];
    if kind == LabKind::VlanDevices {
        dst_macs.push(VLAN_DEVICE_MAC);
    }
    Ok(Ok(Lab {
        sender,
        rx: "p1",
        bridge: Some(BRIDGE),
        bridge_ifindexes,
        dst_macs,
        vids,
        host_v4: BRIDGE_IPV4,
        host_v6: Some(BRIDGE_IPV6),
        src_v4: peer_ipv4(1),
        src_v6: peer_ipv6(1),
        macdrop_args: vec!["--bridge", BRIDGE],
        promisc_rescue: kind == LabKind::BridgeMacMissingPromisc,
        bridge_lab: Some(lab),
        standalone_lab: None,
    }))
}

/// The MAC of p1.20 in the VLAN-device lab (br0.10 keeps br0's).
const VLAN_DEVICE_MAC: Mac = [0x02, 0, 0, 0, 0x0e, 0x10];

/// Frame `id`: random destination, tags, protocol and destination IP from
/// the lab's choices; its source MAC carries the id.
fn frame(lab: &Lab, rng: &mut Rng, id: u32) -> Sent {
    let src: Mac = [
        0x02,
        0xfa,
        0x7e,
        (id >> 16) as u8,
        (id >> 8) as u8,
        id as u8,
    ];
    let dst = match rng.next_u64() % 16 {
        0 => BROADCAST,
        1 => MULTICAST_V4,
        _ => *rng.pick(&lab.dst_macs),
    };
    let host_ip = !rng.next_u64().is_multiple_of(3);
    let to_v4 = if host_ip { lab.host_v4 } else { FOREIGN_IPV4 };
    let mut bytes = match (rng.next_u64() % 4, lab.host_v6) {
        (0, Some(v6)) => {
            let to = if host_ip {
                v6
            } else {
                Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x99)
            };
            ipv6_udp(dst, src, lab.src_v6, to)
        }
        (1, _) => arp_request(dst, src, lab.src_v4, to_v4),
        _ => ipv4_udp(dst, src, lab.src_v4, to_v4),
    };
    let vid = *rng.pick(&lab.vids);
    let other = *rng.pick(&lab.vids);
    let tags: Vec<(u16, u16)> = match rng.next_u64() % 8 {
        0..=2 => vec![],
        3 | 4 => vec![(TPID_8021Q, vid)],
        5 => vec![(TPID_8021AD, vid)],
        6 => vec![(TPID_8021Q, 0)],
        _ => match rng.next_u64() % 3 {
            0 => vec![(TPID_8021Q, 0), (TPID_8021Q, vid)],
            1 => vec![(TPID_8021AD, other), (TPID_8021Q, vid)],
            _ => vec![(TPID_8021Q, vid), (TPID_8021Q, other)],
        },
    };
    if !tags.is_empty() {
        bytes = with_vlan_tags(&bytes, &tags);
    }
    Sent {
        bytes,
        dst,
        host_ip,
        unicast: dst[0] & 1 == 0,
    }
}

/// The counters of the receiving interface and of the bridge (zero for a
/// standalone lab).
fn counts(report: &Report, lab: &Lab) -> Option<(FrameCounts, FrameCounts)> {
    let rx = report.frames(lab.rx)?;
    let br = match lab.bridge {
        Some(b) => report.frames(b)?,
        None => FrameCounts::default(),
    };
    Some((rx, br))
}

fn delta(a: &FrameCounts, b: &FrameCounts) -> FrameCounts {
    FrameCounts {
        total: b.total - a.total,
        own: b.own - a.own,
        broadcast: b.broadcast - a.broadcast,
        multicast: b.multicast - a.multicast,
        foreign_unicast: b.foreign_unicast - a.foreign_unicast,
        host_ip_wrong_mac: b.host_ip_wrong_mac - a.host_ip_wrong_mac,
        runt: b.runt - a.runt,
        stale_mac: b.stale_mac - a.stale_mac,
    }
}

/// One batch through the lab: the kernel's fate of each frame against
/// macdrop's counts. Returns what disagrees, if anything.
fn batch(
    lab: &Lab,
    observer: &Observer,
    macdrop: &mut Macdrop,
    frames: &[Sent],
    tally: &mut Tally,
) -> Result<Option<String>> {
    let before = macdrop
        .latest()
        .and_then(|r| counts(r, lab))
        .context("macdrop reports the lab's interfaces")?;
    observer.drain()?;
    for f in frames {
        lab.sender.send(&f.bytes, 1)?;
    }
    let n = frames.len() as u64;
    // The kernel handles a received frame, the bridge and the protocol
    // dispatch included, in the softirq that counted it: once macdrop's
    // report shows the batch, the dispatch sockets hold their part of it.
    let report = macdrop
        .wait_for(
            |r| counts(r, lab).is_some_and(|(rx, _)| rx.total >= before.0.total + n),
            SETTLE,
        )
        .context("macdrop did not count the batch")?;
    let after = counts(&report, lab).context("the lab's interfaces")?;
    let (rx, br) = (delta(&before.0, &after.0), delta(&before.1, &after.1));
    let seen: HashMap<Mac, (u8, u32)> = observer
        .drain()?
        .into_iter()
        .map(|(src, t, i)| (src, (t, i)))
        .collect();
    let through_bridge = |i: u32| lab.bridge_ifindexes.contains(&i);
    let (mut delivered, mut rescued, mut dropped, mut unseen) = (0u64, 0u64, 0u64, 0u64);
    let (mut host_ip_not_delivered, mut via_bridge, mut own_via_bridge) = (0u64, 0u64, 0u64);
    for f in frames.iter().filter(|f| f.unicast) {
        let src: Mac = f.bytes[6..12].try_into().expect("6 bytes");
        let fate = match seen.get(&src) {
            Some(&(PACKET_HOST, ifindex)) => Fate::Delivered { ifindex },
            Some(&(PACKET_OTHERHOST, ifindex)) => Fate::Otherhost { ifindex },
            _ => Fate::NotSeen,
        };
        let own = match fate {
            // Promiscuous mode delivers the bridge's MAC although the FDB
            // lacks it: by design macdrop counts that as not delivered.
            Fate::Delivered { .. } if lab.promisc_rescue && f.dst == BRIDGE_MAC => {
                rescued += 1;
                false
            }
            Fate::Delivered { ifindex } => {
                delivered += 1;
                own_via_bridge += u64::from(through_bridge(ifindex));
                true
            }
            Fate::Otherhost { .. } => {
                dropped += 1;
                false
            }
            Fate::NotSeen => {
                unseen += 1;
                false
            }
        };
        if let Fate::Delivered { ifindex } | Fate::Otherhost { ifindex } = fate {
            via_bridge += u64::from(through_bridge(ifindex));
        }
        if f.host_ip && !own {
            host_ip_not_delivered += 1;
        }
    }
    let unicast = frames.iter().filter(|f| f.unicast).count() as u64;
    tally.frames += n;
    tally.delivered += delivered;
    tally.rescued_by_promisc += rescued;
    tally.dropped_otherhost += dropped;
    tally.not_passed_up += unseen;

    let mut wrong = String::new();
    let mut check = |what: String, macdrop: u64, kernel: u64| {
        if macdrop != kernel {
            let _ = write!(wrong, "{what}: macdrop {macdrop}, kernel {kernel}; ");
        }
    };
    check(format!("{} total", lab.rx), rx.total, n);
    check(format!("{} own", lab.rx), rx.own, delivered);
    check(
        format!("{} foreign_unicast", lab.rx),
        rx.foreign_unicast,
        unicast - delivered,
    );
    check(
        format!("{} host_ip_wrong_mac", lab.rx),
        rx.host_ip_wrong_mac,
        host_ip_not_delivered,
    );
    if let Some(b) = lab.bridge {
        // The bridge counts what the kernel passed up to it, each with the
        // port's verdict (promiscuous rescues as foreign).
        check(
            format!("{b} unicast"),
            br.own + br.foreign_unicast,
            via_bridge,
        );
        check(format!("{b} own"), br.own, own_via_bridge);
    }
    Ok((!wrong.is_empty()).then_some(wrong))
}

/// Runs `frames` random frames (seed `seed`) through a new lab of `kind`
/// in batches of `per_batch`. On a disagreement the batch's frames are
/// resent one at a time, and the error names the first one macdrop gets
/// wrong, in hex.
pub fn run_lab(
    bin: &std::path::Path,
    kind: LabKind,
    attach: &[&str],
    frames: u64,
    per_batch: u64,
    seed: u64,
) -> Result<Tally> {
    let lab = match build(kind)? {
        Ok(lab) => lab,
        Err(why) => {
            return Ok(Tally {
                skipped: Some(why),
                ..Tally::default()
            });
        }
    };
    let observer = Observer::new(lab.host())?;
    let mut args = lab.macdrop_args.clone();
    args.extend(["--top-flows", "0"]);
    args.extend(attach);
    let mut macdrop = Macdrop::spawn_bin(bin, lab.host(), &args, Output::Json)?;
    macdrop.wait_for(|r| counts(r, &lab).is_some(), SETTLE)?;
    let mut rng = Rng::new(seed ^ (kind as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut tally = Tally::default();
    let mut id = 0u32;
    while tally.frames < frames {
        let k = per_batch.min(frames - tally.frames);
        let sent: Vec<Sent> = (0..k)
            .map(|_| {
                id += 1;
                frame(&lab, &mut rng, id)
            })
            .collect();
        let Some(why) = batch(&lab, &observer, &mut macdrop, &sent, &mut tally)? else {
            continue;
        };
        for f in &sent {
            id += 1;
            let mut one = f.clone();
            one.bytes[9..12].copy_from_slice(&[(id >> 16) as u8, (id >> 8) as u8, id as u8]);
            if let Some(what) = batch(
                &lab,
                &observer,
                &mut macdrop,
                &[one.clone()],
                &mut Tally::default(),
            )? {
                let hex: String = one.bytes.iter().map(|b| format!("{b:02x}")).collect();
                bail!("{kind:?}: macdrop disagrees with the kernel on frame {hex}: {what}");
            }
        }
        bail!("{kind:?}: a batch disagreed ({why}) but no single frame of it does");
    }
    macdrop.stop()?;
    Ok(tally)
}

/// The agreement table of a run, one row per lab, and the totals.
pub fn table(results: &[(LabKind, Tally)]) -> String {
    let mut out = format!(
        "{:<24} {:>6} {:>9} {:>9} {:>13} {:>8} {:>9}\n",
        "lab", "frames", "delivered", "otherhost", "not passed up", "rescued", "agreement"
    );
    let mut total = 0;
    for (kind, t) in results {
        let name = format!("{kind:?}");
        match &t.skipped {
            Some(why) => {
                let _ = writeln!(out, "{name:<24} SKIPPED: {why}");
            }
            None => {
                total += t.frames;
                let _ = writeln!(
                    out,
                    "{name:<24} {:>6} {:>9} {:>9} {:>13} {:>8} {:>9}",
                    t.frames,
                    t.delivered,
                    t.dropped_otherhost,
                    t.not_passed_up,
                    t.rescued_by_promisc,
                    "100%"
                );
            }
        }
    }
    let skipped = results.iter().filter(|(_, t)| t.skipped.is_some()).count();
    let _ = writeln!(
        out,
        "total: {total} frames, all agree; {} lab(s) ran, {skipped} skipped",
        results.len() - skipped
    );
    out
}
