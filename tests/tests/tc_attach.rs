//! Privileged tests of the tc hook (`macdrop::kernel::tc`) on the real
//! kernel: exact counts from namespace labs through TCX and through
//! clsact, what is left after detach and after a SIGKILL, and coexistence
//! with other programs and filters. They need root (CI runs the suite as
//! root) and fail without it.

use std::{
    io::{BufRead as _, BufReader},
    process::{Child, Command, Stdio},
    time::Duration,
};

use aya::{
    Ebpf,
    maps::{HashMap as BpfHashMap, MapData},
    programs::{
        LinkOrder, SchedClassifier, TcAttachType,
        tc::{NlOptions, TcAttachOptions},
    },
};
use macdrop::kernel::{
    counters::CounterReader,
    loader,
    tc::{
        CLSACT_PRIO, HANDLE_ON_EXISTING_QDISC, HANDLE_ON_OWN_QDISC, TcAttachment, TcMode, attach,
        attach_clsact, attach_egress, attach_tcx, cleanup_leftovers, load_tc_program,
        owner::{self, Recorded},
        rtnl::{self, Direction},
    },
};
use macdrop_tests::{
    frames::{self, Mac},
    kernel as lab_kernel,
    lab::{self, BridgeLab, StandaloneLab},
    netns::NetNs,
    sender::RawSender,
    wait::poll_until,
};
use monitor_common::{AddrKey, FrameCounters, IF_FAST_MAC_VALID, IfConfig, IfKey, names};

/// Own and foreign frames per burst; different so a swap shows.
const OWN: usize = 30;
const FOREIGN: usize = 20;
/// Frames are processed asynchronously (softirq): poll up to this long.
const SETTLE: Duration = Duration::from_secs(5);

/// A private object instance with `macdrop_tc` loaded and some interfaces
/// of one namespace watched (slot = position in the list), each with a
/// single own MAC and `host_ip` as the namespace's address.
struct Rig {
    ebpf: Ebpf,
    counters: CounterReader,
    _ifaces: BpfHashMap<MapData, IfKey, IfConfig>,
    _addrs: BpfHashMap<MapData, AddrKey, u8>,
    ifindexes: Vec<u32>,
}

impl Rig {
    fn new(ns: &NetNs, watched: &[(&str, Mac)], host_ip: std::net::Ipv4Addr) -> Self {
        assert!(
            macdrop::privileges::check().is_ok(),
            "tc tests need root (CAP_BPF + CAP_NET_ADMIN): run `cargo xtask test`"
        );
        let netns = u32::try_from(ns.inode()).unwrap();
        let mut ebpf = loader::load(netns, &[]).unwrap();
        let mut ifaces: BpfHashMap<MapData, IfKey, IfConfig> =
            BpfHashMap::try_from(ebpf.take_map(names::IFACES).unwrap()).unwrap();
        let mut ifindexes = Vec::new();
        for (slot, (ifname, mac)) in watched.iter().enumerate() {
            let ifindex = lab_kernel::ifindex(ns, ifname).unwrap();
            let cfg = IfConfig {
                slot: slot as u32,
                mac_domain: 0,
                flags: IF_FAST_MAC_VALID,
                flow_sample: 0,
                fast_mac: monitor_common::mac_word(mac),
            };
            ifaces.insert(IfKey { netns, ifindex }, cfg, 0).unwrap();
            ifindexes.push(ifindex);
        }
        let mut addrs: BpfHashMap<MapData, AddrKey, u8> =
            BpfHashMap::try_from(ebpf.take_map(names::LOCAL_ADDRS).unwrap()).unwrap();
        addrs
            .insert(AddrKey::v4(netns, host_ip.octets()), 1, 0)
            .unwrap();
        let counters = CounterReader::take(&mut ebpf).unwrap();
        load_tc_program(&mut ebpf).unwrap();
        Self {
            ebpf,
            counters,
            _ifaces: ifaces,
            _addrs: addrs,
            ifindexes,
        }
    }

    /// Watches v0 of a standalone lab.
    fn standalone(lab: &StandaloneLab) -> Self {
        Self::new(
            lab.host(),
            &[(lab::STANDALONE_IFACE, lab::STANDALONE_MAC)],
            lab::STANDALONE_IPV4,
        )
    }

    /// Attaches to the `slot`th watched interface, inside `ns`.
    fn attach(&mut self, ns: &NetNs, slot: usize, mode: TcMode) -> TcAttachment {
        let ifindex = self.ifindexes[slot];
        let ebpf = &mut self.ebpf;
        ns.enter_thread(|| attach(ebpf, ifindex, mode))
            .unwrap()
            .unwrap_or_else(|e| panic!("attach {mode:?}: {e:#}"))
    }

    fn program_id(&self) -> u32 {
        let prog: &SchedClassifier = self
            .ebpf
            .program(names::TC_PROGRAM)
            .unwrap()
            .try_into()
            .unwrap();
        prog.info().unwrap().id()
    }

    /// Polls until slot `slot` equals `want`; returns the last read.
    fn settle(&self, slot: u32, want: &FrameCounters) -> FrameCounters {
        poll_until(SETTLE, || self.counters.read(slot), |c| c == want).unwrap()
    }

    /// Attaches this instance's program the way another tool would, with
    /// aya directly (TCX, at `order`), and hands the link to the caller.
    fn attach_as_another_tool(
        &mut self,
        ns: &NetNs,
        ifname: &str,
        order: LinkOrder,
    ) -> aya::programs::tc::SchedClassifierLink {
        let ebpf = &mut self.ebpf;
        ns.enter_thread(|| {
            let prog: &mut SchedClassifier = ebpf
                .program_mut(names::TC_PROGRAM)
                .unwrap()
                .try_into()
                .unwrap();
            let id = prog
                .attach_with_options(
                    ifname,
                    TcAttachType::Ingress,
                    TcAttachOptions::TcxOrder(order),
                )
                .unwrap();
            prog.take_link(id).unwrap()
        })
        .unwrap()
    }
}

/// `OWN` frames to v0's MAC and `FOREIGN` to a foreign MAC, all to v0's IP.
fn send_own_and_foreign(lab: &StandaloneLab) {
    let to = |mac| {
        frames::ipv4_udp(
            mac,
            lab::STANDALONE_PEER_MAC,
            lab::STANDALONE_PEER_IPV4,
            lab::STANDALONE_IPV4,
        )
    };
    let sender = RawSender::new(lab.peer(), lab::PEER_IFACE).unwrap();
    sender.send(&to(lab::STANDALONE_MAC), OWN).unwrap();
    sender.send(&to(lab::FOREIGN_MAC), FOREIGN).unwrap();
}

/// What `send_own_and_foreign` must count on v0, `times` over.
fn expected(times: u64) -> FrameCounters {
    let (own, foreign) = (OWN as u64 * times, FOREIGN as u64 * times);
    FrameCounters {
        total: own + foreign,
        own,
        foreign_unicast: foreign,
        host_ip_wrong_mac: foreign,
        // The kernel agrees on this standalone veth: v0's MAC is HOST,
        // anything else OTHERHOST.
        pkt_host: own,
        pkt_otherhost: foreign,
        ..FrameCounters::default()
    }
}

/// What the tc ingress of one interface holds, read over netlink and the
/// BPF query API inside `ns`.
#[derive(Debug, PartialEq, Eq)]
struct TcState {
    tcx_programs: Vec<u32>,
    /// (prio, handle, kind, cls_bpf name) of every ingress entry; a
    /// macdrop filter's owner token reads `OWNER` (it is random).
    ingress: Vec<(u16, u32, String, Option<String>)>,
    egress_entries: usize,
    clsact: bool,
}

fn tc_state(ns: &NetNs, ifname: &str) -> TcState {
    ns.enter_thread(|| {
        let ifindex = ifindex_here(ifname);
        let (_, progs) = SchedClassifier::query_tcx(ifname, TcAttachType::Ingress).unwrap();
        let mut sock = rtnl::RouteSocket::open().unwrap();
        TcState {
            tcx_programs: progs.iter().map(|p| p.id()).collect(),
            ingress: sock
                .filters(ifindex, Direction::Ingress)
                .unwrap()
                .into_iter()
                .map(|f| {
                    (
                        f.prio,
                        f.handle,
                        f.kind,
                        f.bpf_name.map(|n| owner_elided(&n)),
                    )
                })
                .collect(),
            egress_entries: sock.filters(ifindex, Direction::Egress).unwrap().len(),
            clsact: sock.has_clsact(ifindex).unwrap(),
        }
    })
    .unwrap()
}

/// `macdrop_tc/TOKEN` as `macdrop_tc/OWNER`; any other name as it is.
fn owner_elided(name: &str) -> String {
    match owner::recorded(Some(name)) {
        Recorded::Owner(_) => format!("{}/OWNER", names::TC_PROGRAM),
        _ => name.to_owned(),
    }
}

/// if_nametoindex in the calling thread's namespace.
fn ifindex_here(ifname: &str) -> u32 {
    let c = std::ffi::CString::new(ifname).unwrap();
    // SAFETY: a valid NUL-terminated string.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    assert_ne!(i, 0, "no {ifname} here");
    i
}

fn nothing() -> TcState {
    TcState {
        tcx_programs: vec![],
        ingress: vec![],
        egress_entries: 0,
        clsact: false,
    }
}

/// Our cls_bpf filter as `tc_state` lists it: the classifier instance at
/// our priority (handle 0), then the filter.
fn our_filter(handle: u32) -> Vec<(u16, u32, String, Option<String>)> {
    vec![
        (CLSACT_PRIO, 0, "bpf".into(), None),
        (
            CLSACT_PRIO,
            handle,
            "bpf".into(),
            Some(format!("{}/OWNER", names::TC_PROGRAM)),
        ),
    ]
}

#[test]
fn tcx_counts_exactly_and_leaves_nothing_behind() {
    let lab = StandaloneLab::new().unwrap();
    let mut rig = Rig::standalone(&lab);
    let attachment = rig.attach(lab.host(), 0, TcMode::Tcx);
    assert_eq!(attachment.mode(), Some(TcMode::Tcx));
    assert!(!attachment.created_qdisc());
    let state = tc_state(lab.host(), lab::STANDALONE_IFACE);
    assert_eq!(state.tcx_programs, [rig.program_id()]);
    assert!(!state.clsact && state.ingress.is_empty(), "{state:?}");

    send_own_and_foreign(&lab);
    assert_eq!(rig.settle(0, &expected(1)), expected(1));

    // Detached from the test's own namespace: a TCX link is just an fd.
    attachment.detach().unwrap();
    assert_eq!(tc_state(lab.host(), lab::STANDALONE_IFACE), nothing());
}

#[test]
fn clsact_counts_exactly_and_removes_its_qdisc() {
    let lab = StandaloneLab::new().unwrap();
    let mut rig = Rig::standalone(&lab);
    let attachment = rig.attach(lab.host(), 0, TcMode::Clsact);
    assert_eq!(attachment.mode(), Some(TcMode::Clsact));
    assert!(attachment.created_qdisc());
    let state = tc_state(lab.host(), lab::STANDALONE_IFACE);
    assert!(state.clsact && state.tcx_programs.is_empty(), "{state:?}");
    assert_eq!(state.ingress, our_filter(HANDLE_ON_OWN_QDISC));

    send_own_and_foreign(&lab);
    assert_eq!(rig.settle(0, &expected(1)), expected(1));

    // Detached from the test's own namespace, not v0's: the attachment
    // keeps the netlink socket it was made with.
    attachment.detach().unwrap();
    assert_eq!(tc_state(lab.host(), lab::STANDALONE_IFACE), nothing());
}

/// A clsact qdisc that was there before, with someone else's filters on
/// both hooks, before macdrop's and after it: macdrop's filter goes between
/// them, every frame still reaches the filter after it (TC_ACT_UNSPEC
/// continues), and detach removes exactly macdrop's filter.
#[test]
fn clsact_leaves_an_existing_qdisc_and_other_filters_alone() {
    let lab = StandaloneLab::new().unwrap();
    let v0 = lab::STANDALONE_IFACE;
    lab.host()
        .exec(&["tc", "qdisc", "add", "dev", v0, "clsact"])
        .unwrap();
    // u32 filters that never match, so they neither end the chain nor
    // hide frames from the filters after them.
    for hook in ["ingress", "egress"] {
        lab.host()
            .exec(&[
                "tc",
                "filter",
                "add",
                "dev",
                v0,
                hook,
                "prio",
                "1",
                "u32",
                "match",
                "u32",
                "0xdeadbeef",
                "0xffffffff",
                "at",
                "0",
            ])
            .unwrap();
    }
    // Another tool's cls_bpf filter after macdrop's priority (another
    // object instance, attached by aya).
    let mut after = Rig::standalone(&lab);
    {
        let ebpf = &mut after.ebpf;
        lab.host()
            .enter_thread(|| {
                let prog: &mut SchedClassifier = ebpf
                    .program_mut(names::TC_PROGRAM)
                    .unwrap()
                    .try_into()
                    .unwrap();
                let options = NlOptions {
                    priority: CLSACT_PRIO + 8,
                    ..NlOptions::default()
                };
                let id = prog
                    .attach_with_options(
                        v0,
                        TcAttachType::Ingress,
                        TcAttachOptions::Netlink(options),
                    )
                    .unwrap();
                // Never detached by aya: its netlink detach (also on drop)
                // acts in the namespace of the thread that runs it, which
                // would be the test's, not the lab's. The lab's teardown
                // removes the filter.
                std::mem::forget(prog.take_link(id).unwrap());
            })
            .unwrap();
    }
    let before = tc_state(lab.host(), v0);
    assert!(before.clsact && before.egress_entries > 0, "{before:?}");

    let mut rig = Rig::standalone(&lab);
    let attachment = rig.attach(lab.host(), 0, TcMode::Clsact);
    assert!(!attachment.created_qdisc());
    let during = tc_state(lab.host(), v0);
    let mut want = before.ingress.clone();
    let theirs_after = want.split_off(want.len() - 2);
    want.extend(our_filter(HANDLE_ON_EXISTING_QDISC));
    want.extend(theirs_after);
    assert_eq!(during.ingress, want, "ordered by priority");

    send_own_and_foreign(&lab);
    assert_eq!(rig.settle(0, &expected(1)), expected(1));
    assert_eq!(after.settle(0, &expected(1)), expected(1));

    attachment.detach().unwrap();
    assert_eq!(tc_state(lab.host(), v0), before);
}

/// An older tool's plain `ingress` qdisc instead of clsact: it takes the
/// filter at the same parent, macdrop counts, and leaves the qdisc alone.
#[test]
fn clsact_path_works_under_a_legacy_ingress_qdisc() {
    let lab = StandaloneLab::new().unwrap();
    let v0 = lab::STANDALONE_IFACE;
    lab.host()
        .exec(&["tc", "qdisc", "add", "dev", v0, "ingress"])
        .unwrap();
    let mut rig = Rig::standalone(&lab);
    let attachment = rig.attach(lab.host(), 0, TcMode::Clsact);
    assert!(!attachment.created_qdisc());
    assert_eq!(
        tc_state(lab.host(), v0).ingress,
        our_filter(HANDLE_ON_EXISTING_QDISC)
    );
    send_own_and_foreign(&lab);
    assert_eq!(rig.settle(0, &expected(1)), expected(1));
    attachment.detach().unwrap();
    assert_eq!(tc_state(lab.host(), v0), nothing());
    let qdiscs = lab
        .host()
        .exec(&["tc", "qdisc", "show", "dev", v0])
        .unwrap();
    assert!(
        String::from_utf8_lossy(&qdiscs).contains("qdisc ingress ffff:"),
        "the ingress qdisc stays"
    );
}

/// Dropping an attachment detaches it too (the Attacher's safety net).
#[test]
fn dropping_an_attachment_detaches() {
    let lab = StandaloneLab::new().unwrap();
    let mut rig = Rig::standalone(&lab);
    for mode in [TcMode::Tcx, TcMode::Clsact] {
        drop(rig.attach(lab.host(), 0, mode));
        assert_eq!(
            tc_state(lab.host(), lab::STANDALONE_IFACE),
            nothing(),
            "{mode:?}"
        );
    }
}

/// Other programs on TCX ingress, one there before macdrop and one attached
/// after it: macdrop goes in front of all, displaces nothing, all three
/// count every frame (macdrop's TCX_NEXT lets the others run), and
/// detaching macdrop leaves both.
#[test]
fn tcx_coexists_with_programs_before_and_after_it() {
    let lab = StandaloneLab::new().unwrap();
    let v0 = lab::STANDALONE_IFACE;
    let mut first = Rig::standalone(&lab);
    let first_link = first.attach_as_another_tool(lab.host(), v0, LinkOrder::default());
    let mut rig = Rig::standalone(&lab);
    let attachment = rig.attach(lab.host(), 0, TcMode::Tcx);
    let mut last = Rig::standalone(&lab);
    let last_link = last.attach_as_another_tool(lab.host(), v0, LinkOrder::default());
    assert_eq!(
        tc_state(lab.host(), v0).tcx_programs,
        [rig.program_id(), first.program_id(), last.program_id()],
    );

    send_own_and_foreign(&lab);
    for r in [&first, &rig, &last] {
        assert_eq!(r.settle(0, &expected(1)), expected(1));
    }

    attachment.detach().unwrap();
    assert_eq!(
        tc_state(lab.host(), v0).tcx_programs,
        [first.program_id(), last.program_id()]
    );
    send_own_and_foreign(&lab);
    assert_eq!(first.settle(0, &expected(2)), expected(2));
    assert_eq!(last.settle(0, &expected(2)), expected(2));
    drop((first_link, last_link));
}

/// Why macdrop goes first on TCX: another program that returns a verdict
/// (here TCX_PASS, as many tools do for the traffic they let through) ends
/// the chain. Attached before it, macdrop still counts every frame, and the
/// other program still sees and passes every one of them.
#[test]
fn a_tcx_program_with_a_verdict_does_not_hide_frames_from_macdrop() {
    let lab = StandaloneLab::new().unwrap();
    let v0 = lab::STANDALONE_IFACE;
    let ifindex = lab_kernel::ifindex(lab.host(), v0).unwrap();
    let pass = lab
        .host()
        .enter_thread(|| raw_bpf::tcx_pass_program(ifindex))
        .unwrap();
    let mut rig = Rig::standalone(&lab);
    let attachment = rig.attach(lab.host(), 0, TcMode::Tcx);
    assert_eq!(tc_state(lab.host(), v0).tcx_programs.len(), 2);
    let udp_before = udp_no_ports(lab.host());

    send_own_and_foreign(&lab);
    // Every frame went on into the stack: the own ones end as UDP
    // datagrams to a closed port, the foreign ones as IP-layer OTHERHOST
    // drops — the other program's TCX_PASS still decided.
    let delivered = poll_until(
        SETTLE,
        || {
            let otherhost = lab_kernel::link_stats(lab.host(), v0)?.rx_otherhost_dropped;
            Ok((udp_no_ports(lab.host()) - udp_before, otherhost))
        },
        |got| *got == (OWN as u64, FOREIGN as u64),
    )
    .unwrap();
    assert_eq!(delivered, (OWN as u64, FOREIGN as u64));
    assert_eq!(rig.settle(0, &expected(1)), expected(1));
    attachment.detach().unwrap();
    drop(pass);
}

/// `Udp: NoPorts` of the namespace: datagrams delivered to no socket.
fn udp_no_ports(ns: &NetNs) -> u64 {
    let snmp = String::from_utf8(ns.exec(&["cat", "/proc/net/snmp"]).unwrap()).unwrap();
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp: "));
    let (names, values) = (udp.next().unwrap(), udp.next().unwrap());
    let at = names
        .split_whitespace()
        .position(|n| n == "NoPorts")
        .unwrap();
    values.split_whitespace().nth(at).unwrap().parse().unwrap()
}

/// The smallest program another tool could attach: `r0 = 0 (TCX_PASS);
/// exit`, loaded and linked with raw bpf(2) calls (aya loads ELF objects
/// only).
mod raw_bpf {
    use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};

    const BPF_PROG_LOAD: libc::c_long = 5;
    const BPF_LINK_CREATE: libc::c_long = 28;
    const BPF_PROG_TYPE_SCHED_CLS: u32 = 3;
    const BPF_TCX_INGRESS: u32 = 46;

    /// (program fd, link fd); the link goes when they are dropped.
    pub fn tcx_pass_program(ifindex: u32) -> (OwnedFd, OwnedFd) {
        // mov64 r0, 0; exit
        let insns: [u64; 2] = [0xb7, 0x95];
        let license = c"GPL";
        // union bpf_attr for BPF_PROG_LOAD: prog_type, insn_cnt, insns,
        // license; the rest zero.
        let mut load = [0u8; 128];
        load[0..4].copy_from_slice(&BPF_PROG_TYPE_SCHED_CLS.to_ne_bytes());
        load[4..8].copy_from_slice(&2u32.to_ne_bytes());
        load[8..16].copy_from_slice(&(insns.as_ptr() as u64).to_ne_bytes());
        load[16..24].copy_from_slice(&(license.as_ptr() as u64).to_ne_bytes());
        let prog = bpf(BPF_PROG_LOAD, &load);
        // link_create: prog_fd, target_ifindex, attach_type; flags 0
        // (append).
        let mut link = [0u8; 64];
        link[0..4].copy_from_slice(&prog.as_raw_fd().to_ne_bytes());
        link[4..8].copy_from_slice(&ifindex.to_ne_bytes());
        link[8..12].copy_from_slice(&BPF_TCX_INGRESS.to_ne_bytes());
        let link = bpf(BPF_LINK_CREATE, &link);
        (prog, link)
    }

    fn bpf(cmd: libc::c_long, attr: &[u8]) -> OwnedFd {
        // SAFETY: `attr` is a valid, fully initialised bpf_attr prefix of
        // the given size, and the pointers in it outlive the call.
        let fd = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_ptr(), attr.len()) };
        assert!(fd >= 0, "bpf({cmd}): {}", std::io::Error::last_os_error());
        // SAFETY: a new fd the kernel just handed us.
        unsafe { OwnedFd::from_raw_fd(fd as i32) }
    }
}

/// On a bridge port and on the bridge itself. `ingress_ifindex` keys each
/// count to the device whose hook ran (the kernel re-sets it when the
/// bridge passes a frame up), and `pkt_type` is relative to that device:
/// frames for the bridge's MAC are OTHERHOST on the port and HOST on the
/// bridge, while macdrop counts them `own` on both. Foreign frames are
/// flooded (to no other port), never passed up.
#[test]
fn tcx_on_a_bridge_and_its_port_counts_where_each_frame_is_seen() {
    let lab = BridgeLab::new(1).unwrap();
    let (p1, br0) = (lab::port_name(1), lab::BRIDGE);
    let mut rig = Rig::new(
        lab.host(),
        &[(&p1, lab::BRIDGE_MAC), (br0, lab::BRIDGE_MAC)],
        lab::BRIDGE_IPV4,
    );
    let on_port = rig.attach(lab.host(), 0, TcMode::Tcx);
    let on_bridge = rig.attach(lab.host(), 1, TcMode::Tcx);
    let to = |mac| frames::ipv4_udp(mac, lab::peer_mac(1), lab::peer_ipv4(1), lab::BRIDGE_IPV4);
    let sender = RawSender::new(lab.peer(1), lab::PEER_IFACE).unwrap();
    sender.send(&to(lab::BRIDGE_MAC), OWN).unwrap();
    sender.send(&to(lab::FOREIGN_MAC), FOREIGN).unwrap();

    let (own, foreign) = (OWN as u64, FOREIGN as u64);
    let port = FrameCounters {
        total: own + foreign,
        own,
        foreign_unicast: foreign,
        host_ip_wrong_mac: foreign,
        pkt_otherhost: own + foreign,
        ..FrameCounters::default()
    };
    let bridge = FrameCounters {
        total: own,
        own,
        pkt_host: own,
        ..FrameCounters::default()
    };
    assert_eq!(rig.settle(0, &port), port);
    assert_eq!(rig.settle(1, &bridge), bridge);
    on_bridge.detach().unwrap();
    on_port.detach().unwrap();
}

// ---- leftovers of a SIGKILLed macdrop -------------------------------------

/// Set for the child process: the path of the namespace to attach in.
const CHILD_NETNS_ENV: &str = "MACDROP_TC_TEST_CHILD_NETNS";
/// What the child prints once it is attached both ways.
const CHILD_READY: &str = "macdrop-tc-child: attached";
/// The test that plays both parts: run again as a child with
/// `CHILD_NETNS_ENV` set, it is the macdrop that gets killed.
const SIGKILL_TEST: &str = "sigkill_leaves_only_the_clsact_objects_and_cleanup_removes_them";

/// The child's part: attaches to `v0` through TCX and through clsact, says
/// so, and waits for its SIGKILL.
fn child_attaches_both_ways_then_waits_to_be_killed(netns_path: &str) -> ! {
    let file = std::fs::File::open(netns_path).unwrap();
    // SAFETY: plain syscall on an open namespace fd; this thread (the
    // whole child process, in fact) stays in that namespace.
    let rc = unsafe {
        use std::os::fd::AsRawFd as _;
        libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET)
    };
    assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
    let netns = macdrop::netns::inode_of(std::path::Path::new(netns_path)).unwrap();
    let mut ebpf = loader::load(netns, &[]).unwrap();
    load_tc_program(&mut ebpf).unwrap();
    let ifindex = ifindex_here(lab::STANDALONE_IFACE);
    let tcx = attach_tcx(&mut ebpf, ifindex).unwrap();
    let clsact = attach_clsact(&mut ebpf, ifindex).unwrap();
    assert!(clsact.created_qdisc());
    // The egress source-MAC counter through clsact too, on the qdisc the
    // ingress filter's attach added.
    let egress = {
        let (fd, id) = egress_program(&mut ebpf);
        attach_egress(fd, id, ifindex, TcMode::Clsact).unwrap()
    };
    assert!(!egress.created_qdisc());
    println!("{CHILD_READY}");
    // Until SIGKILL. Should the parent die instead, stdin closes, and the
    // lab goes with the parent's namespace guards anyway.
    let _ = std::io::stdin().read_line(&mut String::new());
    std::mem::forget((tcx, clsact, egress, ebpf));
    // SAFETY: leaves without running any destructor, like a kill would.
    unsafe { libc::_exit(0) };
}

/// Kills the child on drop, so a failing test never leaves it running.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A macdrop attached both ways (a child process, this test binary run
/// again for this test alone), with the egress counter through clsact
/// too, is SIGKILLed: its TCX link goes with it, its cls_bpf filters
/// (ingress and egress) and the clsact qdisc it added stay, and
/// `cleanup_leftovers` removes exactly those and says so.
#[test]
fn sigkill_leaves_only_the_clsact_objects_and_cleanup_removes_them() {
    if let Ok(netns_path) = std::env::var(CHILD_NETNS_ENV) {
        child_attaches_both_ways_then_waits_to_be_killed(&netns_path);
    }
    let lab = StandaloneLab::new().unwrap();
    let v0 = lab::STANDALONE_IFACE;
    let ifindex = lab_kernel::ifindex(lab.host(), v0).unwrap();
    let mut child = ChildGuard(
        Command::new(std::env::current_exe().unwrap())
            .args([SIGKILL_TEST, "--exact", "--nocapture"])
            .env(CHILD_NETNS_ENV, lab.host().path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let ready = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .any(|line| line == CHILD_READY);
    assert!(
        ready,
        "the child failed before attaching (its stderr is above)"
    );

    let attached = tc_state(lab.host(), v0);
    assert_eq!(attached.tcx_programs.len(), 1, "{attached:?}");
    assert_eq!(attached.ingress, our_filter(HANDLE_ON_OWN_QDISC));
    // The classifier instance and the egress filter.
    assert_eq!(attached.egress_entries, 2, "{attached:?}");

    // SIGKILL: nothing of macdrop's runs any more.
    child.0.kill().unwrap();
    child.0.wait().unwrap();

    // The TCX link went with the process (its release may be deferred to a
    // workqueue, so poll); the filter and the qdisc did not.
    let left = poll_until(
        SETTLE,
        || Ok(tc_state(lab.host(), v0)),
        |s| s.tcx_programs.is_empty(),
    )
    .unwrap();
    assert_eq!(
        left,
        TcState {
            tcx_programs: vec![],
            ingress: our_filter(HANDLE_ON_OWN_QDISC),
            egress_entries: 2,
            clsact: true,
        }
    );

    // A start that fails on its arguments (no such interface) removes
    // nothing: cleanup runs only once the selection is valid.
    let bin = macdrop_tests::macdrop::macdrop_bin();
    let mistyped = macdrop_tests::macdrop::run_command(
        lab.host(),
        &[bin.to_str().unwrap(), "watch", "--iface", "nosuch0"],
        Duration::from_secs(30),
    )
    .unwrap();
    assert_eq!(mistyped.status.code(), Some(3), "{mistyped:?}");
    assert_eq!(tc_state(lab.host(), v0), left);

    let cleanup = || {
        lab.host()
            .enter_thread(|| cleanup_leftovers(&[ifindex]))
            .unwrap()
            .unwrap()
    };
    // The killed process's owner name, like its TCX link, can be released
    // a moment after the process is reaped (seen once in CI: one filter
    // removed, the other spared as held). A filter whose owner still holds
    // its name is spared, as a live macdrop's must be, so clean up as the
    // next starts would until nothing is left; every object is still
    // removed exactly once, the qdisc after the last filter.
    let mut removed = Vec::new();
    let after = poll_until(
        SETTLE,
        || {
            removed.extend(cleanup());
            Ok(tc_state(lab.host(), v0))
        },
        |s| *s == nothing(),
    )
    .unwrap();
    assert_eq!(
        removed,
        [
            "removed leftover macdrop tc filter on v0",
            "removed leftover macdrop tc filter on v0",
            "removed leftover clsact qdisc (added by macdrop) on v0",
        ]
    );
    assert_eq!(after, nothing());
    assert_eq!(cleanup(), Vec::<String>::new());
}

/// A running macdrop's filter is not a leftover: it holds the owner name
/// the filter records (here, this test's own object instance does), for
/// the cleanup in this process and for a macdrop started in a PID
/// namespace of its own (a container without the host's PID namespace),
/// which cannot see the running one's processes: the owner name is in the
/// network namespace, which both share. The running one attaches through
/// clsact whatever the kernel (the path of kernels < 6.6); the second is
/// the real binary.
#[test]
fn cleanup_spares_the_filter_of_a_running_macdrop_from_any_pid_namespace() {
    let lab = StandaloneLab::new().unwrap();
    let mut rig = Rig::standalone(&lab);
    let attachment = rig.attach(lab.host(), 0, TcMode::Clsact);
    let before = tc_state(lab.host(), lab::STANDALONE_IFACE);
    assert_eq!(before.ingress, our_filter(HANDLE_ON_OWN_QDISC));
    let ifindex = rig.ifindexes[0];
    let removed = lab
        .host()
        .enter_thread(|| cleanup_leftovers(&[ifindex]))
        .unwrap()
        .unwrap();
    assert!(removed.is_empty(), "{removed:?}");
    assert_eq!(tc_state(lab.host(), lab::STANDALONE_IFACE), before);
    send_own_and_foreign(&lab);
    assert_eq!(rig.settle(0, &expected(1)), expected(1));

    let second = macdrop_tests::macdrop::run_in_own_pid_namespace(
        lab.host(),
        &[
            "watch",
            "--iface",
            lab::STANDALONE_IFACE,
            "--duration",
            "0.5",
        ],
        Duration::from_secs(30),
    )
    .unwrap();
    assert!(second.status.success(), "{second:?}");
    assert!(
        !second.stderr.contains("removed leftover"),
        "{}",
        second.stderr
    );

    // The running one's filter is still there, still counting.
    assert_eq!(tc_state(lab.host(), lab::STANDALONE_IFACE), before);
    send_own_and_foreign(&lab);
    assert_eq!(rig.settle(0, &expected(2)), expected(2));
    attachment.detach().unwrap();
    assert_eq!(tc_state(lab.host(), lab::STANDALONE_IFACE), nothing());
}

/// The egress source-MAC counter through clsact (the path of kernels
/// < 6.6): a filter on the egress hook of a clsact qdisc it adds, none on
/// ingress, and detach removes both the filter and the qdisc.
#[test]
fn the_egress_counter_through_clsact_leaves_nothing_after_detach() {
    let lab = StandaloneLab::new().unwrap();
    let v0 = lab::STANDALONE_IFACE;
    let ifindex = lab_kernel::ifindex(lab.host(), v0).unwrap();
    let netns = macdrop::netns::inode_of(&lab.host().path()).unwrap();
    let mut ebpf = loader::load(netns, &[]).unwrap();
    let (fd, id) = egress_program(&mut ebpf);
    let attachment = lab
        .host()
        .enter_thread(|| attach_egress(fd, id, ifindex, TcMode::Clsact))
        .unwrap()
        .unwrap();
    assert!(attachment.created_qdisc());
    let state = tc_state(lab.host(), v0);
    assert_eq!(
        (state.clsact, state.ingress.len(), state.egress_entries),
        (true, 0, 2),
        "{state:?}"
    );
    attachment.detach().unwrap();
    assert_eq!(tc_state(lab.host(), v0), nothing());
}

/// Loads the egress source-MAC counter: its fd and kernel id.
fn egress_program(ebpf: &mut Ebpf) -> (std::os::fd::BorrowedFd<'_>, u32) {
    use std::os::fd::AsFd as _;
    let prog: &mut SchedClassifier = ebpf
        .program_mut(monitor_common::egress::names::PROGRAM)
        .unwrap()
        .try_into()
        .unwrap();
    prog.load().unwrap();
    let id = prog.info().unwrap().id();
    (prog.fd().unwrap().as_fd(), id)
}
